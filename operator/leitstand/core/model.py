"""The core's view of a cluster: immutable nodes, queues and jobs, and the decisions about them.

Everything here is a frozen, slotted dataclass; ids are NewTypes; GPU counts
are integers; times are seconds on whatever clock the caller uses (the core
never reads one: ``schedule`` is given ``now``). The kube layer and the
simulator build these; nothing in the core mutates them.
"""

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NewType

NodeName = NewType("NodeName", str)
JobKey = NewType("JobKey", str)  # "<namespace>/<name>" of a TrainingJob; "<namespace>/<kind>/<name>" of pods
# The kinds of the keys "<namespace>/<kind>/<name>": gangs of pods Leitstand did not create, by what groups them.
POD_GROUP_KINDS = {"jobs": "Job", "pytorchjobs": "PyTorchJob", "jobsets": "JobSet", "podgroups": "PodGroup",
                   "gangs": "Gang", "pods": "Pod"}  # fmt: skip
QueueName = NewType("QueueName", str)
GPUType = NewType("GPUType", str)  # short name such as "b200"

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs
TOPOLOGY_LEVELS = ("spine", "leaf", "node")  # the default levels, coarsest first (their labels: kube.bodies)


def labels(mapping: Mapping[str, str] | None) -> Labels:
    """A label mapping as the core's sorted, hashable form."""
    return tuple(sorted((mapping or {}).items()))


def matches(selector: Labels, node_labels: Labels) -> bool:
    """True when every (key, value) of ``selector`` is among ``node_labels``."""
    if not selector:
        return True
    have = dict(node_labels)
    return all(have.get(key) == value for key, value in selector)


Taint = tuple[str, str, str]  # (key, value, effect): only NoSchedule and NoExecute keep pods away
Toleration = tuple[str, str, str, str]  # (key, operator "Equal" or "Exists", value, effect or "" for any)


def tolerates(tolerations: tuple[Toleration, ...], taints: tuple[Taint, ...]) -> bool:
    """True when every taint is tolerated, by Kubernetes' rules (an empty key with Exists tolerates all)."""
    for key, value, effect in taints:
        if not any(
            (not t_effect or t_effect == effect)
            and (
                (operator == "Exists" and (not t_key or t_key == key))
                or (operator != "Exists" and t_key == key and t_value == value)
            )
            for t_key, operator, t_value, t_effect in tolerations
        ):
            return False
    return True


class Priority(enum.IntEnum):
    """Scheduling priority classes; a higher value is served first."""

    TRAIN = 0  # preemptible; may run over quota
    BUILD = 1  # not preemptible; only within guaranteed quota
    INFERENCE = 2  # not preemptible; only within guaranteed quota; served first

    @property
    def preemptible(self) -> bool:
        return self is Priority.TRAIN


@dataclass(frozen=True, slots=True)
class Node:
    """A node as the scheduler sees it.

    ``gpus``, ``cpu_millis`` and ``memory_bytes`` are what Leitstand's jobs may
    use: allocatable minus what pods of other schedulers hold. ``domains`` has
    one entry per topology level of the policy (coarsest first); an empty string
    means the node has no label for that level.
    """

    name: NodeName
    gpu_type: GPUType | None
    gpus: int
    cpu_millis: int
    memory_bytes: int
    domains: tuple[str, ...] = ()
    labels: Labels = ()
    ready: bool = True
    taints: tuple[Taint, ...] = ()  # NoSchedule and NoExecute taints; a job must tolerate every one


@dataclass(frozen=True, slots=True)
class Share:
    """A queue's quota for one GPU type."""

    guaranteed: int = 0
    limit: int | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Reservation:
    """Nodes matching ``node_selector`` run only the owner's jobs (and lent preemptible work)."""

    node_selector: Labels
    lend_idle: bool = False


@dataclass(frozen=True, slots=True)
class Queue:
    """A GPUQuota: its place in the tree, its namespaces and shares."""

    name: QueueName
    parent: QueueName | None = None
    namespaces: tuple[str, ...] = ()
    shares: Mapping[GPUType, Share] = field(default_factory=dict)
    reservation: Reservation | None = None
    min_runtime_seconds: float = 0.0
    default_runtime_limit: float | None = None  # seconds, for its jobs that set none (inherited down the tree)
    max_runtime_limit: float | None = None  # seconds; the smallest on a job's queue path binds it
    usage: float = 0.0  # decayed over-quota GPU-seconds (``fairshare.remember``): lowers its over-quota weight
    preemption_notice: float = 0.0  # seconds its jobs run on once told of a preemption (0: inherited, or none)
    max_preemption_grace: float | None = None  # seconds a preempted job below it may take to exit (the least binds)


