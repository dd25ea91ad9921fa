"""SOOFI's 128 x 8 B200 pretraining on the soofi profile (130 DGX B200), and a crash mid-binding."""

import asyncio
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from leitstand.devcluster import cluster
from leitstand.kube import connection
from leitstand.kube.client import Client
from leitstand.kube.objects import Body
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator
from tests.e2e.test_faults import wait_running
from tests.e2e.test_operator import GROUP, clean, job, quota
from tests.e2e.waiting import until


@pytest.fixture(scope="module")
def soofi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "soofi", "soofi")


@pytest.fixture
async def api(soofi: cluster.LocalCluster) -> AsyncIterator[Client]:
    async with Client(connection.load(soofi.kubeconfig)) as client:
        await quota(client, "root", parent=None)
        await quota(client, "research", guaranteed=1040, leaf=False)
        await quota(client, "t-soofi", parent="research", guaranteed=1040,
                    reservation={"nodeSelector": {"leitstand.dev/pool": "soofi"}})  # fmt: skip
        yield client
        await clean(client)


async def pods_of(client: Client, name: str) -> list[Body]:
    pods = (await client.list("/api/v1/namespaces/t-soofi/pods", label_selector=f"leitstand.dev/job={name}"))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def test_the_soofi_pretraining_gang_binds_runs_and_succeeds(
    api: Client, soofi: cluster.LocalCluster, tmp_path: Path
) -> None:
    operator = Operator(soofi.kubeconfig, tmp_path / "operator.log")
    operator.wait_ready()
    try:
        applied = time.monotonic()
        await job(api, "t-soofi", "llm-100b-pretrain", 128, priority="build",
                  topology={"required": "spine", "preferred": "leaf"},
                  template={"cpu": "200", "memory": "1800Gi", "annotations": {"leitstand.dev/sim-duration": "15s"}})  # fmt: skip

        async def all_bound() -> list[Body] | None:
            pods = await pods_of(api, "llm-100b-pretrain")
            return pods if len(pods) == 128 and all(p["spec"].get("nodeName") for p in pods) else None

        pods = await until(all_bound, what="all 128 pods bound", within=120, interval=0.1)
        bound_after = time.monotonic() - applied
        nodes = Counter(p["spec"]["nodeName"] for p in pods)
        assert len(nodes) == 128
        assert max(nodes.values()) == 1

        async def phase(wanted: str) -> Body | None:
            body = await api.get(f"{GROUP}/namespaces/t-soofi/trainingjobs/llm-100b-pretrain")
            return body if (body.get("status") or {}).get("phase") == wanted else None

        running = await until(lambda: phase("Running"), what="the job Running", within=60)
        assert running["status"]["placement"]["domains"] == ["b200-spine-1"]
        await until(lambda: phase("Succeeded"), what="the job Succeeded", within=90)
        print(f"\nsoofi 128 x 8 B200: apply to all 128 pods bound in {bound_after:.1f} s")
    finally:
        operator.stop()


async def test_twenty_crashes_mid_binding_leave_no_partial_gang_no_double_binding_and_no_lost_job(
    api: Client, soofi: cluster.LocalCluster, tmp_path: Path
) -> None:
    rng = random.Random(20)
    kill_points = []
    for iteration in range(20):
        name = f"crashy-{iteration}"
        slow = Operator(soofi.kubeconfig, tmp_path / f"slow-{iteration}.log", env={"LEITSTAND_BIND_CONCURRENCY": "1"})
        slow.wait_ready()
        target = rng.randint(1, 63)
        await job(api, "t-soofi", name, 64)

        async def bound_enough(job_name: str = name, wanted: int = target) -> int | None:
            count = sum(1 for p in await pods_of(api, job_name) if p["spec"].get("nodeName"))
            return count if count >= wanted else None

        at_kill = await until(bound_enough, what=f"{target} pods of {name} bound", within=60, interval=0.01)
        slow.kill()  # SIGKILL at a random point of the gang's binding
        kill_points.append(at_kill)
        restarted = Operator(soofi.kubeconfig, tmp_path / f"restarted-{iteration}.log")
        try:
            restarted.wait_ready()

            async def whole(job_name: str = name) -> list[Body] | None:
                pods = await pods_of(api, job_name)
                bound = [p for p in pods if p["spec"].get("nodeName")]
                return bound if len(pods) == 64 and len(bound) == 64 else None

            pods = await until(whole, what=f"{name} completed after the restart", within=30)
            assert len({p["spec"]["nodeName"] for p in pods}) == 64

            async def converged(job_name: str = name) -> bool | None:
                body = await api.get(f"{GROUP}/namespaces/t-soofi/trainingjobs/{job_name}")
                return True if (body.get("status") or {}).get("phase") == "Running" else None

            await until(converged, what=f"{name}'s status to converge", within=30)
            await api.delete(f"{GROUP}/namespaces/t-soofi/trainingjobs/{name}")

            async def gone(job_name: str = name) -> bool | None:
                return True if not await pods_of(api, job_name) else None

            await until(gone, what=f"{name}'s pods to go", within=60)
        finally:
            restarted.stop()
    assert any(point < 63 for point in kill_points), kill_points  # the kills did land mid-gang
    # the API's audit log: at most one accepted binding per pod (a bind cut off by SIGKILL may have
    # taken effect while its answer is logged as 504; a second bind of such a pod would be refused, 409)
    requests = [b for b in soofi.bindings() if b.pod.startswith("t-soofi/crashy-")]
    accepted = Counter(b.pod for b in requests if b.code == 201)
    assert set(accepted.values()) == {1}, "a pod was bound twice"


