"""The actions of a cycle that place jobs: ``nominate``, ``repair`` and ``allocate``.

Each takes the cycle's ``Index``, its ``Statement`` and what the actions before
it decided (a ``Decided``, read only), changes the statement, and returns what
it decided itself; ``scheduling.schedule`` runs them in that order, then
``preemption.reclaim``, and adds up what they return. Pure.
"""

import heapq
import math

from leitstand.core.decided import Decided, Waiting
from leitstand.core.index import Index
from leitstand.core.model import (
    CAPACITY_REASONS,
    Bind,
    GPUType,
    Job,
    Node,
    NodeName,
    QueueName,
    Reason,
    Release,
    duration_text,
    order_key,
)
from leitstand.core.places import Places, quota_block, served, within_share
from leitstand.core.reservations import Book, describe, when
from leitstand.core.statements import Statement
from leitstand.core.timeline import Never


def nominate(index: Index, statement: Statement, before: Decided) -> Decided:
    """Jobs with capacity nominated for them bind there, or keep it while their victims terminate.

    A nomination lapses when the job is gone or can no longer use the nodes
    (a node gone, NotReady, no longer a candidate, quota, or the capacity
    taken by something other than terminating jobs). Kept ones reserve what
    they need on their nodes (terminating jobs' resources first), so no other
    job takes it this cycle, and their queues count it. Runs first: completing
    a partial gang must not take a nominee's capacity.
    """
    mine = Decided()
    _hold_moves(index, statement, mine)
    leaving: dict[NodeName, list[int]] = {}  # unclaimed resources of terminating jobs, per node
    for job in index.terminating_jobs:
        for name in statement.holdings[job.key].nodes:
            left = leaving.setdefault(name, [0, 0, 0])
            left[0] += job.gpus_per_replica
            left[1] += job.cpu_millis_per_replica
            left[2] += job.memory_bytes_per_replica
    for job in index.nominees:
        queue = index.job_queue.get(job.key)
        if queue is None or job.key in before.waiting or len(job.nominated) != job.replicas:
            continue
        nodes = job.nominated
        if any(name not in statement.nodes or not statement.nodes[name].ready for name in nodes):
            continue
        gpu_type = statement.nodes[nodes[0]].gpu_type if job.gpus_per_replica else None
        if job.gpus_per_replica and (gpu_type is None or job.gpu_type not in (None, gpu_type)):
            continue
        if not set(nodes) <= index.names_of(index.candidates(job, queue, gpu_type, lent=index.lent(job, queue))):
            continue
        if gpu_type is not None and quota_block(index, statement, job, queue, gpu_type, job.replicas) is not None:
            continue
        need = _need(job, nodes)
        free = statement.free
        if _fits(statement, need):
            statement.hold(job, nodes, index.paths[queue], firm=not job.priority.preemptible)
            statement.commit()
            if gpu_type is not None:
                mine.job_type[job.key] = gpu_type
            mine.binds.append(Bind(job.key, nodes))
            mine.settled.add(job.key)
            continue
        soon = {name: leaving.get(name, [0, 0, 0]) for name in need}
        if not all(
            free[name].gpus + soon[name][0] >= g
            and free[name].cpu_millis + soon[name][1] >= c
            and free[name].memory_bytes + soon[name][2] >= m
            for name, (g, c, m) in need.items()
        ):
            continue  # something else took the capacity: the nomination lapses
        taken: dict[NodeName, tuple[int, int, int]] = {}
        for name, wanted in need.items():
            left = soon[name]
            from_leaving = [min(max(left[i], 0), wanted[i]) for i in range(3)]
            for i in range(3):
                left[i] -= from_leaving[i]
            taken[name] = (wanted[0] - from_leaving[0], wanted[1] - from_leaving[1], wanted[2] - from_leaving[2])
        statement.reserve(taken, index.paths[queue], gpu_type, job.gpus, firm=not job.priority.preemptible)
        going = sorted(other.key for other in index.leaving_on(set(need)))
        mine.spoken_for.update(going)
        mine.nominations[job.key] = nodes
        mine.waiting[job.key] = Waiting(
            job, queue, gpu_type, Reason.WAITING_FOR_RECLAIM,
            f"{job.gpus} {gpu_type or 'GPUs'} on {', '.join(sorted(need))} are being freed for it; "
            f"starts once {len(going)} terminating job{'s' if len(going) != 1 else ''} there "
            f"{'are' if len(going) != 1 else 'is'} gone",
        )  # fmt: skip
    return mine


