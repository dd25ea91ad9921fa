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
or 3; ``build`` and ``inference`` jobs never are. Victims are whole gangs: a
plan adds them cheapest first (work lost: GPUs times seconds run; the classes
above first) until the job has room, by arithmetic on free resources, inside one
domain of its required level (each domain planned on its own, the cheapest
wins). A reclaim victim that would push its queue below its fair share together
with those already chosen is skipped; when that leaves no plan, the largest
gangs first, then plans starting from each of the cheapest victims, repair it.
Every victim that turns out unnecessary is then spared, and the placement is
made for real.

The capacity freed is nominated for the beneficiary (``Cycle.nominations``):
kept for it, cycle after cycle, while the victims terminate. Every reclaim
eviction moves GPUs from a queue above its fair share to one that stays within
its own, and the nomination keeps them there, so evictions cannot ping-pong.
Pure.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from leitstand.core import placement
from leitstand.core.model import Eviction, GPUType, Job, Node, NodeName, Priority, QueueName, Reason

if TYPE_CHECKING:
    from leitstand.core.scheduling import Cycle, Waiting

MAX_ATTEMPTS_PER_CYCLE = 16
REPAIRS = 6  # plans that start from each of the cheapest victims, when the greedy orders fail the fairness check
# a job held back behind an older one still reclaims, but only onto its victims' nodes: the free
# capacity stays with the older job
_ANY_TYPE = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE})
_RECLAIMING = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE, Reason.WAITING_FOR_OLDER_JOB})


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
            if key not in cycle.spoken_for and not eligible.isdisjoint(holding.nodes):
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


@dataclass(slots=True)
class Room:
    """Free resources on a group of nodes as victims are added or dropped, and how many replicas fit.

    Pure arithmetic on the statement's free resources: ``placement.place`` needs
    exactly this room (inside one domain when the job requires one), so a plan
    whose room suffices places for real.
    """

    job: Job
    free: dict[NodeName, list[int]] = field(default_factory=dict)
    fit: dict[NodeName, int] = field(default_factory=dict)
    total: int = 0

    def add_node(self, name: NodeName, gpus: int, cpu: int, memory: int) -> None:
        self.free[name] = [gpus, cpu, memory]
        self.fit[name] = _replicas(self.job, gpus, cpu, memory)
        self.total += self.fit[name]

    def change(self, victim: Job, counts: dict[NodeName, int], sign: int) -> None:
        """Frees (sign=+1) or takes back (sign=-1) what ``victim`` holds on this group's nodes."""
        for name, count in counts.items():
            free = self.free.get(name)
            if free is None:
                continue
            free[0] += sign * count * victim.gpus_per_replica
            free[1] += sign * count * victim.cpu_millis_per_replica
            free[2] += sign * count * victim.memory_bytes_per_replica
            fit = _replicas(self.job, *free)
            self.total += fit - self.fit[name]
            self.fit[name] = fit


@dataclass(slots=True)
class Plan:
    """Whole victim gangs that make room for a job in one group of nodes (one domain, or all)."""

    domain: str
    victims: list[tuple[Job, Reason]]
    cost: float


_CLASS = {Reason.GANG_INCOMPLETE: 0, Reason.RETURNED_LENT_CAPACITY: 1, Reason.PREEMPTED: 2, Reason.RECLAIMED: 3}


def _counts(nodes: Sequence[NodeName]) -> dict[NodeName, int]:
    counts: dict[NodeName, int] = {}
    for name in nodes:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _plan(
    cycle: "Cycle",
    waiting: "Waiting",
    domain: str,
    nodes: Sequence[Node],
    victims: list[tuple[Job, Reason, dict[NodeName, int]]],
    *,
    fair_first: bool = True,
) -> Plan | None:
    """The cheapest whole gangs, in preference order, that make room on ``nodes``; then every victim
    that turns out unnecessary is spared (most work first), so the set is minimal.

    With ``fair_first``, a reclaim victim is skipped (the next one is tried
    instead) when taking it together with those already chosen would push its
    queue, or an ancestor not shared with the beneficiary, below its fair share.
    Without, the minimal set is found first and then checked as a whole, so
    victims that turn out unnecessary cannot use up a queue's surplus.
    """
    job, queue = waiting.job, waiting.queue
    assert queue is not None
    statement = cycle.statement
    room = Room(job)
    for node in nodes:
        free = statement.free[node.name]
        room.add_node(node.name, free.gpus, free.cpu_millis, free.memory_bytes)
    taken: dict[QueueName, int] = {}
    chosen: list[tuple[Job, Reason, dict[NodeName, int]]] = []
    for victim, reason, counts in victims:
        if room.total >= job.replicas:
            break
        if fair_first and not _within_surplus(cycle, waiting, [(victim, reason)], taken):
            continue
        room.change(victim, counts, +1)  # even a victim that frees less than a replica may complete one
        chosen.append((victim, reason, counts))
    if room.total < job.replicas:
        return None
    now = cycle.now
    for item in sorted(chosen, key=lambda c: (-_cost(c[0], now), c[0].key)):
        victim, _reason, counts = item
        room.change(victim, counts, -1)
        if room.total >= job.replicas:
            chosen.remove(item)
        else:
            room.change(victim, counts, +1)
    if not fair_first and not _within_surplus(cycle, waiting, [(v, r) for v, r, _c in chosen], {}):
        return None
    return Plan(domain, [(v, r) for v, r, _c in chosen], sum(_cost(v, now) for v, _r, _c in chosen))


