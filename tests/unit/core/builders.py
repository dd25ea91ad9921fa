"""Fluent builders for core scenarios: ``a_node("n1").in_leaf("su-1")``, ``a_job("ns/j").of(2, 8)``."""

from dataclasses import dataclass, field, replace
from typing import Self

from leitstand.core.model import (
    Decisions,
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Priority,
    Queue,
    QueueName,
    Reservation,
    Share,
    Snapshot,
    labels,
)

GIB = 1024**3


@dataclass
class NodeBuilder:
    name: str
    gpus: int = 8
    gpu_type: str | None = "b200"
    cpu_millis: int = 224_000
    memory_bytes: int = 2048 * GIB
    spine: str = "spine-1"
    leaf: str = "su-1"
    extra: dict[str, str] = field(default_factory=dict)
    ready: bool = True
    taints: tuple[tuple[str, str, str], ...] = ()

    def tainted(self, key: str, value: str = "", effect: str = "NoSchedule") -> Self:
        self.taints = (*self.taints, (key, value, effect))
        return self

    def with_gpus(self, gpus: int, gpu_type: str | None = "b200") -> Self:
        self.gpus, self.gpu_type = gpus, gpu_type
        return self

    def in_leaf(self, leaf: str, spine: str = "spine-1") -> Self:
        self.leaf, self.spine = leaf, spine
        return self

    def labelled(self, **pairs: str) -> Self:
        self.extra.update({k.replace("__", "/").replace("_", "-"): v for k, v in pairs.items()})
        return self

    def with_cpu(self, millis: int) -> Self:
        self.cpu_millis = millis
        return self

    def not_ready(self) -> Self:
        self.ready = False
        return self

    def build(self) -> Node:
        return Node(
            name=NodeName(self.name),
            gpu_type=GPUType(self.gpu_type) if self.gpu_type else None,
            gpus=self.gpus,
            cpu_millis=self.cpu_millis,
            memory_bytes=self.memory_bytes,
            domains=(self.spine, self.leaf, self.name),
            labels=labels({"pool": "shared", **self.extra}),
            ready=self.ready,
            taints=self.taints,
        )


def a_node(name: str) -> NodeBuilder:
    return NodeBuilder(name)


def nodes_in_leaf(
    leaf: str, count: int, *, prefix: str | None = None, spine: str = "spine-1", **extra: str
) -> list[Node]:
    stem = prefix or leaf
    return [a_node(f"{stem}-n{i + 1}").in_leaf(leaf, spine).labelled(**extra).build() for i in range(count)]


@dataclass
class QueueBuilder:
    name: str
    parent: str | None = None
    namespaces: tuple[str, ...] = ()
    shares: dict[GPUType, Share] = field(default_factory=dict)
    reservation: Reservation | None = None
    min_runtime: float = 0.0
    usage: float = 0.0
    notice: float = 0.0

    def noticing(self, seconds: float) -> Self:
        """Jobs run on this long after their preemption notice."""
        self.notice = seconds
        return self

    def having_used(self, gpu_seconds: float) -> Self:
        """Decayed over-quota usage, as ``fairshare.remember`` keeps it."""
        self.usage = gpu_seconds
        return self

    def under(self, parent: str) -> Self:
        self.parent = parent
        return self

    def for_namespaces(self, *namespaces: str) -> Self:
        self.namespaces = namespaces
        return self

    def with_share(
        self, guaranteed: int = 0, *, limit: int | None = None, weight: int = 1, gpu_type: str = "b200"
    ) -> Self:
        self.shares[GPUType(gpu_type)] = Share(guaranteed, limit, weight)
        return self

    def reserving(self, *, lend: bool = False, **selector: str) -> Self:
        self.reservation = Reservation(labels(selector), lend)
        return self

    def protecting_jobs_for(self, seconds: float) -> Self:
        self.min_runtime = seconds
        return self

    def build(self) -> Queue:
        return Queue(
            QueueName(self.name),
            QueueName(self.parent) if self.parent else None,
            self.namespaces,
            dict(self.shares),
            self.reservation,
            self.min_runtime,
            usage=self.usage,
            preemption_notice=self.notice,
        )


def a_queue(name: str) -> QueueBuilder:
    """A leaf queue owning the namespace of the same name, under ``root`` by default."""
    return QueueBuilder(name, parent="root", namespaces=(name,))


def a_root(guaranteed: int = 0) -> QueueBuilder:
    return QueueBuilder("root").with_share(guaranteed)