def _hold_moves(index: Index, statement: Statement, mine: Decided) -> None:
    """Jobs being moved (``consolidation``) keep the nodes they were placed on while their old pods go, so
    that nothing else takes them; a nomination whose nodes are gone or taken lapses."""
    for job in index.moving:
        queue = index.job_queue[job.key]
        nodes = job.nominated
        if len(nodes) != job.replicas or any(n not in statement.nodes or not statement.nodes[n].ready for n in nodes):
            continue
        need = _need(job, nodes)
        if not _fits(statement, need):
            continue
        gpu_type = statement.nodes[nodes[0]].gpu_type if job.gpus_per_replica else None
        statement.reserve(need, index.paths[queue], gpu_type, job.gpus, firm=not job.priority.preemptible)
        mine.nominations[job.key] = nodes


def _need(job: Job, nodes: tuple[NodeName, ...]) -> dict[NodeName, tuple[int, int, int]]:
    """GPUs, CPU and memory ``job`` needs on each of ``nodes`` (one replica per entry)."""
    need: dict[NodeName, tuple[int, int, int]] = {}
    for name in nodes:
        gpus, cpu, memory = need.get(name, (0, 0, 0))
        need[name] = (gpus + job.gpus_per_replica, cpu + job.cpu_millis_per_replica,
                      memory + job.memory_bytes_per_replica)  # fmt: skip
    return need


def _fits(statement: Statement, need: dict[NodeName, tuple[int, int, int]]) -> bool:
    """Is ``need`` free now on its nodes?"""
    free = statement.free
    return all(
        free[name].gpus >= g and free[name].cpu_millis >= c and free[name].memory_bytes >= m
        for name, (g, c, m) in need.items()
    )


def repair(index: Index, statement: Statement, before: Decided) -> Decided:
    """Completes gangs the applier left partly bound, or releases them.

    A released gang keeps its nodes for the rest of this cycle: its bound
    pods still run until the applier has deleted them.
    """
    mine = Decided()
    places = Places(index, statement, mine)
    for job in index.partial_jobs:
        queue = index.job_queue.get(job.key)
        placed = [node for node in job.placement if node is not None]
        vanished = [node for node in placed if node not in statement.nodes]
        outcome: Waiting | tuple[NodeName, ...] | None = None
        if queue is not None and not vanished and job.key in statement.holdings:
            waiting_replicas = sum(1 for node in job.placement if node is None) + job.replicas - len(job.placement)
            pinned = None
            level = index.policy.level_index(job.required_level)
            domains = statement.nodes[placed[0]].domains
            if level is not None and level < len(domains):
                pinned = domains[level] or None
            outcome = places.attempt(
                job, queue, waiting_replicas, pinned=pinned, only_type=statement.holdings[job.key].gpu_type
            )
            if isinstance(outcome, tuple):
                mine.binds.append(Bind(job.key, outcome))
                continue
        if vanished:
            why = f"replicas are bound to nodes that no longer exist ({', '.join(sorted(vanished))})"
        elif queue is None:
            why = "its namespace has no queue"
        else:
            why = outcome.message if isinstance(outcome, Waiting) else "the rest cannot be placed"
        mine.releases.append(
            Release(job.key, f"{len(placed)} of {job.replicas} replicas were bound; released because {why}")
        )
        mine.waiting[job.key] = Waiting(
            job, queue, before.job_type.get(job.key), Reason.GANG_INCOMPLETE,
            "released a partly bound gang; it waits whole", tried=True,
        )  # fmt: skip
    statement.commit()
    return mine


Lane = tuple[QueueName, GPUType | None]


