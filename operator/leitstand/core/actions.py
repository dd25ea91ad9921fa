"""The actions of a cycle that place jobs: ``nominate``, ``repair`` and ``allocate``.

Each takes the cycle's ``Index``, its ``Statement`` and what the actions before
it decided (a ``Decided``, read only), changes the statement, and returns what
it decided itself; ``scheduling.schedule`` runs them in that order, then
``preemption.reclaim``, and adds up what they return. Pure.
"""

import heapq

from leitstand.core.decided import Decided, Waiting
from leitstand.core.index import Index
from leitstand.core.model import CAPACITY_REASONS, Bind, GPUType, Job, Node, NodeName, QueueName, Reason, Release
from leitstand.core.places import Places, quota_block, served, within_share
from leitstand.core.statements import Statement


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
        need: dict[NodeName, tuple[int, int, int]] = {}
        for name in nodes:
            gpus, cpu, memory = need.get(name, (0, 0, 0))
            need[name] = (
                gpus + job.gpus_per_replica,
                cpu + job.cpu_millis_per_replica,
                memory + job.memory_bytes_per_replica,
            )
        free = statement.free
        if all(
            free[name].gpus >= g and free[name].cpu_millis >= c and free[name].memory_bytes >= m
            for name, (g, c, m) in need.items()
        ):
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
    or not at all. A job waiting longer than ``Policy.starvation_seconds`` that
    its queue's fair share entitles to run, and that could fit its nodes were
    they empty, holds its GPU type: later jobs may use only nodes it could
    never use (``_around_holder``), so a stream of smaller jobs cannot starve it.
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
    heap: list[tuple[int, tuple[int, float], QueueName, str, Lane]] = []
    heads = dict.fromkeys(lanes, 0)

    def push(lane: Lane) -> None:
        jobs = lanes[lane]
        if heads[lane] < len(jobs):
            head = jobs[heads[lane]]
            queue, lane_type = lane
            rank = served(index, statement, queue, lane_type)
            heapq.heappush(heap, (-int(head.priority), rank, queue, lane_type or "", lane))

    for lane in lanes:
        push(lane)
    held_types: dict[tuple[QueueName | None, GPUType | None], Job] = {}  # by (reserved pool owner, type)
    while heap:
        *_rank, lane = heapq.heappop(heap)
        queue, guess = lane
        job = lanes[lane][heads[lane]]
        heads[lane] += 1
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
    return mine


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
