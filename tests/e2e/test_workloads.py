"""The jobs people already submit, made by the real controllers (kube-controller-manager, the Kubeflow
training-operator), ganged, queued and placed by Leitstand; and a TrainingJob with a full pod template."""

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from leitstand.devcluster import cluster
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client
from tests import templates
from tests.e2e.clusters import own_cluster
from tests.e2e.operators import Operator
from tests.e2e.test_operator import GROUP, clean, namespace, quota
from tests.e2e.waiting import until

PROFILE = str(Path(__file__).parent.parent / "data" / "profiles" / "workloads.yaml")
LEAF = "network.topology.nvidia.com/leaf"
GPU = {"limits": {"nvidia.com/gpu": "8"}}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    """32 DGX B200 in two leaves of 16, with the Job, ReplicaSet and Deployment controllers, the
    training-operator and JobSet running."""
    yield from own_cluster(tmp_path_factory, "workloads", PROFILE, controllers=("kube", "training-operator", "jobset"))


@pytest.fixture(scope="module")
def operator(site: cluster.LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    running = Operator(site.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture
async def api(site: cluster.LocalCluster, operator: Operator) -> AsyncIterator[Client]:
    async with Client(connection.load(site.kubeconfig)) as client:
        try:
            await quota(client, "root", parent=None)
        except ApiError as error:  # made by an earlier test of the module
            if error.status != 409:
                raise
        yield client
        for collection in ("/apis/apps/v1/deployments", "/apis/batch/v1/jobs", "/apis/kubeflow.org/v1/pytorchjobs",
                           "/apis/jobset.x-k8s.io/v1alpha2/jobsets"):  # fmt: skip
            for body in (await client.list(collection))["items"]:
                meta = body["metadata"]
                if meta["namespace"].startswith("t-"):
                    plural = collection.rsplit("/", 1)[1]
                    await client.delete(f"{collection.rsplit('/', 1)[0]}/namespaces/{meta['namespace']}/{plural}/"
                                        f"{meta['name']}", propagation="Background")  # fmt: skip

        async def owned_pods_gone() -> bool | None:  # the garbage collector deletes them
            pods = (await client.list("/api/v1/pods"))["items"]
            return (
                None
                if any(
                    p["metadata"]["namespace"].startswith("t-")
                    and p["metadata"].get("ownerReferences")
                    and not p["metadata"].get("labels", {}).get("leitstand.dev/job")
                    for p in pods
                )
                else True
            )

        await until(owned_pods_gone, what="the test controllers' pods to be gone", within=60)  # fmt: skip
        await clean(client)  # TrainingJobs, GPUQuotas, and every pod of a test namespace


async def pods_of(api: Client, ns: str) -> list[dict[str, Any]]:
    return list((await api.list(f"/api/v1/namespaces/{ns}/pods"))["items"])


async def events_of(api: Client, ns: str, name: str) -> list[str]:
    listed = await api.list(f"/api/v1/namespaces/{ns}/events")
    return [e["message"] for e in listed["items"] if e["involvedObject"]["name"] == name]


def pytorchjob(name: str, workers: int, annotations: dict[str, str], restart: str = "Never") -> dict[str, Any]:
    """A PyTorchJob of one master and ``workers`` workers, 8 GPUs each. A preemptible one restarts
    ``OnFailure``: the training-operator counts a deleted pod as failed, and with ``Never`` ends the job."""

    def replicas(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": restart, "template": {
            "metadata": {"annotations": annotations},
            "spec": {"schedulerName": "leitstand",
                     "containers": [{"name": "pytorch", "image": "nvcr.io/nvidia/pytorch:25.10-py3",
                                     "command": ["torchrun", "train.py"], "resources": GPU}]}}}  # fmt: skip

    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(workers)}}}  # fmt: skip


