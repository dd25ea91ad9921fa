"""Raw Kubernetes bodies to the core's snapshot: nodes, GPUQuotas, TrainingJobs and pods.

What the scheduler may use of a node is its allocatable minus what pods of
other schedulers hold there. Pods with ``schedulerName: leitstand`` that no
TrainingJob owns are gangs of one; TrainingJob pods (label
``leitstand.dev/job``) make up their job's placement, one per replica.
Nothing here does I/O: the store hands over the bodies.
"""

import dataclasses
import datetime
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from leitstand.core import model
from leitstand.kube import quantities, resources
from leitstand.kube.objects import (
    Body,
    GPUQuota,
    Node,
    Pod,
    TrainingJob,
    deleting,
    labels,
    node_spec,
    node_status,
    pod_spec,
    pod_status,
    status,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
SCHEDULER_NAME = "leitstand"
JOB_LABEL = "leitstand.dev/job"
REPLICA_LABEL = "leitstand.dev/replica"
RUNTIME_LIMIT_ANNOTATION = "leitstand.dev/runtime-limit"
PREEMPT_AT_ANNOTATION = "leitstand.dev/preempt-at"  # on the pods of a job being preempted: when they stop
LAST_CHECKPOINT_ANNOTATION = "leitstand.dev/last-checkpoint"  # on a TrainingJob or pod: when it last saved its work
# on the pods of a waiting gang Leitstand did not create: its expected start (a TrainingJob's is in its status)
ESTIMATED_START_ANNOTATION = "leitstand.dev/estimated-start-time"
MOVABLE_ANNOTATION = "leitstand.dev/movable"  # "true" on a TrainingJob or pod: a restart elsewhere costs it nothing
TERMINAL = frozenset({"Succeeded", "Failed"})

# The defaults of the operator's configuration (and so of the chart's values): NVIDIA Topograph's
# labels for the core's default levels, and GPU Feature Discovery's product names.
TOPOLOGY_LABELS = {
    "spine": "network.topology.nvidia.com/spine",
    "leaf": "network.topology.nvidia.com/leaf",
    "node": "kubernetes.io/hostname",
}
GPU_TYPES = {
    "NVIDIA-B200": "b200",
    "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition": "rtx-pro-6000",
}

PRIORITIES = {"train": model.Priority.TRAIN, "build": model.Priority.BUILD, "inference": model.Priority.INFERENCE}

# What a pod Leitstand did not create says of its gang (set through its owner's pod template).
GANG_ANNOTATION = "leitstand.dev/gang"  # a name, unique in the namespace
GANG_SIZE_ANNOTATION = "leitstand.dev/gang-size"
REQUIRED_ANNOTATION = "leitstand.dev/topology-required"
PREFERRED_ANNOTATION = "leitstand.dev/topology-preferred"
PRIORITY_ANNOTATION = "leitstand.dev/priority"
GPU_TYPE_ANNOTATION = "leitstand.dev/gpu-type"
AGREED = (REQUIRED_ANNOTATION, PREFERRED_ANNOTATION, PRIORITY_ANNOTATION, GPU_TYPE_ANNOTATION)
# The owners whose pods make one gang, by (apiVersion, kind): the key's middle part names them. A Job whose
# own controller is a JobSet gives its pods to the JobSet's gang; ``spec.schedulingGroup.podGroupName`` names
# a PodGroup of upstream's alpha gang API (the key's ``podgroups``).
GROUP_OWNERS = {("batch/v1", "Job"): "jobs", ("kubeflow.org/v1", "PyTorchJob"): "pytorchjobs"}
JOBSET = ("jobset.x-k8s.io/v1alpha2", "JobSet")
# The owner kinds read from the API server, by (kind, collection path with {ns} for the namespace part).
OWNER_COLLECTIONS = (
    ("Job", "/apis/batch/v1/{ns}/jobs"),
    ("PyTorchJob", "/apis/kubeflow.org/v1/{ns}/pytorchjobs"),
    ("PodGroup", "/apis/scheduling.k8s.io/v1alpha2/{ns}/podgroups"),
    ("JobSet", "/apis/jobset.x-k8s.io/v1alpha2/{ns}/jobsets"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """How cluster labels map to the core: topology level labels and GPU type names."""

    topology: tuple[tuple[str, str], ...] = tuple((level, TOPOLOGY_LABELS[level]) for level in model.TOPOLOGY_LEVELS)
    gpu_types: Mapping[str, str] = field(default_factory=lambda: dict(GPU_TYPES))

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(name for name, _label in self.topology)

    def gpu_type(self, product: str | None) -> model.GPUType | None:
        """The short name of a GPU product label; unknown products get a lower-cased name."""
        if not product:
            return None
        known = self.gpu_types.get(product)
        if known is not None:
            return model.GPUType(known)
        return model.GPUType(product.lower().removeprefix("nvidia-"))


def timestamp(value: str | None) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _container_requests(container: Mapping[str, Any]) -> tuple[int, int, int]:
    needs = container.get("resources") or {}
    requests = needs.get("requests") or {}
    limits = needs.get("limits") or {}
    return (
        quantities.units(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE))),
        quantities.millis(requests.get("cpu", limits.get("cpu"))),
        quantities.units(requests.get("memory", limits.get("memory"))),
    )


def spec_requests(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """(GPUs, CPU millicores, memory bytes) a pod spec needs on its node, counted as the kube-scheduler counts:
    its containers and sidecars (init containers that keep running) together, or an init container with the
    sidecars started before it, whichever is more. A request absent but a limit set means the limit."""
    containers = spec.get("containers") or []
    if not spec.get("initContainers"):  # the common case, on every pod of every cycle
        if len(containers) == 1:
            return _container_requests(containers[0])
        each = [_container_requests(container) for container in containers]
        return sum(n[0] for n in each), sum(n[1] for n in each), sum(n[2] for n in each)
    running = [0, 0, 0]
    peak = [0, 0, 0]
    sidecars = [0, 0, 0]
    for container in spec.get("initContainers") or []:
        needs = _container_requests(container)
        if container.get("restartPolicy") == "Always":
            sidecars = [a + b for a, b in zip(sidecars, needs, strict=True)]
        else:
            peak = [max(p, s + n) for p, s, n in zip(peak, sidecars, needs, strict=True)]
    for container in containers:
        running = [a + b for a, b in zip(running, _container_requests(container), strict=True)]
    gpus, cpu, memory = (max(p, r + s) for p, r, s in zip(peak, running, sidecars, strict=True))
    return gpus, cpu, memory


def pod_requests(pod: Pod) -> tuple[int, int, int]:
    """(GPUs, CPU millicores, memory bytes) a pod needs on its node (``spec_requests``)."""
    return spec_requests(pod_spec(pod))


def is_ours(pod: Pod) -> bool:
    return pod_spec(pod).get("schedulerName") == SCHEDULER_NAME


def live(pod: Pod) -> bool:
    return pod_status(pod).get("phase") not in TERMINAL


def node_ready(node: Node) -> bool:
    if node_spec(node).get("unschedulable"):
        return False
    conditions = node_status(node).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


KEEPING_AWAY = frozenset({"NoSchedule", "NoExecute"})


def taints(node: Node) -> tuple[model.Taint, ...]:
    """A node's taints that keep pods away (PreferNoSchedule is only a preference)."""
    return tuple(
        sorted(
            (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect")))
            for t in node_spec(node).get("taints") or []
            if t.get("effect") in KEEPING_AWAY
        )
    )


def tolerations(items: Iterable[Any] | None) -> tuple[model.Toleration, ...]:
    """Tolerations (pod spec or TrainingJob template) in the core's form."""
    result = []
    for item in items or []:
        if isinstance(item, dict):
            get = item.get
            key, operator, value, effect = get("key"), get("operator"), get("value"), get("effect")
        else:
            key, operator, value, effect = item.key, item.operator, item.value, item.effect
        result.append((str(key or ""), str(operator or "Equal"), str(value or ""), str(effect or "")))
    return tuple(sorted(result))


def to_node(body: Node, foreign: tuple[int, int, int], settings: Settings) -> model.Node:
    allocatable = node_status(body).get("allocatable") or {}
    node_labels = labels(body)
    return model.Node(
        name=model.NodeName(body["metadata"]["name"]),
        gpu_type=settings.gpu_type(node_labels.get(GPU_PRODUCT_LABEL)),
        gpus=max(quantities.units(allocatable.get(GPU_RESOURCE)) - foreign[0], 0),
        cpu_millis=max(quantities.millis(allocatable.get("cpu")) - foreign[1], 0),
        memory_bytes=max(quantities.units(allocatable.get("memory")) - foreign[2], 0),
        domains=tuple(node_labels.get(label, "") for _name, label in settings.topology),
        labels=model.labels(node_labels),
        ready=node_ready(body),
        taints=taints(body),
    )


def to_queue(body: GPUQuota) -> model.Queue | None:
    """The core queue of a GPUQuota; None when its spec does not parse (the API server validated it)."""
    try:
        spec = resources.GPUQuotaSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError:
        return None
    reservation = None
    if spec.reservation is not None:
        reservation = model.Reservation(model.labels(spec.reservation.node_selector), spec.reservation.lend_idle)
    return model.Queue(
        name=model.QueueName(body["metadata"]["name"]),
        parent=model.QueueName(spec.parent) if spec.parent else None,
        namespaces=tuple(spec.namespaces or ()),
        shares={
            model.GPUType(t): model.Share(s.guaranteed, s.limit, s.over_quota_weight) for t, s in spec.gpus.items()
        },
        reservation=reservation,
        min_runtime_seconds=float(spec.min_runtime_seconds),
        default_runtime_limit=resources.duration_seconds(spec.default_runtime_limit),
        max_runtime_limit=resources.duration_seconds(spec.max_runtime_limit),
        preemption_notice=float(spec.preemption_notice_seconds),
        max_preemption_grace=None
        if spec.max_preemption_grace_seconds is None
        else float(spec.max_preemption_grace_seconds),
    )


def pod_job(pod: Pod) -> model.Job:
    """A plain pod as a gang of one."""
    meta = pod["metadata"]
    spec = pod_spec(pod)
    gpus, cpu, memory = pod_requests(pod)
    node = spec.get("nodeName")
    selector = dict(spec.get("nodeSelector") or {})
    gpu_type = selector.pop("leitstand.dev/gpu-type", None) or annotations(pod).get(GPU_TYPE_ANNOTATION)
    running_since = timestamp(pod_status(pod).get("startTime")) if node else None
    nominated = pod_status(pod).get("nominatedNodeName")
    return model.Job(
        key=model.JobKey(f"{meta['namespace']}/pods/{meta['name']}"),
        namespace=meta["namespace"],
        replicas=1,
        gpus_per_replica=gpus,
        cpu_millis_per_replica=cpu,
        memory_bytes_per_replica=memory,
        gpu_type=model.GPUType(gpu_type) if gpu_type else None,
        priority=pod_priority(pod),
        node_selector=model.labels(selector),
        tolerations=tolerations(spec.get("tolerations")),
        submitted=timestamp(meta.get("creationTimestamp")) or 0.0,
        placement=(model.NodeName(node),) if node else (),
        started=running_since if node else None,
        nominated=(model.NodeName(nominated),) if nominated and not node else (),
        runtime_limit=pod_runtime_limit(pod),
        last_checkpoint=last_checkpoint(pod),
        movable=movable(pod),
    )


def movable(*bodies: Pod | TrainingJob) -> bool:
    """Does any of ``bodies`` say ``leitstand.dev/movable: "true"`` (consolidation may move it at no cost)?"""
    return any(annotations(body).get(MOVABLE_ANNOTATION) == "true" for body in bodies)


_NONE: Mapping[str, str] = {}


def annotations(body: Pod | TrainingJob | Body) -> Mapping[str, str]:
    """The annotations of ``body`` (read only)."""
    return (body.get("metadata") or {}).get("annotations") or _NONE


def pod_priority(pod: Pod) -> model.Priority:
    """A pod's priority: its ``leitstand.dev/priority`` annotation, else a PriorityClass named train, build or
    inference, else train."""
    named = annotations(pod).get(PRIORITY_ANNOTATION) or pod_spec(pod).get("priorityClassName")
    return PRIORITIES.get(str(named), model.Priority.TRAIN)


@dataclass(frozen=True, slots=True)
class Group:
    """A gang of pods Leitstand did not create: who owns it (an object reference, for Events) and its size."""

    kind: str  # the key's middle part: gangs, podgroups, jobs, pytorchjobs, jobsets
    owner: Body | None  # apiVersion, kind, name, namespace, uid of the owner object; None for an annotated gang
    size: int | None  # pods the gang needs; None while its owner is not known yet
    topology_label: str | None = None  # a PodGroup's topology constraint: the node label all pods share
    problem: str | None = None  # why it cannot be a gang (an annotated size that is not a count)


def pod_group(pod: Pod, owners: Mapping[tuple[str, str, str], Body]) -> Group | None:
    """The gang a pod belongs to: its ``leitstand.dev/gang`` annotation, else the PodGroup of upstream's gang
    API its ``spec.schedulingGroup`` names, else its controller when that is a batch/v1 Job or a Kubeflow
    PyTorchJob; None for a gang of one."""
    meta = pod["metadata"]
    noted = annotations(pod)
    if noted and noted.get(GANG_ANNOTATION):
        written = noted.get(GANG_SIZE_ANNOTATION, "")
        if not written.isdigit() or int(written) < 1:
            problem = f"{GANG_SIZE_ANNOTATION} is {written!r}; it must be the gang's number of pods, 1 or more"
            return Group("gangs", None, None, problem=problem)
        return Group("gangs", None, int(written))
    scheduling_group = pod_spec(pod).get("schedulingGroup")
    if scheduling_group and scheduling_group.get("podGroupName"):  # upstream's gang API
        return workload_group(str(scheduling_group["podGroupName"]), meta["namespace"], owners)
    for reference in meta.get("ownerReferences") or ():
        kind = GROUP_OWNERS.get((reference.get("apiVersion", ""), reference.get("kind", "")))
        if kind is None or not reference.get("controller"):
            continue
        owner = owners.get((reference["kind"], meta["namespace"], reference["name"]))
        if owner is None or (owner.get("metadata") or {}).get("uid") != reference.get("uid"):
            return Group(kind, None, None)  # not seen yet: its pods wait for it
        above = _controller(owner)
        if reference["kind"] == "Job" and above is not None and (above.get("apiVersion"), above.get("kind")) == JOBSET:
            jobset = owners.get(("JobSet", meta["namespace"], str(above["name"])))
            if jobset is None or (jobset.get("metadata") or {}).get("uid") != above.get("uid"):
                return Group("jobsets", None, None)
            return Group("jobsets", {"apiVersion": JOBSET[0], "kind": "JobSet", **jobset}, jobset_gang_size(jobset))
        reference_body = {"apiVersion": reference["apiVersion"], "kind": reference["kind"], **owner}
        return Group(kind, reference_body, owner_gang_size(reference["kind"], owner))
    return None


def workload_group(name: str, namespace: str, owners: Mapping[tuple[str, str, str], Body]) -> Group | None:
    """The gang of upstream's alpha Workload API (scheduling.k8s.io/v1alpha2): the PodGroup a pod's
    ``spec.schedulingGroup.podGroupName`` names, of its gang policy's ``minCount`` pods, all in one domain of
    its first topology constraint's node label. A basic policy gangs nothing: None, a gang of one."""
    group = owners.get(("PodGroup", namespace, name))
    if group is None:
        return Group("podgroups", None, None)
    spec = group.get("spec") or {}
    gang = (spec.get("schedulingPolicy") or {}).get("gang")
    if gang is None:
        return None
    size = max(_whole(gang.get("minCount"), 1), 1)
    constraints = (spec.get("schedulingConstraints") or {}).get("topology") or []
    label = str(constraints[0].get("key")) if constraints and constraints[0].get("key") else None
    owner = {"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup", **group}
    return Group("podgroups", owner, size, label)


def _controller(body: Body) -> Body | None:
    """The owner reference of ``body``'s controller, if any."""
    return next((r for r in (body.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)


def _whole(value: object, default: int) -> int:
    """A count from another controller's object; ``default`` when it is absent or not a whole number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def jobset_gang_size(jobset: Body) -> int:
    """Pods that make a JobSet's gang: over its replicated Jobs, replicas times each Job's parallelism."""
    total = 0
    for replicated in (jobset.get("spec") or {}).get("replicatedJobs") or []:
        job = ((replicated.get("template") or {}).get("spec")) or {}
        total += _whole(replicated.get("replicas"), 1) * _whole(job.get("parallelism"), 1)
    return max(total, 1)


def owner_gang_size(kind: str, owner: Body) -> int:
    """Pods that make the gang of an owner: a Job's parallelism (at most the completions still to come); a
    PyTorchJob's replicas over all its replica specs."""
    spec = owner.get("spec") or {}
    if kind == "PyTorchJob":
        replicas = (spec.get("pytorchReplicaSpecs") or {}).values()
        return max(sum(_whole((replica or {}).get("replicas"), 1) for replica in replicas), 1)
    parallelism = _whole(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    if isinstance(completions, int):
        left = completions - _whole((owner.get("status") or {}).get("succeeded"), 0)
        parallelism = min(parallelism, max(left, 1))
    return max(parallelism, 1)


def group_job(
    key: model.JobKey, size: int, members: list[Pod], required: str | None = None
) -> tuple[model.Job | None, str | None]:
    """The core job of a gang of pods (ranked by name), or why it cannot be one: its pods disagree on what
    the gang needs. (None, None) while pods are missing and none is bound."""
    members = sorted(members, key=_name)
    first = members[0]
    for other in members[1:]:
        for annotation in AGREED:
            mine, theirs = annotations(first).get(annotation), annotations(other).get(annotation)
            if mine != theirs:
                return None, (f"pods {first['metadata']['name']} and {other['metadata']['name']} of one gang "
                              f"disagree on {annotation}: {mine!r} and {theirs!r}")  # fmt: skip
        if pod_requests(first)[0] != pod_requests(other)[0]:
            return None, (f"pods {first['metadata']['name']} and {other['metadata']['name']} of one gang ask for "
                          f"{pod_requests(first)[0]} and {pod_requests(other)[0]} {GPU_RESOURCE}; a gang's pods "
                          "ask for as many GPUs each")  # fmt: skip
    replicas = max(size, len(members))
    nodes = [pod_spec(pod).get("nodeName") for pod in members]
    if not any(nodes) and len(members) < replicas:
        return None, None
    single = [pod_job(pod) for pod in members]
    noted = annotations(first)
    placement = tuple(model.NodeName(node) if node else None for node in nodes) + (None,) * (replicas - len(members))
    started = [job.started for job in single if job.started is not None]
    limits = [job.runtime_limit for job in single if job.runtime_limit is not None]
    nominated = [job.nominated[0] for job in single if job.nominated]
    return model.Job(
        key=key,
        namespace=first["metadata"]["namespace"],
        replicas=replicas,
        gpus_per_replica=single[0].gpus_per_replica,
        cpu_millis_per_replica=max(job.cpu_millis_per_replica for job in single),
        memory_bytes_per_replica=max(job.memory_bytes_per_replica for job in single),
        gpu_type=single[0].gpu_type,
        priority=single[0].priority,
        required_level=noted.get(REQUIRED_ANNOTATION) or required,
        preferred_level=noted.get(PREFERRED_ANNOTATION) or None,
        node_selector=single[0].node_selector,
        tolerations=single[0].tolerations,
        submitted=min(job.submitted for job in single),
        placement=placement if any(nodes) else (),
        started=min(started) if any(nodes) and started else None,
        nominated=tuple(nominated) if not any(nodes) and len(nominated) == replicas else (),
        runtime_limit=min(limits) if limits else None,
        terminating=any(nodes) and preempt_at(members) is not None,
        last_checkpoint=last_checkpoint(*members),
        movable=all(job.movable for job in single),
    ), None


def annotated_runtime_limit(pod: Pod) -> float | None:
    """The ``leitstand.dev/runtime-limit`` annotation in seconds; None when absent, not a duration, or zero."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(RUNTIME_LIMIT_ANNOTATION)
    if not annotation or not re.match(resources.DURATION, annotation):
        return None
    return resources.duration_seconds(annotation) or None


def annotated_time(body: Pod | TrainingJob, annotation: str) -> float | None:
    """The RFC 3339 time in ``annotation`` of ``body``; None when absent or not a time (users write these)."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(annotation)
    if not isinstance(value, str):
        return None
    try:
        return timestamp(value)
    except ValueError:
        return None


def preempt_at(pods: Iterable[Pod]) -> float | None:
    """The earliest ``leitstand.dev/preempt-at`` of ``pods`` (a preemption noticed, the pods not yet deleted);
    None when none carries one."""
    moments = [moment for pod in pods if (moment := annotated_time(pod, PREEMPT_AT_ANNOTATION)) is not None]
    return min(moments) if moments else None


def last_checkpoint(*reporting: Pod | TrainingJob) -> float | None:
    """The latest ``leitstand.dev/last-checkpoint`` among ``reporting`` (a TrainingJob, its pods); None when
    none reports a time."""
    moments = [m for body in reporting if (m := annotated_time(body, LAST_CHECKPOINT_ANNOTATION)) is not None]
    return max(moments) if moments else None


def pod_runtime_limit(pod: Pod) -> float | None:
    """A plain pod's own runtime limit: its annotation or its ``activeDeadlineSeconds``, the shorter when
    both are set; None when neither is."""
    limits = [limit] if (limit := annotated_runtime_limit(pod)) is not None else []
    deadline = pod_spec(pod).get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline > 0:
        limits.append(float(deadline))
    return min(limits) if limits else None


_SPECS: OrderedDict[tuple[str, int], tuple[Body, resources.TrainingJobSpec]] = OrderedDict()
SPEC_CACHE_SIZE = 20_000


def job_spec(body: TrainingJob) -> resources.TrainingJobSpec:
    """The TrainingJob's spec, parsed once per version of it (uid and generation; the oldest parses go first).

    A cached parse is used only for the very spec object it was made from (the store
    replaces bodies, it never edits them). Raises pydantic.ValidationError for a spec the
    model rejects (only an older schema's leftovers: the API server validated it).
    """
    meta, spec = body["metadata"], body.get("spec") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    if not uid or generation is None:
        return resources.TrainingJobSpec.model_validate(spec)
    key = (str(uid), int(generation))
    cached = _SPECS.get(key)
    if cached is not None and cached[0] is spec:
        return cached[1]
    parsed = resources.TrainingJobSpec.model_validate(spec)
    _SPECS[key] = (spec, parsed)
    while len(_SPECS) > SPEC_CACHE_SIZE:
        _SPECS.popitem(last=False)
    return parsed


OWNED_ENV = ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "PET_NNODES", "PET_NODE_RANK",
             "PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_RDZV_BACKEND", "PET_RDZV_ENDPOINT", "PET_RDZV_ID")  # fmt: skip
OWNED_LABELS = (JOB_LABEL, REPLICA_LABEL)


def template_spec(spec: resources.TrainingJobSpec) -> Body:
    """The pod spec of a TrainingJob's template."""
    inner = spec.template.get("spec")
    return inner if isinstance(inner, dict) else {}


def asks_for_gpus(pod: Body) -> bool:
    """Whether any container of a pod spec names GPUs in its requests or limits."""
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    return any(GPU_RESOURCE in ((c.get("resources") or {}).get(part) or {}) for c in containers
               for part in ("requests", "limits"))  # fmt: skip


def template_problem(spec: resources.TrainingJobSpec) -> str | None:
    """Why a TrainingJob's template cannot be run as Leitstand runs it: it sets something the operator owns,
    differently; None when it can."""
    pod = template_spec(spec)
    scheduler = pod.get("schedulerName")
    if scheduler not in (None, SCHEDULER_NAME):
        return f"the template sets schedulerName {scheduler!r}; Leitstand schedules every replica (remove it)"
    restart = pod.get("restartPolicy")
    if restart not in (None, "Never"):
        return (
            f"the template sets restartPolicy {restart!r}; a gang restarts whole, up to backoffLimit "
            "(remove it or set Never)"
        )
    for owned in ("hostname", "subdomain"):
        if pod.get(owned):
            return f"the template sets {owned}; Leitstand names every replica's host for the rendezvous (remove it)"
    meta = spec.template.get("metadata") or {}
    for label in OWNED_LABELS:
        if label in (meta.get("labels") or {}):
            return f"the template sets the label {label}; Leitstand sets it on every replica (remove it)"
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    for container in containers:
        for variable in container.get("env") or []:
            if variable.get("name") in OWNED_ENV:
                return (
                    f"container {container.get('name')!r} sets {variable['name']}; Leitstand sets the rank "
                    f"environment ({', '.join(OWNED_ENV[:4])}, ...) per replica (remove it)"
                )
    gpus = spec_requests(pod)[0]
    if asks_for_gpus(pod) and gpus != spec.gpus_per_replica:
        return (
            f"the template asks for {gpus} {GPU_RESOURCE} per replica and gpusPerReplica is "
            f"{spec.gpus_per_replica}; set them alike, or leave the GPUs to gpusPerReplica"
        )
    return None


def training_job(body: TrainingJob, pods: dict[int, Pod]) -> model.Job | None:
    """The gang of a TrainingJob, with its live pods' nodes by rank; None when there is nothing to schedule.

    A job waits for scheduling only when every replica's pod exists; a job with
    some pods bound is included either way, so the core can complete or release it.
    """
    current = status(body)
    if deleting(body) or current.get("phase") in TERMINAL:
        return None
    if any(not live(pod) for pod in pods.values()):
        return None  # a replica ended: the job controller finishes or restarts the gang first
    try:
        spec = job_spec(body)
    except pydantic.ValidationError:
        return None
    if template_problem(spec) is not None:
        return None  # the job controller ends it Failed
    pod = template_spec(spec)
    _gpus, cpu, memory = spec_requests(pod)
    selector = pod.get("nodeSelector")
    placement = tuple(
        model.NodeName(node) if (node := (pod_spec(pods[rank]).get("nodeName") if rank in pods else None)) else None
        for rank in range(spec.replicas)
    )
    bound = any(placement)
    gang = gang_size(spec)
    if not bound and any(rank not in pods for rank in range(gang)):
        return None
    meta = body["metadata"]
    topology = spec.topology
    nominated = [pod_status(pods[rank]).get("nominatedNodeName") if rank in pods else None
                 for rank in range(gang)]  # fmt: skip
    # elastic: ranks above the gang whose pod is not there (being deleted, or not created yet) wait their turn
    absent = tuple(rank for rank in range(gang, spec.replicas) if rank not in pods)
    return model.Job(
        key=model.JobKey(f"{meta['namespace']}/{meta['name']}"),
        namespace=meta["namespace"],
        replicas=spec.replicas,
        gpus_per_replica=spec.gpus_per_replica,
        cpu_millis_per_replica=cpu,
        memory_bytes_per_replica=memory,
        gpu_type=model.GPUType(spec.gpu_type) if spec.gpu_type else None,
        priority=PRIORITIES[spec.priority],
        required_level=topology.required if topology else None,
        preferred_level=topology.preferred if topology else None,
        tolerations=tolerations(pod.get("tolerations")),
        node_selector=model.labels(selector if isinstance(selector, dict) else {}),
        submitted=timestamp(current.get("queuedAt") or meta.get("creationTimestamp")) or 0.0,
        placement=placement if bound else (),
        started=timestamp(current.get("startedAt")) if bound else None,
        runtime_limit=resources.duration_seconds(spec.runtime_limit),
        nominated=tuple(model.NodeName(n) for n in nominated if n) if not bound and all(nominated) else (),
        terminating=bound and preempt_at(pods[r] for r in range(gang) if r in pods) is not None,  # noticed: leaving
        checkpoint_interval=float(spec.checkpoint.interval_seconds)
        if spec.checkpoint is not None and spec.checkpoint.interval_seconds
        else None,
        last_checkpoint=last_checkpoint(body, *pods.values()),
        min_replicas=gang if gang < spec.replicas else None,
        leaving=absent,
        movable=movable(body),
    )


def gang_size(spec: resources.TrainingJobSpec) -> int:
    """Replicas placed together or not at all: ``minReplicas`` of an elastic job, else ``replicas``."""
    return min(spec.min_replicas, spec.replicas) if spec.min_replicas is not None else spec.replicas


@dataclass(frozen=True, slots=True)
class Built:
    """The snapshot of the store's bodies, and the pods behind its jobs."""

    snapshot: model.Snapshot
    pod_of_job: dict[model.JobKey, Pod]  # the pod of each gang of one
    pods_of_gang: dict[model.JobKey, dict[int, Pod]]  # each TrainingJob's and each pod group's pods by rank
    groups: dict[model.JobKey, Group] = field(default_factory=dict)  # the pod groups (in pods_of_gang too)
    refused: dict[model.JobKey, str] = field(default_factory=dict)  # pod groups that cannot be gangs: why
    incomplete: dict[model.JobKey, str] = field(default_factory=dict)  # pod groups still missing pods: how many


def build(
    nodes: Iterable[Node],
    quotas: Iterable[GPUQuota],
    pods: Iterable[Pod],
    settings: Settings,
    jobs: Iterable[TrainingJob] = (),
    owners: Mapping[tuple[str, str, str], Body] | None = None,
) -> Built:
    """The snapshot of the store's bodies; the pod behind each plain-pod job; each gang's pods by rank.

    ``owners`` holds the Jobs and PyTorchJobs by (kind, namespace, name): pods they
    own with ``schedulerName: leitstand`` are one gang per owner (``pod_group``).

    Every live pod bound to a node holds its resources there, whatever becomes of
    it: pods of other schedulers, and running pods of jobs that are not
    schedulable right now, count as used capacity; our pods being deleted
    (evicted, released) are terminating jobs, which reclaim counts on.
    """
    foreign: dict[str, tuple[int, int, int]] = {}
    core_jobs: list[model.Job] = []
    pod_of_job: dict[model.JobKey, Pod] = {}
    gang_pods: dict[str, dict[int, Pod]] = {}
    grouped: dict[model.JobKey, tuple[Group, list[Pod]]] = {}
    known_owners = owners or {}

    def hold_foreign(pod: Pod) -> None:
        node = pod_spec(pod).get("nodeName")
        if node and live(pod):
            held = foreign.get(node, (0, 0, 0))
            foreign[node] = tuple(a + b for a, b in zip(held, pod_requests(pod), strict=True))  # type: ignore[assignment]

    for pod in pods:
        meta = pod["metadata"]
        pod_labels = meta.get("labels") or {}
        owner = pod_labels.get(JOB_LABEL) if is_ours(pod) else None
        if owner and not meta.get("deletionTimestamp"):
            try:
                rank = int(pod_labels.get(REPLICA_LABEL, ""))
            except ValueError:
                hold_foreign(pod)
                continue
            gang_pods.setdefault(f"{meta['namespace']}/{owner}", {})[rank] = pod  # finished ones too
            continue
        if not live(pod):
            continue
        node = pod_spec(pod).get("nodeName")
        if not is_ours(pod):
            hold_foreign(pod)
            continue
        if meta.get("deletionTimestamp"):
            if node:  # evicted or released: holds its node until gone, and reclaim counts on it
                going = model.JobKey(f"{meta['namespace']}/terminating/{meta['name']}")
                core_jobs.append(dataclasses.replace(pod_job(pod), key=going, terminating=True, started=None))
            continue
        group = pod_group(pod, known_owners)
        if group is not None:
            grouped.setdefault(model.JobKey(f"{meta['namespace']}/{group.kind}/{group_name(pod, group)}"),
                               (group, []))[1].append(pod)  # fmt: skip
            continue
        job = pod_job(pod)
        core_jobs.append(job)
        pod_of_job[job.key] = pod
    pods_of_gang: dict[model.JobKey, dict[int, Pod]] = {}
    groups: dict[model.JobKey, Group] = {}
    refused: dict[model.JobKey, str] = {}
    incomplete: dict[model.JobKey, str] = {}
    for gang_key, (group, gathered) in grouped.items():
        if group.problem is not None:
            refused[gang_key] = group.problem
            groups[gang_key] = group
            pods_of_gang[gang_key] = dict(enumerate(sorted(gathered, key=_name)))
        if group.size is None:  # an owner not seen yet, or a gang without a size: wait, holding what is bound
            for pod in gathered:
                hold_foreign(pod)
            continue
        levels = {label: level for level, label in settings.topology}
        required = levels.get(group.topology_label or "")
        if group.topology_label and required is None:
            refused[gang_key] = (f"its PodGroup requires one domain of the node label {group.topology_label}, which "
                                 f"is none of the topology levels ({', '.join(settings.levels)})")  # fmt: skip
            groups[gang_key] = group
            pods_of_gang[gang_key] = dict(enumerate(sorted(gathered, key=_name)))
            for pod in gathered:
                hold_foreign(pod)
            continue
        gang, problem = group_job(gang_key, group.size, gathered, required)
        if problem is not None:
            refused[gang_key] = problem
        if gang is None:
            for pod in gathered:
                hold_foreign(pod)
            if problem is None:
                incomplete[gang_key] = f"{len(gathered)} of its {group.size} pods exist; it waits for all of them"
            groups[gang_key] = group
            pods_of_gang[gang_key] = dict(enumerate(sorted(gathered, key=_name)))
            continue
        core_jobs.append(gang)
        groups[gang_key] = group
        pods_of_gang[gang_key] = dict(enumerate(sorted(gathered, key=_name)))
    finished: dict[str, list[model.Finished]] = {}
    for body in jobs:
        done = finished_job(body)
        if done is not None:
            finished.setdefault(done.namespace, []).append(done)
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        members = gang_pods.pop(key, {})
        gang = training_job(body, members)
        if gang is not None:
            core_jobs.append(gang)
            pods_of_gang[gang.key] = members
        else:  # not schedulable now, but its running pods still hold their nodes
            for pod in members.values():
                hold_foreign(pod)
    for members in gang_pods.values():  # pods of a TrainingJob that is gone
        for pod in members.values():
            hold_foreign(pod)
    queues = [queue for queue in (to_queue(body) for body in quotas) if queue is not None]
    core_nodes = [to_node(body, foreign.get(body["metadata"]["name"], (0, 0, 0)), settings) for body in nodes]
    latest = tuple(  # per namespace, the latest that start estimates learn from
        done
        for namespace in sorted(finished)
        for done in sorted(finished[namespace], key=lambda d: -d.finished)[:FINISHED_PER_NAMESPACE]
    )
    snapshot = model.Snapshot(tuple(core_nodes), tuple(queues), tuple(core_jobs), latest)
    return Built(snapshot, pod_of_job, pods_of_gang, groups, refused, incomplete)


def _name(pod: Pod) -> str:
    return str(pod["metadata"]["name"])


def group_name(pod: Pod, group: Group) -> str:
    """The gang's name: its annotation's, else its owner's (a JobSet's, not its Job's)."""
    if group.kind == "gangs":
        return annotations(pod)[GANG_ANNOTATION]
    if group.owner is not None:
        return str(group.owner["metadata"]["name"])
    for reference in pod["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return str(reference["name"])
    return pod["metadata"]["name"]


FINISHED_PER_NAMESPACE = 50


def finished_job(body: TrainingJob) -> model.Finished | None:
    """A TrainingJob that ran and ended (succeeded, failed or ran to its limit): how long it ran, against
    which limit; None for any other."""
    current = status(body)
    started, ended = timestamp(current.get("startedAt")), timestamp(current.get("finishedAt"))
    if current.get("phase") not in TERMINAL or started is None or ended is None:
        return None
    try:
        limit = resources.duration_seconds(job_spec(body).runtime_limit)
    except pydantic.ValidationError:
        return None
    return model.Finished(body["metadata"]["namespace"], max(ended - started, 0.0), limit, ended)
