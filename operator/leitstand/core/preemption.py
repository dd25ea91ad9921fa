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
plan adds them cheapest first (work at risk: GPUs times seconds since the last
checkpoint when its pods stop, after its queue's preemption notice,
``model.work_at_risk``; the classes above first) until the job has
room, by arithmetic on free resources, inside one domain of its required level
(each domain planned on its own, the cheapest wins). A reclaim victim that
would push its queue below its fair share together with those already chosen
is skipped; when that leaves no plan, the largest gangs first, then plans
starting from each of the cheapest victims, repair it. Every victim that turns
out unnecessary is then spared, and the placement is made for real.

The capacity freed is nominated for the beneficiary (``Decided.nominations``):
kept for it, cycle after cycle, while the victims terminate. Every reclaim
eviction moves GPUs from a queue above its fair share to one that stays within
its own, and the nomination keeps them there, so evictions cannot ping-pong.
Pure.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from leitstand.core import model, placement, statements
from leitstand.core.decided import Decided, Waiting
from leitstand.core.index import Index
from leitstand.core.model import Eviction, GPUType, Job, JobKey, Node, NodeName, Priority, QueueName, Reason, order_key
from leitstand.core.places import quota_block, served, within_share
from leitstand.core.statements import Statement

MAX_ATTEMPTS_PER_CYCLE = 16
REPAIRS = 6  # plans that start from each of the cheapest victims, when the greedy orders fail the fairness check
# a job held back behind an older one still reclaims, but only onto its victims' nodes: the free
# capacity stays with the older job
_ANY_TYPE = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE})
_RECLAIMING = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE, Reason.WAITING_FOR_OLDER_JOB})


Entry = tuple[float, JobKey, Job, bool]  # (work at risk if evicted, key, job, protected by minRuntimeSeconds)


