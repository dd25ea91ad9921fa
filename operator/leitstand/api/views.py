"""The read-only views of the status API, computed from the last cycle and the watched jobs.

Pure functions from core objects and raw TrainingJob bodies to pydantic
response models; the routes in ``server`` decide who may see which.
"""

import colorsys
import zlib
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
    leaf: bool = True  # no queue names it as parent: only leaves hold workloads
    colour: str | None = None  # a leaf's colour on the map (``colours``); None for a parent


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
    spine: str = ""  # the spine group of its nodes ("" when they have no spine label)
    gpu_types: list[str] = pydantic.Field(default_factory=list, serialization_alias="gpuTypes")


class NodeJobView(pydantic.BaseModel):
    """The replicas of one job on one node (who may see the cluster sees them: ``/api/v1/snapshot`` names them too)."""

    namespace: str
    name: str
    kind: str
    queue: str | None
    gpus: int
    replicas: int


class NodeView(pydantic.BaseModel):
    name: str
    domain: str
    gpu_type: str | None = pydantic.Field(serialization_alias="gpuType")
    gpus: int
    allocated: int
    queues: list[str]
    ready: bool
    spine: str = ""
    jobs: list[NodeJobView] = pydantic.Field(default_factory=list)  # most GPUs first


class SpineView(pydantic.BaseModel):
    """A spine group (the level above the leaf groups): its leaf groups and their sums."""

    name: str
    leaves: list[str]
    nodes: int
    gpus: int
    allocated: int
    free: int
    whole_free_nodes: int = pydantic.Field(serialization_alias="wholeFreeNodes")
    not_ready: int = pydantic.Field(serialization_alias="notReady")
    gpu_types: list[str] = pydantic.Field(serialization_alias="gpuTypes")


class ClusterView(pydantic.BaseModel):
    gpu_types: dict[str, dict[str, int]] = pydantic.Field(serialization_alias="gpuTypes")
    leaf_level: str | None = pydantic.Field(serialization_alias="leafLevel")
    domains: list[DomainView]
    nodes: list[NodeView]
    spine_level: str | None = pydantic.Field(default=None, serialization_alias="spineLevel")
    spines: list[SpineView] = pydantic.Field(default_factory=list)


# Paul Tol's "muted" qualitative scheme: nine colours that people with the common forms of colour blindness
# still tell apart, and that stay readable on white.
PALETTE = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499")


def colours(names: Iterable[str]) -> dict[str, str]:
    """A distinct colour per name: ``PALETTE``'s slot a hash of the name prefers, or (taken, in sorted name
    order) the next free slot; once the palette is used up, further colours made by the golden angle.

    Deterministic: the same names get the same colours, and a name keeps its colour as long as no name
    sorted before it comes to want the same slot.
    """
    result: dict[str, str] = {}
    taken: set[str] = set()
    extra = 0
    for name in sorted(set(names)):
        if len(taken) < len(PALETTE):
            slot = zlib.crc32(name.encode()) % len(PALETTE)
            while PALETTE[slot] in taken:
                slot = (slot + 1) % len(PALETTE)
            colour = PALETTE[slot]
        else:
            colour = _generated(extra)
            while colour in taken:
                extra += 1
                colour = _generated(extra)
            extra += 1
        taken.add(colour)
        result[name] = colour
    return result


def _generated(index: int) -> str:
    """The ``index``-th colour beyond the palette: hues a golden angle apart, at three lightnesses."""
    hue = (index * 137.508 + 20.0) % 360.0 / 360.0
    lightness = (0.38, 0.52, 0.66)[index % 3]
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.55)
    return f"#{round(red * 255):02X}{round(green * 255):02X}{round(blue * 255):02X}"


def queues(latest: model.CycleRecord) -> list[QueueView]:
    """Every queue by name, with its numbers per GPU type; leaves with their colour on the map."""
    parents = {queue.parent for queue in latest.snapshot.queues}
    leaves = colours(queue.name for queue in latest.snapshot.queues if queue.name not in parents)
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
            leaf=queue.name in leaves,
            colour=leaves.get(queue.name),
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


def pod_groups(latest: model.CycleRecord | None, estimates: Mapping[model.JobKey, str] | None = None) -> list[JobView]:
    """The gangs of pods Leitstand did not create, as the last cycle saw them: Queued with why and when they
    are expected to start (``estimates``, as their pods' annotation shows it), or Running."""
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
            position=why.position if why is not None and not running else None,
            estimated_start_time=(estimates or {}).get(entry.key) if not running else None,
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