def allocate(index: Index, statement: Statement, before: Decided) -> Decided:
    """Tries every waiting job once: lanes of (queue, GPU type), the least served lane first.

    A queue's jobs of different GPU types wait in separate lanes, each ranked
    by how well served the queue is for that type: a job of a type the queue
    has plenty of never lets the queue jump ahead for another type. Within a
    lane, jobs go by priority, then submission time, each gang placed in full
    or not at all. Lanes of queues that own a reserved pool (or sit below one) go
    first: their jobs run only there, so this decides only that idle reserved
    nodes are lent to other queues once the owners' waiting jobs have had them.

    A stream of smaller jobs must not starve a large one. With
    ``Policy.backfill`` (the default), a job waiting longer than
    ``Policy.starvation_seconds`` that its queue's fair share entitles to run,
    and that could fit its nodes were they empty, gets a reservation: nodes from
    the moment the running jobs' limits free them (``reservations.Book``); the
    jobs after it start now wherever that does not delay it (``_serve``).
    Without backfill, such a job holds its whole GPU type: later jobs may use
    only nodes it could never use (``_around_holder``).
    """
    mine = Decided()
    places = Places(index, statement, mine)
    lanes: dict[Lane, list[Job]] = {}
    for queue in sorted(index.waiting_by_queue):
        for job in index.waiting_by_queue[queue]:
            if job.key in before.waiting or job.key in before.settled:
                continue
            lane_type = job.gpu_type
            if lane_type is None and job.gpus_per_replica:
                lane_type = index.default_type(queue)
            lanes.setdefault((queue, lane_type), []).append(job)
    heap: list[tuple[bool, int, tuple[int, float], QueueName, str, Lane]] = []
    heads = dict.fromkeys(lanes, 0)

    def push(lane: Lane) -> None:
        jobs = lanes[lane]
        if heads[lane] < len(jobs):
            head = jobs[heads[lane]]
            queue, lane_type = lane
            rank = served(index, statement, queue, lane_type)
            borrower = index.owner(queue) is None  # owners first: their pools are lent only once they are served
            heapq.heappush(heap, (borrower, -int(head.priority), rank, queue, lane_type or "", lane))

    for lane in lanes:
        push(lane)
    book = Book(index, statement) if index.policy.backfill else None
    if book is not None:
        _renew(index, book, before)
    held_types: dict[tuple[QueueName | None, GPUType | None], Job] = {}  # by (reserved pool owner, type)
    while heap:
        *_rank, lane = heapq.heappop(heap)
        queue, guess = lane
        job = lanes[lane][heads[lane]]
        heads[lane] += 1
        if book is not None:
            _serve(index, places, book, mine, job, queue)
            push(lane)
            continue
        holder = held_types.get((index.owner(queue), guess))
        if holder is not None and job.gpus_per_replica:
            _around_holder(index, places, mine, holder, lane, lanes[lane], heads)
        else:
            outcome = places.attempt(job, queue, job.replicas)
            if isinstance(outcome, tuple):
                mine.binds.append(Bind(job.key, outcome))
                statement.commit()
            else:
                mine.waiting[job.key] = outcome
                aged = index.now - job.submitted >= index.policy.starvation_seconds
                starving = aged and outcome.reason in CAPACITY_REASONS and job.gpus_per_replica > 0
                if (
                    starving
                    and (index.owner(queue), outcome.gpu_type) not in held_types
                    and within_share(index, statement, job, queue, outcome.gpu_type)
                    and index.fits_empty(job, queue, outcome.gpu_type)
                ):
                    held_types[(index.owner(queue), outcome.gpu_type)] = job
        push(lane)
    if book is not None:
        mine.reserved = dict(book.booked)
    return mine


_MAYBE_RESERVED = CAPACITY_REASONS | {Reason.NO_MATCHING_NODES}  # every node it may use can be reserved
_MAY_BOOK = CAPACITY_REASONS | {Reason.WAITING_FOR_OLDER_JOB}