def _within_surplus(
    cycle: "Cycle", waiting: "Waiting", victims: list[tuple[Job, Reason]], taken: dict[QueueName, int]
) -> bool:
    """Would reclaiming ``victims`` (on top of ``taken``, which it updates when they fit) keep every victim
    queue, and each ancestor not shared with the beneficiary, at or above its fair share?"""
    gpu_type = waiting.gpu_type
    if gpu_type is None:
        return True
    assert waiting.queue is not None
    shared = set(cycle.paths[waiting.queue])
    extra: dict[QueueName, int] = {}
    for victim, reason in victims:
        if reason is not Reason.RECLAIMED:
            continue
        for name in cycle.paths[cycle.job_queue[victim.key]]:
            if name not in shared:
                extra[name] = extra.get(name, 0) + victim.gpus
    for name, gpus in extra.items():
        allocated = cycle.statement.queue_allocated(name, gpu_type)
        if allocated - taken.get(name, 0) - gpus < cycle.shares.get(name, {}).get(gpu_type, 0):
            return False
    for name, gpus in extra.items():
        taken[name] = taken.get(name, 0) + gpus
    return True


def _cost(victim: Job, now: float) -> float:
    return 0.0 if victim.terminating else work_lost(victim, now)


def _evict_for(cycle: "Cycle", waiting: "Waiting") -> tuple[list[tuple[Job, Reason]], tuple[NodeName, ...]] | None:
    """Whole victim gangs that let ``waiting`` fit, losing the least work found, and where it then goes;
    applied to the statement (the job holds its nodes). None when no fair set of victims makes room.

    With a required level, each domain of that level is planned on its own (its
    nodes, the victims with replicas there) and the cheapest domain wins.
    """
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement = cycle.statement
    nodes = cycle.candidates(job, queue, gpu_type, lent=False)
    eligible = cycle.names_of(nodes)
    candidates = _victims(cycle, waiting, set(eligible))  # none at all: this cycle's evictions may have made room
    victims = [(victim, reason, _counts(statement.holdings[victim.key].nodes)) for victim, reason in candidates]
    if waiting.reason is Reason.WAITING_FOR_OLDER_JOB:  # free capacity is held for an older job
        touched = {name for _victim, _reason, counts in victims for name in counts} | cycle.freed
        nodes = [node for node in nodes if node.name in touched]
        eligible = frozenset(node.name for node in nodes)  # not names_of: that caches by the list's id
    level = (
        cycle.policy.topology_levels.index(job.required_level)
        if job.required_level in cycle.policy.topology_levels
        else None
    )
    groups: dict[str, list[Node]] = {}
    for node in nodes:
        if level is None:
            groups.setdefault("", []).append(node)
        elif level < len(node.domains) and node.domains[level]:
            groups.setdefault(node.domains[level], []).append(node)
    best: Plan | None = None
    for domain in sorted(groups):
        members = groups[domain]
        names = {node.name for node in members}
        touching = [item for item in victims if not names.isdisjoint(item[2])] if level is not None else victims
        # cheapest first; when the fairness of the victims' queues cuts that short, the largest gangs first
        # (fewer victims, each within its queue's surplus) repair the plan instead of abandoning it
        largest = sorted(touching, key=lambda item: (_CLASS[item[1]], -item[0].gpus, _cost(item[0], cycle.now)))
        # then the minimal sets of those orders checked as a whole; then starts from each of the cheapest
        orders = [(touching, True), (largest, True), (touching, False), (largest, False)]
        cheapest: Plan | None = None
        for index in range(len(orders) + REPAIRS):
            if index >= 4:
                first = index - 4
                if cheapest is not None or first >= len(touching):
                    break
                orders.append(([touching[first], *touching[:first], *touching[first + 1 :]], True))
            elif index >= 2 and cheapest is not None:
                break
            order, fair_first = orders[index]
            plan = _plan(cycle, waiting, domain, members, order, fair_first=fair_first)
            if plan is not None and (cheapest is None or plan.cost < cheapest.cost):
                cheapest = plan
            if plan is not None and plan.cost == 0:
                break
        if cheapest is not None and (best is None or (cheapest.cost, cheapest.domain) < (best.cost, best.domain)):
            best = cheapest
    if best is None:
        return None
    mark = statement.checkpoint()
    for victim, _reason in best.victims:
        statement.release(victim)
    found = placement.place(
        job, job.replicas, statement, nodes, cycle.policy, gpu_type=gpu_type,
        pinned_domain=best.domain if level is not None else None, eligible=eligible,
    )  # fmt: skip
    if found.nodes is None:  # the arithmetic and the placement disagree: take nothing rather than guess
        statement.rollback(mark)
        return None
    statement.hold(job, found.nodes, cycle.paths[queue], firm=not job.priority.preemptible)
    statement.commit()
    return best.victims, found.nodes


