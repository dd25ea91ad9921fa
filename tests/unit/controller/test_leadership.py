"""Leader election on a Lease: who leads, who waits, takeover after expiry, release, and the bind guard.

The Lease lives in a fake API server on loopback (``tests/unit/loopback.py``) that
keeps the one behaviour election relies on: a write carrying a stale
resourceVersion is refused with 409. Time is a fake monotonic clock, so no test
waits. The e2e suite's failover test runs two operators against a real API server.
"""

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from leitstand.controller import leadership
from leitstand.controller.configuration import LeaderElection
from leitstand.controller.leadership import Leadership
from leitstand.kube.client import ApiError, Client
from tests.unit import loopback

CONFIG = LeaderElection(namespace="ops", lease_name="leitstand", lease_duration_seconds=10, renew_interval_seconds=2)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/ops/leases"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class LeaseServer:
    """Leases by path, each with a resourceVersion that every accepted write moves on."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.versions = 0

    async def answer(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method == "GET":
            if path not in self.leases:
                return loopback.status(404, "NotFound")
            return web.json_response(self.leases[path])
        body = await request.json()
        if request.method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.leases:
                return loopback.status(409, "AlreadyExists")
        elif request.method == "PUT":
            stored = self.leases.get(path)
            if stored is None:
                return loopback.status(404, "NotFound")
            if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
                return loopback.status(409, "Conflict", "the object has been modified")
        else:
            return loopback.status(405, "MethodNotAllowed")
        self.versions += 1
        body["metadata"]["resourceVersion"] = str(self.versions)
        self.leases[path] = copy.deepcopy(body)
        return web.json_response(body, status=201 if request.method == "POST" else 200)

    def holder(self) -> str:
        return str(self.leases[f"{LEASES}/leitstand"]["spec"]["holderIdentity"])

    def transitions(self) -> int:
        return int(self.leases[f"{LEASES}/leitstand"]["spec"]["leaseTransitions"])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(leadership, "time", fake)
    return fake


@pytest.fixture
async def server() -> AsyncIterator[tuple[LeaseServer, Client]]:
    lease = LeaseServer()
    async with loopback.serving(lease.answer) as client:
        yield lease, client


async def round_of(candidate: Leadership, clock: Clock) -> bool:
    """One election round as ``run`` makes it: a win counts as a renewal at the round's start."""
    started = clock.monotonic()
    won = await candidate.try_acquire_or_renew()
    if won:
        candidate._renewed = started
    return won


async def test_the_first_candidate_creates_the_lease_and_the_second_waits(
    server: tuple[LeaseServer, Client], clock: Clock
) -> None:
    lease, client = server
    first, second = Leadership(client, CONFIG, "a"), Leadership(client, CONFIG, "b")
    assert await round_of(first, clock)
    assert first.leading()
    assert not await round_of(second, clock)
    assert not second.leading()
    clock.now += 2
    assert await round_of(first, clock)  # renewals keep it
    clock.now += 9
    assert not await round_of(second, clock)  # renewed 9 s ago, as b observed: not expired
    assert lease.holder() == "a"
    assert lease.transitions() == 0


async def test_a_lease_not_renewed_for_its_duration_as_observed_locally_is_taken_over(
    server: tuple[LeaseServer, Client], clock: Clock
) -> None:
    lease, client = server
    first, second = Leadership(client, CONFIG, "a"), Leadership(client, CONFIG, "b")
    assert await round_of(first, clock)
    assert not await round_of(second, clock)  # b starts its own timer here, whatever renewTime says
    clock.now += 10
    assert not await round_of(second, clock)  # exactly the duration: not yet
    clock.now += 0.5
    assert await round_of(second, clock)
    assert lease.holder() == "b"
    assert lease.transitions() == 1
    assert not first.leading()  # a stopped acting before b could take over: 10.5 s > 10 - 2


async def test_a_leader_stops_binding_one_renew_interval_before_the_lease_could_expire(
    server: tuple[LeaseServer, Client], clock: Clock
) -> None:
    _lease, client = server
    candidate = Leadership(client, CONFIG, "a")
    assert await round_of(candidate, clock)
    clock.now += 7.9
    assert candidate.leading()
    clock.now += 0.1
    assert not candidate.leading()  # 8 s without a renewal: others may take over at 10


async def test_of_two_candidates_writing_the_same_version_only_one_wins(
    server: tuple[LeaseServer, Client], clock: Clock
) -> None:
    lease, client = server
    first, second = Leadership(client, CONFIG, "a"), Leadership(client, CONFIG, "b")
    assert await round_of(first, clock)
    assert not await round_of(second, clock)
    clock.now += 11  # a stopped renewing; both b and c see the lease expire
    third = Leadership(client, CONFIG, "c")
    third._observed, third._observed_at = second._observed, second._observed_at
    stale = await client.get(f"{LEASES}/leitstand")
    assert await round_of(second, clock)
    stale["spec"]["holderIdentity"] = "c"
    with pytest.raises(ApiError) as refused:
        await client.replace(f"{LEASES}/leitstand", stale)  # c's write from the same round is refused
    assert refused.value.status == 409
    assert not await round_of(third, clock)  # and in its next round it sees b's fresh renewal
    assert lease.holder() == "b"


async def test_release_hands_the_lease_over_at_once(server: tuple[LeaseServer, Client], clock: Clock) -> None:
    lease, client = server
    first, second = Leadership(client, CONFIG, "a"), Leadership(client, CONFIG, "b")
    assert await round_of(first, clock)
    assert not await round_of(second, clock)
    await first.release()
    assert not first.leading()
    assert lease.holder() == ""
    assert await round_of(second, clock)  # no wait for expiry
    assert lease.holder() == "b"
    await first.release()  # not leading: nothing to give up, nothing written
    assert lease.holder() == "b"
