"""No ghosts: what is deleted while the operator cannot watch leaves its store, status API and metrics.

The operator is frozen (SIGSTOP), the API server restarts (its watches break), a
GPUQuota and a TrainingJob are deleted, etcd is compacted past the operator's
resourceVersions (the API server compacts every 2 s here) and the API server
restarts again, so no watch can resume: the operator, resumed (SIGCONT), gets 410
Gone, relists every kind, and the deleted objects are gone.
"""

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leitstand.devcluster import cluster
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator, account
from tests.e2e.test_operator import GROUP, job, quota
from tests.e2e.waiting import until

GHOST_GAUGE = 'leitstand_queue_guaranteed_gpus{gpu_type="b200",queue="t-ghost"}'  # the wait histogram keeps its history
PLATFORM = [{"apiGroups": ["leitstand.dev"], "resources": ["gpuquotas", "trainingjobs"], "verbs": ["get", "list"]}]


@pytest.fixture(scope="module")
def compacting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "ghosts", apiserver_args=["--etcd-compaction-interval=2s"])


async def seen(operator: Operator, token: str) -> str:
    """What the operator shows of itself: its queues and jobs (status API) and its metrics, as one text.

    Empty until it answers all three (the status API is 503 before the first cycle).
    """
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{operator.port}", timeout=10) as http:
        parts = [await http.get(path, headers=headers) for path in ("/api/v1/queues", "/api/v1/jobs", "/metrics")]
    if any(part.status_code != 200 for part in parts):
        return ""
    return "\n".join(part.text for part in parts)


async def watch_answer(admin: Client, version: str) -> int | None:
    """The status a watch from ``version`` gets (what the operator's watches will hear); None while it restarts."""
    try:
        async for _event in admin.watch(f"{GROUP}/trainingjobs", resource_version=version, timeout_seconds=2):
            pass
    except ApiError as error:
        return None if error.status == 429 else error.status  # 429: storage is (re)initializing
    except OSError:
        return None
    return 200


async def test_objects_deleted_while_the_watch_was_down_leave_the_store_the_status_api_and_the_metrics(
    compacting: cluster.LocalCluster, tmp_path: Path
) -> None:
    async with Client(connection.load(compacting.kubeconfig)) as admin:
        await quota(admin, "root", parent=None)
        await quota(admin, "t-keep", guaranteed=8)
        await quota(admin, "t-ghost", guaranteed=8)
        await job(admin, "t-keep", "kept", 1)
        await job(admin, "t-ghost", "haunting", 1)
        token = await account(admin, "default", "platform", PLATFORM, cluster_wide=True)
        operator = Operator(compacting.kubeconfig, tmp_path / "operator.log")
        try:
            operator.wait_ready()

            async def both_shown() -> bool | None:
                text = await seen(operator, token)
                shown = all(f'"{name}"' in text for name in ("t-ghost", "haunting", "t-keep", "kept"))
                return True if shown and GHOST_GAUGE in text else None

            await until(both_shown, what="the operator to show both queues and jobs", within=60)
            before = (await admin.get(f"{GROUP}/trainingjobs"))["metadata"]["resourceVersion"]

            operator.process.send_signal(signal.SIGSTOP)
            try:
                # first the watches break (a frozen process still receives what its sockets are sent: events
                # sent to a live watch would wait in its buffer and arrive on SIGCONT, which is no gap)
                await asyncio.to_thread(compacting.restart, "kube-apiserver")
                await until(lambda: watch_answer(admin, before), what="the API server back", within=60)
                path = f"{GROUP}/namespaces/t-ghost/trainingjobs/haunting"
                await admin.patch(path, {"metadata": {"finalizers": None}})  # the frozen operator cannot release it
                await admin.delete(path)
                await admin.delete(f"{GROUP}/gpuquotas/t-ghost")
                for pod in (await admin.list("/api/v1/namespaces/t-ghost/pods"))["items"]:
                    await admin.delete(
                        f"/api/v1/namespaces/t-ghost/pods/{pod['metadata']['name']}", grace_period_seconds=0
                    )
                for number in range(6):  # later revisions, and time for two compactions past the deletions
                    await admin.create("/api/v1/namespaces/default/configmaps",
                                       {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"tick-{number}"}})  # fmt: skip
                    await asyncio.sleep(1)
                await asyncio.to_thread(compacting.restart, "kube-apiserver")
                assert await until(lambda: watch_answer(admin, before), what="a watch answer", within=60) == 410
            finally:
                operator.process.send_signal(signal.SIGCONT)

            async def ghosts_gone() -> bool | None:
                text = await seen(operator, token)
                still = [name for name in ('"t-ghost"', '"haunting"', GHOST_GAUGE) if name in text]
                return True if text and not still and '"kept"' in text and '"t-keep"' in text else None

            await until(ghosts_gone, what="the deleted GPUQuota and TrainingJob to leave the operator", within=90)
            assert operator.process.poll() is None, "the operator died"
        finally:
            operator.stop()
