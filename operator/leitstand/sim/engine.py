"""The discrete-event simulation: arrivals, cycles, starts, completions and evictions on simulated time.

A ``Scheduler`` is a function from a core ``Snapshot`` and the simulated time
to a ``Step``: new placements (whole gangs, or single pods for schedulers
without gangs), evictions, the jobs that failed to fit, and optionally the fair
shares it worked from. Leitstand's scheduler is ``leitstand.core.scheduling.schedule``
itself (``baselines.leitstand``); the baselines live beside it.

Time moves from event to event. Before each cycle every event due by then is
applied; a cycle runs at the next event, but no sooner than ``interval``
seconds after the previous one (the operator's debounce). An evicted job runs
on through its queue's preemption notice (or until a minute after its next
checkpoint in it, when the scheduler knows its interval), then its pods take ``grace_seconds``
to terminate, holding their nodes all the while (at once when both are 0: then
a cycle that evicted is followed by another at the same instant). An
evicted job resumes from its last checkpoint (every ``checkpoint_interval``
seconds of its run; without one it starts over): the work since then is
counted as lost, as ``model.work_at_risk`` counts it. Each queue's decayed
over-quota usage (``fairshare.remember``) goes into every snapshot, as the
operator keeps it in GPUQuota statuses.

Elastic jobs (``TraceJob.min_replicas`` below ``replicas``) run once the
replicas of their gang (ranks below ``min_replicas``) are placed. An elastic
job's work is ``replicas`` x ``duration`` replica-seconds (its duration as
traced, at its full size); it progresses at the rate of its working replicas
(linear scaling: placed ones, less those a shrink has stopped). Each time that
number changes while it runs, it grows or shrinks: its workers restart from
their last save, as torchrun does on a change of membership. The work since
that save is lost (its GPUs times the seconds since, in ``lost_gpu_seconds``;
the restart counts in ``resizes``), its saves count again from the restart, and
its end is computed anew (the old FINISH event is dropped by its generation).
An elastic job saves every ``checkpoint_interval`` seconds, else every
``elastic_checkpoint_interval``. Replicas a shrink stops (``Step.shrinks``) run
on through their queue's preemption notice as an evicted job does (till a minute
after the job's next save, when the scheduler knows its interval), then take
``grace_seconds`` to terminate, holding their nodes all the while
(``Job.leaving``; at once when both are 0). A shrink is not an eviction: it
counts in ``resizes``, not ``preemptions``. A whole elastic job evicted resumes
from its last save, as any job does; a runtime limit ends it at its limit from
its start, whatever its size meanwhile.
"""

import collections
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from leitstand.core import fairshare
from leitstand.core.model import (
    Finished,
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Queue,
    QueueName,
    Share,
    Snapshot,
    preemption_notice,
    stop_time,
    unsaved,
)
from leitstand.sim.traces import TraceJob

ARRIVE, FINISH, GONE = 0, 1, 2  # GONE: an evicted job's pods have terminated
STOP, LEFT = 3, 4  # replicas an elastic job shrinks by stop working; their pods have terminated
FINISHED_PER_NAMESPACE = 50  # the latest finished jobs each cycle's snapshot carries, per namespace
MAX_ROUNDS = 4  # cycles at one instant after evictions