@dataclass(slots=True)
class Pool:
    """The running jobs reclaim may consider, indexed once per cycle (from what ``index.build`` gathered).

    Each queue's preemptible jobs are sorted by work at risk, then key, when first
    asked for; jobs bound this cycle are never victims and are left out.
    """

    index: Index
    bound: set[JobKey]
    sorted_by_queue: dict[QueueName, list[Entry]] = field(default_factory=dict)
    lent: list[tuple[Job, QueueName | None]] | None = None  # preemptible jobs on a reserved node
    by_type: dict[tuple[QueueName, GPUType], list[Entry]] = field(default_factory=dict)
    soft: dict[NodeName, int] | None = None
    replicas: dict[JobKey, dict[NodeName, int]] = field(default_factory=dict)
    costs: dict[JobKey, float] = field(default_factory=dict)
    notices: dict[QueueName | None, float] = field(default_factory=dict)  # each queue's preemption notice

    def of_queue(self, queue: QueueName) -> list[Entry]:
        entries = self.sorted_by_queue.get(queue)
        if entries is None:
            entries = self.sorted_by_queue[queue] = self._sorted(queue, self.index.preemptible_by_queue.get(queue, ()))
        return entries

    def of_type(self, queue: QueueName, gpu_type: GPUType, statement: Statement) -> list[Entry]:
        """``of_queue`` narrowed to the jobs holding GPUs of ``gpu_type`` (what reclaim for that type may take);
        built from the queue's GPU jobs alone, so jobs without GPUs are never weighed for it."""
        entries = self.by_type.get((queue, gpu_type))
        if entries is None:
            holdings = statement.holdings
            jobs = [
                victim
                for victim in self.index.preemptible_gpu_jobs.get(queue, ())
                if victim.gpus and (held := holdings.get(victim.key)) is not None and held.gpu_type == gpu_type
            ]
            entries = self.by_type[(queue, gpu_type)] = self._sorted(queue, jobs)
        return entries

    def _sorted(self, queue: QueueName, jobs: Iterable[Job]) -> list[Entry]:
        """Entries for ``jobs`` of ``queue`` not bound this cycle, by work at risk, then key (elastic jobs'
        growth replicas first when there are any: ``victim_order``)."""
        now = self.index.now
        protect = self.index.queues[queue].min_runtime_seconds
        entries = []
        for victim in jobs:
            if victim.key in self.bound:
                continue
            started = victim.started if victim.started is not None else now
            young = victim.grows is None and now - started < protect  # growth replicas are never protected
            entries.append((self.cost(victim), victim.key, victim, young))
        if any(entry[2].grows is not None for entry in entries):
            entries.sort(key=lambda entry: victim_order(entry[2], entry[0]))
        else:
            entries.sort()  # by work at risk, then key (unique: jobs are never compared)
        return entries

    def cost(self, victim: Job) -> float:
        """What evicting ``victim`` loses, computed once per cycle: nothing when it is already terminating,
        else its work at risk when its pods stop (``model.stop_time``: after its queue's preemption notice, or
        a minute after its next checkpoint within it)."""
        cost = self.costs.get(victim.key)
        if cost is None:
            index = self.index
            queue = index.job_queue.get(victim.key)
            notice = self.notices.get(queue)
            if notice is None:
                notice = self.notices[queue] = model.preemption_notice(queue, index.queues)
            stop = model.stop_time(victim, index.now, notice)
            cost = self.costs[victim.key] = 0.0 if victim.terminating else model.work_at_risk(victim, stop)
        return cost

    def members(self, victim: Job) -> list[Job]:
        """What evicting ``victim`` stops: the job, and an elastic gang's replicas it grew (they go with it)."""
        grown = self.index.growing.get(victim.key)
        if not grown:
            return [victim]
        return [victim, *(r for r in grown if r.placement and not r.terminating)]

    def taking(self, victim: Job) -> int:
        """GPUs its queue loses when ``victim`` is evicted (``members``)."""
        if not self.index.growing.get(victim.key):
            return victim.gpus
        return sum(member.gpus for member in self.members(victim))

    def counts(self, key: JobKey, statement: Statement) -> dict[NodeName, int]:
        """Replicas per node of a running job (what evicting it frees where), computed once per cycle."""
        counts = self.replicas.get(key)
        if counts is None:
            counts = self.replicas[key] = {}
            for name in statement.holdings[key].nodes:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def soft_gpus(self) -> dict[NodeName, int]:
        """GPUs per node held by jobs that any search could ever evict (terminating or preemptible, not bound
        this cycle): with the free ones, an upper bound on what a search can free there."""
        if self.soft is None:
            index = self.index
            self.soft = {}
            running = [*index.terminating_jobs, *index.queueless]
            for jobs in index.preemptible_gpu_jobs.values():
                running += jobs
            for job in running:
                if job.key not in self.bound and job.gpus_per_replica:
                    for name in job.placement:
                        if name is not None:
                            self.soft[name] = self.soft.get(name, 0) + job.gpus_per_replica
        return self.soft

    def on_reserved_nodes(self) -> list[tuple[Job, QueueName | None]]:
        if self.lent is None:
            owned = self.index.owner_of_node
            self.lent = []
            if owned:
                groups: list[tuple[QueueName | None, list[Job]]] = [*sorted(self.index.preemptible_by_queue.items())]
                groups.append((None, self.index.queueless))
                for queue, jobs in groups:
                    for victim in jobs:
                        if victim.key not in self.bound and any(n in owned for n in victim.placement if n):
                            self.lent.append((victim, queue))
        return self.lent


@dataclass(slots=True)
class _Run:
    """One ``reclaim`` call: the cycle's index and statement, what came before, and what it decides."""

    index: Index
    statement: Statement
    before: Decided
    mine: Decided
    pool: Pool

    def spoken_for(self, key: JobKey) -> bool:
        """Does a nominee already wait for this terminating job's capacity?"""
        return key in self.before.spoken_for or key in self.mine.spoken_for


