"""What the actions of one cycle decide: binds, evictions, releases, nominations, and why jobs wait.

Each action (``actions.nominate``, ``actions.repair``, ``actions.allocate``,
``preemption.reclaim``) reads what the actions before it decided and returns
what it decided itself, as a ``Decided``; ``schedule`` adds them up, and
``explain`` turns the sum into ``Decisions``. Pure.
"""

from dataclasses import dataclass, field

from leitstand.core.model import Bind, Eviction, GPUType, Job, JobKey, NodeName, Planned, QueueName, Reason, Release


@dataclass(slots=True)
class Waiting:
    """A job that waits, with what the cycle found out about it."""

    job: Job
    queue: QueueName | None
    gpu_type: GPUType | None
    reason: Reason = Reason.INSUFFICIENT_CAPACITY
    message: str = ""
    tried: bool = False
    ranked: bool = True  # False: it can never run here, so it takes no place in its queue


@dataclass(slots=True)
class Decided:
    """Decisions of one action (or, added up, of a whole cycle so far)."""

    binds: list[Bind] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    waiting: dict[JobKey, Waiting] = field(default_factory=dict)
    nominations: dict[JobKey, tuple[NodeName, ...]] = field(default_factory=dict)
    job_type: dict[JobKey, GPUType] = field(default_factory=dict)  # the GPU type each placed job holds
    settled: set[JobKey] = field(default_factory=set)  # bound before the queues are served
    spoken_for: set[JobKey] = field(default_factory=set)  # terminating jobs whose capacity a nominee waits for
    freed: set[NodeName] = field(default_factory=set)  # nodes of jobs evicted
    reserved: dict[JobKey, Planned] = field(default_factory=dict)  # waiting gangs' reservations
    backfilled: set[JobKey] = field(default_factory=set)  # bound behind a reserved gang

    def add(self, later: "Decided") -> None:
        """Adds what a later action decided; its word on a job's waiting and type wins."""
        self.binds.extend(later.binds)
        self.evictions.extend(later.evictions)
        self.releases.extend(later.releases)
        self.waiting.update(later.waiting)
        self.nominations.update(later.nominations)
        self.job_type.update(later.job_type)
        self.settled |= later.settled
        self.spoken_for |= later.spoken_for
        self.freed |= later.freed
        self.reserved.update(later.reserved)
        self.backfilled |= later.backfilled
