"""TrainingJob and GPUQuota are validated by the API server itself, with messages that say what to fix."""

import copy
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leitstand import locations
from leitstand.cli import crds as crds_cli
from leitstand.devcluster import cluster
from leitstand.kube import podtemplate
from leitstand.kube.client import ApiError, Client
from leitstand.kube.objects import Body
from tests import templates

EXAMPLES = Path(locations.PACKAGE_DIR).parent.parent / "deploy" / "examples"
JOBS = "/apis/leitstand.dev/v1alpha1/namespaces/default/trainingjobs"
QUOTAS = "/apis/leitstand.dev/v1alpha1/gpuquotas"

Edit = Callable[[Body], None]


def a_job(name: str) -> Body:
    return {
        "apiVersion": "leitstand.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "gpusPerReplica": 8,
            "gpuType": "b200",
            "template": templates.pod(cpu="32", memory="256Gi"),
        },
    }


def a_quota(name: str) -> Body:
    return {
        "apiVersion": "leitstand.dev/v1alpha1",
        "kind": "GPUQuota",
        "metadata": {"name": name},
        "spec": {"parent": "root", "namespaces": [name], "gpus": {"b200": {"guaranteed": 8, "limit": 16}}},
    }


def setting(path: str, value: Any) -> Edit:
    def edit(body: Body) -> None:
        *parents, leaf = path.split(".")
        target = body
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value

    return edit


def in_container(field: str, value: Any) -> Edit:
    """Sets ``field`` of the template's first container."""

    def edit(body: Body) -> None:
        body["spec"]["template"]["spec"]["containers"][0][field] = value

    return edit


def removing(path: str) -> Edit:
    def edit(body: Body) -> None:
        *parents, leaf = path.split(".")
        target = body
        for part in parents:
            target = target[part]
        del target[leaf]

    return edit