def _victims(run: _Run, waiting: Waiting, eligible: AbstractSet[NodeName]) -> list[tuple[Job, Reason]]:
    """Whole gangs ``waiting`` may evict and that hold one of ``eligible``, in the order they are taken."""
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement = run.statement
    owner = run.index.owner(queue)
    may_reclaim = within_share(run.index, statement, job, queue, gpu_type)
    may_preempt = job.priority > min(Priority)
    shared = set(run.index.paths[queue])
    holdings = statement.holdings
    pool = run.pool

    def usable(victim: Job) -> bool:  # still held (not evicted this cycle), not the job, somewhere it could go
        holding = holdings.get(victim.key)
        return holding is not None and victim.key != job.key and not eligible.isdisjoint(holding.nodes)

    leaving = [v for v in run.index.terminating_jobs if not run.spoken_for(v.key) and usable(v)]
    lent: list[tuple[float, JobKey, Job]] = []
    if owner is not None:
        for victim, victim_queue in pool.on_reserved_nodes():
            foreign = victim_queue is None or owner not in run.index.paths[victim_queue]
            if (
                foreign
                and usable(victim)
                and any(run.index.owner_of_node.get(n) == owner for n in holdings[victim.key].nodes)
            ):
                lent.append((pool.cost(victim), victim.key, victim))
    lent.sort(key=lambda item: victim_order(item[2], item[0]))
    lent_keys = {key for _cost, key, _victim in lent}
    within = [  # of its own queue: lower priorities, and any elastic job's growth replicas but its own
        victim
        for _cost, key, victim, young in (pool.of_queue(queue) if may_preempt or run.index.growing else ())
        if ((may_preempt and job.priority > victim.priority) or victim.grows not in (None, job.key))
        and not young
        and key not in lent_keys
        and usable(victim)
    ]
    reclaim: list[tuple[float, JobKey, Job]] = []
    if may_reclaim and gpu_type is not None:
        for victim_queue in sorted(run.index.preemptible_by_queue):
            if victim_queue in shared:
                continue
            spare = min(  # the least surplus over fair share on the victim queue's path not shared with ours
                (
                    statement.queue_allocated(name, gpu_type) - run.index.shares.get(name, {}).get(gpu_type, 0)
                    for name in run.index.paths[victim_queue]
                    if name not in shared
                ),
                default=0,
            )
            if spare <= 0:
                continue
            for cost, key, victim, young in pool.of_type(victim_queue, gpu_type, statement):
                if (
                    young or pool.taking(victim) > spare or key in lent_keys
                ):  # alone, it must keep its queue at its share
                    continue
                holding = holdings.get(key)
                if holding is not None and key != job.key and not eligible.isdisjoint(holding.nodes):
                    reclaim.append((cost, key, victim))
        if run.index.growing:
            reclaim.sort(key=lambda item: victim_order(item[2], item[0]))
        else:  # no growth replicas: ``victim_order`` is work at risk, then key (unique: jobs never compared)
            reclaim.sort()
    return (
        [(v, Reason.GANG_INCOMPLETE) for v in sorted(leaving, key=lambda v: v.key)]  # already going: free of cost
        + [(v, Reason.RETURNED_LENT_CAPACITY) for _c, _k, v in lent]
        + [(v, Reason.PREEMPTED) for v in within]
        + [(v, Reason.RECLAIMED) for _c, _k, v in reclaim]
    )


def victim_order(victim: Job, cost: float) -> tuple[bool, int, float, str]:
    """The order victims of one kind are taken in: elastic jobs' growth replicas first (the highest ranks
    first), then by work at risk, then by key (unique: jobs are never compared)."""
    return (victim.grows is None, -victim.rank, cost, victim.key)


