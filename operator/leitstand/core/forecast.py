"""When each waiting job is expected to start: a forward plan of the queues, continuing a cycle.

``estimate`` takes what a cycle decided and plans on: a ``Timeline`` of the
statement as the cycle left it, every holding ending when it likely will
(``Index.likely_end``: its start plus its queue's runtime fraction, the median
share of their limits its finished jobs ran, of its limit); the reserved
gangs, each at the first moment its reserved nodes are likely free (never
later than its reservation), blocking them while it would run; then every
other job that waits for capacity in the order ``allocate`` serves them
(priority, then the least served queue for the type, with the planned starts
counted as served), each at the earliest moment its gang has room for its
whole runtime limit (``Timeline.earliest``; the cycle lets a job use reserved
nodes only if its limit ends before the reservation starts), taking that room
for as long as it likely runs. No new arrivals are assumed. While fewer than
five of the site's jobs have finished, runtime limits stand in for runtimes
and an estimate is the start if every job runs to its limit.

A nominated job's estimate is now (it starts once its victims are gone). A job
waiting for quota (its queue's limit or guarantee) gets none: it waits for its
own queue's jobs, not for capacity. A start at ``math.inf`` waits for jobs
without a runtime limit (``Planned.blockers``). Pure.
"""

import heapq
import math

from leitstand.core.decided import Decided
from leitstand.core.index import Index
from leitstand.core.model import CAPACITY_REASONS, GPUType, Job, JobKey, Node, NodeName, Planned, QueueName, Reason
from leitstand.core.statements import Statement
from leitstand.core.timeline import Never, Timeline

PLANNED = CAPACITY_REASONS | {Reason.WAITING_FOR_OLDER_JOB, Reason.GANG_INCOMPLETE}  # waits for capacity


def estimate(index: Index, statement: Statement, decided: Decided) -> dict[JobKey, Planned]:
    """Each waiting job's expected start (those waiting for capacity); see the module docstring."""
    now = index.now
    timeline = Timeline.of_cycle(index, statement, likely=True)
    estimates: dict[JobKey, Planned] = {}
    for key, nodes in decided.nominations.items():
        estimates[key] = Planned(now, nodes)
    for key, reserved in sorted(decided.reserved.items(), key=lambda item: (item[1].start, item[0])):
        if key in estimates:
            continue
        job = index.jobs_by_key[key]
        length = index.likely_runtime(job)
        start = timeline.fits_on(job, reserved.nodes, length) if math.isfinite(reserved.start) else None
        if start is not None and start < reserved.start:  # its nodes are likely free before the limits say
            reserved = Planned(start, reserved.nodes, reserved.domain, reserved.blockers)
        timeline.reserve(reserved, length)
        estimates[key] = reserved
    lanes: dict[tuple[QueueName, GPUType | None], list[Job]] = {}
    for queue in sorted(index.waiting_by_queue):
        for job in index.waiting_by_queue[queue]:
            waiting = decided.waiting.get(job.key)
            if waiting is None or job.key in estimates or waiting.reason not in PLANNED or not waiting.ranked:
                continue
            lane_type = job.gpu_type or (index.default_type(queue) if job.gpus_per_replica else None)
            lanes.setdefault((queue, lane_type), []).append(job)
    planned: dict[tuple[QueueName, GPUType], int] = {}
    heads = dict.fromkeys(lanes, 0)
    heap: list[tuple[int, tuple[int, float], QueueName, str]] = []

    def push(lane: tuple[QueueName, GPUType | None]) -> None:
        if heads[lane] < len(lanes[lane]):
            queue, lane_type = lane
            rank: tuple[int, float] = (0, 0.0)
            if lane_type is not None:
                held = statement.queue_allocated(queue, lane_type) + planned.get((queue, lane_type), 0)
                share = index.shares.get(queue, {}).get(lane_type, 0)
                rank = (0, held / share) if share else (1, float(held))
            head = lanes[lane][heads[lane]]
            heapq.heappush(heap, (-int(head.priority), rank, queue, lane_type or ""))

    for lane in lanes:
        push(lane)
    floors: dict[tuple[object, ...], float] = {}  # the same shape never starts before the one planned before it
    singles: dict[tuple[object, ...], _Singles] = {}
    while heap:
        _priority, _rank, queue, type_name = heapq.heappop(heap)
        lane = (queue, GPUType(type_name) if type_name else None)
        job = lanes[lane][heads[lane]]
        heads[lane] += 1
        # room for its whole limit, as the cycle asks of a job that starts before a reservation on its nodes;
        # it then holds that room only as long as it likely runs
        limit, likely = index.limit_of(job), index.likely_runtime(job)
        best: tuple[Planned, GPUType | None] | None = None
        for gpu_type in index.types_for(job):
            candidates = index.candidates(job, queue, gpu_type, lent=False)
            shape = (id(candidates), job.replicas, job.gpus_per_replica, job.cpu_millis_per_replica,
                     job.memory_bytes_per_replica, job.required_level, job.preferred_level, limit)  # fmt: skip
            floor = floors.get(shape)
            if job.replicas == 1 and job.required_level is None:  # most jobs: one pod, anywhere
                if shape not in singles:
                    singles[shape] = _Singles(timeline, job, candidates, limit)
                found = singles[shape].earliest(floor)
            else:
                found = timeline.earliest(job, candidates, gpu_type, length=limit, not_before=floor)
            if isinstance(found, Never):
                continue
            floors[shape] = found.start
            if best is None or found.start < best[0].start:
                best = (found, gpu_type)
        if best is not None:
            found, gpu_type = best
            timeline.take(job, found.nodes, None if likely is None else found.start + likely, since=found.start)
            estimates[job.key] = found
            if gpu_type is not None:
                for name in index.paths[queue]:
                    planned[(name, gpu_type)] = planned.get((name, gpu_type), 0) + job.gpus
        push(lane)
    return dict(sorted(estimates.items()))


class _Singles:
    """The candidate nodes of one single-pod shape, by the first moment the pod fits each (and, at the same
    moment, the fewest free GPUs first), kept current lazily: a node whose profile changed since is looked at
    again when it comes up."""

    def __init__(self, timeline: Timeline, job: Job, candidates: list[Node], length: float | None) -> None:
        self.timeline, self.job, self.length = timeline, job, length
        self.heap: list[tuple[float, int, NodeName, int]] = []
        for node in candidates:
            self._push(node.name, timeline.now)
        heapq.heapify(self.heap)

    def _push(self, name: NodeName, since: float) -> None:
        at = self.timeline.first_fit(self.job, name, self.length, since)
        if at is not None:
            free = int(self.timeline.free_at(name, at)[1])
            entry = (at, free, name, self.timeline.versions.get(name, 0))
            heapq.heappush(self.heap, entry)

    def earliest(self, floor: float | None) -> Planned | Never:
        since = self.timeline.now if floor is None else max(floor, self.timeline.now)
        while self.heap:
            at, _free, name, version = self.heap[0]
            if version == self.timeline.versions.get(name, 0) and at >= since:
                return Planned(at, (name,), None, self.timeline.blockers((name,)) if at == math.inf else ())
            heapq.heappop(self.heap)
            self._push(name, since)
        return Never()