async def test_a_pytorchjob_binds_whole_in_one_leaf_or_not_at_all_and_says_why(
    api: Client, site: cluster.LocalCluster
) -> None:
    await quota(api, "t-blocker", guaranteed=16)
    await quota(api, "t-pt", guaranteed=128)
    for leaf in ("b200-su-01", "b200-su-02"):  # one node of each leaf taken: 15 free in each
        await api.create("/api/v1/namespaces/t-blocker/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"blocker-{leaf}"},
            "spec": {"schedulerName": "leitstand", "nodeSelector": {LEAF: leaf},
                     "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}})  # fmt: skip

    async def blockers_bound() -> bool | None:
        return True if all(p["spec"].get("nodeName") for p in await pods_of(api, "t-blocker")) else None

    await until(blockers_bound, what="a blocker bound in each leaf", within=30)
    path = "/apis/kubeflow.org/v1/namespaces/t-pt/pytorchjobs"
    await api.create(path, pytorchjob("llm", 15, {"leitstand.dev/topology-required": "leaf"}))

    async def explained() -> list[str] | None:
        said = [m for m in await events_of(api, "t-pt", "llm") if "16 x 8" in m]
        return said or None

    said = await until(explained, what="an Event on the PyTorchJob with the numbers", within=60)
    pods = await pods_of(api, "t-pt")
    assert len(pods) == 16
    assert not [p for p in pods if p["spec"].get("nodeName")], "no pod of the gang may bind while 15 fit"
    assert await events_of(api, "t-pt", "llm-master-0"), "its pods are told why too"
    assert "leaf" in said[0]
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "leitstand", "jobs", "-n", "t-pt", "-o", "json", "--kubeconfig", str(site.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["kind"], row["phase"], row["gpus"]) == ("llm", "PyTorchJob", "Queued", 128)
    assert "16 x 8" in row["message"], row
    explained = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "leitstand", "explain", "pytorchjob/llm", "-n", "t-pt", "-o", "json", "--kubeconfig",
         str(site.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (report,) = json.loads(explained.stdout)
    assert (report["job"], report["phase"], report["gang"]) == ("t-pt/PyTorchJob/llm", "Queued", "16 x 8 GPUs")
    assert report["message"] == row["message"], report
    assert report["events"], report
    for pod in await pods_of(api, "t-blocker"):  # room returns
        await api.delete(f"/api/v1/namespaces/t-blocker/pods/{pod['metadata']['name']}", grace_period_seconds=0)

    async def all_bound() -> list[dict[str, Any]] | None:
        pods = await pods_of(api, "t-pt")
        return pods if len(pods) == 16 and all(p["spec"].get("nodeName") for p in pods) else None

    bound = await until(all_bound, what="all 16 pods of the PyTorchJob bound", within=60)
    nodes = {p["spec"]["nodeName"] for p in bound}
    assert len(nodes) == 16
    leaves = {(await api.get(f"/api/v1/nodes/{n}"))["metadata"]["labels"][LEAF] for n in nodes}
    assert len(leaves) == 1, leaves


async def test_an_indexed_job_is_one_gang_and_a_deployments_pods_are_gangs_of_one(api: Client) -> None:
    await quota(api, "t-batch", guaranteed=64)
    template = {"spec": {"schedulerName": "leitstand", "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}}  # fmt: skip
    await api.create("/apis/batch/v1/namespaces/t-batch/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sweep"},
        "spec": {"parallelism": 4, "completions": 4, "completionMode": "Indexed", "template": template}})  # fmt: skip
    web = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"schedulerName": "leitstand", "containers": [{"name": "c", "image": "nginx", "resources": GPU}]},
    }
    await api.create("/apis/apps/v1/namespaces/t-batch/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": web}})  # fmt: skip

    async def bound() -> Counter[str] | None:
        pods = await pods_of(api, "t-batch")
        owners = Counter(p["metadata"]["ownerReferences"][0]["kind"] for p in pods if p["spec"].get("nodeName"))
        return owners if owners == Counter({"Job": 4, "ReplicaSet": 2}) else None

    await until(bound, what="the Job's 4 pods and the Deployment's 2 bound", within=60)

    async def allocated() -> int | None:
        usage = (await api.get(f"{GROUP}/gpuquotas/t-batch")).get("status", {}).get("gpus", {}).get("b200", {})
        return 48 if usage.get("allocated") == 48 else None

    await until(allocated, what="t-batch's status to count all 6 pods' 48 GPUs", within=30)