_Victim = tuple[Job, Reason, dict[NodeName, int]]  # and its replicas per node
_CLASS = {Reason.GANG_INCOMPLETE: 0, Reason.RETURNED_LENT_CAPACITY: 1, Reason.PREEMPTED: 2, Reason.RECLAIMED: 3}


@dataclass(slots=True)
class Room:
    """How many replicas of ``job`` fit on a group of nodes as victims are added or dropped.

    Pure arithmetic on the statement's free resources: ``placement.place`` needs
    exactly this room (inside one domain when the job requires one), so a plan
    whose room suffices places for real. Only the nodes victims touch are read.
    """

    job: Job
    statement: statements.Statement
    members: AbstractSet[NodeName]
    total: int
    free: dict[NodeName, list[int]] = field(default_factory=dict)
    fit: dict[NodeName, int] = field(default_factory=dict)

    def change(self, victim: Job, counts: dict[NodeName, int], sign: int) -> None:
        """Frees (sign=+1) or takes back (sign=-1) what ``victim`` holds on this group's nodes."""
        job = self.job
        for name, count in counts.items():
            if name not in self.members:
                continue
            free = self.free.get(name)
            if free is None:
                now = self.statement.free[name]
                free = self.free[name] = [now.gpus, now.cpu_millis, now.memory_bytes]
                self.fit[name] = statements.replicas_in(job, free[0], free[1], free[2], job.replicas)
            free[0] += sign * count * victim.gpus_per_replica
            free[1] += sign * count * victim.cpu_millis_per_replica
            free[2] += sign * count * victim.memory_bytes_per_replica
            fit = statements.replicas_in(job, free[0], free[1], free[2], job.replicas)
            self.total += fit - self.fit[name]
            self.fit[name] = fit


@dataclass(slots=True)
class Plan:
    """Whole victim gangs that make room for a job in one group of nodes (one domain, or all)."""

    domain: str
    victims: list[tuple[Job, Reason]]
    cost: float


@dataclass(slots=True)
class Surplus:
    """What reclaim may take from each queue for one waiting job: GPUs of its type above fair share, on
    every queue of a victim's path that the beneficiary does not share. Read once per victim search (the
    statement does not change while plans are made); each plan counts what it takes in ``taken``."""

    run: _Run
    waiting: Waiting
    spare: dict[QueueName, int] = field(default_factory=dict)
    paths: dict[QueueName, tuple[QueueName, ...]] = field(default_factory=dict)

    def path(self, victim: Job) -> tuple[QueueName, ...]:
        """The queues of ``victim``'s path that the beneficiary's path does not hold."""
        queue = self.run.index.job_queue[victim.key]
        path = self.paths.get(queue)
        if path is None:
            assert self.waiting.queue is not None
            shared = set(self.run.index.paths[self.waiting.queue])
            path = self.paths[queue] = tuple(name for name in self.run.index.paths[queue] if name not in shared)
        return path

    def left(self, name: QueueName) -> int:
        spare = self.spare.get(name)
        if spare is None:
            gpu_type = self.waiting.gpu_type
            assert gpu_type is not None
            allocated = self.run.statement.queue_allocated(name, gpu_type)
            spare = self.spare[name] = allocated - self.run.index.shares.get(name, {}).get(gpu_type, 0)
        return spare

    def allows_one(self, victim: Job, reason: Reason, taken: "Taken") -> bool:
        """``allows`` for one victim: the greedy plans ask it for each victim they add, so a gang without
        grown replicas is checked without building the sums of several."""
        if reason is not Reason.RECLAIMED or self.waiting.gpu_type is None or victim.key in taken.jobs:
            return True
        if self.run.index.growing.get(victim.key):
            return self.allows([(victim, reason)], taken)
        queue, gpus, spent = self.run.index.job_queue[victim.key], victim.gpus, taken.gpus
        refused = taken.refused.get(queue)
        if refused is not None and gpus >= refused:
            return False  # what a plan takes only grows: its queue refused as much already
        path = self.path(victim)
        for name in path:
            if self.left(name) - spent.get(name, 0) < gpus:
                taken.refused[queue] = gpus  # below any refusal before (else refused above)
                return False
        for name in path:
            spent[name] = spent.get(name, 0) + gpus
        taken.jobs.add(victim.key)
        return True

    def allows(self, victims: Sequence[tuple[Job, Reason]], taken: "Taken") -> bool:
        """Would reclaiming ``victims`` (on top of ``taken``, which it updates when they fit) keep every
        victim queue, and each ancestor not shared with the beneficiary, at or above its fair share? An
        elastic gang takes the replicas it grew with it; each replica counts once."""
        if self.waiting.gpu_type is None:
            return True
        extra: dict[QueueName, int] = {}
        counted: set[JobKey] = set()
        for victim, reason in victims:
            if reason is not Reason.RECLAIMED:
                continue
            for member in self.run.pool.members(victim):
                if member.key in taken.jobs or member.key in counted:
                    continue
                counted.add(member.key)
                for name in self.path(member):
                    extra[name] = extra.get(name, 0) + member.gpus
        for name, gpus in extra.items():
            if self.left(name) - taken.gpus.get(name, 0) < gpus:
                return False
        for name, gpus in extra.items():
            taken.gpus[name] = taken.gpus.get(name, 0) + gpus
        taken.jobs |= counted
        return True