@dataclass(frozen=True, slots=True)
class Job:
    """A gang: ``replicas`` identical pods placed together or not at all.

    ``placement`` holds one node name per replica that is bound (None for a
    replica still waiting); it is empty for a job that waits as a whole. A job
    whose replicas are all placed is running. ``started`` is when it started
    running (for reclaim protection); with ``checkpoint_interval`` and
    ``last_checkpoint`` it says what an eviction would lose (``work_at_risk``).
    """

    key: JobKey
    namespace: str
    replicas: int
    gpus_per_replica: int
    cpu_millis_per_replica: int = 0
    memory_bytes_per_replica: int = 0
    gpu_type: GPUType | None = None
    priority: Priority = Priority.TRAIN
    required_level: str | None = None
    preferred_level: str | None = None
    node_selector: Labels = ()
    tolerations: tuple[Toleration, ...] = ()
    submitted: float = 0.0
    placement: tuple[NodeName | None, ...] = ()
    started: float | None = None
    terminating: bool = False  # being deleted: holds its nodes until gone, never scheduled or evicted again
    nominated: tuple[NodeName, ...] = ()  # nodes an eviction freed for this job (one per replica), kept until it binds
    runtime_limit: float | None = None  # seconds it may run once started, as the job itself says; None: unbounded
    reserved: tuple[NodeName, ...] = ()  # nodes the last cycle reserved for it (one per replica); kept where it can
    reserved_start: float | None = None  # and from when
    checkpoint_interval: float | None = None  # seconds: the job saves its work about this often
    last_checkpoint: float | None = None  # when it last reported saving its work (on the caller's clock)
    min_replicas: int | None = None  # elastic: a gang of this many, growing to ``replicas`` into idle capacity
    movable: bool = False  # it says a restart elsewhere costs it nothing: consolidation may move it (``consolidation``)
    leaving: tuple[int, ...] = ()  # elastic: ranks above the gang not to place now (their pods stop, or are not there)
    grows: JobKey | None = None  # inside a cycle only: this is replica ``rank`` of elastic job ``grows``
    rank: int = 0

    @property
    def gpus(self) -> int:
        """GPUs of the whole gang (of an elastic job: at its maximum)."""
        return self.replicas * self.gpus_per_replica

    @property
    def elastic(self) -> bool:
        """Does the job grow above a smaller gang (``min_replicas``)?"""
        return self.min_replicas is not None and 0 < self.min_replicas < self.replicas

    @property
    def gang(self) -> int:
        """Replicas placed all together or not at all: ``min_replicas`` of an elastic job, else all of them."""
        return self.min_replicas if self.elastic and self.min_replicas is not None else self.replicas

    @property
    def running(self) -> bool:
        """Are all replicas of its gang placed? (An elastic job's replicas above its gang may wait.)"""
        placement = self.placement  # asked for every holder in a cycle: no generator
        if len(placement) != self.replicas:
            return False
        if self.min_replicas is not None:
            placement = placement[: self.gang]
        return None not in placement


CHECKPOINT_SLACK = 60.0  # seconds after a save due by a job's interval before its pods stop: its clock is not ours


def work_at_risk(job: Job, now: float) -> float:
    """GPU-seconds an eviction of ``job`` at ``now`` would throw away: its GPUs times the time since its last
    checkpoint (``saved_since``). A job that does not run risks nothing."""
    base = saved_since(job, now)
    if base is None:
        return 0.0
    return max(job.gpus, 1) * unsaved(now - base, job.checkpoint_interval)


def unsaved(ran: float, interval: float | None) -> float:
    """Of ``ran`` seconds since a save, those not saved yet when the job saves every ``interval`` (None: never);
    a remainder a rounding error short of a whole interval is a save just made, not a whole interval lost."""
    if not interval:
        return max(ran, 0.0)
    left = max(ran, 0.0) % interval
    return 0.0 if interval - left < 1e-6 * interval else left