async def test_a_job_and_a_pytorchjob_past_their_runtime_limit_end_failed_and_make_no_new_pods(api: Client) -> None:
    """At the gang's limit the operator deletes the pods and sets the owner's activeDeadlineSeconds: the Job
    controller and the training-operator fail their jobs instead of making new pods (backoffLimit and
    ``OnFailure`` would otherwise run them again)."""
    await quota(api, "t-limits", guaranteed=64)
    limit = {"leitstand.dev/runtime-limit": "5s"}
    template = {"metadata": {"annotations": limit},
                "spec": {"schedulerName": "leitstand", "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}}  # fmt: skip
    await api.create("/apis/batch/v1/namespaces/t-limits/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sweep"},
        "spec": {"parallelism": 2, "completions": 2, "completionMode": "Indexed", "backoffLimit": 6,
                 "template": template}})  # fmt: skip
    await api.create("/apis/kubeflow.org/v1/namespaces/t-limits/pytorchjobs", pytorchjob("pt", 1, limit, "OnFailure"))

    def failed(body: dict[str, Any]) -> dict[str, Any] | None:
        conditions = (body.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"), None)

    async def ended() -> tuple[dict[str, Any], dict[str, Any]] | None:
        job = failed(await api.get("/apis/batch/v1/namespaces/t-limits/jobs/sweep"))
        pt = failed(await api.get("/apis/kubeflow.org/v1/namespaces/t-limits/pytorchjobs/pt"))
        return (job, pt) if job and pt else None

    async def context() -> str:
        job = await api.get("/apis/batch/v1/namespaces/t-limits/jobs/sweep")
        pt = await api.get("/apis/kubeflow.org/v1/namespaces/t-limits/pytorchjobs/pt")
        pods = [(p["metadata"]["name"], p["spec"].get("nodeName"), (p.get("status") or {}).get("phase"))
                for p in await pods_of(api, "t-limits")]  # fmt: skip
        events = [(e["involvedObject"]["name"], e["reason"], e["message"])
                  for e in (await api.list("/api/v1/namespaces/t-limits/events"))["items"]]  # fmt: skip
        return (
            f"job: {job.get('spec', {}).get('activeDeadlineSeconds')} {job.get('status')}\npytorchjob: "
            f"{pt.get('spec', {}).get('runPolicy')} {pt.get('status')}\npods: {pods}\nevents: {events}"
        )

    job, _pt = await until(ended, what="the Job and the PyTorchJob Failed at their limit", within=90, context=context)
    assert job["reason"] == "DeadlineExceeded", job
    sweep = await api.get("/apis/batch/v1/namespaces/t-limits/jobs/sweep")
    assert sweep["spec"]["activeDeadlineSeconds"] >= 5
    assert (sweep.get("status") or {}).get("failed", 0) <= 2, "no pod made again after the limit"

    async def no_pods() -> bool | None:
        return True if not await pods_of(api, "t-limits") else None

    await until(no_pods, what="every pod of both gone", within=60)
    said = {name: [m for m in await events_of(api, "t-limits", name) if "runtime limit of 5s" in m]
            for name in ("sweep", "pt")}  # fmt: skip
    assert all(said.values()), said


async def test_a_full_template_runs_and_a_privileged_one_in_a_restricted_namespace_fails(api: Client) -> None:
    await quota(api, "t-full", guaranteed=16)
    template = templates.pod(
        command=["torchrun", "train.py"],
        cpu="96",
        memory="1Ti",
        volumes=[{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "checkpoints"}},
                 {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Gi"}}],
        initContainers=[{"name": "fetch", "image": "busybox", "command": ["sh", "-c", "true"]}],
    )  # fmt: skip
    trainer = template["spec"]["containers"][0]
    trainer["resources"]["limits"] = {"rdma/rdma_shared_device_a": "1"}
    trainer["resources"]["requests"]["rdma/rdma_shared_device_a"] = "1"
    trainer["volumeMounts"] = [{"name": "checkpoints", "mountPath": "/ckpt"}, {"name": "shm", "mountPath": "/dev/shm"}]
    body = {"apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "full"},
            "spec": {"replicas": 2, "gpusPerReplica": 8, "gpuType": "b200", "template": template}}  # fmt: skip
    await api.create(f"{GROUP}/namespaces/t-full/trainingjobs", body)

    async def running() -> dict[str, Any] | None:
        job = await api.get(f"{GROUP}/namespaces/t-full/trainingjobs/full")
        return job if (job.get("status") or {}).get("phase") == "Running" else None

    await until(running, what="the full-template job Running", within=60)
    pod = await api.get("/api/v1/namespaces/t-full/pods/full-1")
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["fetch"]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"rdma/rdma_shared_device_a": "1",
                                                                   "nvidia.com/gpu": "8"}  # fmt: skip
    node = await api.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["status"]["allocatable"]["rdma/rdma_shared_device_a"] == "63"  # the DGX B200's InfiniBand
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"checkpoints", "shm"}

    await namespace(api, "t-locked")
    await api.patch("/api/v1/namespaces/t-locked",
                    {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})  # fmt: skip
    await quota(api, "t-locked", guaranteed=8)
    privileged = templates.pod(image="busybox")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    body = {"apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "root"},
            "spec": {"replicas": 1, "gpusPerReplica": 8, "template": privileged}}  # fmt: skip
    await api.create(f"{GROUP}/namespaces/t-locked/trainingjobs", body)

    async def failed() -> dict[str, Any] | None:
        job = await api.get(f"{GROUP}/namespaces/t-locked/trainingjobs/root")
        return job if (job.get("status") or {}).get("phase") == "Failed" else None

    ended = await until(failed, what="the privileged job Failed", within=60)
    assert ended["status"]["reason"] == "PodRefused"
    assert "violates PodSecurity" in ended["status"]["message"]
    assert not await pods_of(api, "t-locked")

    conflicting = templates.pod()
    conflicting["spec"]["schedulerName"] = "default-scheduler"
    body = {"apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "other"},
            "spec": {"replicas": 1, "gpusPerReplica": 8, "template": conflicting}}  # fmt: skip
    await api.create(f"{GROUP}/namespaces/t-full/trainingjobs", body)

    async def refused() -> dict[str, Any] | None:
        job = await api.get(f"{GROUP}/namespaces/t-full/trainingjobs/other")
        return job if (job.get("status") or {}).get("phase") == "Failed" else None

    ended = await until(refused, what="the conflicting template refused", within=60)
    assert ended["status"]["reason"] == "InvalidTemplate"
    assert "schedulerName 'default-scheduler'" in ended["status"]["message"]

    fewer = templates.pod()
    fewer["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    body = {"apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "four"},
            "spec": {"replicas": 1, "gpusPerReplica": 8, "template": fewer}}  # fmt: skip
    await api.create(f"{GROUP}/namespaces/t-full/trainingjobs", body)

    async def refused_gpus() -> dict[str, Any] | None:
        job = await api.get(f"{GROUP}/namespaces/t-full/trainingjobs/four")
        return job if (job.get("status") or {}).get("phase") == "Failed" else None

    ended = await until(refused_gpus, what="the template asking for 4 GPUs of 8 refused", within=60)
    assert ended["status"]["reason"] == "InvalidTemplate"
    assert "asks for 4 nvidia.com/gpu per replica and gpusPerReplica is 8" in ended["status"]["message"]
    owners = {p["metadata"]["labels"]["leitstand.dev/job"] for p in await pods_of(api, "t-full")}
    assert owners == {"full"}, "the refused jobs got no pod"