def _renew(index: Index, book: Book, before: Decided) -> None:
    """Books again, first, the reservations the last cycle made for jobs that still wait (``Job.reserved``),
    the first ``Policy.reservations`` of them in queue order, so that jobs served before them in this cycle
    cannot take their nodes."""
    carried = [
        job
        for queue in sorted(index.waiting_by_queue)
        for job in index.waiting_by_queue[queue]
        if job.reserved and job.key not in before.waiting and job.key not in before.settled
    ]
    kept = sorted(carried, key=order_key)[: index.policy.reservations]
    held: dict[NodeName, int] = {}  # how many of the carried reservations hold each node
    for job in kept:
        for name in set(job.reserved):
            held[name] = held.get(name, 0) + 1
    # the earliest planned start first: a gang that shares a node with a later one, one after the other,
    # keeps its turn even when the node frees before either expected
    for job in sorted(kept, key=lambda j: (math.inf if j.reserved_start is None else j.reserved_start, order_key(j))):
        queue = index.job_queue[job.key]
        node = book.statement.nodes.get(job.reserved[0])
        if node is not None and node.gpu_type is not None and index.fits_empty(job, queue, node.gpu_type):
            others = frozenset(name for name, count in held.items() if count > (name in job.reserved))
            book.book(job, queue, node.gpu_type, avoid=others)


def _serve(index: Index, places: Places, book: Book, mine: Decided, job: Job, queue: QueueName) -> None:
    """Places ``job`` around the reservations of others (on their nodes only if it ends before they start),
    or has it wait, booking a reservation for it when it is among the first that may have one."""
    statement = places.statement
    exclude = book.exclude_for(job)
    shape = (queue, job.gpu_type, job.replicas, job.gpus_per_replica, job.cpu_millis_per_replica,
             job.memory_bytes_per_replica, job.required_level, job.preferred_level, job.node_selector,
             job.tolerations, job.priority, index.limit_of(job), exclude)  # fmt: skip
    known = book.failed.get(shape)
    if known is not None and known[0] == statement.version and job.key not in book.booked:
        _version, reason, message, failed_type = known  # the same shape, nothing given back since: it fails again
        waiting = Waiting(job, queue, failed_type, reason, message, tried=True)
        _wait(index, book, mine, job, queue, waiting)
        return
    outcome = places.attempt(job, queue, job.replicas, exclude=exclude)
    if isinstance(outcome, tuple):
        mine.binds.append(Bind(job.key, outcome))
        statement.commit()
        gpu_type = statement.nodes[outcome[0]].gpu_type if outcome else None
        if any(k != job.key and statement.nodes[r.nodes[0]].gpu_type == gpu_type for k, r in book.booked.items()):
            mine.backfilled.add(job.key)
        book.bound(job, outcome)
        return
    gpu_type = outcome.gpu_type
    if exclude and gpu_type is not None and outcome.reason in _MAYBE_RESERVED:
        probe = places.try_place(job, queue, job.replicas, gpu_type)  # the same, were nothing reserved
        if probe.nodes is not None:  # it would start now but for reservations
            outcome.reason = Reason.WAITING_FOR_OLDER_JOB
            outcome.message = _blocked_message(index, book, job, probe.nodes)
        elif probe.reason is not None:
            outcome.reason, outcome.message = probe.reason, probe.message
    book.failed[shape] = (statement.version, outcome.reason, outcome.message, gpu_type)
    _wait(index, book, mine, job, queue, outcome)


def _wait(index: Index, book: Book, mine: Decided, job: Job, queue: QueueName, outcome: Waiting) -> None:
    """``job`` waits; a gang that may have a reservation gets one (or keeps the one it has)."""
    gpu_type = outcome.gpu_type
    if outcome.reason not in _MAY_BOOK or not job.gpus_per_replica or gpu_type is None:
        book.cancel(job.key)
        mine.waiting[job.key] = outcome
        return
    reserved = book.booked.get(job.key)
    share = index.shares.get(queue, {}).get(gpu_type, 0)
    if reserved is None and _may_reserve(index, book, job, queue, gpu_type, share):
        planned = book.book(job, queue, gpu_type, share=share)
        if isinstance(planned, Never) and not planned.over_share:
            outcome.message += f"; {_never_message(planned)}"
        reserved = book.booked.get(job.key)
    if reserved is not None:
        outcome.message += f"; {describe(reserved, index.now, job.required_level)}"
    mine.waiting[job.key] = outcome


