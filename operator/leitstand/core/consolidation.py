"""``consolidate``: move small, cheap-to-move jobs so that a waiting gang finds one whole domain.

A gang that requires a domain (``topology: {required: leaf}``) may wait although
enough GPUs are free in total: they are scattered over domains, each partly used
by small jobs. Without help it waits until one domain drains by chance. After
reclaim, ``consolidate`` looks at such gangs (queue order, the least served
queue first; at most ``Policy.moves_per_cycle`` plans), and for each tries the
domains of its required level that could hold it, fewest GPUs to move first:

- the jobs on enough of the domain's nodes (the cheapest nodes first, after the
  room free there) must be **movable**: preemptible, running,
  not bound or evicted this cycle, past its queue's ``minRuntimeSeconds`` and
  running for at least ``Policy.move_settle_seconds`` (a job just moved is not
  moved again), and either declaring itself movable (``Job.movable``) or having
  saved its work within ``Policy.move_checkpoint_age`` seconds;
- what the moves throw away (``model.work_at_risk``, nothing for a movable job)
  fits what is left of ``Policy.move_budget`` GPU-seconds this cycle;
- with those jobs gone the gang fits the domain, and **every** job on the nodes
  it then takes is placed at once elsewhere, not where it was (elastic growth
  replicas there are simply given back); jobs on nodes it did not need stay.

A plan is all or nothing (the statement rolls back otherwise). Carried out, the
moved jobs are evicted (``Reason.MOVED``, naming the gang), each nominated for
the nodes it was placed on, and the gang is nominated for the domain: the next
cycles bind them there as the old pods go (``actions.nominate``). Pure.
"""

import dataclasses
from collections.abc import Sequence

from leitstand.core import model
from leitstand.core.decided import Decided, Waiting
from leitstand.core.index import Index
from leitstand.core.model import Eviction, Job, JobKey, Node, NodeName, Reason, order_key
from leitstand.core.places import Places, served, within_share
from leitstand.core.statements import Statement

_WAITS_FOR_A_DOMAIN = frozenset({Reason.TOPOLOGY_UNSATISFIABLE, Reason.INSUFFICIENT_CAPACITY})
DOMAINS_TRIED = 3  # per waiting gang and cycle: the cheapest domains only


def consolidate(index: Index, statement: Statement, before: Decided) -> Decided:
    """Moves jobs out of one domain for waiting gangs that require one; see the module docstring."""
    mine = Decided()
    policy = index.policy
    if policy.moves_per_cycle <= 0:
        return mine
    gangs = [
        waiting
        for waiting in before.waiting.values()
        if waiting.queue is not None
        and waiting.gpu_type is not None
        and waiting.reason in _WAITS_FOR_A_DOMAIN
        and waiting.job.required_level is not None
        and waiting.job.gpus_per_replica > 0
        and waiting.job.key not in before.nominations
        and policy.level_index(waiting.job.required_level) is not None
    ]
    if not gangs:
        return mine
    gangs.sort(key=lambda w: (served(index, statement, w.queue, w.gpu_type) if w.queue else (2, 0.0), order_key(w.job)))
    bound = {bind.job for bind in before.binds}
    on_node: dict[NodeName, list[Job]] = {}  # built once a gang gets this far: most cycles never need it
    budget = policy.move_budget
    planned = 0
    places = Places(index, statement, mine)
    for waiting in gangs:
        if planned >= policy.moves_per_cycle:
            break
        queue, gpu_type = waiting.queue, waiting.gpu_type
        assert queue is not None
        if not within_share(index, statement, waiting.job, queue, gpu_type):
            continue  # moves are for gangs their queue's fair share entitles to run
        free_of_type = statement.free_by_type.get(gpu_type, 0)
        if free_of_type < waiting.job.gpus:
            continue  # not enough free in total: that is reclaim's case, not a move's
        if not on_node:
            for key, holding in statement.holdings.items():
                job = index.jobs_by_key.get(key)
                if job is not None:
                    for name in set(holding.nodes):
                        on_node.setdefault(name, []).append(job)
        plan = _plan(index, statement, places, before, waiting, on_node, bound, budget)
        if plan is None:
            continue
        domain, moves, cost = plan
        budget -= cost
        planned += 1
        _carry_out(mine, dataclasses.replace(waiting), domain, moves)
    return mine


Move = tuple[Job, tuple[NodeName, ...]]  # a moved job and where it goes (nothing for growth given back)