BAD_JOBS = [
    ("zero replicas", setting("spec.replicas", 0), "spec.replicas in body should be greater than or equal to 1"),
    ("negative replicas", setting("spec.replicas", -3), "spec.replicas in body should be greater than or equal to 1"),
    ("replicas as text", setting("spec.replicas", "two"), 'spec.replicas in body must be of type integer: "string"'),
    ("oversized gang", setting("spec.replicas", 5000), "spec.replicas in body should be less than or equal to 4096"),
    ("nine GPUs per replica", setting("spec.gpusPerReplica", 9), "should be less than or equal to 8"),
    ("negative GPUs", setting("spec.gpusPerReplica", -1), "spec.gpusPerReplica in body should be greater than or equal to 0"),
    ("fractional GPUs", setting("spec.gpusPerReplica", 1.5), 'spec.gpusPerReplica in body must be of type integer: "number"'),
    ("unknown priority", setting("spec.priority", "urgent"), 'Unsupported value: "urgent": supported values: "train", "build", "inference"'),
    ("upper-case GPU type", setting("spec.gpuType", "B200"), "spec.gpuType in body should match"),
    ("empty topology", setting("spec.topology", {}), "topology needs required, preferred, or both"),
    ("same level twice", setting("spec.topology", {"required": "leaf", "preferred": "leaf"}), "preferred must be a finer level than required"),
    ("bad level name", setting("spec.topology", {"required": "Spine!"}), "spec.topology.required in body should match"),
    ("negative backoff", setting("spec.backoffLimit", -1), "spec.backoffLimit in body should be greater than or equal to 0"),
    ("huge backoff", setting("spec.backoffLimit", 101), "spec.backoffLimit in body should be less than or equal to 100"),
    ("no template", removing("spec.template"), "spec.template: Required value"),
    # the template is core/v1's PodTemplateSpec: the API server's own schema refuses a bad one
    ("no containers", removing("spec.template.spec.containers"), "spec.template.spec.containers: Required value"),
    ("a container without a name", in_container("name", None), "spec.template.spec.containers[0].name: Required value"),
    ("a port as text", in_container("ports", [{"containerPort": "http"}]), 'spec.template.spec.containers[0].ports[0].containerPort: Invalid value: "string": spec.template.spec.containers[0].ports[0].containerPort in body must be of type integer'),
    ("cpu not a quantity", in_container("resources", {"requests": {"cpu": "lots"}}), "spec.template.spec.containers[0].resources.requests.cpu in body should match"),
    ("env not a list", in_container("env", "NCCL_DEBUG=WARN"), 'spec.template.spec.containers[0].env: Invalid value: "string": spec.template.spec.containers[0].env in body must be of type array'),
    ("a volume without a name", setting("spec.template.spec.volumes", [{"emptyDir": {"medium": "Memory"}}]), "spec.template.spec.volumes[0].name: Required value"),
    ("a bad shm size", setting("spec.template.spec.volumes", [{"name": "shm", "emptyDir": {"sizeLimit": "big"}}]), "spec.template.spec.volumes[0].emptyDir.sizeLimit in body should match"),
    ("a mount without a path", in_container("volumeMounts", [{"name": "shm"}]), "spec.template.spec.containers[0].volumeMounts[0].mountPath: Required value"),
    ("two containers of one name", setting("spec.template.spec.containers", [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]), 'spec.template.spec.containers[1]: Duplicate value: {"name":"a"}'),
    ("grace period as text", setting("spec.template.spec.terminationGracePeriodSeconds", "long"), "spec.template.spec.terminationGracePeriodSeconds in body must be of type integer"),
    ("unknown spec field", setting("spec.gpus", 8), 'unknown field "spec.gpus"'),
    ("unknown template field", setting("spec.template.spec.gpu", 1), 'unknown field "spec.template.spec.gpu"'),
    ("unknown container field", in_container("gpus", 8), 'unknown field "spec.template.spec.containers[0].gpus"'),
    ("no spec", removing("spec"), "spec: Required value"),
    ("name starting with a digit", setting("metadata.name", "9lives"), "a TrainingJob name must start with a letter"),
    ("name too long for its pods", setting("metadata.name", "x" * 51), "be at most 50 characters"),
    ("runtime limit in days", setting("spec.runtimeLimit", "3d"), "spec.runtimeLimit in body should match"),
    ("runtime limit of zero", setting("spec.runtimeLimit", "0s"), "runtimeLimit must be longer than 0s"),
]  # fmt: skip