@dataclass(slots=True)
class Taken:
    """What one plan's reclaim victims take so far: GPUs per queue, and the jobs counted; and, per victim
    queue, the fewest GPUs one of its victims was refused (any as large is refused too, as this only grows)."""

    gpus: dict[QueueName, int] = field(default_factory=dict)
    jobs: set[JobKey] = field(default_factory=set)
    refused: dict[QueueName, int] = field(default_factory=dict)


def _plan(
    run: _Run,
    waiting: Waiting,
    domain: str,
    group: tuple[AbstractSet[NodeName], int],
    victims: list[_Victim],
    surplus: Surplus,
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
    statement = run.statement
    room = Room(job, statement, *group)  # the group's nodes, and the replicas that fit there now
    taken = Taken()
    chosen: list[_Victim] = []
    for victim, reason, counts in victims:
        if room.total >= job.replicas:
            break
        if fair_first and not surplus.allows_one(victim, reason, taken):
            continue
        room.change(victim, counts, +1)  # even a victim that frees less than a replica may complete one
        chosen.append((victim, reason, counts))
    if room.total < job.replicas:
        return None
    spared: set[JobKey] = set()
    for victim, _reason, counts in sorted(chosen, key=lambda c: (-run.pool.cost(c[0]), c[0].key)):
        room.change(victim, counts, -1)
        if room.total >= job.replicas:
            spared.add(victim.key)
        else:
            room.change(victim, counts, +1)
    chosen = [item for item in chosen if item[0].key not in spared]
    if not fair_first and not surplus.allows([(v, r) for v, r, _c in chosen], Taken()):
        return None
    return Plan(domain, [(v, r) for v, r, _c in chosen], sum(run.pool.cost(v) for v, _r, _c in chosen))


def _largest_first(run: _Run, victims: list[_Victim]) -> list[_Victim]:
    """``victims`` by kind, then the most GPUs first, then the least work lost. Without growth replicas each kind
    comes in that last order already (``_victims``), so a stable sort by kind and size alone gives the same."""
    if run.index.growing:
        return sorted(victims, key=lambda item: (_CLASS[item[1]], -item[0].gpus, run.pool.cost(item[0])))
    return sorted(victims, key=lambda item: (_CLASS[item[1]], -item[0].gpus))


def _fitting(statement: Statement, job: Job, members: list[Node]) -> int:
    """Replicas of ``job`` that fit on ``members`` now; for a GPU job, read from the nodes with enough free
    GPUs only (most are full)."""
    if not job.gpus_per_replica:
        return sum(statement.replicas_fitting(node.name, job) for node in members)
    names = {node.name for node in members}
    return sum(
        statement.replicas_fitting(name, job)
        for bucket in statement.by_free_gpus(job.gpus_per_replica)
        for _cpu, name in bucket
        if name in names
    )


def _room_with_all(
    job: Job, statement: Statement, group: tuple[AbstractSet[NodeName], int], victims: list[_Victim]
) -> bool:
    """Would evicting every one of ``victims`` make room for ``job`` in ``group``? (Each alone is within its
    queue's surplus, ``_victims`` saw to that.) Freeing only adds room, so the first victims that make
    enough answer it."""
    room = Room(job, statement, *group)
    for victim, _reason, counts in victims:
        if room.total >= job.replicas:
            return True
        room.change(victim, counts, +1)
    return room.total >= job.replicas


def _group(node: Node, level: int | None) -> str | None:
    """The domain of ``node`` at the required ``level`` a plan groups it by ("" without a level); None: the
    node has no domain at that level."""
    if level is None:
        return ""
    if level < len(node.domains) and node.domains[level]:
        return node.domains[level]
    return None


def _could_fit(run: _Run, job: Job, nodes: Sequence[Node], level: int | None) -> bool:
    """Would ``job``'s replicas fit on ``nodes`` (in one domain of its required level) by GPU count alone, if
    every job that could ever be evicted left? A necessary condition, cheap next to a victim search."""
    per = job.gpus_per_replica
    if not per:
        return True
    soft, free = run.pool.soft_gpus(), run.statement.free
    fits: dict[str, int] = {}
    for node in nodes:
        domain = _group(node, level)
        if domain is None:
            continue
        count = fits[domain] = fits.get(domain, 0) + (free[node.name].gpus + soft.get(node.name, 0)) // per
        if count >= job.replicas:
            return True
    return False


def _evict_for(run: _Run, waiting: Waiting) -> tuple[list[tuple[Job, Reason]], tuple[NodeName, ...]] | None:
    """Whole victim gangs that let ``waiting`` fit, losing the least work found, and where it then goes;
    applied to the statement (the job holds its nodes). None when no fair set of victims makes room.

    With a required level, each domain of that level is planned on its own (its
    nodes, the victims with replicas there) and the cheapest domain wins.
    """
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    statement = run.statement
    nodes = run.index.candidates(job, queue, gpu_type, lent=False)
    eligible = run.index.names_of(nodes)
    reserved = {name for key, booked in run.before.reserved.items() if key != job.key for name in booked.nodes}
    if reserved:  # nodes reserved for other gangs are not this job's to free
        nodes = [node for node in nodes if node.name not in reserved]
        eligible = frozenset(node.name for node in nodes)
    level = run.index.policy.level_index(job.required_level)
    if not _could_fit(run, job, nodes, level):
        return None
    candidates = _victims(run, waiting, eligible)  # none at all: this cycle's evictions may have made room
    victims = [(victim, reason, run.pool.counts(victim.key, statement)) for victim, reason in candidates]
    if waiting.reason is Reason.WAITING_FOR_OLDER_JOB:  # free capacity is held for an older job
        touched = {name for _victim, _reason, counts in victims for name in counts} | run.mine.freed
        nodes = [node for node in nodes if node.name in touched]
        eligible = frozenset(node.name for node in nodes)  # not names_of: that caches by the list's id
    surplus = Surplus(run, waiting)
    groups: dict[str, list[Node]] = {}
    group_of: dict[NodeName, str] = {}
    for node in nodes:
        name = _group(node, level)
        if name is None:
            continue
        groups.setdefault(name, []).append(node)
        group_of[node.name] = name
    touching_by: dict[str, list[_Victim]] = {"": victims}  # each group's victims, in the order they are taken
    if level is not None:
        touching_by = {}
        for item in victims:
            for name in {group_of[n] for n in item[2] if n in group_of}:
                touching_by.setdefault(name, []).append(item)
    best: Plan | None = None
    for domain in sorted(groups):
        members = groups[domain]
        touching = touching_by.get(domain, [])
        fitting = _fitting(statement, job, members)
        if not touching and fitting < job.replicas:
            continue
        group = (frozenset(node.name for node in members), fitting)
        # cheapest first; when the fairness of the victims' queues cuts that short, the largest gangs first
        # (fewer victims, each within its queue's surplus) repair the plan instead of abandoning it
        largest = _largest_first(run, touching)
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
            plan = _plan(run, waiting, domain, group, order, surplus, fair_first=fair_first)
            if plan is not None and (cheapest is None or plan.cost < cheapest.cost):
                cheapest = plan
            if plan is not None and plan.cost == 0:
                break
            if index == 0 and plan is None and not _room_with_all(job, statement, group, touching):
                break  # not even all of them together make room: no other order will
        if cheapest is not None and (best is None or (cheapest.cost, cheapest.domain) < (best.cost, best.domain)):
            best = cheapest
    if best is None:
        return None
    mark = statement.checkpoint()
    taken = list(best.victims)
    chosen = {victim.key for victim, _reason in taken}
    for victim, reason in best.victims:  # a whole elastic gang goes with the replicas it grew
        for replica in run.pool.members(victim)[1:]:
            if replica.key in statement.holdings and replica.key not in chosen:
                taken.append((replica, reason))
    for victim, _reason in taken:
        statement.release(victim)
    found = placement.place(
        job, job.replicas, statement, nodes, run.index.policy, gpu_type=gpu_type,
        pinned_domain=best.domain if level is not None else None, eligible=eligible,
    )  # fmt: skip
    if found.nodes is None:  # the arithmetic and the placement disagree: take nothing rather than guess
        statement.rollback(mark)
        return None
    statement.hold(job, found.nodes, run.index.paths[queue], firm=not job.priority.preemptible)
    statement.commit()
    return taken, found.nodes


def reclaim(index: Index, statement: Statement, before: Decided) -> Decided:
    """Evicts what the waiting jobs, least served queue first, may claim; returns the evictions, the
    waiting jobs' new reasons and the nomination of the freed capacity for each beneficiary.

    At most ``MAX_ATTEMPTS_PER_CYCLE`` victim searches run per cycle; a job that
    could take nothing (its queue at its fair share, no train job of its own queue
    it outranks, no reserved pool of its own, no capacity on its way that nobody
    waits for) costs no attempt.
    """
    mine = Decided()
    run = _Run(index, statement, before, mine, Pool(index, {bind.job for bind in before.binds}))
    candidates = [
        before.waiting[job.key]
        for queue in sorted(index.waiting_by_queue)
        for job in index.waiting_by_queue[queue]
        if job.key in before.waiting and before.waiting[job.key].tried and before.waiting[job.key].reason in _RECLAIMING
    ]
    candidates.sort(
        key=lambda w: (served(index, statement, w.queue, w.gpu_type) if w.queue else (2, 0), order_key(w.job))
    )
    attempts = 0
    hopeless: set[tuple[object, ...]] = set()  # searches that found nothing: evicting for others only makes them harder
    for candidate in candidates:
        if attempts >= MAX_ATTEMPTS_PER_CYCLE:
            break
        waiting = dataclasses.replace(candidate)  # a copy: what came before stays as it was
        found = None
        tried_type = waiting.gpu_type
        types = [tried_type]
        if waiting.job.gpu_type is None and waiting.job.gpus_per_replica and waiting.reason in _ANY_TYPE:
            types += [t for t in sorted(index.capacity) if t != tried_type]  # a job of any type: each type in turn
        for gpu_type in types:
            waiting.gpu_type = gpu_type
            if waiting.queue is not None and gpu_type is not None:
                blocked = quota_block(index, statement, waiting.job, waiting.queue, gpu_type, waiting.job.replicas)
                if blocked is not None:  # jobs bound since it was tried used the quota up: evicting is for nothing
                    if gpu_type == tried_type:
                        waiting.reason, waiting.message = blocked
                        mine.waiting[waiting.job.key] = waiting
                    continue
            if attempts >= MAX_ATTEMPTS_PER_CYCLE or not _may_take(run, waiting):
                continue
            job = waiting.job
            search = (waiting.queue, gpu_type, waiting.reason, job.replicas, job.gpus_per_replica,
                      job.cpu_millis_per_replica, job.memory_bytes_per_replica, job.required_level, job.priority,
                      job.node_selector, job.tolerations)  # fmt: skip
            if search in hopeless:  # the same search again: it finds nothing again
                continue
            attempts += 1
            found = _evict_for(run, waiting)
            if found is not None:
                break
            hopeless.add(search)
        if found is None:
            waiting.gpu_type = tried_type
            continue
        mine.waiting[waiting.job.key] = waiting
        chosen, nodes = found
        mine.nominations[waiting.job.key] = nodes
        leaving = [victim for victim, _reason in chosen if victim.terminating]
        mine.spoken_for.update(victim.key for victim in leaving)
        chosen = [(victim, reason) for victim, reason in chosen if not victim.terminating]
        if not chosen:  # room that terminating jobs, or this cycle's evictions for others, are freeing
            evicted = [eviction.job for eviction in mine.evictions]
            going = sorted({job.key for job in index.leaving_on(set(nodes), evicted)} | {v.key for v in leaving})
            waiting.reason = Reason.WAITING_FOR_RECLAIM
            waiting.message = (
                f"{waiting.job.gpus} {waiting.gpu_type or 'GPUs'} on {', '.join(sorted(set(nodes)))} are being freed "
                f"for it; starts once {len(going)} terminating job{'s' if len(going) != 1 else ''} there "
                f"{'are' if len(going) != 1 else 'is'} gone"
            )
            continue
        names: list[str] = []
        for victim, reason in chosen:
            name = victim.grows or victim.key  # an elastic job's growth replicas are named by their job
            if name not in names:
                names.append(name)
            if reason is Reason.RETURNED_LENT_CAPACITY:
                message = f"returned lent capacity to queue {index.owner(waiting.queue)} for {waiting.job.key}"
            elif reason is Reason.PREEMPTED:
                priority = waiting.job.priority.name.lower()
                message = f"preempted by {priority} job {waiting.job.key} of the same queue"
            else:
                message = (
                    f"reclaimed by queue {waiting.queue} (below its fair share) for {waiting.job.key}; "
                    f"queue {index.job_queue[victim.key]} is above its fair share"
                )
            mine.evictions.append(Eviction(victim.key, reason, waiting.job.key, message))
            mine.freed.update(name for name in victim.placement if name is not None)
        waiting.reason = Reason.WAITING_FOR_RECLAIM
        gpus = sum(v.gpus for v, _r in chosen)
        waiting.message = (
            f"evicting {len(names)} job{'s' if len(names) != 1 else ''} ({', '.join(names)}) to free {gpus} "
            f"{waiting.gpu_type or 'GPUs'}; starts once they are gone"
        )
    return mine


def _may_take(run: _Run, waiting: Waiting) -> bool:
    """Could any victim, or capacity on its way, exist for ``waiting``? A cheap necessary condition."""
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    if queue is None:
        return False
    if run.index.owner(queue) is not None or run.mine.freed:
        return True
    if any(not run.spoken_for(victim.key) for victim in run.index.terminating_jobs):
        return True
    if any(
        v.priority < job.priority or v.grows not in (None, job.key)  # lower priorities, and elastic growth
        for v in run.index.preemptible_by_queue.get(queue, ())
    ):
        return True
    return within_share(run.index, run.statement, job, queue, gpu_type)