@dataclass(frozen=True, slots=True)
class Step:
    """What a scheduler decided in one cycle.

    ``placements`` are jobs' whole new placements, one entry per replica (None: not placed; empty: the job
    waits whole). An elastic job runs with some of its replicas unplaced: those above its gang. ``evictions``
    stop whole jobs; ``shrinks`` stop only the replicas of the ranks given, of elastic jobs (they hold their
    nodes until their pods are gone, as ``Job.leaving``).
    """

    placements: Mapping[JobKey, tuple[NodeName | None, ...]] = field(default_factory=dict)
    evictions: tuple[JobKey, ...] = ()
    shrinks: Mapping[JobKey, tuple[int, ...]] = field(default_factory=dict)  # ranks that stop, by elastic job
    failed: tuple[JobKey, ...] = ()  # tried and did not fit (the fragmentation measure's trigger)
    fair_shares: Mapping[QueueName, Mapping[GPUType, int]] | None = None
    job_queues: Mapping[JobKey, QueueName] | None = None
    nominations: Mapping[JobKey, tuple[NodeName, ...]] = field(default_factory=dict)  # kept with the jobs
    reserved: Mapping[JobKey, tuple[NodeName, ...]] = field(default_factory=dict)  # kept with the jobs too
    reserved_starts: Mapping[JobKey, float] = field(default_factory=dict)  # each reservation's planned start
    backfilled: tuple[JobKey, ...] = ()
    moved: tuple[JobKey, ...] = ()  # of ``evictions``, the jobs moved so that a gang finds a whole domain
    estimates: Mapping[JobKey, float] = field(default_factory=dict)  # expected starts, on the cycles that plan them


class Scheduler(Protocol):
    """One scheduling cycle of some policy."""

    @property
    def name(self) -> str: ...

    def __call__(self, snapshot: Snapshot, now: float) -> Step: ...


@dataclass(slots=True)
class Record:
    """What happened to one job."""

    trace: TraceJob
    first_start: float | None = None
    finish: float | None = None
    preemptions: int = 0
    lost_gpu_seconds: float = 0.0  # work thrown away by evictions and (elastic jobs) resizes, GPUs x seconds
    resizes: int = 0  # times an elastic job grew or shrank while it ran (its workers restarted)
    moves: int = 0  # of its preemptions, those that moved it so a gang found a whole domain (consolidation)
    moved_gpu_seconds: float = 0.0  # of its lost work, what those moves threw away
    first_estimate: float | None = None  # the first expected start planned for it (near its submission)
    last_estimate: float | None = None  # the last one before it started
    first_reserved: float | None = None  # the start its first reservation planned
    backfilled: bool = False  # it started behind a reserved gang, around the reservation


@dataclass(frozen=True, slots=True)
class Sample:
    """The cluster after one cycle."""

    time: float
    allocated: int
    pending: int
    by_queue: Mapping[QueueName, int]
    fair_share: Mapping[QueueName, int]
    working: int = 0  # GPUs of running gangs (elastic: their working replicas'); half a gang does no work
    reservations: int = 0  # gangs holding a reservation after the cycle
    reserved_idle: int = 0  # GPUs free on reserved nodes after the cycle (kept for the gangs that reserved them)
    # free GPUs running elastic jobs could still grow into: of their GPU type, in whole replicas, to their maximum;
    # an upper bound (it does not ask whether the queue's limit, a reservation or a selector allows them)
    growth_room: int = 0


@dataclass(frozen=True, slots=True)
class FirstFailure:
    """The first time a job did not fit: when, which job, and how many GPUs were unallocated."""

    time: float
    job: str
    job_gpus: int
    unallocated: int


