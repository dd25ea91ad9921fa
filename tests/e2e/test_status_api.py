"""The status API on the real control plane: users see what RBAC lets them, through TokenReview and SAR."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from leitstand.core import dumps
from leitstand.devcluster import cluster
from leitstand.kube import connection
from leitstand.kube.client import Client
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator, account
from tests.e2e.test_faults import wait_running
from tests.e2e.test_operator import GROUP, clean, job, quota
from tests.e2e.waiting import until


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    yield from own_cluster(tmp_path_factory, "status")


JOB_READER = [{"apiGroups": ["leitstand.dev"], "resources": ["trainingjobs"], "verbs": ["get", "list"]}]
PLATFORM = [{"apiGroups": ["leitstand.dev"], "resources": ["gpuquotas", "trainingjobs"], "verbs": ["get", "list"]}]


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {}


@pytest.fixture
async def api(dev: cluster.LocalCluster, tmp_path: Path, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with Client(connection.load(dev.kubeconfig)) as admin:
        await quota(admin, "root", parent=None)
        await quota(admin, "t-alice", guaranteed=16)
        await quota(admin, "t-bob", guaranteed=16)
        await job(admin, "t-alice", "vision", 1)
        await job(admin, "t-bob", "speech", 2)
        if not tokens:
            tokens["alice"] = await account(admin, "t-alice", "alice", JOB_READER)
            tokens["bob"] = await account(admin, "t-bob", "bob", JOB_READER)
            tokens["platform"] = await account(admin, "leitstand-system", "platform", PLATFORM, cluster_wide=True)
        operator = Operator(dev.kubeconfig, tmp_path / "operator.log")
        operator.wait_ready()
        try:
            # the whole cluster: it fits only when nothing runs, so it comes once the others run (jobs submitted
            # together start in the order their pods appear, which is not always the order of submission)
            await wait_running(admin, "t-alice", "vision")
            await job(admin, "t-alice", "wide", 8)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{operator.port}", timeout=30) as http:

                async def explained() -> bool | None:
                    answer = await http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {tokens['alice']}"})
                    reasons = {j["name"]: j.get("reason") for j in answer.json()} if answer.status_code == 200 else {}
                    return (
                        True
                        if reasons.get("wide") == "InsufficientCapacity" and reasons.get("vision") == "Running"
                        else None
                    )

                await until(explained, what="the operator to schedule and explain the jobs", within=60)
                yield http
        finally:
            operator.stop()
            await clean(admin)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_user_sees_only_the_jobs_of_their_own_namespace(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    alice = (await api.get("/api/v1/jobs", headers=bearer(tokens["alice"]))).json()
    bob = (await api.get("/api/v1/jobs", headers=bearer(tokens["bob"]))).json()
    assert [(j["namespace"], j["name"]) for j in alice] == [("t-alice", "vision"), ("t-alice", "wide")]
    assert [(j["namespace"], j["name"]) for j in bob] == [("t-bob", "speech")]
    wide = (await api.get("/api/v1/jobs/t-alice/wide", headers=bearer(tokens["alice"]))).json()
    assert wide["reason"] == "InsufficientCapacity"
    assert wide["message"].startswith("needs 8 x 8 b200; ")
    assert wide["position"] == 1
    running = (await api.get("/api/v1/jobs", params={"phase": "Running"}, headers=bearer(tokens["alice"]))).json()
    assert [j["name"] for j in running] == ["vision"]


async def test_without_a_valid_token_the_api_answers_401(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v1/jobs")).status_code == 401
    assert (await api.get("/api/v1/jobs", headers=bearer("not-a-token"))).status_code == 401
    assert (await api.get("/api/v1/queues", headers={"Authorization": "Basic abc"})).status_code == 401


async def test_what_rbac_does_not_allow_is_403(api: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    assert (
        await api.get("/api/v1/jobs", params={"namespace": "t-bob"}, headers=bearer(tokens["alice"]))
    ).status_code == 403
    assert (await api.get("/api/v1/jobs/t-bob/speech", headers=bearer(tokens["alice"]))).status_code == 403
    for view in ("/api/v1/queues", "/api/v1/cluster", "/api/v1/snapshot"):
        answer = await api.get(view, headers=bearer(tokens["bob"]))
        assert answer.status_code == 403, view
        assert "may not list gpuquotas" in answer.json()["detail"]


async def test_the_platform_team_sees_queues_the_cluster_and_a_replayable_snapshot(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    queues = {q["name"]: q for q in (await api.get("/api/v1/queues", headers=bearer(tokens["platform"]))).json()}
    assert queues["t-alice"]["gpus"]["b200"]["allocated"] == 8
    assert queues["t-alice"]["gpus"]["b200"]["pending"] == 64
    assert queues["t-alice"]["gpus"]["b200"]["reclaiming"] == 0
    cluster_view = (await api.get("/api/v1/cluster", headers=bearer(tokens["platform"]))).json()
    assert cluster_view["gpuTypes"]["b200"]["capacity"] == 64
    assert cluster_view["gpuTypes"]["b200"]["allocated"] == 24
    assert [d["name"] for d in cluster_view["domains"]] == ["b200-su-01", "b200-su-02", "rtxpro-su-01"]
    assert len(cluster_view["nodes"]) == 10
    dumped = (await api.get("/api/v1/snapshot", headers=bearer(tokens["platform"]))).json()
    snapshot, _policy, _now = dumps.load(dumped)
    assert len(snapshot.nodes) == 10
    all_jobs = (await api.get("/api/v1/jobs", headers=bearer(tokens["platform"]))).json()
    assert len(all_jobs) == 3


async def test_probes_metrics_and_the_openapi_document_stay_open(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/readyz")).status_code == 200
    assert "leitstand_queue_fair_share_gpus" in (await api.get("/metrics")).text
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert {
        "/api/v1/queues",
        "/api/v1/jobs",
        "/api/v1/jobs/{namespace}/{name}",
        "/api/v1/cluster",
        "/api/v1/snapshot",
    } <= set(paths)
    assert GROUP.startswith("/apis/")


def cli(dev: cluster.LocalCluster, *args: str, plugin: bool = False) -> str:
    import os
    import subprocess
    import sys

    command = (
        [str(Path(sys.executable).parent / "kubectl-leitstand")] if plugin else [sys.executable, "-m", "leitstand"]
    )
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KUBECONFIG": str(dev.kubeconfig)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


async def test_the_cli_shows_jobs_explanations_queues_and_the_cluster(
    api: httpx.AsyncClient, dev: cluster.LocalCluster
) -> None:
    rows = table(cli(dev, "jobs", "-A"))
    assert rows[0] == ["NAMESPACE", "NAME", "KIND", "QUEUE", "GPUS", "PHASE", "REASON", "POSITION", "ETA", "AGE"]
    by_name = {row[1]: row for row in rows[1:]}
    assert by_name["vision"][:8] == ["t-alice", "vision", "TrainingJob", "t-alice", "8", "Running", "Running", "-"]
    assert by_name["wide"][:8] == [
        "t-alice", "wide", "TrainingJob", "t-alice", "64", "Queued", "InsufficientCapacity", "1"]  # fmt: skip
    assert by_name["speech"][:6] == ["t-bob", "speech", "TrainingJob", "t-bob", "16", "Running"]

    as_plugin = table(cli(dev, "jobs", "-n", "t-bob", plugin=True))
    assert as_plugin[0] == ["NAME", "KIND", "QUEUE", "GPUS", "PHASE", "REASON", "POSITION", "ETA", "AGE"]
    assert [row[0] for row in as_plugin[1:]] == ["speech"]
    import json

    assert [j["name"] for j in json.loads(cli(dev, "jobs", "-n", "t-alice", "-o", "json"))] == ["vision", "wide"]

    explained = cli(dev, "explain", "wide", "-n", "t-alice")
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in explained.splitlines()
        if ":" in line and not line.startswith(" ")
    }
    assert lines["Reason"] == "InsufficientCapacity"
    assert lines["Message"].startswith("needs 8 x 8 b200; ")
    assert lines["Position"] == "1"
    assert lines["Gang"] == "8 x 8 b200"
    assert "Warning InsufficientCapacity" in explained

    queues = table(cli(dev, "queues"))
    assert queues[0] == [
        "QUEUE",
        "GPU",
        "TYPE",
        "GUARANTEED",
        "LIMIT",
        "FAIR",
        "SHARE",
        "ALLOCATED",
        "RECLAIMING",
        "PENDING",
        "RUNNING",
        "JOBS",
        "WAITING",
        "JOBS",
        "USED",
        "GPU",
        "H",
    ]
    by_queue = {row[0]: row for row in queues[1:]}
    assert by_queue["t-alice"][1:] == ["b200", "16", "-", by_queue["t-alice"][4], "8", "0", "64", "1", "1", "0.0"]
    assert by_queue["t-bob"][5] == "16"

    top = table(cli(dev, "top", "--once"))
    leaves = {row[0]: row for row in top if row and row[0] in {"b200-su-01", "b200-su-02", "rtxpro-su-01"}}
    assert {leaf: (row[1], row[2]) for leaf, row in leaves.items()} == {
        "b200-su-01": ("4", "32"), "b200-su-02": ("4", "32"), "rtxpro-su-01": ("2", "16"),
    }  # fmt: skip
    assert sum(int(row[3]) for row in leaves.values()) == 24