@dataclass
class JobBuilder:
    key: str
    replicas: int = 1
    gpus_per_replica: int = 8
    gpu_type: str | None = "b200"
    priority: Priority = Priority.TRAIN
    required: str | None = None
    preferred: str | None = None
    submitted: float = 0.0
    placement: tuple[str | None, ...] = ()
    started: float | None = None
    cpu_millis: int = 0
    selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[tuple[str, str, str, str], ...] = ()
    runtime_limit: float | None = None
    checkpoint_interval: float | None = None
    last_checkpoint: float | None = None
    min_replicas: int | None = None

    def elastic(self, least: int) -> Self:
        """An elastic job: a gang of ``least`` replicas that grows to ``replicas``."""
        self.min_replicas = least
        return self

    def checkpointing(self, *, every: float | None = None, last: float | None = None) -> Self:
        self.checkpoint_interval, self.last_checkpoint = every, last
        return self

    def limited(self, seconds: float) -> Self:
        self.runtime_limit = seconds
        return self

    def tolerating(self, key: str, value: str = "", effect: str = "", *, exists: bool = False) -> Self:
        self.tolerations = (*self.tolerations, (key, "Exists" if exists else "Equal", value, effect))
        return self

    def of(self, replicas: int, gpus: int, gpu_type: str | None = "b200") -> Self:
        self.replicas, self.gpus_per_replica, self.gpu_type = replicas, gpus, gpu_type
        return self

    def with_priority(self, priority: Priority) -> Self:
        self.priority = priority
        return self

    def requiring(self, level: str) -> Self:
        self.required = level
        return self

    def preferring(self, level: str) -> Self:
        self.preferred = level
        return self

    def submitted_at(self, seconds: float) -> Self:
        self.submitted = seconds
        return self

    def with_cpu(self, millis: int) -> Self:
        self.cpu_millis = millis
        return self

    def selecting(self, **selector: str) -> Self:
        self.selector.update(selector)
        return self

    def running_on(self, *nodes: str | None, since: float = 0.0) -> Self:
        self.placement, self.started = nodes, since
        return self

    def build(self) -> Job:
        return Job(
            key=JobKey(self.key),
            namespace=self.key.split("/", 1)[0],
            replicas=self.replicas,
            gpus_per_replica=self.gpus_per_replica,
            cpu_millis_per_replica=self.cpu_millis,
            gpu_type=GPUType(self.gpu_type) if self.gpu_type else None,
            priority=self.priority,
            required_level=self.required,
            preferred_level=self.preferred,
            node_selector=labels(self.selector),
            tolerations=self.tolerations,
            submitted=self.submitted,
            placement=tuple(NodeName(n) if n else None for n in self.placement),
            started=self.started,
            runtime_limit=self.runtime_limit,
            checkpoint_interval=self.checkpoint_interval,
            last_checkpoint=self.last_checkpoint,
            min_replicas=self.min_replicas,
        )


def a_job(key: str) -> JobBuilder:
    return JobBuilder(key)


def snapshot(nodes: list[Node], queues: list[Queue | QueueBuilder], jobs: list[Job | JobBuilder]) -> Snapshot:
    return Snapshot(
        tuple(nodes),
        tuple(q.build() if isinstance(q, QueueBuilder) else q for q in queues),
        tuple(j.build() if isinstance(j, JobBuilder) else j for j in jobs),
    )


def bound(decisions: Decisions) -> dict[str, tuple[str, ...]]:
    return {bind.job: bind.nodes for bind in decisions.binds}


def reasons(decisions: Decisions) -> dict[str, str]:
    return {e.job: e.reason.value for e in decisions.pending}


def messages(decisions: Decisions) -> dict[str, str]:
    return {e.job: e.message for e in decisions.pending}


def evicted(decisions: Decisions) -> dict[str, str]:
    return {e.job: e.reason.value for e in decisions.evictions}


def apply(snap: Snapshot, decisions: Decisions, *, now: float) -> Snapshot:
    """The next snapshot: binds start running, evicted and released jobs wait again (their pods gone at
    once; replicas an elastic job shrinks by are gone too), waiting jobs keep their reservations and
    nominations, as the operator stores them."""
    by_job = {b.job: b for b in decisions.binds}
    stops = [*decisions.evictions, *decisions.releases]
    gone = {stop.job for stop in stops if not stop.ranks}
    shrunk = {stop.job: set(stop.ranks) for stop in stops if stop.ranks}
    jobs = []
    for job in snap.jobs:
        if job.key in shrunk:
            placement = tuple(None if rank in shrunk[job.key] else node for rank, node in enumerate(job.placement))
            job = replace(job, placement=placement)
        if job.key in gone:
            jobs.append(replace(job, placement=(), started=None, nominated=()))
        elif job.key in by_job and by_job[job.key].ranks:
            bind = by_job[job.key]
            placement = list(job.placement or (None,) * job.replicas)
            for rank, node in zip(bind.ranks, bind.nodes, strict=True):
                placement[rank] = node
            started = job.started if job.running else now
            jobs.append(replace(job, placement=tuple(placement), started=started, nominated=()))
        elif job.key in by_job:
            waiting = iter(by_job[job.key].nodes)
            if job.placement:
                placement = tuple(node if node is not None else next(waiting) for node in job.placement)
                placement += tuple(waiting)
            else:
                placement = by_job[job.key].nodes
            jobs.append(replace(job, placement=placement, started=now, nominated=()))
        else:
            reserved = decisions.reserved.get(job.key)
            nodes, start = (reserved.nodes, reserved.start) if reserved is not None else ((), None)
            nominated = decisions.nominations.get(job.key, ())
            jobs.append(replace(job, reserved=nodes, reserved_start=start, nominated=nominated))
    return replace(snap, jobs=tuple(jobs))
