"""The applier: one outcome per write, settled answers count as done, and an overlay until the watch confirms.

The outcomes are checked against a small aiohttp server on loopback that answers
each path with a chosen status (a fake: unit tests start no kube-apiserver; the
e2e suite runs every write against the real one).
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from leitstand.kube import applier
from leitstand.kube.applier import Applier, Overlay, PodBind
from leitstand.kube.client import Client
from leitstand.kube.objects import Body
from tests.unit import loopback


def pod(name: str, uid: str = "u1", node: str | None = None, nominated: str | None = None) -> Body:
    body: Body = {"metadata": {"name": name, "namespace": "t", "uid": uid}, "spec": {}, "status": {}}
    if node:
        body["spec"]["nodeName"] = node
    if nominated:
        body["status"]["nominatedNodeName"] = nominated
    return body


def test_the_overlay_shows_a_bind_until_the_watch_does_and_forgets_replaced_pods() -> None:
    overlay = Overlay()
    overlay.bound(PodBind("t", "a", "u1", "n1"))
    overlay.bound(PodBind("t", "b", "u1", "n2"))
    store = {"t/a": pod("a"), "t/b": pod("b", uid="u2")}  # b was deleted and recreated meanwhile
    seen = overlay.view(store)
    assert seen["t/a"]["spec"]["nodeName"] == "n1"
    assert "nodeName" not in store["t/a"]["spec"]  # the store's copy is never changed
    assert "nodeName" not in seen["t/b"]["spec"]
    assert len(overlay) == 1
    assert overlay.view(store)["t/a"]["spec"]["nodeName"] == "n1"  # read again, still assumed
    assert len(overlay) == 1
    overlay.view({"t/a": pod("a", node="n1")})  # the watch reported it
    assert len(overlay) == 0


def test_the_overlay_keeps_a_nomination_until_the_pod_shows_it() -> None:
    overlay = Overlay()
    overlay.nominated("t/a", "u1", "n3")
    overlay.nominated("t/c", "u1", None)  # a cleared nomination is a change too
    store = {"t/a": pod("a"), "t/c": pod("c", nominated="n9")}
    seen = overlay.view(store)
    assert seen["t/a"]["status"]["nominatedNodeName"] == "n3"
    assert seen["t/c"]["status"]["nominatedNodeName"] is None
    overlay.view({"t/a": pod("a", nominated="n3"), "t/c": pod("c")})
    assert len(overlay) == 0


ANSWERS = {
    "/api/v1/namespaces/t/pods": (409, "AlreadyExists"),
    "/api/v1/namespaces/t/pods/gone": (404, "NotFound"),
    "/api/v1/namespaces/t/pods/broken/status": (500, "InternalError"),
    "/api/v1/namespaces/t/events": (403, "Forbidden"),
    "/api/v1/namespaces/t/pods/a/binding": (201, ""),
    "/api/v1/namespaces/t/pods/b/binding": (409, 'pod b is already assigned to node "elsewhere"'),
}


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    async def answer(request: web.Request) -> web.Response:
        code, reason = ANSWERS.get(request.path, (200, ""))
        if code >= 400:
            return loopback.status(code, reason)
        return web.json_response({"kind": "Pod"}, status=code)

    async with loopback.serving(answer) as client:
        yield client


async def test_one_outcome_per_write_in_order_with_settled_answers_done(api: Client) -> None:
    writes = [
        applier.create("/api/v1/namespaces/t/pods", pod("exists")),  # 409: it is there already
        applier.delete("/api/v1/namespaces/t/pods/gone"),  # 404: gone already
        applier.patch("/api/v1/namespaces/t/pods/broken/status", {"status": {}}),  # 500
        applier.event({"kind": "Pod", **pod("a")}, "Normal", "Scheduled", "bound", now=0),  # 403, best effort
        applier.patch("/api/v1/namespaces/t/pods/fine", {"metadata": {}}),
    ]
    outcomes = await Applier(api).apply(writes)
    assert [o.write for o in outcomes] == writes
    assert [o.ok for o in outcomes] == [True, True, False, False, True]
    assert outcomes[2].reason == "500 InternalError: InternalError"


async def test_binds_report_each_pod_and_only_the_bound_are_assumed(api: Client) -> None:
    writer = Applier(api)
    binds = [PodBind("t", "a", "u1", "n1"), PodBind("t", "b", "u1", "n1")]
    outcomes = await writer.bind(binds)
    assert [(o.write, o.ok) for o in outcomes] == [(binds[0], True), (binds[1], False)]
    assert writer.overlay.nodes == {"t/a": ("u1", "n1")}
    deposed = await Applier(api, allowed=lambda: False).bind(binds)
    assert {o.reason for o in deposed} == {"not the leader"}


class GatedServer:
    """Answers 200 at once, except on ``/gated/...`` paths, which wait until ``gate`` opens; records every request."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()
        self.requests: list[tuple[str, str, Any]] = []

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.path.startswith("/gated/"):
            self.arrived.set()
            await self.gate.wait()
        return web.json_response({"kind": "Status"})