def _plan(
    index: Index,
    statement: Statement,
    places: Places,
    before: Decided,
    waiting: Waiting,
    on_node: dict[NodeName, list[Job]],
    bound: set[JobKey],
    budget: float,
) -> tuple[str, list[Move], float] | None:
    """The cheapest domain where moving movable jobs off enough of its nodes lets the gang in, each of them
    placed again at once outside the gang's nodes, within ``budget``; applied to the statement (the gang and
    the moved jobs hold their new nodes). None when no domain can."""
    job, queue, gpu_type = waiting.job, waiting.queue, waiting.gpu_type
    assert queue is not None
    assert gpu_type is not None
    level = index.policy.level_index(job.required_level)
    assert level is not None
    reserved = {name for key, booked in before.reserved.items() if key != job.key for name in booked.nodes}
    domains: dict[str, list[Node]] = {}
    for node in index.candidates(job, queue, gpu_type, lent=False):
        if node.name not in reserved and level < len(node.domains) and node.domains[level]:
            domains.setdefault(node.domains[level], []).append(node)
    options: list[tuple[int, float, str, list[Job]]] = []
    for domain, members in domains.items():
        chosen = _clearing(index, statement, job, members, on_node, bound)
        if chosen is None:
            continue
        cost = sum(_cost(index, m) for m in chosen)
        moved = sum(m.gpus_per_replica * len(statement.holdings[m.key].nodes) for m in chosen)
        if chosen and cost <= budget:
            options.append((moved, cost, domain, chosen))
    options.sort(key=lambda option: option[:3])
    for _moved, _cost_bound, domain, candidates in options[:DOMAINS_TRIED]:
        mark = statement.checkpoint()
        old = {m.key: statement.holdings[m.key] for m in candidates}
        for mover in candidates:
            statement.release(mover)
        placed = places.attempt(job, queue, job.replicas, pinned=domain, only_type=gpu_type)
        if isinstance(placed, tuple):
            taken = set(placed)
            movers = [m for m in candidates if taken & set(old[m.key].nodes)]
            moving = {m.key for m in movers}
            for mover in candidates:  # those the gang did not need stay where they are
                if mover.key not in moving:
                    holding = old[mover.key]
                    statement.hold(mover, holding.nodes, holding.queues, firm=holding.firm)
            cost = sum(_cost(index, m) for m in movers)
            moves = _replace(index, places, movers, reserved) if cost <= budget else None
            if moves is not None:
                statement.commit()
                return domain, [(job, placed), *moves], cost
        statement.rollback(mark)
    return None


def _clearing(
    index: Index,
    statement: Statement,
    job: Job,
    members: list[Node],
    on_node: dict[NodeName, list[Job]],
    bound: set[JobKey],
) -> list[Job] | None:
    """The jobs to move off ``members`` (one domain) so that the gang has room there: the room free now first,
    then the nodes whose jobs are all movable, cheapest first; None when even that is not enough."""
    per = job.gpus_per_replica
    room = 0
    clearable: list[tuple[float, int, NodeName, list[Job]]] = []
    for node in members:
        free = statement.free[node.name].gpus
        jobs = on_node.get(node.name, [])
        if not jobs or free >= node.gpus:
            room += free // per
            continue
        if all(_movable(index, statement, other, bound) for other in jobs):
            clearable.append((sum(_cost(index, other) for other in jobs), -free, node.name, jobs))
        else:
            room += free // per
    chosen: dict[JobKey, Job] = {}
    for _cost_of, _free, name, jobs in sorted(clearable):
        if room >= job.replicas:
            break
        room += statement.nodes[name].gpus // per
        chosen.update((other.key, other) for other in jobs)
    return sorted(chosen.values(), key=lambda m: m.key) if room >= job.replicas else None


def _replace(index: Index, places: Places, movers: list[Job], reserved: set[NodeName]) -> list[Move] | None:
    """Each moved job placed at once somewhere else (not where it was, not on reserved nodes), the largest
    first; elastic growth is given back instead. None when one of them does not fit."""
    moves: list[Move] = []
    for mover in sorted(movers, key=lambda m: (-m.gpus, m.key)):  # the largest first: they fit least
        if mover.grows is not None:
            moves.append((mover, ()))  # growth is given back, not moved: it grows again where it can
            continue
        away = frozenset({name for name in mover.placement if name is not None} | reserved)
        target = places.attempt(mover, index.job_queue[mover.key], mover.replicas, exclude=away)
        if not isinstance(target, tuple):
            return None
        moves.append((mover, target))
    return moves


def _movable(index: Index, statement: Statement, job: Job, bound: set[JobKey]) -> bool:
    """May ``job`` be moved now? See the module docstring."""
    if job.key in bound or job.terminating or not job.priority.preemptible or job.key not in statement.holdings:
        return False
    if job.grows is not None:
        return True  # an elastic job's growth: always given back first
    if not job.running or job.started is None:
        return False
    queue = index.job_queue.get(job.key)
    if queue is None:
        return False
    policy, now = index.policy, index.now
    ran = now - job.started
    if ran < policy.move_settle_seconds or ran < index.queues[queue].min_runtime_seconds:
        return False
    if job.movable:
        return True
    base = model.saved_since(job, now)
    if base is None or (job.checkpoint_interval is None and job.last_checkpoint is None):
        return False  # nothing says it saved its work
    return model.unsaved(now - base, job.checkpoint_interval) <= policy.move_checkpoint_age


def _cost(index: Index, job: Job) -> float:
    """GPU-seconds a move throws away: nothing for a job that declares itself movable or for growth."""
    if job.movable or job.grows is not None:
        return 0.0
    return model.work_at_risk(job, index.now)


def _carry_out(mine: Decided, waiting: Waiting, domain: str, moves: Sequence[Move]) -> None:
    """The evictions and nominations of a plan (its first move is the gang itself), and why the gang waits."""
    (gang, gang_nodes), *moved = moves
    level = gang.required_level
    for job, target in moved:
        where = f"; it moves to {len(set(target))} other node{'s' if len(set(target)) != 1 else ''}" if target else ""
        message = f"moved to free {level} {domain} for {gang.key}{where}"
        mine.evictions.append(Eviction(job.key, Reason.MOVED, gang.key, message))
        mine.freed.update(name for name in job.placement if name is not None)
        if target:
            mine.nominations[job.key] = target
    mine.nominations[gang.key] = gang_nodes
    names: list[str] = []
    for job, _target in moved:
        name = job.grows or job.key
        if name not in names:
            names.append(name)
    waiting.reason = Reason.WAITING_FOR_RECLAIM
    waiting.message = (
        f"moved {len(names)} job{'s' if len(names) != 1 else ''} ({', '.join(names)}) to free {level} {domain} "
        f"for {gang.key}; starts once they are gone"
    )
    mine.waiting[gang.key] = waiting