def _may_reserve(index: Index, book: Book, job: Job, queue: QueueName, gpu_type: GPUType, share: int) -> bool:
    """May ``job`` try for a reservation? A gang or a pod that takes a whole node (smaller pods find room
    soon enough), one of the first ``Policy.reservations``, waiting at least
    ``Policy.starvation_seconds``, no larger than its queue's fair share, and it fits its nodes were they
    empty (``Book.book`` then checks the share at the start it plans)."""
    return (
        len(book.booked) < index.policy.reservations
        and (job.replicas > 1 or job.gpus_per_replica >= index.largest_node(gpu_type))  # a gang, or a whole node
        and index.now - job.submitted >= index.policy.starvation_seconds
        and job.gpus <= share
        and index.fits_empty(job, queue, gpu_type)
    )


def _blocked_message(index: Index, book: Book, job: Job, nodes: tuple[NodeName, ...]) -> str:
    """Why a job that would start now on ``nodes`` waits: they are reserved, and what would let it in."""
    blocking = book.blocking(nodes, job)
    if not blocking:
        return "the nodes it could use now are reserved for other jobs"
    key, first = blocking[0]
    others = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
    message = (
        f"the nodes it could use now are reserved for {key}{others} {when(first.start, index.now, first.blockers)}"
    )
    if first.start == math.inf:
        return message + "; with a runtimeLimit it could start now"
    if first.start > index.now:
        limit = index.limit_of(job)
        has = f"it has {duration_text(limit)}" if limit is not None else "it has none"
        message += f"; with a runtimeLimit that ends by then it could start now ({has})"
    return message


def _never_message(never: Never) -> str:
    return "no start can be planned for it: the nodes it could use are reserved for other jobs"


def _around_holder(
    index: Index, places: Places, mine: Decided, holder: Job, lane: Lane, jobs: list[Job], heads: dict[Lane, int]
) -> None:
    """Places the job just taken from ``lane`` (``jobs[heads[lane] - 1]``) on nodes ``holder`` could never
    use, or has it wait for the holder; jobs behind it with the same nodes wait for the same reason."""
    queue, guess = lane
    job = jobs[heads[lane] - 1]
    holder_queue = index.job_queue[holder.key]
    held = index.names_of(index.candidates(holder, holder_queue, guess, lent=index.lent(holder, holder_queue)))
    minutes = (index.now - holder.submitted) / 60
    why = f"{guess} is held for {holder.key}, which has waited {minutes:.0f} min"
    outcome: Waiting | tuple[NodeName, ...]
    nodes = index.candidates(job, queue, guess, lent=index.lent(job, queue))
    if job.gpu_type is not None and not index.without(nodes, held):
        outcome = Waiting(job, queue, guess)  # every node it may use is held: nothing to try
        while heads[lane] < len(jobs) and _same_nodes(index, jobs[heads[lane]], queue, guess, nodes):
            behind = jobs[heads[lane]]
            heads[lane] += 1
            mine.waiting[behind.key] = Waiting(behind, queue, guess, Reason.WAITING_FOR_OLDER_JOB, why, tried=True)
    else:
        outcome = places.attempt(job, queue, job.replicas, exclude=held)
    if isinstance(outcome, tuple):
        mine.binds.append(Bind(job.key, outcome))
        places.statement.commit()
    elif outcome.gpu_type != guess and not index.fits_empty(job, queue, guess):
        mine.waiting[job.key] = outcome  # a job of any type that the held type could never take
    else:
        mine.waiting[job.key] = Waiting(job, queue, guess, Reason.WAITING_FOR_OLDER_JOB, why, tried=True)


def _same_nodes(index: Index, job: Job, queue: QueueName, gpu_type: GPUType | None, nodes: list[Node]) -> bool:
    """Is ``nodes`` (a cached candidate list) exactly what ``job`` of ``queue`` may use of ``gpu_type``?"""
    if job.gpu_type != gpu_type or not job.gpus_per_replica:
        return False
    return index.candidates(job, queue, gpu_type, lent=index.lent(job, queue)) is nodes