async def test_a_hero_job_is_reserved_short_jobs_backfill_long_ones_wait_and_it_starts_when_its_nodes_free(
    api: Client, soofi: cluster.LocalCluster, tmp_path: Path, kubectl: Path
) -> None:
    """The pool partly busy with jobs whose limits end them in 40 s: the 128 x 8 gang cannot start, gets a
    reservation and an ETA; a 10 s job backfills a reserved node, 2 h jobs use only the unreserved nodes or
    wait; the busy jobs end at their limit (RuntimeLimitExceeded) and the gang starts on its nodes."""
    operator = Operator(soofi.kubeconfig, tmp_path / "operator.log", env={"LEITSTAND_STARVATION_SECONDS": "0"})
    operator.wait_ready()
    busy = {"runtimeLimit": "40s", "template": {"annotations": {"leitstand.dev/sim-duration": "10m"}}}
    try:
        for i in range(4):
            await job(api, "t-soofi", f"busy-{i}", 1, **busy)
        await wait_running(api, "t-soofi", *(f"busy-{i}" for i in range(4)))
        await job(api, "t-soofi", "hero", 128, topology={"required": "spine", "preferred": "leaf"},
                  runtimeLimit="1h", template={"annotations": {"leitstand.dev/sim-duration": "10s"}})  # fmt: skip

        async def status_of(name: str) -> Body:
            return (await api.get(f"{GROUP}/namespaces/t-soofi/trainingjobs/{name}")).get("status") or {}

        async def reserved() -> Body | None:
            status = await status_of("hero")
            return status if status.get("estimatedStartTime") else None

        hero = await until(reserved, what="the hero job reserved, with an ETA", within=60)
        assert "reserved 128 nodes in spine b200-spine-1 from " in hero["message"], hero["message"]
        table = await asyncio.to_thread(
            subprocess.run,
            [str(kubectl), "--kubeconfig", str(soofi.kubeconfig), "get", "tj", "-n", "t-soofi", "hero"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        table = table.stdout
        assert "ETA" in table.splitlines()[0]
        assert hero["estimatedStartTime"] in table

        await job(api, "t-soofi", "short", 1, runtimeLimit="10s",
                  template={"annotations": {"leitstand.dev/sim-duration": "5s"}})  # fmt: skip
        for i in range(3):
            await job(api, "t-soofi", f"long-{i}", 1, runtimeLimit="2h")

        async def settled() -> dict[str, Body] | None:
            statuses = {name: await status_of(name) for name in ("short", "long-0", "long-1", "long-2")}
            waiting = [s for s in statuses.values() if s.get("reason") == "WaitingForOlderJob"]
            started = statuses["short"].get("phase") in {"Running", "Succeeded"}
            return statuses if started and waiting else None

        statuses = await until(settled, what="short to backfill and a long job to wait", within=60)
        waiting = [s for s in statuses.values() if s.get("reason") == "WaitingForOlderJob"]
        assert "reserved for t-soofi/hero" in waiting[0]["message"]
        assert "with a runtimeLimit that ends by then it could start now (it has 2h)" in waiting[0]["message"]
        busy_nodes = {p["spec"]["nodeName"] for i in range(4) for p in await pods_of(api, f"busy-{i}")}
        hero_status = await status_of("hero")
        assert hero_status.get("phase") == "Queued"

        async def ended(name: str) -> Body | None:
            status = await status_of(name)
            return status if status.get("phase") == "Failed" else None

        for i in range(4):
            failed = await until(lambda i=i: ended(f"busy-{i}"), what=f"busy-{i} ended at its limit", within=90)
            assert failed["reason"] == "RuntimeLimitExceeded"

        async def hero_running() -> list[Body] | None:
            pods = await pods_of(api, "hero")
            return pods if len(pods) == 128 and all(p["spec"].get("nodeName") for p in pods) else None

        pods = await until(hero_running, what="the hero gang bound once its nodes freed", within=90)
        nodes = {p["spec"]["nodeName"] for p in pods}
        assert len(nodes) == 128
        # the reservation holds 128 of the 130 nodes, at least two of them busy until then (126 were free): the
        # gang waited for those; the 2 h jobs ran only on the nodes outside it, which the gang does not use
        assert len(busy_nodes & nodes) >= 2
        long_nodes = {p["spec"].get("nodeName") for i in range(3) for p in await pods_of(api, f"long-{i}")} - {None}
        assert not long_nodes & nodes
    finally:
        operator.stop()
