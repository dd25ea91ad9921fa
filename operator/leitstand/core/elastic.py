"""Elastic jobs: a gang of ``min_replicas`` that grows into idle capacity up to ``replicas``, and shrinks first.

An elastic job (``Job.min_replicas`` below ``replicas``) enters a cycle as two
kinds of job (``split``):

- its **gang**, the job itself cut to its first ``min_replicas`` ranks: placed
  all together or not at all, queued, reserved, reclaimed and explained like any
  other gang;
- one **growth replica** per rank above the gang (``Job.grows`` names the job,
  ``Job.rank`` the rank): a preemptible gang of one, whatever the job's priority.
  Growth replicas are never demand (they neither raise their queue's fair share
  nor wait in its lane); once placed they count as the queue's allocation, so
  they are always over its share, and reclaim and preemption take them before
  any whole gang, the highest ranks first (``preemption.Pool``).

``grow`` runs last in a cycle: it places growth replicas of running gangs, one
replica at a time to the least served queue first, only on nodes where no
waiting job of a queue at or below its fair share would start now (nor one of
its own queue), that are reserved for no waiting gang and freed by no eviction
of this cycle, and inside the domain of the gang's required level.
Growth replicas whose gang no longer runs are released.

``fold`` turns the cycle's decisions back into decisions about whole jobs:
binds, evictions and releases of replicas carry their ``ranks``. Pure.
"""

import heapq
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from leitstand.core.decided import Decided
from leitstand.core.index import Index
from leitstand.core.model import (
    CAPACITY_REASONS,
    Bind,
    Decisions,
    Eviction,
    Job,
    JobKey,
    NodeName,
    Planned,
    Priority,
    QueueName,
    Reason,
    Release,
    Snapshot,
    order_key,
)
from leitstand.core.places import Places, served
from leitstand.core.statements import Statement

SEPARATOR = "#"  # a growth replica's key: "<job key>#<rank>"

# waiting for capacity: what a waiting job could use of the nodes a growth replica would take
_WANTS_CAPACITY = CAPACITY_REASONS | {Reason.WAITING_FOR_OLDER_JOB, Reason.WAITING_FOR_RECLAIM, Reason.GANG_INCOMPLETE}