def saved_since(job: Job, now: float) -> float | None:
    """What the job's saves count from: its last reported checkpoint when there is one since it started, else its
    start (with an interval, it saved every ``checkpoint_interval`` since then); None when it does not run."""
    if job.started is None:
        return None
    if job.last_checkpoint is not None and job.started <= job.last_checkpoint <= now:
        return job.last_checkpoint
    return min(job.started, now)


def stop_time(job: Job, now: float, notice: float) -> float:
    """When an eviction decided at ``now`` stops ``job``'s pods: at the end of its ``notice``, or
    ``CHECKPOINT_SLACK`` after its next save by its interval when that comes sooner."""
    if notice <= 0:
        return now
    base = saved_since(job, now)
    interval = job.checkpoint_interval
    if base is not None and interval:
        following = base + math.ceil((now - base) / interval) * interval + CHECKPOINT_SLACK
        if following <= now + notice:
            return following
    return now + notice


@dataclass(frozen=True, slots=True)
class Policy:
    """How to schedule: the topology levels and the knobs of fairness."""

    topology_levels: tuple[str, ...] = TOPOLOGY_LEVELS
    default_preferred_level: str | None = "leaf"
    starvation_seconds: float = 900.0  # a gang waiting this long gets a reservation (or, without backfill, a hold)
    preemption: bool = True
    backfill: bool = True  # reservations with backfill; False: a starving job holds its whole GPU type (round 1)
    reservations: int = 4  # at most this many waiting gangs hold reservations at once
    moves_per_cycle: int = 2  # consolidation plans per cycle (0: no consolidation)
    move_budget: float = 8 * 3600.0  # GPU-seconds of work the moves of one cycle may throw away
    move_checkpoint_age: float = 600.0  # a job that saved its work this recently may be moved
    move_settle_seconds: float = 1800.0  # a job is moved only once it has run this long (moved jobs settle)

    def level_index(self, name: str | None) -> int | None:
        """The index of topology level ``name`` (0 the coarsest); None for no level or an unknown one."""
        if name is None or name not in self.topology_levels:
            return None
        return self.topology_levels.index(name)


@dataclass(frozen=True, slots=True)
class Finished:
    """A job that ran to its end, not evicted: how long it ran and the limit it asked for (None: its queue's
    default). Start estimates learn from these how much of their limits a queue's jobs use."""

    namespace: str
    ran: float  # seconds
    runtime_limit: float | None
    finished: float  # when, on the caller's clock


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything ``schedule`` decides from; order of the tuples does not matter."""

    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    jobs: tuple[Job, ...]
    finished: tuple[Finished, ...] = ()  # recently finished jobs, for start estimates only


class Reason(enum.StrEnum):
    """Why a job is not running (or why it was evicted)."""

    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_CONFLICT = "QueueConflict"
    QUEUE_CYCLE = "QueueCycle"
    UNSCHEDULABLE = "Unschedulable"  # can never run on this cluster, even if it were empty
    OVER_LIMIT = "OverLimit"
    QUOTA_EXHAUSTED = "QuotaExhausted"
    NO_MATCHING_NODES = "NoMatchingNodes"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    TOPOLOGY_UNSATISFIABLE = "TopologyUnsatisfiable"
    WAITING_FOR_RECLAIM = "WaitingForReclaim"
    WAITING_FOR_OLDER_JOB = "WaitingForOlderJob"
    GANG_INCOMPLETE = "GangIncomplete"
    RUNTIME_LIMIT_TOO_LONG = "RuntimeLimitTooLong"  # asks for more than its queue's maxRuntimeLimit: never runs
    # eviction reasons
    RECLAIMED = "Reclaimed"
    PREEMPTED = "Preempted"
    RETURNED_LENT_CAPACITY = "ReturnedLentCapacity"
    MOVED = "Moved"  # consolidation: placed again elsewhere at once, so that a gang finds a whole domain


CAPACITY_REASONS = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE})  # would fit with more room


def order_key(job: Job) -> tuple[int, float, str]:
    """Within a queue: higher priority first, then earlier submission, then name."""
    return (-int(job.priority), job.submitted, job.key)


def runtime_limit(
    own: float | None, queue: QueueName | None, queues: Mapping[QueueName, Queue]
) -> tuple[float | None, str | None]:
    """A job's runtime limit in seconds (None: unbounded), and why the job may not run at all (or None).

    The job's own limit, else the nearest ``default_runtime_limit`` on its queue's
    path; never more than the smallest ``max_runtime_limit`` there. A job that asks
    for more than that maximum is refused, not cut short.
    """
    default: float | None = None
    ceiling: tuple[float, QueueName] | None = None
    seen: set[QueueName] = set()
    current = queue
    while current is not None and current in queues and current not in seen:
        seen.add(current)
        spec = queues[current]
        if default is None:
            default = spec.default_runtime_limit
        if spec.max_runtime_limit is not None and (ceiling is None or spec.max_runtime_limit < ceiling[0]):
            ceiling = (spec.max_runtime_limit, current)
        current = spec.parent
    if ceiling is not None and own is not None and own > ceiling[0]:
        return ceiling[0], (
            f"runtimeLimit {duration_text(own)} is above the maximum of {duration_text(ceiling[0])} "
            f"set by queue {ceiling[1]}; ask for at most that, or ask the queue's owner to raise maxRuntimeLimit"
        )
    limit = own if own is not None else default
    if ceiling is not None and (limit is None or limit > ceiling[0]):
        limit = ceiling[0]
    return limit, None


def preemption_notice(queue: QueueName | None, queues: Mapping[QueueName, Queue]) -> float:
    """Seconds a job of ``queue`` runs on after its preemption notice: the nearest non-zero
    ``preemption_notice`` on the queue's path; 0 when none sets one."""
    seen: set[QueueName] = set()
    while queue is not None and queue in queues and queue not in seen:
        seen.add(queue)
        if queues[queue].preemption_notice > 0:
            return queues[queue].preemption_notice
        queue = queues[queue].parent
    return 0.0


