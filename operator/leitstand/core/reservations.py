"""Reservations with backfill: a waiting gang that cannot start now is given nodes from a planned moment on.

``allocate`` books a reservation for the first ``Policy.reservations`` gangs
(in the order it serves them) that cannot start now but could on their empty
nodes: the ``Timeline`` of the running jobs' expected ends says when the gang
could start at the earliest and on which nodes, in one domain of its required
level. Those nodes are blocked in the timeline from that start until the gang
would end, so later reservations plan around them. Until the start, any other job may use a
reserved node only if it ends by then (``exclude_for``): a backfilled job
never delays a reserved one, as long as jobs end by their limits (the
operator enforces them).

A reservation is recomputed every cycle from the nodes the last one chose
(``Job.reserved``): it keeps them unless other nodes would start the gang
earlier (stability beats optimality), and reservations kept from the last
cycle are booked first, so a job that arrives later never takes them. Pure.
"""

import math
from dataclasses import dataclass, field

from leitstand.core.index import Holder, Index
from leitstand.core.model import GPUType, Job, JobKey, NodeName, Planned, QueueName, Reason, utc_text
from leitstand.core.statements import Statement
from leitstand.core.timeline import Never, Timeline


@dataclass(slots=True)
class Book:
    """The reservations of one cycle, in booking order, and the timeline they were planned on."""

    index: Index
    statement: Statement
    booked: dict[JobKey, Planned] = field(default_factory=dict)
    _timeline: Timeline | None = None
    _excludes: dict[tuple[JobKey, ...], frozenset[NodeName]] = field(default_factory=dict)
    _asked: dict[tuple[object, ...], frozenset[NodeName]] = field(default_factory=dict)  # (version, limit, own)
    _version: int = 0  # bumped whenever ``booked`` changes
    _held: dict[tuple[QueueName, GPUType], list[tuple[float, int]]] | None = None
    _holders: list[Holder] | None = None  # what the statement holds and when each ends; see ``holders``
    _earliest: dict[tuple[object, ...], tuple[int, Planned | Never]] = field(default_factory=dict)
    # jobs that failed this cycle, by shape: (statement version, reason, message, GPU type)
    failed: dict[tuple[object, ...], tuple[int, Reason, str, GPUType | None]] = field(default_factory=dict)

    @property
    def timeline(self) -> Timeline:
        """Built on first use from what the statement holds then; every later bind is taken into it."""
        if self._timeline is None:
            self._timeline = Timeline.of(self.statement, self.holders(), self.index.now, self.index.policy)
        return self._timeline

    def holders(self) -> list[Holder]:
        """What the statement holds and when each holder ends (``Index.holders``): read on first use, then
        each job bound since added (``bound``). The timeline and ``held_at`` share it."""
        if self._holders is None:
            self._holders = self.index.holders(self.statement.holdings)
        return self._holders

    def exclude_for(self, job: Job) -> frozenset[NodeName]:
        """Planned nodes ``job`` may not use: those of every other reservation that starts before it would
        end (all of them, for a job without a runtime limit)."""
        if not self.booked:
            return frozenset()
        limit = self.index.limit_of(job)
        asked = (self._version, limit, job.key if job.key in self.booked else None)
        known = self._asked.get(asked)
        if known is not None:
            return known
        end = None if limit is None else self.index.now + limit
        keys = tuple(
            key for key, booked in self.booked.items() if key != job.key and (end is None or booked.start < end)
        )
        cached = self._excludes.get(keys)
        if cached is None:
            cached = self._excludes[keys] = frozenset(name for key in keys for name in self.booked[key].nodes)
        self._asked[asked] = cached
        return cached

    def book(
        self,
        job: Job,
        queue: QueueName,
        gpu_type: GPUType,
        *,
        share: int | None = None,
        avoid: frozenset[NodeName] = frozenset(),
    ) -> Planned | Never:
        """Reserves nodes for ``job`` from its earliest start, keeping the nodes it had where they start it
        as early; Never when no start can be planned (the gang never fits its nodes, even as they free).

        With ``share``, only if the job keeps its queue within that many GPUs at the
        start: the queue's own jobs that will have ended by then do not count, so a
        queue that waits for its own jobs may reserve, and one that would run above
        its fair share may not (None then, and nothing is booked). Nodes in ``avoid``
        (what other gangs held reserved last cycle) are never taken: a reservation
        planned again moves only where it delays nobody else's.
        """
        index = self.index
        if share is not None and self.held_at(queue, gpu_type, math.inf) + job.gpus > share:
            return Never(over_share=True)  # its queue's jobs without a limit alone leave it no room in its share
        candidates = index.candidates(job, queue, gpu_type, lent=False)  # others' reserved nodes: blocked in time
        if avoid:
            candidates = [node for node in candidates if node.name not in avoid or node.name in job.reserved]
        timeline = self.timeline
        limit = index.limit_of(job)
        shape = (id(candidates), job.replicas, job.gpus_per_replica, job.cpu_millis_per_replica,
                 job.memory_bytes_per_replica, job.required_level, job.preferred_level, gpu_type, limit)  # fmt: skip
        known = self._earliest.get(shape) if not avoid else None
        if known is not None and known[0] == timeline.version:  # the same shape on the same timeline
            best = known[1]
        else:
            best = timeline.earliest(job, candidates, gpu_type, length=limit)
            if not avoid:
                self._earliest[shape] = (timeline.version, best)
        chosen: Planned | Never = best
        if job.reserved and len(job.reserved) == job.replicas:
            names = {node.name for node in candidates}
            if all(name in names for name in job.reserved):
                kept = timeline.fits_on(job, job.reserved, limit)
                if kept is not None and (isinstance(best, Never) or kept <= best.start):
                    domain = self._domain(job, job.reserved)
                    if index.policy.level_index(job.required_level) is None or domain is not None:
                        blockers = timeline.blockers(job.reserved) if kept == math.inf else ()
                        chosen = Planned(kept, job.reserved, domain, blockers)
        if isinstance(chosen, Never):
            return chosen
        if share is not None and self.held_at(queue, gpu_type, chosen.start) + job.gpus > share:
            return Never(over_share=True)
        timeline.reserve(chosen, limit)
        self.booked[job.key] = chosen
        self._version += 1
        return chosen

    def held_at(self, queue: QueueName, gpu_type: GPUType, at: float) -> int:
        """GPUs of ``gpu_type`` that ``queue``'s jobs (those below it included) will still hold at ``at``.

        Read once, at the cycle's first reservation: jobs bound later in the cycle do not count. Deliberately
        lenient: counting them was worse on the ITP next window and week 4 and mixed on week 3 (BENCHMARKS.md,
        "``held_at`` on every trace"), likely because it takes the reservation from a gang whose queue's small
        jobs just started."""
        if self._held is None:  # one pass over what is held, for every queue on each holder's path
            self._held = {}
            for job, holding, end in self.holders():
                if holding.gpu_type is None:
                    continue
                entry = (math.inf if end is None else end, len(holding.nodes) * job.gpus_per_replica)
                for name in holding.queues:
                    self._held.setdefault((name, holding.gpu_type), []).append(entry)
        return sum(gpus for end, gpus in self._held.get((queue, gpu_type), ()) if end > at or end == math.inf)

    def _domain(self, job: Job, nodes: tuple[NodeName, ...]) -> str | None:
        """The one domain of ``job``'s required level that holds all of ``nodes`` (None: none, or no level)."""
        level = self.index.policy.level_index(job.required_level)
        if level is None:
            return None
        found = set()
        for name in nodes:
            domains = self.statement.nodes[name].domains
            found.add(domains[level] if level < len(domains) else "")
        return (found.pop() or None) if len(found) == 1 else None

    def cancel(self, key: JobKey) -> None:
        """Drops ``key``'s reservation (it started, or may not wait for one any longer).

        Its nodes stay blocked in this cycle's timeline: later plans are only more cautious.
        """
        if self.booked.pop(key, None) is not None:
            self._version += 1

    def bound(self, job: Job, nodes: tuple[NodeName, ...]) -> None:
        """``job`` was bound to ``nodes`` this cycle: its reservation is done and its resources are taken."""
        self.cancel(job.key)
        end = self.index.expected_end(job)
        if self._holders is not None:
            holding = self.statement.holdings[job.key]
            if holding.nodes == nodes:
                self._holders.append((job, holding, end))
            else:  # it held nodes before: read the holders again when next needed
                self._holders = None
        if self._timeline is not None:
            self._timeline.take(job, nodes, end)

    def blocking(self, nodes: tuple[NodeName, ...], job: Job) -> list[tuple[JobKey, Planned]]:
        """The reservations (of others) on ``nodes``, earliest start first."""
        names = set(nodes)
        found = [(k, r) for k, r in self.booked.items() if k != job.key and not names.isdisjoint(r.nodes)]
        return sorted(found, key=lambda item: (item[1].start, item[0]))


