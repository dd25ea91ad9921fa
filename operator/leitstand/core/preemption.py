"""Reclaim and preemption: who may be evicted so that a waiting job can run.

Victims, in the order they are taken:

1. **Lent capacity**: jobs of other queues on idle reserved nodes that the
   owner lent out are evicted first when the owner needs its pool back.
2. **Preemption within a queue**: a ``build`` or ``inference`` job may evict
   ``train`` jobs of its own queue.
3. **Reclaim across queues**: a queue below its fair share whose waiting job
   fits within that share may evict ``train`` jobs of queues above their fair
   share, never pushing a victim queue (or any of its ancestors the two do not
   share) below its fair share.

Jobs younger than their queue's ``minRuntimeSeconds`` are never evicted by 2
or 3; ``build`` and ``inference`` jobs never are. Within each group, victims
that lose the least work (GPUs times seconds run) go first; after a set of victims
that frees enough is found, every victim that turns out unnecessary is spared.

Every reclaim eviction moves GPUs from a queue above its fair share to one
that stays within its own, so the fairness order strictly improves and cycles
of evictions cannot occur. Pure.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from leitstand.core import placement
from leitstand.core.model import Eviction, GPUType, Job, JobKey, Node, NodeName, QueueName, Reason

if TYPE_CHECKING:
    from leitstand.core.scheduling import Cycle, Waiting

MAX_ATTEMPTS_PER_CYCLE = 16


def work_lost(job: Job, now: float) -> float:
    """GPU-seconds an eviction of ``job`` throws away (its GPUs times how long it ran)."""
    started = job.started if job.started is not None else now
    return max(job.gpus, 1) * max(now - started, 0.0)


def _victims(cycle: "Cycle", waiting: "Waiting", eligible: set[NodeName]) -> list[tuple[Job, Reason]]:
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement, now = cycle.statement, cycle.now
    owner = cycle.owner(queue)
    bound = {bind.job for bind in cycle.binds}
    jobs = {j.key: j for j in cycle.snapshot.jobs}
    share = cycle.shares.get(queue, {}).get(gpu_type, 0) if gpu_type else 0
    may_reclaim = gpu_type is not None and statement.queue_allocated(queue, gpu_type) + job.gpus <= share
    lent: list[Job] = []
    within: list[Job] = []
    reclaim: list[Job] = []
    for key, holding in sorted(statement.holdings.items()):
        victim = jobs.get(key)
        if victim is None or key in bound or key == job.key or not eligible.intersection(holding.nodes):
            continue
        victim_queue = cycle.job_queue.get(key)
        on_owner_pool = owner is not None and any(cycle.owner_of_node.get(n) == owner for n in holding.nodes)
        if on_owner_pool and (victim_queue is None or owner not in cycle.paths[victim_queue]):
            lent.append(victim)
            continue
        if not victim.priority.preemptible or victim_queue is None:
            continue
        protected = now - (victim.started if victim.started is not None else now) < (
            cycle.queues[victim_queue].min_runtime_seconds
        )
        if protected:
            continue
        if victim_queue == queue:
            if job.priority > victim.priority:
                within.append(victim)
        elif may_reclaim and holding.gpu_type == gpu_type and gpu_type is not None:
            victim_share = cycle.shares.get(victim_queue, {}).get(gpu_type, 0)
            if statement.queue_allocated(victim_queue, gpu_type) > victim_share:
                reclaim.append(victim)

    def cost(victim: Job) -> tuple[float, str]:
        return (work_lost(victim, now), victim.key)

    return (
        [(v, Reason.RETURNED_LENT_CAPACITY) for v in sorted(lent, key=cost)]
        + [(v, Reason.PREEMPTED) for v in sorted(within, key=cost)]
        + [(v, Reason.RECLAIMED) for v in sorted(reclaim, key=cost)]
    )


def _fair_to_evict(cycle: "Cycle", victim: Job, queue: QueueName, gpu_type: GPUType) -> bool:
    """Evicting ``victim`` keeps its queue and every ancestor not shared with ``queue`` at or above fair share."""
    victim_queue = cycle.job_queue[victim.key]
    shared = set(cycle.paths[queue])
    for name in cycle.paths[victim_queue]:
        if name in shared:
            continue
        share = cycle.shares.get(name, {}).get(gpu_type, 0)
        if cycle.statement.queue_allocated(name, gpu_type) - victim.gpus < share:
            return False
    return True


def _fits(cycle: "Cycle", waiting: "Waiting", nodes: Sequence[Node]) -> placement.Outcome:
    return placement.place(
        waiting.job, waiting.job.replicas, cycle.statement, nodes, cycle.policy, gpu_type=waiting.gpu_type
    )


def _evict_for(cycle: "Cycle", waiting: "Waiting") -> list[tuple[Job, Reason]] | None:
    """The smallest set of victims found that lets ``waiting`` fit, applied to the statement."""
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement = cycle.statement
    nodes = cycle.candidates(job, queue, gpu_type, lent=False)
    eligible = {node.name for node in nodes}
    candidates = _victims(cycle, waiting, eligible)
    if not candidates:
        return None
    mark = statement.checkpoint()
    chosen: list[tuple[Job, Reason]] = []
    found = None
    free = sum(statement.free[name].gpus for name in eligible)
    for victim, reason in candidates:
        if reason is Reason.RECLAIMED and gpu_type is not None and not _fair_to_evict(cycle, victim, queue, gpu_type):
            continue
        freed = sum(1 for node in statement.holdings[victim.key].nodes if node in eligible) * victim.gpus_per_replica
        statement.release(victim)
        chosen.append((victim, reason))
        free += freed
        if free >= job.gpus:
            found = _fits(cycle, waiting, nodes)
            if found.nodes is not None:
                break
    if found is None or found.nodes is None:
        statement.rollback(mark)
        return None
    for spare in sorted(chosen, key=lambda item: (-work_lost(item[0], cycle.now), item[0].key)):
        trial = [item for item in chosen if item is not spare]
        statement.rollback(mark)
        for victim, _reason in trial:
            statement.release(victim)
        attempt = _fits(cycle, waiting, nodes)
        if attempt.nodes is not None:
            chosen, found = trial, attempt
    statement.rollback(mark)
    for victim, _reason in chosen:
        statement.release(victim)
    found = _fits(cycle, waiting, nodes)
    assert found.nodes is not None
    statement.hold(job, found.nodes, cycle.paths[queue], firm=not job.priority.preemptible)
    statement.commit()
    return chosen


def reclaim(cycle: "Cycle", per_queue: dict[QueueName, list[Job]]) -> None:
    """Evicts what the waiting jobs, in queue order, may claim; records evictions and reasons."""
    from leitstand.core.scheduling import order_key

    candidates = [
        cycle.waiting[job.key]
        for queue in sorted(per_queue)
        for job in per_queue[queue]
        if job.key in cycle.waiting
        and cycle.waiting[job.key].tried
        and cycle.waiting[job.key].reason in {Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE}
    ]
    candidates.sort(key=lambda w: (cycle.served(w.queue, w.gpu_type) if w.queue else (2, 0), order_key(w.job)))
    evicted: set[JobKey] = set()
    attempts = 0
    for waiting in candidates:
        if attempts >= MAX_ATTEMPTS_PER_CYCLE:
            break
        attempts += 1
        chosen = _evict_for(cycle, waiting)
        if chosen is None:
            continue
        names = []
        for victim, reason in chosen:
            evicted.add(victim.key)
            names.append(victim.key)
            if reason is Reason.RETURNED_LENT_CAPACITY:
                message = f"returned lent capacity to queue {cycle.owner(waiting.queue)} for {waiting.job.key}"
            elif reason is Reason.PREEMPTED:
                priority = waiting.job.priority.name.lower()
                message = f"preempted by {priority} job {waiting.job.key} of the same queue"
            else:
                message = (
                    f"reclaimed by queue {waiting.queue} (below its fair share) for {waiting.job.key}; "
                    f"queue {cycle.job_queue[victim.key]} is above its fair share"
                )
            cycle.evictions.append(Eviction(victim.key, reason, waiting.job.key, message))
        waiting.reason = Reason.WAITING_FOR_RECLAIM
        gpus = sum(v.gpus for v, _r in chosen)
        waiting.message = (
            f"evicting {len(chosen)} job{'s' if len(chosen) != 1 else ''} ({', '.join(names)}) to free {gpus} "
            f"{waiting.gpu_type or 'GPUs'}; starts once they are gone"
        )