def reclaim(cycle: "Cycle", per_queue: dict[QueueName, list[Job]]) -> None:
    """Evicts what the waiting jobs, least served queue first, may claim; records evictions, reasons and
    the nomination of the freed capacity for each beneficiary.

    At most ``MAX_ATTEMPTS_PER_CYCLE`` victim searches run per cycle; a job that
    may take nothing from anyone (its queue at its fair share, no lower priority
    below it, nothing lent or terminating) costs no attempt.
    """
    from leitstand.core.scheduling import order_key

    candidates = [
        cycle.waiting[job.key]
        for queue in sorted(per_queue)
        for job in per_queue[queue]
        if job.key in cycle.waiting and cycle.waiting[job.key].tried and cycle.waiting[job.key].reason in _RECLAIMING
    ]
    candidates.sort(key=lambda w: (cycle.served(w.queue, w.gpu_type) if w.queue else (2, 0), order_key(w.job)))
    attempts = 0
    for waiting in candidates:
        if attempts >= MAX_ATTEMPTS_PER_CYCLE:
            break
        found = None
        tried_type = waiting.gpu_type
        types = [tried_type]
        if waiting.job.gpu_type is None and waiting.job.gpus_per_replica and waiting.reason in _ANY_TYPE:
            types += [t for t in sorted(cycle.capacity) if t != tried_type]  # a job of any type: each type in turn
        for gpu_type in types:
            waiting.gpu_type = gpu_type
            if waiting.queue is not None and gpu_type is not None:
                blocked = cycle.quota_block(waiting.job, waiting.queue, gpu_type, waiting.job.replicas)
                if blocked is not None:  # jobs bound since it was tried used the quota up: evicting is for nothing
                    if gpu_type == tried_type:
                        waiting.reason, waiting.message = blocked
                    continue
            if attempts >= MAX_ATTEMPTS_PER_CYCLE or not _may_take(cycle, waiting):
                continue
            attempts += 1
            found = _evict_for(cycle, waiting)
            if found is not None:
                break
        if found is None:
            waiting.gpu_type = tried_type
            continue
        chosen, nodes = found
        cycle.nominations[waiting.job.key] = nodes
        leaving = [victim for victim, _reason in chosen if victim.terminating]
        cycle.spoken_for.update(victim.key for victim in leaving)
        chosen = [(victim, reason) for victim, reason in chosen if not victim.terminating]
        if not chosen:  # room that terminating jobs, or this cycle's evictions for others, are freeing
            going = sorted({key for key, _job in cycle.leaving_on(set(nodes))} | {v.key for v in leaving})
            waiting.reason = Reason.WAITING_FOR_RECLAIM
            waiting.message = (
                f"{waiting.job.gpus} {waiting.gpu_type or 'GPUs'} on {', '.join(sorted(set(nodes)))} are being freed "
                f"for it; starts once {len(going)} terminating job{'s' if len(going) != 1 else ''} there "
                f"{'are' if len(going) != 1 else 'is'} gone"
            )
            continue
        names = []
        for victim, reason in chosen:
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
            cycle.freed.update(name for name in victim.placement if name is not None)
        waiting.reason = Reason.WAITING_FOR_RECLAIM
        gpus = sum(v.gpus for v, _r in chosen)
        waiting.message = (
            f"evicting {len(chosen)} job{'s' if len(chosen) != 1 else ''} ({', '.join(names)}) to free {gpus} "
            f"{waiting.gpu_type or 'GPUs'}; starts once they are gone"
        )


def _may_take(cycle: "Cycle", waiting: "Waiting") -> bool:
    """Could any victim exist for ``waiting``? A cheap necessary condition before the search."""
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    if queue is None:
        return False
    if cycle.leaving or job.priority > min(Priority) or cycle.owner(queue) is not None:
        return True
    share = cycle.shares.get(queue, {}).get(gpu_type, 0) if gpu_type else 0
    return gpu_type is not None and cycle.statement.queue_allocated(queue, gpu_type) + job.gpus <= share