def when(start: float, now: float, blockers: tuple[JobKey, ...] = ()) -> str:
    """``now``, ``from 2026-12-01 14:20 UTC`` (to the minute, so a message changes rarely) or ``once a/x
    ends (no limit)``: a reservation's start, for messages."""
    if start == math.inf:
        names = ", ".join(blockers[:3]) + (f" and {len(blockers) - 3} more" if len(blockers) > 3 else "")
        return f"once {names or 'jobs without a runtime limit'} end{'s' if len(blockers) == 1 else ''} (no limit)"
    if start <= now:
        return "now"
    return f"from {utc_text(start)}"


def describe(reserved: Planned, now: float, level: str | None) -> str:
    """``reserved 16 nodes in leaf su-3 from 2026-12-01 14:20 UTC; jobs that end by then may use them
    meanwhile``."""
    count = len(set(reserved.nodes))
    where = f" in {level} {reserved.domain}" if level and reserved.domain else ""
    meanwhile = "; jobs that end by then may use them meanwhile"
    if reserved.start == math.inf:
        meanwhile = "; jobs with a runtime limit may use them meanwhile"
    elif reserved.start <= now:
        meanwhile = ""
    start = when(reserved.start, now, reserved.blockers)
    return f"reserved {count} node{'s' if count != 1 else ''}{where} {start}{meanwhile}"