async def test_a_pytorchjob_is_reclaimed_whole_then_queues_and_binds_again(api: Client) -> None:
    await quota(api, "t-greedy", guaranteed=0)
    await quota(api, "t-owed", guaranteed=256)
    path = "/apis/kubeflow.org/v1/namespaces/t-greedy/pytorchjobs"
    await api.create(path, pytorchjob("borrower", 15, {"leitstand.dev/topology-required": "leaf"}, "OnFailure"))

    async def bound(ns: str, count: int) -> list[dict[str, Any]] | None:
        pods = [p for p in await pods_of(api, ns) if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count and all(p["spec"].get("nodeName") for p in pods) else None

    first = await until(lambda: bound("t-greedy", 16), what="the borrowing PyTorchJob bound", within=60)
    first_uids = {p["metadata"]["uid"] for p in first}
    template = {"spec": {"schedulerName": "leitstand", "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}}  # fmt: skip
    await api.create("/apis/batch/v1/namespaces/t-owed/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "owed"},
        "spec": {"parallelism": 32, "completions": 32, "template": template}})  # fmt: skip
    await until(lambda: bound("t-owed", 32), what="the owed tenant's 32-pod Job bound after the reclaim", within=90)

    async def requeued() -> list[dict[str, Any]] | None:
        pods = [p for p in await pods_of(api, "t-greedy") if not p["metadata"].get("deletionTimestamp")]
        fresh = [p for p in pods if p["metadata"]["uid"] not in first_uids]
        return fresh if len(fresh) == 16 and not any(p["spec"].get("nodeName") for p in fresh) else None

    await until(requeued, what="the training-operator's 16 new pods, queued, none bound", within=60)
    said = await events_of(api, "t-greedy", "borrower")
    assert any("t-owed" in m and "16 pods stop now" in m for m in said), said
    await api.delete("/apis/batch/v1/namespaces/t-owed/jobs/owed", propagation="Background")
    again = await until(lambda: bound("t-greedy", 16), what="the PyTorchJob bound again once room returned",
                        within=90)  # fmt: skip
    leaves = {(await api.get(f"/api/v1/nodes/{p['spec']['nodeName']}"))["metadata"]["labels"][LEAF] for p in again}
    assert len(leaves) == 1


async def test_a_reclaimed_jobs_pods_are_marked_disruption_target_so_its_failure_policy_ignores_them(
    api: Client,
) -> None:
    """backoffLimit 0 and a podFailurePolicy that ignores DisruptionTarget: the reclaim costs the Job nothing
    (without the condition it would end Failed; its controller makes the pods again after its failure backoff).
    The owner asks for the whole cluster, so the lender's fair share is nothing and its gang is reclaimed whole."""
    await quota(api, "t-lender", guaranteed=0)
    await quota(api, "t-owner", guaranteed=256)
    template = {"spec": {"schedulerName": "leitstand", "restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}}  # fmt: skip
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    await api.create("/apis/batch/v1/namespaces/t-lender/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sweep"},
        "spec": {"parallelism": 32, "completions": 32, "completionMode": "Indexed", "backoffLimit": 0,
                 "podFailurePolicy": policy, "template": template}})  # fmt: skip

    async def bound(ns: str, count: int) -> list[dict[str, Any]] | None:
        pods = [p for p in await pods_of(api, ns) if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count and all(p["spec"].get("nodeName") for p in pods) else None

    first = await until(lambda: bound("t-lender", 32), what="the borrowing Job's 32 pods bound", within=60)
    first_uids = {p["metadata"]["uid"] for p in first}
    await api.create("/apis/batch/v1/namespaces/t-owner/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "owed"},
        "spec": {"parallelism": 32, "completions": 32, "template": template}})  # fmt: skip

    async def waiting() -> str:
        pods = await pods_of(api, "t-owner")
        said = [m for p in pods for m in await events_of(api, "t-owner", p["metadata"]["name"])]
        return f"{len(pods)} pods of the owner; said: {said[-3:]}"

    await until(
        lambda: bound("t-owner", 32), what="the owner's Job bound after the reclaim", within=90, context=waiting
    )

    async def settled() -> dict[str, Any] | None:  # the Job controller has counted every reclaimed pod
        job = await api.get("/apis/batch/v1/namespaces/t-lender/jobs/sweep")
        old = [p for p in await pods_of(api, "t-lender") if p["metadata"]["uid"] in first_uids]
        status = job.get("status") or {}
        counted = not old and not status.get("terminating") and not (status.get("uncountedTerminatedPods") or {}).get("failed")  # fmt: skip
        failed = any(c["type"] == "Failed" and c["status"] == "True" for c in status.get("conditions") or [])
        return status if counted or failed else None

    status = await until(settled, what="the Job controller to count the reclaimed pods", within=60)
    assert not any(c["type"] == "Failed" and c["status"] == "True" for c in status.get("conditions") or []), status
    assert not status.get("failed"), status  # the policy ignored every reclaimed pod
    said = await events_of(api, "t-lender", "sweep")
    assert any("t-owner" in m and "32 pods stop now" in m for m in said), said


async def test_upstreams_alpha_podgroup_is_a_gang_of_its_min_count_in_one_domain_of_its_label(api: Client) -> None:
    """Kubernetes 1.36's Workload API (scheduling.k8s.io/v1alpha2, feature gate GenericWorkload), served by the
    dev cluster's API server: pods naming a PodGroup in spec.schedulingGroup are a gang of its minCount."""
    await quota(api, "t-wl", guaranteed=64)
    await api.create("/apis/scheduling.k8s.io/v1alpha2/namespaces/t-wl/podgroups", {
        "apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup", "metadata": {"name": "ring"},
        "spec": {"schedulingPolicy": {"gang": {"minCount": 4}},
                 "schedulingConstraints": {"topology": [{"key": LEAF}]}}})  # fmt: skip

    async def member(index: int) -> None:
        await api.create("/api/v1/namespaces/t-wl/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"ring-{index}"},
            "spec": {"schedulerName": "leitstand", "schedulingGroup": {"podGroupName": "ring"},
                     "containers": [{"name": "c", "image": "busybox", "resources": GPU}]}})  # fmt: skip

    for index in range(3):
        await member(index)
    created = await api.get("/api/v1/namespaces/t-wl/pods/ring-0")
    assert created["spec"]["schedulingGroup"] == {"podGroupName": "ring"}, "the API server kept the field"

    async def told() -> list[str] | None:
        return await events_of(api, "t-wl", "ring") or None

    said = await until(told, what="an Event on the PodGroup", within=30)
    assert not [p for p in await pods_of(api, "t-wl") if p["spec"].get("nodeName")], "3 of 4: none may bind"
    assert said, said
    await member(3)

    async def all_bound() -> list[dict[str, Any]] | None:
        pods = await pods_of(api, "t-wl")
        return pods if len(pods) == 4 and all(p["spec"].get("nodeName") for p in pods) else None

    pods = await until(all_bound, what="the PodGroup's 4 pods bound", within=60)
    leaves = {(await api.get(f"/api/v1/nodes/{p['spec']['nodeName']}"))["metadata"]["labels"][LEAF] for p in pods}
    assert len(leaves) == 1


async def test_a_jobsets_pods_over_all_its_jobs_are_one_gang(api: Client) -> None:
    await quota(api, "t-js", guaranteed=64)
    await quota(api, "t-fill", guaranteed=192)

    def replicated(name: str, replicas: int, parallelism: int) -> dict[str, Any]:
        pod = {
            "metadata": {"annotations": {"leitstand.dev/topology-required": "leaf"}},
            "spec": {
                "schedulerName": "leitstand",
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "resources": GPU}],
            },
        }
        return {
            "name": name,
            "replicas": replicas,
            "template": {"spec": {"parallelism": parallelism, "completions": parallelism, "template": pod}},
        }

    filler = {
        "spec": {
            "schedulerName": "leitstand",
            "restartPolicy": "Never",
            "nodeSelector": {LEAF: "b200-su-01"},
            "containers": [{"name": "c", "image": "busybox", "resources": GPU}],
        }
    }
    await api.create(
        "/apis/batch/v1/namespaces/t-fill/jobs",
        {  # 12 of one leaf's 16 nodes taken
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "fill"},
            "spec": {"parallelism": 12, "completions": 12, "template": filler},
        },
    )
    await api.create("/apis/batch/v1/namespaces/t-fill/jobs", {  # and 12 of the other's
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fill-2"},
        "spec": {"parallelism": 12, "completions": 12, "template": {
            "spec": {**filler["spec"], "nodeSelector": {LEAF: "b200-su-02"}}}}})  # fmt: skip

    async def filled() -> bool | None:
        pods = await pods_of(api, "t-fill")
        return True if len(pods) == 24 and all(p["spec"].get("nodeName") for p in pods) else None

    await until(filled, what="24 filler pods bound, 4 nodes free in each leaf", within=60)
    await api.create("/apis/jobset.x-k8s.io/v1alpha2/namespaces/t-js/jobsets", {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "train"},
        "spec": {"replicatedJobs": [replicated("leader", 1, 1), replicated("workers", 2, 2)]}})  # fmt: skip

    async def told() -> list[str] | None:
        return [m for m in await events_of(api, "t-js", "train") if "5 x 8" in m] or None

    await until(told, what="an Event on the JobSet: 5 pods do not fit one leaf's 4 free nodes", within=60)
    pods = await pods_of(api, "t-js")
    assert len(pods) == 5
    assert not [p for p in pods if p["spec"].get("nodeName")], "none of the gang may bind while only 4 fit"
    await api.delete("/apis/batch/v1/namespaces/t-fill/jobs/fill", propagation="Background")

    async def all_bound() -> list[dict[str, Any]] | None:
        pods = await pods_of(api, "t-js")
        return pods if len(pods) == 5 and all(p["spec"].get("nodeName") for p in pods) else None

    bound = await until(all_bound, what="the JobSet's 5 pods bound in the freed leaf", within=60)
    leaves = {(await api.get(f"/api/v1/nodes/{p['spec']['nodeName']}"))["metadata"]["labels"][LEAF] for p in bound}
    assert leaves == {"b200-su-01"}
