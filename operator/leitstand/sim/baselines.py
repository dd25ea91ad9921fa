"""The schedulers the simulator compares: Leitstand's core, and three classic baselines.

- ``Leitstand``: ``leitstand.core.scheduling.schedule``, the code the operator runs;
- ``KubeSchedulerLike``: every pod on its own, first come first served, on the
  node with the most free resources (the default scoring, ``LeastAllocated``,
  with GPUs among the scored resources); no gangs, no quotas, no preemption. A
  gang's pods that found a node hold it while the rest wait;
- ``FifoGang``: whole gangs strictly in order of submission, first fit; when the
  head does not fit, everything behind it waits (no backfill);
- ``BestFit``: whole gangs in order of submission, each pod on the node that
  leaves the fewest GPUs free; a gang that does not fit is skipped (backfill).

The baselines see the same nodes and jobs as Leitstand and honour the same
constraints (GPU type, GPU count, CPU and memory per pod, node readiness).
They see an elastic job as a rigid gang of all its replicas; Leitstand grows
and shrinks it, rank by rank, as its decisions say.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from leitstand.core.model import Eviction, Job, JobKey, Node, NodeName, Policy, Reason, Release, Snapshot
from leitstand.core.scheduling import schedule
from leitstand.sim.engine import Step

CAPACITY_REASONS = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE})


@dataclass(slots=True)
class Leitstand:
    """The real scheduling core under ``policy``; every ``estimate_every`` simulated seconds a cycle also
    plans every waiting job's start (as the operator's worker does)."""

    policy: Policy
    name: str = "leitstand"
    estimate_every: float | None = None
    _next_estimate: float = field(default=-math.inf, init=False)

    def __call__(self, snapshot: Snapshot, now: float) -> Step:
        estimate = self.estimate_every is not None and now >= self._next_estimate
        if estimate and self.estimate_every is not None:
            self._next_estimate = now + self.estimate_every
        decisions = schedule(snapshot, self.policy, now=now, estimate=estimate)
        jobs = {job.key: job for job in snapshot.jobs}
        placements: dict[JobKey, tuple[NodeName | None, ...]] = {}
        stops: list[Eviction | Release] = [*decisions.evictions, *decisions.releases]
        whole = {stop.job for stop in stops if not stop.ranks}  # beside stops of some ranks, the whole job wins
        shrinks: dict[JobKey, set[int]] = {}
        for stop in stops:
            if stop.ranks and stop.job not in whole:
                shrinks.setdefault(stop.job, set()).update(stop.ranks)
        for release in decisions.releases:
            if not release.ranks:
                placements[release.job] = ()
        for bind in decisions.binds:
            job = jobs[bind.job]
            current = placements.get(bind.job, job.placement) or (None,) * job.replicas
            if bind.ranks:  # an elastic job: exactly these ranks
                slots = [*current, *(None,) * (job.replicas - len(current))]
                for rank, node in zip(bind.ranks, bind.nodes, strict=True):
                    slots[rank] = node
                placements[bind.job] = tuple(slots)
                continue
            given = iter(bind.nodes)
            placements[bind.job] = tuple(node if node is not None else next(given) for node in current)
        return Step(
            placements=placements,
            evictions=tuple(dict.fromkeys(eviction.job for eviction in decisions.evictions if not eviction.ranks)),
            moved=tuple(e.job for e in decisions.evictions if e.reason is Reason.MOVED and not e.ranks),
            shrinks={key: tuple(sorted(ranks)) for key, ranks in sorted(shrinks.items())},
            failed=tuple(e.job for e in decisions.pending if e.reason in CAPACITY_REASONS),
            fair_shares={q: {t: s.fair_share for t, s in per.items()} for q, per in decisions.queues.items()},
            job_queues=decisions.job_queues,
            nominations=decisions.nominations,
            reserved={key: reserved.nodes for key, reserved in decisions.reserved.items()},
            reserved_starts={key: reserved.start for key, reserved in decisions.reserved.items()},
            backfilled=decisions.backfilled,
            estimates={key: estimate.start for key, estimate in decisions.estimates.items()},
        )


class _Free:
    """Free GPUs, CPU and memory per node, after what the snapshot's jobs hold."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.nodes = [node for node in snapshot.nodes if node.ready]
        self.gpus = {node.name: node.gpus for node in self.nodes}
        self.cpu = {node.name: node.cpu_millis for node in self.nodes}
        self.memory = {node.name: node.memory_bytes for node in self.nodes}
        for job in snapshot.jobs:
            for node in job.placement:
                if node is not None and node in self.gpus:
                    self.take(node, job)

    def fits(self, node: Node, job: Job) -> bool:
        if job.gpus_per_replica and job.gpu_type is not None and node.gpu_type != job.gpu_type:
            return False
        if job.gpus_per_replica and node.gpu_type is None:
            return False
        name = node.name
        return (
            self.gpus[name] >= job.gpus_per_replica
            and self.cpu[name] >= job.cpu_millis_per_replica
            and self.memory[name] >= job.memory_bytes_per_replica
        )

    def take(self, node: NodeName, job: Job, sign: int = 1) -> None:
        self.gpus[node] -= sign * job.gpus_per_replica
        self.cpu[node] -= sign * job.cpu_millis_per_replica
        self.memory[node] -= sign * job.memory_bytes_per_replica

    def least_allocated(self, node: Node) -> float:
        """kube-scheduler's LeastAllocated score: the mean free fraction of the scored resources."""
        fractions = [self.cpu[node.name] / max(node.cpu_millis, 1), self.memory[node.name] / max(node.memory_bytes, 1)]
        if node.gpus:
            fractions.append(self.gpus[node.name] / node.gpus)
        return sum(fractions) / len(fractions)


