"""``explain``: the last step of a cycle, from what the actions decided to ``Decisions``.

Every job that still waits gets its reason and its place in its queue; every
queue gets its guaranteed quota, limit, fair share, and allocated, pending and
reclaiming GPUs per type. Pure.
"""

from leitstand.core.decided import Decided
from leitstand.core.index import Index
from leitstand.core.model import (
    CAPACITY_REASONS,
    Decisions,
    Explanation,
    GPUType,
    JobKey,
    QueueName,
    QueueStatus,
    Share,
)
from leitstand.core.statements import Statement

_NO_SHARE = Share()


def explain(index: Index, statement: Statement, decided: Decided) -> Decisions:
    """The cycle's ``Decisions``: everything ``decided``, sorted, with every waiting job explained."""
    overcommitted = _overcommitted(index, statement)
    explanations = []
    explained: set[JobKey] = set()
    for queue in sorted(index.waiting_by_queue):
        position = 0
        for job in index.waiting_by_queue[queue]:
            waiting = decided.waiting.get(job.key)
            if waiting is None or not waiting.ranked:
                continue
            position += 1
            ahead = f"; {position - 1} job{'s' if position != 2 else ''} ahead in queue {queue}"
            message = waiting.message + (ahead if position > 1 else f"; next in queue {queue}")
            if waiting.reason in CAPACITY_REASONS and waiting.gpu_type in overcommitted:
                message += overcommitted[waiting.gpu_type]
            explanations.append(Explanation(job.key, waiting.reason, message, queue, position))
            explained.add(job.key)
    for key, waiting in decided.waiting.items():
        if key not in explained:
            explanations.append(Explanation(key, waiting.reason, waiting.message, waiting.queue, None))
    allocated = dict(index.running)
    for bind in decided.binds:
        bound_queue, gpu_type = index.job_queue.get(bind.job), decided.job_type.get(bind.job)
        if bound_queue is not None and gpu_type is not None:
            gpus = len(bind.nodes) * index.jobs_by_key[bind.job].gpus_per_replica
            for name in index.paths[bound_queue]:
                allocated[(name, gpu_type)] = allocated.get((name, gpu_type), 0) + gpus
    pending_gpus: dict[tuple[QueueName, GPUType], int] = {}
    reclaiming: dict[tuple[QueueName, GPUType], int] = {}
    for key, waiting in decided.waiting.items():
        if waiting.queue is None:
            continue
        gpu_type = waiting.gpu_type or index.default_type(waiting.queue)
        if gpu_type is None:
            continue
        into = reclaiming if key in decided.nominations else pending_gpus
        for name in index.paths[waiting.queue]:
            into[(name, gpu_type)] = into.get((name, gpu_type), 0) + waiting.job.gpus
    statuses = {}
    for name, spec in sorted(index.queues.items()):
        types = sorted(set(index.capacity) | set(spec.shares))
        statuses[name] = {
            t: QueueStatus(
                guaranteed=spec.shares.get(t, _NO_SHARE).guaranteed,
                limit=spec.shares.get(t, _NO_SHARE).limit,
                fair_share=index.shares.get(name, {}).get(t, 0),
                allocated=allocated.get((name, t), 0),
                pending=pending_gpus.get((name, t), 0),
                reclaiming=reclaiming.get((name, t), 0),
            )
            for t in types
        }
    return Decisions(
        binds=tuple(sorted(decided.binds, key=lambda b: b.job)),
        evictions=tuple(sorted(decided.evictions, key=lambda e: e.job)),
        releases=tuple(sorted(decided.releases, key=lambda r: r.job)),
        pending=tuple(sorted(explanations, key=lambda e: e.job)),
        queues=statuses,
        job_queues=index.job_queue,  # a lookup table, in snapshot order: sorting 100,000 keys is for nobody
        nominations=dict(sorted(decided.nominations.items())),
        queue_problems=dict(sorted(index.queue_problems.items())),
        namespace_conflicts=index.namespace_conflicts(),
        reserved={k: r for k, r in sorted(decided.reserved.items()) if k not in decided.nominations},
        backfilled=tuple(sorted(decided.backfilled)),
    )


def _overcommitted(index: Index, statement: Statement) -> dict[GPUType, str]:
    """Per GPU type whose leaf guarantees exceed the cluster: a note for jobs that wait for capacity."""
    leaves = [name for name in index.queues if not index.children[name] and name not in index.queue_problems]
    notes = {}
    for gpu_type, capacity in sorted(index.capacity.items()):
        promised = sum(index.queues[name].shares.get(gpu_type, _NO_SHARE).guaranteed for name in leaves)
        if promised > capacity:
            firm = sum(statement.queue_firm(name, gpu_type) for name in leaves)
            notes[gpu_type] = (
                f"; guarantees are over-committed: queues are guaranteed {promised} {gpu_type} but the cluster "
                f"has {capacity}, and jobs that may not be preempted hold {firm}"
            )
    return notes
