"""The read-only views of the status API, computed from the last cycle and the watched jobs.

Pure functions from core objects and raw TrainingJob bodies to pydantic
response models; the routes in ``server`` decide who may see which.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from leitstand.core import model


class GPUNumbers(pydantic.BaseModel):
    guaranteed: int
    limit: int | None
    fair_share: int = pydantic.Field(serialization_alias="fairShare")
    allocated: int
    reclaiming: int
    pending: int


class QueueView(pydantic.BaseModel):
    name: str
    parent: str | None
    namespaces: list[str]
    gpus: dict[str, GPUNumbers]
    usage_gpu_seconds: float = pydantic.Field(default=0.0, serialization_alias="overQuotaUsageGPUSeconds")


class JobView(pydantic.BaseModel):
    namespace: str
    name: str
    kind: str = "TrainingJob"  # or Job, PyTorchJob, Gang, Pod: a gang of pods Leitstand did not create
    queue: str | None
    gpus: int | None
    phase: str | None
    reason: str | None
    message: str | None
    position: int | None
    estimated_start_time: str | None = pydantic.Field(default=None, serialization_alias="estimatedStartTime")
    created: str | None
    placement: dict[str, Any] | None = None
    conditions: list[dict[str, Any]] | None = None


class DomainView(pydantic.BaseModel):
    name: str
    nodes: int
    gpus: int
    allocated: int
    free: int
    whole_free_nodes: int = pydantic.Field(serialization_alias="wholeFreeNodes")


class NodeView(pydantic.BaseModel):
    name: str
    domain: str
    gpu_type: str | None = pydantic.Field(serialization_alias="gpuType")
    gpus: int
    allocated: int
    queues: list[str]
    ready: bool


class ClusterView(pydantic.BaseModel):
    gpu_types: dict[str, dict[str, int]] = pydantic.Field(serialization_alias="gpuTypes")
    leaf_level: str | None = pydantic.Field(serialization_alias="leafLevel")
    domains: list[DomainView]
    nodes: list[NodeView]


def queues(latest: model.CycleRecord) -> list[QueueView]:
    return [
        QueueView(
            name=queue.name,
            parent=queue.parent,
            namespaces=list(queue.namespaces),
            gpus={
                t: GPUNumbers(
                    guaranteed=s.guaranteed,
                    limit=s.limit,
                    fair_share=s.fair_share,
                    allocated=s.allocated,
                    reclaiming=s.reclaiming,
                    pending=s.pending,
                )
                for t, s in latest.decisions.queues.get(queue.name, {}).items()
            },
            usage_gpu_seconds=round(queue.usage),
        )
        for queue in sorted(latest.snapshot.queues, key=lambda q: q.name)
    ]


def job(body: Mapping[str, Any], *, detail: bool = False) -> JobView:
    meta, status = body["metadata"], body.get("status") or {}
    return JobView(
        namespace=meta["namespace"],
        name=meta["name"],
        queue=status.get("queue"),
        gpus=status.get("gpus"),
        phase=status.get("phase"),
        reason=status.get("reason"),
        message=status.get("message"),
        position=status.get("queuePosition"),
        estimated_start_time=status.get("estimatedStartTime"),
        created=meta.get("creationTimestamp"),
        placement=status.get("placement") if detail else None,
        conditions=status.get("conditions") if detail else None,
    )


# The kinds of the core's keys of pods Leitstand did not create (namespace/<kind>/name).


def pod_groups(latest: model.CycleRecord | None) -> list[JobView]:
    """The gangs of pods Leitstand did not create, as the last cycle saw them: Queued with why, or Running."""
    if latest is None:
        return []
    pending = {e.job: e for e in latest.decisions.pending}
    bound = {b.job for b in latest.decisions.binds}
    result = []
    for entry in latest.snapshot.jobs:
        namespace, kind, name = [*str(entry.key).split("/", 2), "", ""][:3]
        if kind not in model.POD_GROUP_KINDS or entry.terminating:
            continue
        why = pending.get(entry.key)
        running = bool(entry.placement) or entry.key in bound
        result.append(JobView(
            namespace=namespace, name=name, kind=model.POD_GROUP_KINDS[kind],
            queue=latest.decisions.job_queues.get(entry.key),
            gpus=entry.replicas * entry.gpus_per_replica, phase="Running" if running else "Queued",
            reason=why.reason.value if why is not None and not running else None,
            message=why.message if why is not None and not running else None,
            position=why.position if why is not None and not running else None, estimated_start_time=None,
            created=None,
        ))  # fmt: skip
    return result


def jobs(
    bodies: Iterable[Mapping[str, Any]],
    *,
    namespace: str | None,
    queue: str | None,
    phase: str | None,
    groups: Iterable[JobView] = (),
) -> list[JobView]:
    """TrainingJobs (from their bodies) and pod groups (``pod_groups``), filtered."""
    result = []
    for view in [*(job(body) for body in bodies), *groups]:
        if (
            (namespace and view.namespace != namespace)
            or (queue and view.queue != queue)
            or (phase and view.phase != phase)
        ):
            continue
        result.append(view)
    return sorted(result, key=lambda v: (v.namespace, v.name, v.kind))


def cluster(latest: model.CycleRecord) -> ClusterView:
    """Capacity per GPU type and, per leaf group (the second-finest level), its nodes and their use."""
    snapshot, decisions = latest.snapshot, latest.decisions
    levels = latest.policy.topology_levels
    level = len(levels) - 2 if len(levels) >= 2 else None
    used: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    for entry, placed in model.held_after(snapshot, decisions):
        used[placed] = used.get(placed, 0) + entry.gpus_per_replica
        queue = decisions.job_queues.get(entry.key)
        if queue is not None and entry.gpus_per_replica:
            users.setdefault(placed, set()).add(queue)
    types: dict[str, dict[str, int]] = {}
    domains: dict[str, DomainView] = {}
    nodes = []
    for node in sorted(snapshot.nodes, key=lambda n: n.name):
        held = min(used.get(node.name, 0), node.gpus)
        domain = node.domains[level] if level is not None and level < len(node.domains) else ""
        nodes.append(NodeView(name=node.name, domain=domain, gpu_type=node.gpu_type, gpus=node.gpus, allocated=held,
                              queues=sorted(users.get(node.name, set())), ready=node.ready))  # fmt: skip
        if node.gpu_type is not None and node.ready:
            numbers = types.setdefault(node.gpu_type, {"capacity": 0, "allocated": 0, "free": 0, "wholeFreeNodes": 0})
            numbers["capacity"] += node.gpus
            numbers["allocated"] += held
            numbers["free"] += node.gpus - held
            numbers["wholeFreeNodes"] += held == 0
        view = domains.setdefault(
            domain, DomainView(name=domain, nodes=0, gpus=0, allocated=0, free=0, whole_free_nodes=0)
        )
        view.nodes += 1
        view.gpus += node.gpus
        view.allocated += held
        view.free += node.gpus - held
        view.whole_free_nodes += held == 0
    return ClusterView(
        gpu_types=types,
        leaf_level=levels[level] if level is not None else None,
        domains=[domains[name] for name in sorted(domains)],
        nodes=nodes,
    )