def _shape(job: Job) -> tuple[object, ...]:
    return (job.gpu_type, job.gpus_per_replica, job.cpu_millis_per_replica, job.memory_bytes_per_replica)


def _waiting(snapshot: Snapshot) -> list[Job]:
    """Jobs with replicas to place: an elastic job is a rigid gang of all its replicas here."""
    waiting = (job for job in snapshot.jobs if not _complete(job))
    return sorted(waiting, key=lambda job: (job.submitted, job.key))


def _complete(job: Job) -> bool:
    return len(job.placement) == job.replicas and all(node is not None for node in job.placement)


Choose = Callable[[_Free, list[Node], Job], Node | None]


def _place_gang(free: _Free, job: Job, choose: Choose) -> tuple[NodeName, ...] | None:
    """Every replica of ``job`` onto nodes picked by ``choose``, or None (and nothing taken)."""
    taken: list[NodeName] = []
    for _replica in range(job.replicas):
        node = choose(free, free.nodes, job)
        if node is None:
            for name in taken:
                free.take(name, job, sign=-1)
            return None
        free.take(node.name, job)
        taken.append(node.name)
    return tuple(taken)


def _first_fit(free: _Free, nodes: Iterable[Node], job: Job) -> Node | None:
    return next((node for node in nodes if free.fits(node, job)), None)


def _best_fit(free: _Free, nodes: Iterable[Node], job: Job) -> Node | None:
    fitting = [node for node in nodes if free.fits(node, job)]
    return min(fitting, key=lambda node: (free.gpus[node.name], free.cpu[node.name], node.name), default=None)


def _spread(free: _Free, nodes: Iterable[Node], job: Job) -> Node | None:
    fitting = [node for node in nodes if free.fits(node, job)]
    if not fitting:
        return None
    return min(fitting, key=lambda node: (-free.least_allocated(node), node.name))


@dataclass(frozen=True, slots=True)
class KubeSchedulerLike:
    """Pod by pod, first come first served, spread by least allocated; no gangs, no quotas."""

    name: str = "kube-scheduler-like"

    def __call__(self, snapshot: Snapshot, now: float) -> Step:
        free = _Free(snapshot)
        waiting = _waiting(snapshot)
        current = {job.key: list(job.placement or (None,) * job.replicas) for job in waiting}
        # the scheduling queue holds pods, not jobs: pods of jobs created together interleave
        pods = sorted(
            ((job.submitted, replica, job.key, job) for job in waiting for replica in range(job.replicas)
             if current[job.key][replica] is None),
            key=lambda pod: pod[:3],
        )  # fmt: skip
        failed: list[JobKey] = []
        hopeless: set[tuple[object, ...]] = set()  # shapes that did not fit: nothing frees up within a cycle
        for _submitted, replica, key, job in pods:
            node = None if _shape(job) in hopeless else _spread(free, free.nodes, job)
            if node is None:
                hopeless.add(_shape(job))
                failed.append(key)
                continue
            free.take(node.name, job)
            current[key][replica] = node.name
        placements = {
            job.key: tuple(current[job.key])
            for job in waiting
            if tuple(current[job.key]) != (job.placement or (None,) * job.replicas)
        }
        return Step(placements=placements, failed=tuple(failed))


@dataclass(frozen=True, slots=True)
class FifoGang:
    """Whole gangs in submission order, first fit; the head blocks the queue."""

    name: str = "fifo-gang"

    def __call__(self, snapshot: Snapshot, now: float) -> Step:
        free = _Free(snapshot)
        placements: dict[JobKey, tuple[NodeName | None, ...]] = {}
        for job in _waiting(snapshot):
            nodes = _place_gang(free, job, _first_fit)
            if nodes is None:
                return Step(placements=placements, failed=(job.key,))
            placements[job.key] = nodes
        return Step(placements=placements)


@dataclass(frozen=True, slots=True)
class BestFit:
    """Whole gangs in submission order, each pod on the tightest node; what does not fit is skipped."""

    name: str = "best-fit"

    def __call__(self, snapshot: Snapshot, now: float) -> Step:
        free = _Free(snapshot)
        placements: dict[JobKey, tuple[NodeName | None, ...]] = {}
        failed: list[JobKey] = []
        hopeless: set[tuple[object, ...]] = set()
        for job in _waiting(snapshot):
            shape = (_shape(job), job.replicas)
            nodes = None if shape in hopeless else _place_gang(free, job, _best_fit)
            if nodes is None:
                hopeless.add(shape)
                failed.append(job.key)
                continue
            placements[job.key] = nodes
        return Step(placements=placements, failed=tuple(failed))


BASELINES: dict[str, type[KubeSchedulerLike] | type[FifoGang] | type[BestFit]] = {
    "kube-scheduler-like": KubeSchedulerLike,
    "fifo-gang": FifoGang,
    "best-fit": BestFit,
}
