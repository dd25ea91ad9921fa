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
or 3; ``build`` and ``inference`` jobs never are. Victims are chosen node by
node: the nodes cheapest to clear (work lost: GPUs times seconds run; victims
taken in the order above) until the job fits, inside one domain when it
requires one. The placement is then verified, and for small victim sets every
victim that turns out unnecessary is spared.

Every reclaim eviction moves GPUs from a queue above its fair share to one
that stays within its own, so the fairness order strictly improves and cycles
of evictions cannot occur. Pure.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from leitstand.core import placement
from leitstand.core.model import Eviction, GPUType, Job, JobKey, Node, NodeName, Priority, QueueName, Reason

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
    jobs = cycle.jobs_by_key
    share = cycle.shares.get(queue, {}).get(gpu_type, 0) if gpu_type else 0
    may_reclaim = gpu_type is not None and statement.queue_allocated(queue, gpu_type) + job.gpus <= share
    may_preempt = job.priority > min(Priority)
    over_share: dict[QueueName, bool] = {}
    leaving: list[Job] = []
    lent: list[Job] = []
    within: list[Job] = []
    reclaim: list[Job] = []
    for key, holding in statement.holdings.items():
        victim = jobs.get(key)
        if victim is None or key == job.key:
            continue
        if victim.terminating:
            if not eligible.isdisjoint(holding.nodes):
                leaving.append(victim)
            continue
        victim_queue = cycle.job_queue.get(key)
        foreign = owner is not None and (victim_queue is None or owner not in cycle.paths[victim_queue])
        on_pool = foreign and any(cycle.owner_of_node.get(n) == owner for n in holding.nodes)
        if on_pool and key not in bound and victim.priority.preemptible:
            lent.append(victim)
            continue
        if not victim.priority.preemptible or victim_queue is None:
            continue
        if victim_queue == queue:
            if not (may_preempt and job.priority > victim.priority):
                continue
            target = within
        elif may_reclaim and holding.gpu_type == gpu_type and gpu_type is not None:
            above = over_share.get(victim_queue)
            if above is None:
                victim_share = cycle.shares.get(victim_queue, {}).get(gpu_type, 0)
                above = over_share[victim_queue] = statement.queue_allocated(victim_queue, gpu_type) > victim_share
            if not above or not _fair_to_evict(cycle, victim, queue, gpu_type):
                continue  # a victim whose eviction alone would push its queue below its fair share is no candidate
            target = reclaim
        else:
            continue
        started = victim.started if victim.started is not None else now
        if now - started < cycle.queues[victim_queue].min_runtime_seconds or key in bound:
            continue
        if eligible.isdisjoint(holding.nodes):
            continue
        target.append(victim)

    def cost(victim: Job) -> tuple[float, str]:
        return (work_lost(victim, now), victim.key)

    return (
        [(v, Reason.GANG_INCOMPLETE) for v in sorted(leaving, key=lambda v: v.key)]  # already going: free of cost
        + [
            (v, Reason.RETURNED_LENT_CAPACITY)
            for v in sorted(lent, key=cost)
            if not eligible.isdisjoint(statement.holdings[v.key].nodes)
        ]
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


@dataclass(slots=True)
class NodePlan:
    """Victims on one node, in preference order, and how many replicas fit once they are gone."""

    node: NodeName
    domain: str
    fit: int = 0
    cost: float = 0.0
    victims: list[tuple[Job, Reason]] = field(default_factory=list)


def _replicas(job: Job, gpus: int, cpu: int, memory: int) -> int:
    """How many replicas of ``job`` fit into the given free resources (at most ``job.replicas``)."""
    result = job.replicas
    if job.gpus_per_replica:
        result = min(result, gpus // job.gpus_per_replica)
    if job.cpu_millis_per_replica:
        result = min(result, cpu // job.cpu_millis_per_replica)
    if job.memory_bytes_per_replica:
        result = min(result, memory // job.memory_bytes_per_replica)
    return max(result, 0)


def _node_plans(
    cycle: "Cycle", job: Job, candidates: list[tuple[Job, Reason]], nodes: Sequence[Node]
) -> list[NodePlan]:
    """For every eligible node: the cheapest victims (in preference order) that make room for
    as many replicas as the node can take, by arithmetic on the statement's free resources."""
    statement, now = cycle.statement, cycle.now
    level = (
        cycle.policy.topology_levels.index(job.required_level)
        if job.required_level in cycle.policy.topology_levels
        else None
    )
    by_node: dict[NodeName, list[tuple[Job, Reason, int]]] = {}
    for victim, reason in candidates:
        counts: dict[NodeName, int] = {}
        for name in statement.holdings[victim.key].nodes:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            by_node.setdefault(name, []).append((victim, reason, count))
    plans = []
    for node in nodes:
        free = statement.free[node.name]
        gpus, cpu, memory = free.gpus, free.cpu_millis, free.memory_bytes
        domain = node.domains[level] if level is not None and level < len(node.domains) else ""
        plan = NodePlan(node.name, domain, _replicas(job, gpus, cpu, memory))
        for victim, reason, count in by_node.get(node.name, ()):
            if plan.fit >= job.replicas:
                break
            gpus += count * victim.gpus_per_replica
            cpu += count * victim.cpu_millis_per_replica
            memory += count * victim.memory_bytes_per_replica
            plan.victims.append((victim, reason))
            plan.cost += 0.0 if victim.terminating else work_lost(victim, now)
            plan.fit = _replicas(job, gpus, cpu, memory)
        if plan.fit:
            plans.append(plan)
    return plans


def _choose(plans: list[NodePlan], replicas: int, required: bool) -> list[NodePlan] | None:
    """The cheapest node plans that together hold ``replicas``, inside one domain when ``required``."""
    groups: dict[str, list[NodePlan]] = {}
    for plan in plans:
        if not required or plan.domain:
            groups.setdefault(plan.domain if required else "", []).append(plan)
    best: tuple[float, str, list[NodePlan]] | None = None
    for domain, group in groups.items():
        group.sort(key=lambda p: (p.cost / p.fit, p.node))
        chosen, room, cost = [], 0, 0.0
        for plan in group:
            chosen.append(plan)
            room += plan.fit
            cost += plan.cost
            if room >= replicas:
                break
        if room >= replicas and (best is None or (cost, domain) < best[:2]):
            best = (cost, domain, chosen)
    return best[2] if best is not None else None


def _evict_for(cycle: "Cycle", waiting: "Waiting") -> list[tuple[Job, Reason]] | None:
    """Victims that let ``waiting`` fit, losing the least work found; applied to the statement.

    Victims are chosen node by node (the cheapest nodes to clear, inside one
    domain when the job requires one), then the placement is verified for real.
    """
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement = cycle.statement
    nodes = cycle.candidates(job, queue, gpu_type, lent=False)
    eligible = {node.name for node in nodes}
    candidates = _victims(cycle, waiting, eligible)
    if not candidates:
        return None
    chosen_plans = _choose(_node_plans(cycle, job, candidates, nodes), job.replicas, job.required_level is not None)
    if chosen_plans is None:
        return None
    order = {victim.key: index for index, (victim, _reason) in enumerate(candidates)}
    picked = {victim.key: (victim, reason) for plan in chosen_plans for victim, reason in plan.victims}
    chosen = sorted(picked.values(), key=lambda item: order[item[0].key])
    mark = statement.checkpoint()
    for victim, reason in chosen:
        if reason is Reason.RECLAIMED and gpu_type is not None and not _fair_to_evict(cycle, victim, queue, gpu_type):
            statement.rollback(mark)
            return None
        statement.release(victim)
    found = _fits(cycle, waiting, nodes)
    if found.nodes is None:
        statement.rollback(mark)
        return None
    if len(chosen) <= 8:  # spare victims that turn out unnecessary (cheap only for small sets)
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
        if waiting.queue is not None and waiting.gpu_type is not None:
            blocked = cycle.quota_block(waiting.job, waiting.queue, waiting.gpu_type, waiting.job.replicas)
            if blocked is not None:  # jobs bound since it was tried used the quota up: evicting would be for nothing
                waiting.reason, waiting.message = blocked
                continue
        chosen = _evict_for(cycle, waiting)
        if chosen is None:
            continue
        leaving = [victim for victim, _reason in chosen if victim.terminating]
        chosen = [(victim, reason) for victim, reason in chosen if not victim.terminating]
        if not chosen:
            waiting.reason = Reason.WAITING_FOR_RECLAIM
            waiting.message = (
                f"waiting for {len(leaving)} evicted pod{'s' if len(leaving) != 1 else ''} to terminate; "
                "starts once they are gone"
            )
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
