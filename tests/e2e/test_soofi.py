"""SOOFI's 128 x 8 B200 pretraining on the soofi profile (130 DGX B200), and a crash mid-binding."""

import random
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