@dataclass(slots=True)
class Result:
    """A whole run: per-job records, samples over time, the first failure, and the cycle count."""

    scheduler: str
    capacity: int
    records: dict[JobKey, Record]
    samples: list[Sample]
    first_failure: FirstFailure | None
    cycles: int
    end: float
    stopped_early: bool
    usage_half_life: float = 0.0  # the run's, for the report's fairness over time


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: the cycle interval, limits, and the fill experiment.

    ``fill`` replays arrivals only, one job per cycle, nothing ever finishes, and
    stops at the first job that does not fit: the setting of the fragmentation
    measure in "Beware of Fragmentation" (ATC '23).
    """

    interval: float = 10.0
    until: float = math.inf
    fill: bool = False
    runtime_limit_factor: float | None = None  # a job without a limit of its own asks for this x its duration
    checkpoint_interval: float | None = None  # every job saves its work this often (None: never; evictions lose all)
    elastic_checkpoint_interval: float | None = 1800.0  # elastic jobs save this often without checkpoint_interval
    checkpoints_known: bool = True  # the scheduler is told the interval (False: it chooses victims blind to it)
    grace_seconds: float = 0.0  # an evicted job's pods terminate this long after they stop, holding their nodes
    preemption_notice: float | None = None  # seconds every queue's jobs run on once evicted (None: the queues')
    usage_half_life: float = 7 * 24 * 3600.0  # of each queue's decayed over-quota usage; 0 keeps none


Progress = Callable[[float, int, int], None]  # (simulated time, jobs done or placed, jobs in all)


@dataclass(frozen=True, slots=True)
class _Run:
    """An elastic job running at one size: since its last (re)start, from the work it had saved then."""

    since: float
    base: float  # replica-seconds of its work done at ``since``
    replicas: int  # working replicas: its rate of progress


class Simulation:
    """One scheduler over one cluster and trace; ``run`` returns the ``Result``."""

    def __init__(
        self,
        scheduler: Scheduler,
        nodes: Sequence[Node],
        queues: Sequence[Queue],
        trace: Sequence[TraceJob],
        options: Options = Options(),
    ) -> None:
        self.scheduler = scheduler
        self.nodes = tuple(nodes)
        self.queues = tuple(queues)
        if options.preemption_notice is not None:
            self.queues = tuple(replace(q, preemption_notice=options.preemption_notice) for q in self.queues)
        self.queue_by_name = {q.name: q for q in self.queues}
        self.options = options
        self.gpus = {node.name: node.gpus for node in self.nodes if node.gpu_type is not None and node.ready}
        self.gpu_types = {node.name: node.gpu_type for node in self.nodes}
        self.capacity = sum(self.gpus.values())
        self.trace = {JobKey(job.name): job for job in trace}
        self.records = {key: Record(job) for key, job in self.trace.items()}
        self.jobs: dict[JobKey, Job] = {}  # submitted and not finished
        self.generation: dict[JobKey, int] = {}
        self.events: list[tuple[float, int, int, JobKey, int]] = []
        self.sequence = 0
        self.samples: list[Sample] = []
        self.first_failure: FirstFailure | None = None
        self.cycles = 0
        self.done = 0
        self.queue_of_namespace = {ns: q.name for q in self.queues for ns in q.namespaces}
        self.finished: dict[str, collections.deque[Finished]] = {}
        self.saved: dict[JobKey, float] = {}  # seconds of its work each evicted job had saved (resumed from there)
        self.ends: dict[JobKey, float] = {}  # when each running job ends, unless evicted first
        self.usage: dict[QueueName, float] = {}  # decayed over-quota GPU-seconds per queue
        self.over_quota: dict[QueueName, int] = {}  # GPUs each queue held above its guarantees after the last cycle
        self.usage_time = 0.0
        # elastic jobs
        self.runs: dict[JobKey, _Run] = {}  # each running elastic job's size and progress
        self.work_saved: dict[JobKey, float] = {}  # replica-seconds each stopped elastic job saved (resumed there)
        self.stopped: dict[JobKey, frozenset[int]] = {}  # ranks a shrink stopped whose pods still terminate
        self.stopping: dict[int, tuple[JobKey, int, tuple[int, ...]]] = {}  # STOP and LEFT events due, by tag
        self.tags = 0
        self.touched: set[JobKey] = set()  # elastic jobs a cycle placed or shrank: their sizes are checked after it
        for key, job in self.trace.items():
            self._push(job.submit, ARRIVE, key, 0)

    def _push(self, time: float, kind: int, key: JobKey, generation: int) -> None:
        self.sequence += 1
        heapq.heappush(self.events, (time, kind, self.sequence, key, generation))

    # -- events ---------------------------------------------------------------------------

    def _arrive(self, key: JobKey) -> None:
        trace = self.trace[key]
        self.jobs[key] = Job(
            key=key,
            namespace=trace.tenant,
            replicas=trace.replicas,
            gpus_per_replica=trace.gpus_per_replica,
            cpu_millis_per_replica=trace.cpu_millis_per_replica,
            memory_bytes_per_replica=trace.memory_bytes_per_replica,
            gpu_type=trace.gpu_type,
            priority=trace.priority,
            submitted=trace.submit,
            runtime_limit=self._limit(trace),
            required_level=trace.required_level,
            movable=trace.movable,
            checkpoint_interval=self._interval(trace) if self.options.checkpoints_known else None,
            min_replicas=trace.min_replicas,
        )
        self.generation[key] = 0

    def _interval(self, trace: TraceJob) -> float | None:
        """How often the job saves its work (None: never)."""
        interval = self.options.checkpoint_interval
        if interval is None and trace.elastic:
            return self.options.elastic_checkpoint_interval
        return interval

    def _limit(self, trace: TraceJob) -> float | None:
        factor = self.options.runtime_limit_factor
        if trace.runtime_limit is not None:
            return trace.runtime_limit
        if factor is None or not math.isfinite(trace.duration):
            return None
        return max(factor * trace.duration, 1.0)

    def _finish(self, key: JobKey, now: float) -> None:
        self.records[key].finish = now
        job = self.jobs.pop(key)
        self.done += 1
        if job.elastic:
            self.runs.pop(key, None)
            self.stopped.pop(key, None)
            self._forget(key)
        if job.started is not None:  # what start estimates learn from, as the operator reads finished jobs
            latest = self.finished.setdefault(job.namespace, collections.deque(maxlen=FINISHED_PER_NAMESPACE))
            latest.append(Finished(job.namespace, now - job.started, job.runtime_limit, now))

    def _place(self, key: JobKey, nodes: tuple[NodeName | None, ...], now: float) -> None:
        job = self.jobs[key]
        if job.elastic:
            self._place_elastic(key, nodes, now)
            return
        placed = replace(job, placement=nodes)
        if placed.running:
            placed = replace(placed, started=now)
            self._first_start(key, now)
            duration = self.trace[key].duration - self.saved.get(key, 0.0)  # resumed from its last checkpoint
            if job.runtime_limit is not None:
                duration = min(duration, job.runtime_limit)  # the operator ends a job at its limit
            if not self.options.fill and math.isfinite(duration):
                self._push(now + duration, FINISH, key, self.generation[key])
                self.ends[key] = now + duration
        self.jobs[key] = placed

    def _first_start(self, key: JobKey, now: float) -> None:
        """Records when a job first ran (in the fill experiment, a job placed is a job done)."""
        record = self.records[key]
        if record.first_start is None:
            record.first_start = now
            if self.options.fill:
                self.done += 1

    def _evict(self, key: JobKey, now: float, *, moved: bool = False) -> None:
        job = self.jobs[key]
        record = self.records[key]
        lost_before = record.lost_gpu_seconds
        queue = self.queue_of_namespace.get(job.namespace)
        notice = preemption_notice(queue, self.queue_by_name)  # it runs on, and may save, until its pods stop
        stop = stop_time(job, now, notice)  # as the operator sets it (told the interval: after its next save)
        if job.running and self.ends.get(key, math.inf) <= stop:  # it ends during its notice: it is not stopped
            self.jobs[key] = replace(job, terminating=True)
            return
        record.preemptions += 1
        if job.elastic:
            self._forget(key, STOP)  # the whole job stops: so do the replicas it was shrinking by
            run = self.runs.pop(key, None)
            if run is not None:
                self.work_saved[key] = self._halt(key, run, stop)
            self.ends.pop(key, None)
        elif job.started is not None and job.running:
            ran = max(stop - job.started, 0.0)
            interval = self.options.checkpoint_interval
            kept = ran - ran % interval if interval else 0.0  # up to its last checkpoint: resumed from there
            if job.movable:
                kept = ran  # it saves when told to stop: nothing is lost
            self.saved[key] = self.saved.get(key, 0.0) + kept
            record.lost_gpu_seconds += job.gpus * (ran - kept)
        if moved:
            record.moves += 1
            record.moved_gpu_seconds += record.lost_gpu_seconds - lost_before
        self.generation[key] += 1
        if stop - now + self.options.grace_seconds > 0 and job.placement:
            self.jobs[key] = replace(job, terminating=True)
            self._push(stop + self.options.grace_seconds, GONE, key, self.generation[key])
        else:
            self._gone(key)

    def _gone(self, key: JobKey) -> None:
        self.jobs[key] = replace(self.jobs[key], placement=(), started=None, terminating=False)
        if self.jobs[key].elastic:
            self.jobs[key] = replace(self.jobs[key], leaving=(), last_checkpoint=None)
            self.stopped.pop(key, None)
            self._forget(key)

    # -- elastic jobs ---------------------------------------------------------------------

    def _place_elastic(self, key: JobKey, nodes: tuple[NodeName | None, ...], now: float) -> None:
        """A new placement of an elastic job: it starts once its gang is placed; its size is checked after the
        cycle (``_resize``)."""
        job = self.jobs[key]
        placed = replace(job, placement=nodes)
        if not any(node is not None for node in nodes):  # released whole: it waits as a whole
            placed = replace(placed, placement=(), started=None, leaving=(), last_checkpoint=None)
            self.stopped.pop(key, None)
            self._forget(key)
        elif placed.running and not job.running:
            placed = replace(placed, started=now)
            self._first_start(key, now)
        elif not placed.running:
            placed = replace(placed, started=None)
        self.jobs[key] = placed
        self.touched.add(key)

    def _shrink(self, key: JobKey, ranks: tuple[int, ...], now: float) -> None:
        """Stop the replicas of ``ranks``: after the queue's notice, as an eviction stops a job; their pods
        hold their nodes until they are gone."""
        job = self.jobs.get(key)
        if job is None or job.terminating:
            return
        chosen = tuple(sorted(
            rank for rank in set(ranks)
            if rank < len(job.placement) and job.placement[rank] is not None and rank not in job.leaving
        ))  # fmt: skip
        if not chosen:
            return
        notice = preemption_notice(self.queue_of_namespace.get(job.namespace), self.queue_by_name)
        stop = stop_time(job, now, notice)
        self.jobs[key] = replace(job, leaving=tuple(sorted({*job.leaving, *chosen})))
        if stop <= now:
            self._stop(key, chosen, now)
            self.touched.add(key)
        else:
            self._later(stop, STOP, key, chosen)

    def _stop(self, key: JobKey, ranks: tuple[int, ...], now: float) -> None:
        """The replicas of ``ranks`` stop working; their pods terminate for ``grace_seconds``."""
        self.stopped[key] = self.stopped.get(key, frozenset()) | frozenset(ranks)
        if self.options.grace_seconds > 0:
            self._later(now + self.options.grace_seconds, LEFT, key, ranks)
        else:
            self._left(key, ranks)

    def _left(self, key: JobKey, ranks: tuple[int, ...]) -> None:
        """The pods of ``ranks`` are gone: their nodes are free."""
        job = self.jobs[key]
        placement = tuple(None if rank in ranks else node for rank, node in enumerate(job.placement))
        if not any(node is not None for node in placement):
            placement = ()
        placed = replace(job, placement=placement, leaving=tuple(rank for rank in job.leaving if rank not in ranks))
        self.jobs[key] = placed if placed.running else replace(placed, started=None)
        stopped = self.stopped.get(key, frozenset()) - frozenset(ranks)
        if stopped:
            self.stopped[key] = stopped
        else:
            self.stopped.pop(key, None)

    def _later(self, time: float, kind: int, key: JobKey, ranks: tuple[int, ...]) -> None:
        self.tags += 1
        self.stopping[self.tags] = (key, kind, ranks)
        self._push(time, kind, key, self.tags)

    def _forget(self, key: JobKey, kind: int | None = None) -> None:
        """Drop the job's STOP and LEFT events due (of ``kind`` only, when given)."""
        if self.stopping:
            for tag in [t for t, (k, due, _r) in self.stopping.items() if k == key and kind in (None, due)]:
                del self.stopping[tag]

    def _due(self, tag: int, time: float) -> None:
        """A STOP or LEFT event of a shrink."""
        pending = self.stopping.pop(tag, None)
        if pending is None:
            return
        key, kind, ranks = pending
        if key not in self.jobs:
            return
        if kind == STOP:
            self._stop(key, ranks, time)
        else:
            self._left(key, ranks)
        self._resize(key, time)

    def _working(self, job: Job) -> int:
        """Replicas of ``job`` that work: all placed when it runs (of an elastic job, less those stopped)."""
        if not job.running:
            return 0
        if not job.elastic:
            return job.replicas
        stopped = self.stopped.get(job.key, frozenset())
        if any(rank in stopped for rank in range(job.gang)):
            return 0
        return sum(1 for rank, node in enumerate(job.placement) if node is not None and rank not in stopped)

    def _halt(self, key: JobKey, run: _Run, now: float) -> float:
        """The work an elastic job has saved when its run ends at ``now`` (replica-seconds); what it did since
        its last save is lost."""
        ran = max(now - run.since, 0.0)
        kept = ran - unsaved(ran, self._interval(self.trace[key]))
        self.records[key].lost_gpu_seconds += run.replicas * self.jobs[key].gpus_per_replica * (ran - kept)
        return run.base + run.replicas * kept

    def _resize(self, key: JobKey, now: float) -> None:
        """Start, resize or halt an elastic job whose working replicas changed, and when it ends."""
        job = self.jobs.get(key)
        if job is None or not job.elastic or job.terminating:
            return
        working = self._working(job)
        run = self.runs.get(key)
        if (run.replicas if run is not None else 0) == working:
            return
        if run is None:
            base = self.work_saved.get(key, 0.0)  # (re)started: from its last save
        else:
            base = self._halt(key, run, now)
            if working:
                self.records[key].resizes += 1
        self.generation[key] += 1  # its FINISH event, if any, is stale
        self.ends.pop(key, None)
        if not working:
            del self.runs[key]
            self.work_saved[key] = base
            return
        self.runs[key] = _Run(now, base, working)
        if self.options.checkpoints_known:  # its saves count from the restart, as the scheduler is told
            self.jobs[key] = replace(job, last_checkpoint=now)
        trace = self.trace[key]
        end = now + max(trace.replicas * trace.duration - base, 0.0) / working
        if job.runtime_limit is not None and job.started is not None:
            end = min(end, job.started + job.runtime_limit)  # the operator ends a job at its limit
        if not self.options.fill and math.isfinite(end):
            self._push(end, FINISH, key, self.generation[key])
            self.ends[key] = end

    # -- the loop -------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> Result:
        last_cycle = -math.inf
        stopped = False
        now = 0.0
        while self.events:
            now = max(self.events[0][0], last_cycle + self.options.interval)
            if now > self.options.until:
                stopped = True
                break
            self._apply_due(now)
            for _round in range(MAX_ROUNDS):
                step = self._cycle(now)
                if not step.evictions and not step.shrinks:
                    break
            last_cycle = now
            if progress is not None:
                progress(now, self.done, len(self.trace))
            if self.options.fill and self.first_failure is not None:
                stopped = True
                break
        return Result(
            scheduler=self.scheduler.name,
            capacity=self.capacity,
            records=self.records,
            samples=self.samples,
            first_failure=self.first_failure,
            cycles=self.cycles,
            end=now,
            stopped_early=stopped,
            usage_half_life=self.options.usage_half_life,
        )

    def _apply_due(self, now: float) -> None:
        arrived = 0
        while self.events and self.events[0][0] <= now:
            if self.options.fill and arrived and self.events[0][1] == ARRIVE:
                break  # the fill experiment: one arrival per cycle
            time, kind, _seq, key, generation = heapq.heappop(self.events)
            if kind == ARRIVE:
                self._arrive(key)
                arrived += 1
            elif kind in (STOP, LEFT):
                self._due(generation, time)  # its tag, not a generation
            elif key in self.jobs and generation == self.generation[key]:
                if kind == GONE:
                    self._gone(key)
                else:
                    self._finish(key, now)

    def _cycle(self, now: float) -> Step:
        finished = tuple(done for latest in self.finished.values() for done in latest)
        queues = self.queues
        if self.options.usage_half_life > 0:
            self.usage = fairshare.remember(
                self.usage, self.over_quota, now - self.usage_time, self.options.usage_half_life
            )
            self.usage_time = now
            queues = tuple(replace(q, usage=self.usage.get(q.name, 0.0)) for q in self.queues)
        snapshot = Snapshot(nodes=self.nodes, queues=queues, jobs=tuple(self.jobs.values()), finished=finished)
        step = self.scheduler(snapshot, now)
        self.cycles += 1
        moved = set(step.moved)
        for key in step.evictions:
            self._evict(key, now, moved=key in moved)
        for key, nodes in step.placements.items():
            self._place(key, nodes, now)
        for key, ranks in step.shrinks.items():
            self._shrink(key, ranks, now)
        for key in sorted(self.touched):
            self._resize(key, now)
        self.touched.clear()
        for key, job in list(self.jobs.items()):  # nominations live with the jobs, as on the pods in a cluster
            nominated = step.nominations.get(key, ())
            reserved = step.reserved.get(key, ())  # and reservations, as the operator carries them
            start = step.reserved_starts.get(key)
            if job.nominated != nominated or job.reserved != reserved or job.reserved_start != start:
                self.jobs[key] = replace(job, nominated=nominated, reserved=reserved, reserved_start=start)
        for key, start in step.estimates.items():
            record = self.records[key]
            if record.first_start is None and math.isfinite(start):
                record.first_estimate = start if record.first_estimate is None else record.first_estimate
                record.last_estimate = start
        for key, start in step.reserved_starts.items():
            record = self.records[key]
            if record.first_reserved is None and math.isfinite(start):
                record.first_reserved = start
        for key in step.backfilled:
            self.records[key].backfilled = True
        allocated = sum(job.gpus_per_replica * _placed(job) for job in self.jobs.values())
        working = sum(job.gpus_per_replica * self._working(job) for job in self.jobs.values())
        if step.failed and self.first_failure is None:
            key = step.failed[0]
            self.first_failure = FirstFailure(now, key, self.jobs[key].gpus, self.capacity - allocated)
        self.samples.append(self._sample(now, allocated, working, step))
        if self.options.usage_half_life > 0:
            self.over_quota = self._over_quota(step)
        return step

    def _over_quota(self, step: Step) -> dict[QueueName, int]:
        """GPUs each queue (an inner one by its subtree) holds above its guarantees, summed over GPU types."""
        held: dict[tuple[QueueName, GPUType | None], int] = {}
        parents = {q.name: q.parent for q in self.queues}
        for job in self.jobs.values():
            queue = (step.job_queues or {}).get(job.key) or self.queue_of_namespace.get(job.namespace)
            seen: set[QueueName] = set()
            while queue is not None and queue not in seen:  # a parent cycle ends the walk
                seen.add(queue)
                for name in job.placement:
                    if name is not None:
                        slot = (queue, self.gpu_types.get(name))
                        held[slot] = held.get(slot, 0) + job.gpus_per_replica
                queue = parents.get(queue)
        guaranteed: dict[tuple[QueueName, GPUType | None], int] = {
            (q.name, t): share.guaranteed for q in self.queues for t, share in q.shares.items()
        }
        over: dict[QueueName, int] = {}
        for (queue, gpu_type), gpus in held.items():
            over[queue] = over.get(queue, 0) + max(gpus - guaranteed.get((queue, gpu_type), 0), 0)
        return over

    def _sample(self, now: float, allocated: int, working: int, step: Step) -> Sample:
        by_queue: dict[QueueName, int] = {}
        demand: dict[QueueName, dict[GPUType, int]] = {}
        pending = 0
        growth: dict[GPUType | None, tuple[int, int]] = {}  # per GPU type: GPUs running elastic jobs would grow
        # by, and the smallest replica among them
        for job in self.jobs.values():
            queue = (step.job_queues or {}).get(job.key) or self.queue_of_namespace.get(job.namespace)
            placed = _placed(job)
            if not job.running:
                pending += job.gang * job.gpus_per_replica  # an elastic job waits for its gang only
            elif job.elastic and job.placement[0] is not None:
                on = self.gpu_types.get(job.placement[0])  # every replica of a job is of one GPU type
                wanted, smallest = growth.get(on, (0, job.gpus_per_replica))
                growth[on] = (
                    wanted + (job.replicas - placed) * job.gpus_per_replica,
                    min(smallest, job.gpus_per_replica),
                )
            if queue is None:
                continue
            by_queue[queue] = by_queue.get(queue, 0) + job.gpus_per_replica * placed
            gpu_type = job.gpu_type or _ANY
            per_type = demand.setdefault(queue, {})
            per_type[gpu_type] = per_type.get(gpu_type, 0) + job.gang * job.gpus_per_replica  # growth: no demand
        if step.fair_shares is not None:
            shares = {queue: sum(per_type.values()) for queue, per_type in step.fair_shares.items()}
        else:
            shares = self._fair_shares(demand)
        reserved = {name for nodes in step.reserved.values() for name in nodes}
        used: dict[NodeName, int] = {}
        for job in self.jobs.values():
            for name in job.placement:
                if name in reserved:
                    used[name] = used.get(name, 0) + job.gpus_per_replica
        idle = sum(self.gpus[name] - used.get(name, 0) for name in reserved if name in self.gpus)
        growth_room = 0
        if growth:
            free: dict[GPUType | None, int] = {}
            held: dict[NodeName, int] = {}
            for job in self.jobs.values():
                for name in job.placement:
                    if name is not None:
                        held[name] = held.get(name, 0) + job.gpus_per_replica
            for name, gpus in self.gpus.items():  # in whole replicas of the smallest growing job of the type
                step_of = growth.get(self.gpu_types.get(name), (0, 1))[1] or 1
                room = max(gpus - held.get(name, 0), 0) // step_of * step_of
                free[self.gpu_types.get(name)] = free.get(self.gpu_types.get(name), 0) + room
            growth_room = sum(min(wanted, free.get(gpu_type, 0)) for gpu_type, (wanted, _) in growth.items())
        return Sample(now, allocated, pending, by_queue, shares, working, len(step.reserved), idle, growth_room)

    def _fair_shares(self, demand: dict[QueueName, dict[GPUType, int]]) -> dict[QueueName, int]:
        """Fair shares from the core's water-filling, for schedulers that do not compute them.

        Demand of any GPU type is counted against the whole cluster as one pool.
        """
        pooled = {queue: {_ANY: sum(per_type.values())} for queue, per_type in demand.items()}
        queues = [
            Queue(q.name, q.parent, q.namespaces, {_ANY: _pooled_share(q)}, None, q.min_runtime_seconds)
            for q in self.queues
        ]
        shares = fairshare.fair_shares(queues, {_ANY: self.capacity}, pooled)
        return {queue: per_type.get(_ANY, 0) for queue, per_type in shares.items()}


_ANY = GPUType("*")


def _pooled_share(queue: Queue) -> Share:
    shares = list(queue.shares.values())
    if not shares:
        return Share()
    limits = [share.limit for share in shares]
    return Share(
        guaranteed=sum(share.guaranteed for share in shares),
        limit=None if None in limits else sum(limit for limit in limits if limit is not None),
        weight=max(share.weight for share in shares),
    )


def _placed(job: Job) -> int:
    return sum(1 for node in job.placement if node is not None)
