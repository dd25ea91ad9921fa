"""The peers' stack of the side-by-side benchmark, on the real control plane: Kueue v0.17.0's manager (built by
hack/) admits Jobs by the quota of a GPUQuota tree translated with ``leitstand kueue``, and kube-scheduler binds
them. The benchmark (``tests/bench/kueue.py``) rests on this; here it is proven on a small cluster."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from leitstand.devcluster import cluster
from leitstand.kube import connection, kueue
from leitstand.kube.client import Client
from leitstand.kube.resources import GPUQuotaSpec
from tests.e2e.clusters import own_cluster
from tests.e2e.waiting import until

LEAF = "network.topology.nvidia.com/leaf"
KUEUE_API = "/apis/kueue.x-k8s.io/v1beta2"
TREE = {
    "root": {"gpus": {"b200": {"guaranteed": 64}}},
    "team-a": {"parent": "root", "namespaces": ["kq-a"], "gpus": {"b200": {"guaranteed": 32, "limit": 32}}},
    "team-b": {"parent": "root", "namespaces": ["kq-b"], "gpus": {"b200": {"guaranteed": 32}}},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    """The dev profile (8 DGX B200 in two leaves of 4) with kube-controller-manager, kube-scheduler and Kueue."""
    yield from own_cluster(tmp_path_factory, "kueue", controllers=("kube", "kube-scheduler", "kueue"))


@pytest.fixture
async def api(site: cluster.LocalCluster) -> AsyncIterator[Client]:
    async with Client(connection.load(site.kubeconfig)) as client:
        yield client


def plural(kind: str) -> str:
    kind = kind.lower()
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


def job(name: str, pods: int, **annotations: str) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": kueue.QUEUE_NAME}
    container = {"name": "train", "image": "trainer", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "parallelism": pods,
            "completions": pods,
            "completionMode": "Indexed",
            "template": {
                "metadata": {"annotations": {"leitstand.dev/sim-duration": "1h", **annotations}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


async def workload(api: Client, namespace: str, job_name: str) -> dict[str, Any] | None:
    items = (await api.list(f"{KUEUE_API}/namespaces/{namespace}/workloads"))["items"]
    return next((w for w in items if w["metadata"]["ownerReferences"][0]["name"] == job_name), None)


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


async def test_kueue_admits_by_the_translated_quota_and_kube_scheduler_binds(
    api: Client, site: cluster.LocalCluster
) -> None:
    translation = kueue.translate({name: GPUQuotaSpec.model_validate(spec) for name, spec in TREE.items()})
    for namespace in ("kq-a", "kq-b"):
        await api.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
    for document in translation.objects:
        namespace = document["metadata"].get("namespace")
        where = f"namespaces/{namespace}/" if namespace else ""
        await api.create(f"{KUEUE_API}/{where}{plural(document['kind'])}", document)

    # within team-a's quota, in one leaf by topology-aware scheduling: admitted, bound by kube-scheduler
    await api.create(
        "/apis/batch/v1/namespaces/kq-a/jobs", job("fits", 4, **{"kueue.x-k8s.io/podset-required-topology": LEAF})
    )

    async def bound() -> list[dict[str, Any]] | None:
        pods = (await api.list("/api/v1/namespaces/kq-a/pods"))["items"]
        placed = [p for p in pods if p["spec"].get("nodeName")]
        return placed if len(placed) == 4 else None

    async def seen() -> str:
        return str(await workload(api, "kq-a", "fits"))

    pods = await until(
        bound, what="Kueue to admit the Job and kube-scheduler to bind its 4 pods", within=60, context=seen
    )
    nodes = (await api.list("/api/v1/nodes"))["items"]
    leaf_of = {n["metadata"]["name"]: n["metadata"]["labels"][LEAF] for n in nodes}
    assert len({leaf_of[p["spec"]["nodeName"]] for p in pods}) == 1
    admitted = await workload(api, "kq-a", "fits")
    assert admitted is not None
    assert condition(admitted, "Admitted").get("status") == "True"

    # beyond team-a's limit (32 of 32 in use, no borrowing): held suspended, no pod made
    await api.create("/apis/batch/v1/namespaces/kq-a/jobs", job("over", 1))

    async def pending() -> dict[str, Any] | None:
        found = await workload(api, "kq-a", "over")
        return found if found and condition(found, "QuotaReserved").get("reason") == "Pending" else None

    held = await until(pending, what="Kueue to keep the second Job of team-a pending", within=30)
    assert condition(held, "Admitted").get("status") != "True"
    suspended = await api.get("/apis/batch/v1/namespaces/kq-a/jobs/over")
    assert suspended["spec"]["suspend"] is True
    assert len((await api.list("/api/v1/namespaces/kq-a/pods"))["items"]) == 4

    # the API server's audit log: kube-scheduler bound the pods, Kueue wrote the admissions
    audit = site.audit()
    binders = {e.user_agent.split("/")[0] for e in audit if e.resource == "pods/binding" and e.pod.startswith("kq-a/")}
    assert binders == {"kube-scheduler"}
    writers = {
        e.user_agent.split("/")[0] for e in audit if e.resource == "workloads/status" and e.pod.startswith("kq-a/")
    }
    assert writers == {"kueue"}