def _named(key: model.JobKey) -> tuple[str, str, str]:
    """(namespace, kind, name) of a core job key: a TrainingJob's ``ns/name``, a pod group's ``ns/kind/name``."""
    parts = str(key).split("#", 1)[0].split("/", 2)  # an elastic job's growth replica (``key#rank``) is its job's
    if len(parts) == 3 and parts[1] in model.POD_GROUP_KINDS:
        return parts[0], model.POD_GROUP_KINDS[parts[1]], parts[2]
    if len(parts) == 3 and parts[1] == "terminating":  # a pod on its way out, whatever it belonged to
        return parts[0], "Pod (stopping)", parts[2]
    return parts[0], "TrainingJob", parts[-1]


def cluster(latest: model.CycleRecord) -> ClusterView:
    """Capacity per GPU type; spine groups (the third-finest level) and leaf groups (the second-finest) with
    their sums; every node with its use and the jobs on it once the last cycle's decisions are carried out."""
    snapshot, decisions = latest.snapshot, latest.decisions
    levels = latest.policy.topology_levels
    level = len(levels) - 2 if len(levels) >= 2 else None
    spine_level = len(levels) - 3 if len(levels) >= 3 else None
    used: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    replicas: dict[str, dict[model.JobKey, list[model.Job]]] = {}  # node -> job -> its replicas there
    for entry, placed in model.held_after(snapshot, decisions):
        used[placed] = used.get(placed, 0) + entry.gpus_per_replica
        queue = decisions.job_queues.get(entry.key)
        if queue is not None and entry.gpus_per_replica:
            users.setdefault(placed, set()).add(queue)
        whole = model.JobKey(str(entry.key).split("#", 1)[0])  # growth replicas count with their job
        replicas.setdefault(placed, {}).setdefault(whole, []).append(entry)
    types: dict[str, dict[str, int]] = {}
    domains: dict[str, DomainView] = {}
    spines: dict[str, SpineView] = {}
    nodes = []
    for node in sorted(snapshot.nodes, key=lambda n: n.name):
        held = min(used.get(node.name, 0), node.gpus)
        domain = node.domains[level] if level is not None and level < len(node.domains) else ""
        spine = node.domains[spine_level] if spine_level is not None and spine_level < len(node.domains) else ""
        on_node = sorted(
            (
                _on_node(key, entries, decisions.job_queues.get(key))
                for key, entries in replicas.get(node.name, {}).items()
            ),
            key=lambda j: (-j.gpus, j.namespace, j.name, j.kind),
        )
        nodes.append(NodeView(name=node.name, domain=domain, gpu_type=node.gpu_type, gpus=node.gpus, allocated=held,
                              queues=sorted(users.get(node.name, set())), ready=node.ready, spine=spine,
                              jobs=on_node))  # fmt: skip
        if node.gpu_type is not None and node.ready:
            numbers = types.setdefault(node.gpu_type, {"capacity": 0, "allocated": 0, "free": 0, "wholeFreeNodes": 0})
            numbers["capacity"] += node.gpus
            numbers["allocated"] += held
            numbers["free"] += node.gpus - held
            numbers["wholeFreeNodes"] += held == 0
        leaf = domains.setdefault(
            domain, DomainView(name=domain, nodes=0, gpus=0, allocated=0, free=0, whole_free_nodes=0, spine=spine)
        )
        group = spines.setdefault(spine, SpineView(name=spine, leaves=[], nodes=0, gpus=0, allocated=0, free=0,
                                                   whole_free_nodes=0, not_ready=0, gpu_types=[]))  # fmt: skip
        for summed in (leaf, group):
            summed.nodes += 1
            summed.gpus += node.gpus
            summed.allocated += held
            summed.free += node.gpus - held
            summed.whole_free_nodes += held == 0
            if node.gpu_type is not None and node.gpu_type not in summed.gpu_types:
                summed.gpu_types = sorted([*summed.gpu_types, node.gpu_type])
        group.not_ready += not node.ready
        if domain not in group.leaves:
            group.leaves = sorted([*group.leaves, domain])
    return ClusterView(
        gpu_types=types,
        leaf_level=levels[level] if level is not None else None,
        domains=[domains[name] for name in sorted(domains)],
        nodes=nodes,
        spine_level=levels[spine_level] if spine_level is not None else None,
        spines=[spines[name] for name in sorted(spines)],
    )


def _on_node(key: model.JobKey, entries: list[model.Job], queue: str | None) -> NodeJobView:
    namespace, kind, name = _named(key)
    gpus = sum(entry.gpus_per_replica for entry in entries)
    return NodeJobView(namespace=namespace, name=name, kind=kind, queue=queue, gpus=gpus, replicas=len(entries))