def split(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with every elastic job as its gang plus one growth replica per rank above it; the same
    snapshot when no job is elastic."""
    if not any(job.elastic for job in snapshot.jobs):
        return snapshot
    jobs: list[Job] = []
    for job in snapshot.jobs:
        if not job.elastic:
            jobs.append(job)
            continue
        gang = job.gang
        placement = job.placement
        placed = any(node is not None for node in placement)
        base = placement[:gang] if placed else ()
        if placed and len(base) < gang:
            base += (None,) * (gang - len(base))
        if placed and not any(node is not None for node in base):
            base = ()  # only growth replicas are bound: the gang waits whole, and they are released
        jobs.append(replace(job, replicas=gang, placement=base, min_replicas=None, leaving=()))
        for rank in range(gang, job.replicas):
            node = placement[rank] if rank < len(placement) else None
            jobs.append(
                replace(
                    job,
                    key=growth_key(job.key, rank),
                    replicas=1,
                    placement=() if node is None else (node,),
                    priority=Priority.TRAIN,
                    min_replicas=None,
                    grows=job.key,
                    rank=rank,
                    started=job.started if node is not None else None,
                    terminating=job.terminating or rank in job.leaving,
                    leaving=(),
                    nominated=(),
                    reserved=(),
                    reserved_start=None,
                )
            )
    return replace(snapshot, jobs=tuple(jobs))


def growth_key(key: JobKey, rank: int) -> JobKey:
    return JobKey(f"{key}{SEPARATOR}{rank}")


def grow(index: Index, statement: Statement, before: Decided) -> Decided:
    """Places growth replicas of running gangs into capacity nobody entitled to it waits for; releases those
    whose gang no longer runs. See the module docstring."""
    mine = Decided()
    if not index.growing:
        return mine
    gone = {e.job for e in before.evictions} | {r.job for r in before.releases}
    bound = {b.job: b.nodes for b in before.binds}
    running: dict[JobKey, tuple[NodeName, ...]] = {}  # gangs that run after this cycle, and their nodes
    for key in index.growing:
        gang = index.jobs_by_key[key]
        if key in gone or gang.terminating:
            continue
        nodes = tuple(node for node in gang.placement if node is not None) + bound.get(key, ())
        if len(nodes) == gang.replicas:
            running[key] = nodes
    for key, replicas in sorted(index.growing.items()):
        for replica in replicas:
            if not replica.placement or replica.terminating or replica.key in gone:
                continue
            if key not in running:
                mine.releases.append(Release(replica.key, f"its gang {key} does not run"))
            elif replica.placement[0] not in statement.nodes:
                mine.releases.append(Release(replica.key, f"it is bound to {replica.placement[0]}, which is gone"))
            # it keeps its node for the rest of the cycle: its pod runs until the caller has deleted it
    places = Places(index, statement, mine)
    everyone, own = _wanted(index, statement, places, before)
    blocking: dict[QueueName, frozenset[NodeName]] = {}
    heap: list[tuple[tuple[int, float], tuple[int, float, str], JobKey]] = []
    next_rank: dict[JobKey, int] = {}
    for key in running:
        queue = index.job_queue.get(key)
        holding = statement.holdings.get(key)
        if queue is None or holding is None:
            continue
        next_rank[key] = 0
        gang = index.jobs_by_key[key]
        heapq.heappush(heap, (served(index, statement, queue, holding.gpu_type), order_key(gang), key))
    while heap:
        _rank, _order, key = heapq.heappop(heap)
        waiting = [r for r in index.growing[key] if not r.placement and not r.terminating]
        if next_rank[key] >= len(waiting):
            continue
        replica = waiting[next_rank[key]]
        queue = index.job_queue[key]
        holding = statement.holdings[key]
        level = index.policy.level_index(replica.required_level)
        pinned = None
        if level is not None:
            domains = statement.nodes[running[key][0]].domains
            pinned = domains[level] if level < len(domains) else None
            if not pinned:
                continue
        if queue in own and queue not in blocking:  # kept for the cycle: candidate lists are cached by its id
            blocking[queue] = everyone | own[queue]
        blocked = blocking.get(queue, everyone)
        outcome = places.attempt(replica, queue, 1, pinned=pinned, only_type=holding.gpu_type, exclude=blocked)
        if not isinstance(outcome, tuple):
            continue  # nothing more fits it this cycle
        statement.commit()
        mine.binds.append(Bind(replica.key, outcome))
        next_rank[key] += 1
        heapq.heappush(heap, (served(index, statement, queue, holding.gpu_type), _order, key))
    return mine


def _wanted(
    index: Index, statement: Statement, places: Places, before: Decided
) -> tuple[frozenset[NodeName], dict[QueueName, frozenset[NodeName]]]:
    """Nodes growth must leave alone: for every queue, those of this cycle's victims, those reserved for
    waiting gangs, and the nodes where a job waiting for capacity would start now (it may wait only because a
    reservation or an older job holds it back) when its queue is at or below its fair share of that GPU type;
    for a queue's own growth, also where its own waiting jobs would start (they come before its growth).

    What a waiting job could not use now (a gang larger than what is free) is growth's to use meanwhile:
    allocation always serves waiting jobs first, and reclaim takes growth back first, so it never stands
    in a waiting job's way for longer than its pods take to stop."""
    wanted: set[NodeName] = {name for planned in before.reserved.values() for name in planned.nodes}
    wanted |= before.freed  # this cycle's victims still run there until they are gone
    own: dict[QueueName, set[NodeName]] = {}
    for waiting in before.waiting.values():
        queue = waiting.queue
        if queue is None or waiting.reason not in _WANTS_CAPACITY or not waiting.ranked:
            continue
        for gpu_type in index.types_for(waiting.job):  # a job of any type: every type it might use
            if gpu_type is None:
                continue
            over = statement.queue_allocated(queue, gpu_type) > index.shares.get(queue, {}).get(gpu_type, 0)
            outcome = places.try_place(waiting.job, queue, waiting.job.replicas, gpu_type)
            if outcome.nodes is not None:
                (own.setdefault(queue, set()) if over else wanted).update(outcome.nodes)
    return frozenset(wanted), {queue: frozenset(names) for queue, names in own.items()}


def fold(decisions: Decisions, snapshot: Snapshot) -> Decisions:
    """``decisions`` of a split snapshot as decisions about the jobs of ``snapshot``: binds, evictions and
    releases of growth replicas, and binds of elastic gangs, carry their ranks."""
    elastic = {job.key: job for job in snapshot.jobs if job.elastic}
    if not elastic:
        return decisions

    def owner(key: JobKey) -> tuple[JobKey, int | None]:
        base, sep, rank = key.rpartition(SEPARATOR)
        if sep and JobKey(base) in elastic and rank.isdigit():
            return JobKey(base), int(rank)
        return key, None

    binds: dict[JobKey, list[tuple[int, NodeName]]] = {}
    kept_binds: list[Bind] = []
    for bind in decisions.binds:
        key, rank = owner(bind.job)
        if rank is not None:
            binds.setdefault(key, []).append((rank, bind.nodes[0]))
        elif key in elastic:
            job = elastic[key]
            free = [r for r in range(job.gang) if r >= len(job.placement) or job.placement[r] is None]
            binds.setdefault(key, []).extend(zip(free, bind.nodes, strict=False))
        else:
            kept_binds.append(bind)
    for key, pairs in binds.items():
        pairs.sort()
        kept_binds.append(Bind(key, tuple(node for _rank, node in pairs), tuple(rank for rank, _node in pairs)))
    evictions = _fold_stops(decisions.evictions, owner)
    releases = _fold_stops(decisions.releases, owner)

    def named(planned: Planned) -> Planned:
        blockers = tuple(dict.fromkeys(owner(key)[0] for key in planned.blockers))
        return planned if blockers == planned.blockers else replace(planned, blockers=blockers)

    return replace(
        decisions,
        reserved={key: named(planned) for key, planned in decisions.reserved.items()},
        estimates={key: named(planned) for key, planned in decisions.estimates.items()},
        binds=tuple(sorted(kept_binds, key=lambda b: b.job)),
        evictions=tuple(evictions),
        releases=tuple(releases),
        job_queues={key: queue for key, queue in decisions.job_queues.items() if owner(key)[1] is None},
        backfilled=tuple(key for key in decisions.backfilled if owner(key)[1] is None),
    )


Stop = TypeVar("Stop", Eviction, Release)


def _fold_stops(stops: tuple[Stop, ...], owner: Callable[[JobKey], tuple[JobKey, int | None]]) -> list[Stop]:
    """Stops of growth replicas merged per job (ranks, highest first); a stop of the gang stops the whole job."""
    whole: dict[JobKey, Stop] = {}
    parts: dict[tuple[JobKey, str], tuple[Stop, list[int]]] = {}
    for stop in stops:
        key, rank = owner(stop.job)
        if rank is None:
            whole[key] = stop
            continue
        group = (key, str(getattr(stop, "beneficiary", "")))  # replicas taken for different jobs stay apart
        if group in parts:
            parts[group][1].append(rank)
        else:
            parts[group] = (stop, [rank])
    folded = list(whole.values())
    for (key, beneficiary), (first, ranks) in parts.items():
        if key in whole and str(getattr(whole[key], "beneficiary", "")) == beneficiary:
            continue  # the whole job goes for the same job
        ranks.sort(reverse=True)
        count = f"{len(ranks)} replica{'s' if len(ranks) != 1 else ''} above its minimum"
        folded.append(replace(first, job=key, ranks=tuple(ranks), message=f"{count}: {first.message}"))
    return sorted(folded, key=lambda stop: (stop.job, stop.ranks != (), stop.ranks))