class Collected:
    """The outcomes handed back by the applier, as they come."""

    def __init__(self) -> None:
        self.outcomes: list[applier.Outcome] = []
        self.changed = asyncio.Event()

    def __call__(self, outcome: applier.Outcome) -> None:
        self.outcomes.append(outcome)
        self.changed.set()

    async def reach(self, count: int) -> None:
        """Waits (at most 10 s, then fails) until ``count`` outcomes came back."""
        async with asyncio.timeout(10):
            while len(self.outcomes) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GatedServer, Client]]:
    server = GatedServer()
    async with loopback.serving(server.answer) as client:
        yield server, client
        server.gate.set()  # no handler left waiting when the server shuts down


async def test_submitted_writes_go_in_the_background_and_a_stuck_one_holds_up_no_other(
    gated: tuple[GatedServer, Client],
) -> None:
    server, client = gated
    writer = Applier(client)
    collected = Collected()
    outcomes = collected.outcomes
    writer.submit([applier.patch("/gated/a", {"n": 1})], collected)  # returns at once
    await server.arrived.wait()
    writer.submit([applier.patch("/fine/b", {"n": 1}), applier.delete("/fine/c")], collected)
    await collected.reach(2)
    assert sorted(o.write.path for o in outcomes) == ["/fine/b", "/fine/c"]  # the stuck one still in flight
    server.gate.set()
    await writer.drain()
    assert [o.ok for o in outcomes] == [True, True, True]
    assert outcomes[-1].write.path == "/gated/a"


async def test_a_write_already_on_its_way_is_not_sent_twice_and_the_newest_waiting_one_wins(
    gated: tuple[GatedServer, Client],
) -> None:
    server, client = gated
    writer = Applier(client)
    writer.submit([applier.patch("/gated/a", {"n": 1})])
    await server.arrived.wait()
    writer.submit([applier.patch("/gated/a", {"n": 1})])  # the same write, in flight: dropped
    writer.submit([applier.patch("/gated/a", {"n": 2})])  # waits behind the one in flight ...
    writer.submit([applier.patch("/gated/a", {"n": 3})])  # ... and is replaced by a newer one
    writer.submit([applier.event({"kind": "Pod", **pod("a")}, "Normal", "Queued", "waits", now=0)] * 2)
    server.gate.set()
    await writer.drain()
    patches = [body for method, path, body in server.requests if path == "/gated/a"]
    assert patches == [{"n": 1}, {"n": 3}]
    assert sum(1 for _m, path, _b in server.requests if path.endswith("/events")) == 1


async def test_a_deposed_leader_sends_nothing_more_and_close_drops_what_waits(
    gated: tuple[GatedServer, Client],
) -> None:
    server, client = gated
    leading = True
    writer = Applier(client, allowed=lambda: leading)
    collected = Collected()
    outcomes = collected.outcomes
    writer.submit([applier.patch("/gated/a", {"n": 1})], collected)
    await server.arrived.wait()
    writer.submit([applier.patch("/gated/a", {"n": 2})], collected)  # waits behind the first
    leading = False
    writer.submit([applier.patch("/fine/b", {"n": 1})], collected)
    await collected.reach(1)
    assert [(o.write.path, o.ok, o.reason) for o in outcomes] == [("/fine/b", False, "not the leader")]
    await writer.close()  # the first is cancelled in flight, the second never sent
    await writer.drain()
    assert [path for _m, path, _b in server.requests] == ["/gated/a"]


async def test_patches_of_different_parts_of_one_object_never_replace_each_other(
    gated: tuple[GatedServer, Client],
) -> None:
    server, client = gated
    writer = Applier(client)
    writer.submit([applier.patch("/gated/pod/status", {"n": 0})])  # something else in flight on the same path
    await server.arrived.wait()
    nomination = applier.patch("/gated/pod/status", {"nominated": "n1"}, purpose="nomination")
    condition = applier.patch("/gated/pod/status", {"conditions": []}, patch_type="strategic", purpose="PodScheduled")
    writer.submit([nomination, condition])
    server.gate.set()
    await writer.drain()
    bodies = [body for _method, path, body in server.requests if path == "/gated/pod/status"]
    assert bodies == [{"n": 0}, {"nominated": "n1"}, {"conditions": []}]


async def test_a_chained_write_goes_only_once_the_first_is_answered(gated: tuple[GatedServer, Client]) -> None:
    server, client = gated
    writer = Applier(client)
    collected = Collected()
    then = applier.delete("/fine/pod", grace_seconds=30)
    writer.submit(
        [applier.patch("/gated/pod/status", {"conditions": []}, purpose="DisruptionTarget", then=then)], collected
    )
    await server.arrived.wait()
    await asyncio.sleep(0.05)
    assert [path for _m, path, _b in server.requests] == ["/gated/pod/status"]  # the delete waits for the answer
    server.gate.set()
    await writer.drain()
    assert [(method, path) for method, path, _b in server.requests] == [
        ("PATCH", "/gated/pod/status"),
        ("DELETE", "/fine/pod"),
    ]
    assert [o.write.verb for o in collected.outcomes] == ["patch", "delete"]


async def test_a_chained_write_follows_in_a_batch_too(gated: tuple[GatedServer, Client]) -> None:
    server, client = gated
    server.gate.set()
    first = applier.patch("/gated/pod/status", {"conditions": []}, then=applier.delete("/fine/pod"))
    (outcome,) = await Applier(client).apply([first])
    assert outcome.ok
    assert outcome.write is first
    assert [(method, path) for method, path, _b in server.requests] == [
        ("PATCH", "/gated/pod/status"),
        ("DELETE", "/fine/pod"),
    ]