def preemption_grace(own: float, queue: QueueName | None, queues: Mapping[QueueName, Queue]) -> float:
    """A preempted job's grace period: its ``own``, at most the smallest ``max_preemption_grace`` on its queue's
    path."""
    seen: set[QueueName] = set()
    while queue is not None and queue in queues and queue not in seen:
        seen.add(queue)
        cap = queues[queue].max_preemption_grace
        if cap is not None:
            own = min(own, cap)
        queue = queues[queue].parent
    return own


def duration_text(seconds: float) -> str:
    """``72h``, ``1h30m``, ``90s``: seconds as a duration people write."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


def utc_text(seconds: float) -> str:
    """``2026-12-01 14:20 UTC``: seconds since the epoch, to the minute (arithmetic: the core imports no
    clock modules, ``datetime`` included)."""
    minutes = int(seconds // 60)
    days, minute_of_day = divmod(minutes, 24 * 60)
    era, day_of_era = divmod(days + 719_468, 146_097)  # civil date from days (proleptic Gregorian)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    hour, minute = divmod(minute_of_day, 60)
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d} UTC"


@dataclass(frozen=True, slots=True)
class Bind:
    """Place every waiting replica of ``job``: ``nodes[i]`` for replica ``i``; with ``ranks`` (elastic jobs),
    ``nodes[i]`` for the replica of rank ``ranks[i]``."""

    job: JobKey
    nodes: tuple[NodeName, ...]
    ranks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Eviction:
    """Stop ``job`` (all its pods; with ``ranks``, only the replicas of those ranks: an elastic job shrinks)
    so that ``beneficiary`` can run."""

    job: JobKey
    reason: Reason
    beneficiary: JobKey
    message: str
    ranks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Release:
    """Unbind a partly bound gang that cannot be completed, so it waits whole (with ``ranks``, only those
    replicas of an elastic job: they grew around a gang that no longer runs)."""

    job: JobKey
    message: str
    ranks: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    """When and where a waiting gang starts: ``nodes`` (one per replica) from ``start`` on, in ``domain``
    of its required level. As a reservation, jobs that end by ``start`` may use the nodes meanwhile
    (backfill); as an estimate, it is the forecast's. ``start`` is ``math.inf`` when ``blockers``, jobs
    without a runtime limit on those nodes, must end first."""

    start: float
    nodes: tuple[NodeName, ...] = ()
    domain: str | None = None
    blockers: tuple[JobKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why ``job`` waits: a reason code, a message with numbers, its queue and place."""

    job: JobKey
    reason: Reason
    message: str
    queue: QueueName | None
    position: int | None


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A queue's numbers for one GPU type, for status, API and metrics.

    ``allocated``: GPUs its jobs hold now (bound, including jobs still
    terminating) plus this cycle's binds; ``reclaiming``: GPUs being freed for
    its nominated jobs (victims still terminating); ``pending``: GPUs of its other
    waiting jobs. A job counts in one of them only; a queue (or a parent) whose own
    job was evicted for its own nominee counts the victim in ``allocated`` and the
    nominee in ``reclaiming`` until the victim is gone.
    """

    guaranteed: int
    limit: int | None
    fair_share: int
    allocated: int
    pending: int
    reclaiming: int = 0


@dataclass(frozen=True, slots=True)
class Decisions:
    """The outcome of one cycle; every tuple sorted by job key.

    ``nominations`` is the whole set after this cycle: the caller stores it with
    the jobs (the next snapshot's ``Job.nominated``) and drops any it had before
    that is not listed.
    """

    binds: tuple[Bind, ...]
    evictions: tuple[Eviction, ...]
    releases: tuple[Release, ...]
    pending: tuple[Explanation, ...]
    queues: Mapping[QueueName, Mapping[GPUType, QueueStatus]]
    job_queues: Mapping[JobKey, QueueName]
    nominations: Mapping[JobKey, tuple[NodeName, ...]] = field(default_factory=dict)  # every waiting job's, kept or new
    queue_problems: Mapping[QueueName, str] = field(default_factory=dict)  # e.g. a parent cycle, for GPUQuota status
    namespace_conflicts: Mapping[QueueName, str] = field(default_factory=dict)  # leaves claiming a namespace together
    reserved: Mapping[JobKey, Planned] = field(default_factory=dict)  # waiting gangs' reservations, kept or new
    backfilled: tuple[JobKey, ...] = ()  # binds of jobs that started behind a reserved gang, around its reservation
    estimates: Mapping[JobKey, Planned] = field(default_factory=dict)  # when asked for (``schedule(estimate=...)``)


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """What one scheduling cycle saw and decided; the operator keeps the latest for the status API."""

    snapshot: Snapshot
    decisions: Decisions
    policy: Policy
    now: float


def reservation_owners(snapshot: Snapshot) -> dict[NodeName, QueueName]:
    """Each reserved node's owner: the first queue, by name, whose reservation selects the node."""
    reserving = sorted((q for q in snapshot.queues if q.reservation is not None), key=lambda q: q.name)
    owners: dict[NodeName, QueueName] = {}
    for node in snapshot.nodes:
        for queue in reserving:
            if queue.reservation is not None and matches(queue.reservation.node_selector, node.labels):
                owners[node.name] = queue.name
                break
    return owners


def with_reserved(snapshot: Snapshot, reserved: Mapping[JobKey, Planned]) -> Snapshot:
    """``snapshot`` with the last cycle's reservations on their waiting jobs (``Job.reserved``), as the caller
    carries them from one cycle to the next (the core keeps nothing between cycles)."""
    if not reserved and not any(job.reserved for job in snapshot.jobs):
        return snapshot
    jobs = []
    for job in snapshot.jobs:
        kept = reserved.get(job.key)
        nodes, start = (kept.nodes, kept.start) if kept is not None and not job.placement else ((), None)
        same = job.reserved == nodes and job.reserved_start == start
        jobs.append(job if same else replace(job, reserved=nodes, reserved_start=start))
    return replace(snapshot, jobs=tuple(jobs))


def held_after(snapshot: Snapshot, decisions: Decisions) -> list[tuple[Job, NodeName]]:
    """Every replica held once ``decisions`` are carried out, as (job, node): what evicted and released
    jobs do not keep, plus the binds."""
    gone: dict[JobKey, set[int] | None] = {}  # the ranks that go (None: all)
    stops: list[Eviction | Release] = [*decisions.evictions, *decisions.releases]
    for stop in stops:
        ranks = gone.setdefault(stop.job, set())
        if ranks is not None:
            if stop.ranks:
                ranks.update(stop.ranks)
            else:
                gone[stop.job] = None
    binds = {b.job: b.nodes for b in decisions.binds}
    held = []
    for job in snapshot.jobs:
        stopped = gone.get(job.key, set())
        if stopped is None:
            continue
        held += [(job, node) for rank, node in enumerate(job.placement) if node is not None and rank not in stopped]
        held += [(job, node) for node in binds.get(job.key, ())]
    return held