BAD_QUOTAS = [
    ("limit below guarantee", setting("spec.gpus", {"b200": {"guaranteed": 16, "limit": 8}}), "limit must be at least guaranteed"),
    ("negative guarantee", setting("spec.gpus", {"b200": {"guaranteed": -1}}), "guaranteed in body should be greater than or equal to 0"),
    ("weight as text", setting("spec.gpus", {"b200": {"overQuotaWeight": "high"}}), 'overQuotaWeight in body must be of type integer: "string"'),
    ("upper-case GPU type key", setting("spec.gpus", {"B200": {"guaranteed": 1}}), "GPU types are short lower-case names"),
    ("bad namespace name", setting("spec.namespaces", ["Team_A"]), "spec.namespaces[0] in body should match"),
    ("namespace listed twice", setting("spec.namespaces", ["a", "a"]), 'Duplicate value: "a"'),
    ("bad parent name", setting("spec.parent", "Root"), "spec.parent in body should match"),
    ("empty reservation selector", setting("spec.reservation", {"nodeSelector": {}}), "should have at least 1 properties"),
    ("reservation without selector", setting("spec.reservation", {"lendIdle": True}), "spec.reservation.nodeSelector: Required value"),
    ("negative minimum runtime", setting("spec.minRuntimeSeconds", -5), "spec.minRuntimeSeconds in body should be greater than or equal to 0"),
    ("unknown field", setting("spec.quota", 10), 'unknown field "spec.quota"'),
    ("default runtime limit not a duration", setting("spec.defaultRuntimeLimit", "a week"), "spec.defaultRuntimeLimit in body should match"),
    ("zero maximum runtime", setting("spec.maxRuntimeLimit", "0s"), "maxRuntimeLimit must be longer than 0s"),
    ("default longer than the maximum", setting("spec", {"defaultRuntimeLimit": "96h", "maxRuntimeLimit": "72h"}), "defaultRuntimeLimit must not be longer than maxRuntimeLimit"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "message"), BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
async def test_a_bad_training_job_is_rejected_by_the_api_server(
    admin: Client, case: str, edit: Edit, message: str
) -> None:
    body = a_job(f"bad-{uuid.uuid4().hex[:6]}")
    edit(body)
    with pytest.raises(ApiError) as rejected:
        await admin.create(JOBS, body)
    assert rejected.value.status in {400, 422}, rejected.value
    assert message in rejected.value.message


@pytest.mark.parametrize(("case", "edit", "message"), BAD_QUOTAS, ids=[c[0] for c in BAD_QUOTAS])
async def test_a_bad_gpu_quota_is_rejected_by_the_api_server(
    admin: Client, case: str, edit: Edit, message: str
) -> None:
    body = a_quota(f"bad-{uuid.uuid4().hex[:6]}")
    edit(body)
    with pytest.raises(ApiError) as rejected:
        await admin.create(QUOTAS, body)
    assert rejected.value.status in {400, 422}, rejected.value
    assert message in rejected.value.message


async def test_a_queue_cannot_be_its_own_parent(admin: Client) -> None:
    body = a_quota("narcissus")
    body["spec"]["parent"] = "narcissus"
    with pytest.raises(ApiError) as rejected:
        await admin.create(QUOTAS, body)
    assert "spec.parent: Invalid value" in rejected.value.message
    assert "a queue may not be its own parent" in rejected.value.message


IMMUTABLE = [
    (
        "replicas",
        {"spec": {"replicas": 3}},
        "replicas is immutable; delete and recreate the job to change it",
    ),
    ("gpusPerReplica", {"spec": {"gpusPerReplica": 4}}, "gpusPerReplica is immutable"),
    ("gpuType changed", {"spec": {"gpuType": "rtx-pro-6000"}}, "gpuType is immutable once set"),
    ("gpuType removed", {"spec": {"gpuType": None}}, "gpuType is immutable once set"),
]


@pytest.mark.parametrize(("case", "patch", "message"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
async def test_the_shape_of_a_job_is_immutable(admin: Client, case: str, patch: Body, message: str) -> None:
    name = f"fixed-{uuid.uuid4().hex[:6]}"
    await admin.create(JOBS, a_job(name))
    with pytest.raises(ApiError) as rejected:
        await admin.patch(f"{JOBS}/{name}", patch)
    assert rejected.value.status == 422
    assert message in rejected.value.message
    allowed = await admin.patch(f"{JOBS}/{name}", {"spec": {"backoffLimit": 5, "priority": "inference"}})
    assert allowed["spec"]["backoffLimit"] == 5


async def test_a_gpu_type_may_be_set_once_when_absent(admin: Client) -> None:
    name = f"typed-{uuid.uuid4().hex[:6]}"
    body = a_job(name)
    del body["spec"]["gpuType"]
    await admin.create(JOBS, body)
    patched = await admin.patch(f"{JOBS}/{name}", {"spec": {"gpuType": "b200"}})
    assert patched["spec"]["gpuType"] == "b200"


async def test_a_top_level_queue_may_have_an_empty_spec(admin: Client) -> None:
    name = f"bare-{uuid.uuid4().hex[:6]}"
    created = await admin.create(
        QUOTAS, {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota", "metadata": {"name": name}, "spec": {}}
    )
    assert created["spec"]["minRuntimeSeconds"] == 0


async def test_defaults_are_filled_in_by_the_api_server(admin: Client) -> None:
    created = await admin.create(JOBS, a_job(f"plain-{uuid.uuid4().hex[:6]}"))
    assert created["spec"]["priority"] == "train"
    assert created["spec"]["backoffLimit"] == 3
    quota = a_quota(f"q-{uuid.uuid4().hex[:6]}")
    quota["spec"]["gpus"] = {"b200": {}}
    created = await admin.create(QUOTAS, quota)
    assert created["spec"]["gpus"]["b200"] == {"guaranteed": 0, "overQuotaWeight": 1}
    assert created["spec"]["minRuntimeSeconds"] == 0


def kubectl_run(kubectl: Path, control_plane: cluster.LocalCluster, *args: str) -> str:
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(control_plane.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_applies_and_kubectl_shows_the_columns(
    kubectl: Path, control_plane: cluster.LocalCluster
) -> None:
    applied = kubectl_run(kubectl, control_plane, "apply", "-f", str(EXAMPLES))
    assert "trainingjob.leitstand.dev/llm-100b-pretrain" in applied
    assert "gpuquota.leitstand.dev/soofi" in applied
    jobs = kubectl_run(kubectl, control_plane, "get", "tj", "-A")
    assert jobs.splitlines()[0].split() == ["NAMESPACE", "NAME", "QUEUE", "GPUS", "PHASE", "REASON", "ETA", "AGE"]
    assert "llm-100b-pretrain" in jobs
    wide = kubectl_run(kubectl, control_plane, "get", "tj", "-n", "soofi", "-o", "wide")
    header = wide.splitlines()[0].split()
    assert header[header.index("POSITION") + 1 : header.index("POSITION") + 3] == ["REPLICAS", "IMAGE"]
    assert "nvcr.io/nvidia/nemo:25.09" in wide
    quotas = kubectl_run(kubectl, control_plane, "get", "gq")
    assert quotas.splitlines()[0].split() == ["NAME", "PARENT", "GUARANTEED", "ALLOCATED", "FAIR", "SHARE", "PENDING", "RUNNING", "JOBS", "WAITING", "JOBS", "AGE"]  # fmt: skip
    by_name = {line.split()[0]: line.split() for line in quotas.splitlines()[1:]}
    assert by_name["soofi"][1] == "research"
    both = kubectl_run(kubectl, control_plane, "get", "leitstand", "-A")
    assert "trainingjob.leitstand.dev/vision-finetune" in both
    assert "gpuquota.leitstand.dev/acme-robotics" in both


def test_kubectl_explain_reads_the_descriptions(kubectl: Path, control_plane: cluster.LocalCluster) -> None:
    topology = kubectl_run(kubectl, control_plane, "explain", "trainingjob.spec.topology")
    assert "Placement on the network fabric; anywhere when absent." in topology
    assert "must hold every replica in" in topology
    weight = kubectl_run(kubectl, control_plane, "explain", "gpuquota.spec.gpus.overQuotaWeight")
    assert "Weight in sharing GPUs beyond the guarantees" in weight


def test_the_examples_are_valid_for_the_python_models_too() -> None:
    import yaml

    from leitstand.kube import resources

    kinds = {"TrainingJob": resources.TrainingJobSpec, "GPUQuota": resources.GPUQuotaSpec}
    seen = 0
    for path in sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("site/*.yaml")]):
        for document in yaml.safe_load_all(path.read_text()):
            model = kinds.get(document["kind"])
            if model is not None:
                model.model_validate(copy.deepcopy(document["spec"]))
                seen += 1
    assert seen == 16  # the demo's tree and the site's (7 queues each), the pretraining and the fine-tune


async def test_the_pod_template_schema_is_the_running_api_servers_own(admin: Client) -> None:
    """The schema the CRD embeds is what ``make generate`` makes of this kube-apiserver's OpenAPI: regenerated
    from the running API server, it is byte for byte the checked-in one."""
    document = await admin.get(crds_cli.OPENAPI_PATH)
    assert podtemplate.render(podtemplate.structural(document)) == podtemplate.SCHEMA_FILE.read_text(), (
        "the pod template schema is stale: run `make generate` and commit the result"
    )
