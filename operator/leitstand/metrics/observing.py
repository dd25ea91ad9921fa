"""Prometheus metrics of the scheduler: what it decided, what the cluster holds, how fast it runs.

Observes only: it reads the core's snapshot and decisions and never decides
or writes to the cluster. Names follow Prometheus conventions (prefix
``leitstand_``, base units, ``_total`` counters); labels come only from bounded
sets (queue, GPU type, phase, reason, state, topology domain), never a job name.
"""

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from leitstand import __version__
from leitstand.core import model

ERROR_BUCKETS = (-86400, -14400, -3600, -600, -60, 0, 60, 600, 3600, 14400, 86400)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STATES = ("free", "allocated", "reserved", "lent")


class SchedulerMetrics:
    """Every metric of one operator process, registered once in ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, help_text, labels, registry=registry)

        queue = ("queue", "gpu_type")
        self.guaranteed = gauge("leitstand_queue_guaranteed_gpus", "GPUs guaranteed to the queue.", queue)
        self.limit = gauge("leitstand_queue_limit_gpus", "Hard cap on the queue's GPUs (absent: no cap).", queue)
        self.fair_share = gauge("leitstand_queue_fair_share_gpus", "GPUs the queue deserves right now.", queue)
        self.allocated = gauge(
            "leitstand_queue_allocated_gpus", "GPUs the queue's jobs hold now (terminating ones included).", queue
        )
        self.reclaiming = gauge(
            "leitstand_queue_reclaiming_gpus", "GPUs being freed for the queue's nominated jobs.", queue
        )
        self.pending = gauge("leitstand_queue_pending_gpus", "GPUs the queue's other waiting jobs ask for.", queue)
        self.usage = gauge(
            "leitstand_queue_usage_gpu_seconds",
            "The queue's over-quota usage, decayed by the half-life: what lowers its over-quota weight.",
            ("queue",),
        )
        self.jobs = gauge("leitstand_jobs", "TrainingJobs by queue and phase.", ("queue", "phase"))
        self.waiting = gauge("leitstand_waiting_jobs", "Jobs waiting, by why they wait.", ("queue", "reason"))
        self.cluster = gauge("leitstand_cluster_gpus", "The cluster's GPUs by type and state.", ("gpu_type", "state"))
        self.whole_free = gauge(
            "leitstand_cluster_whole_free_nodes", "Ready nodes with every GPU free, by GPU type.", ("gpu_type",)
        )
        self.domains = gauge(
            "leitstand_domain_gpus", "GPUs per topology domain and state.", ("level", "domain", "state")
        )
        self.leader = gauge("leitstand_leader", "1 while this replica is the active scheduler.")
        self.last_cycle = gauge("leitstand_last_cycle_timestamp_seconds", "When the last scheduling cycle ended.")
        self.build = gauge("leitstand_build_info", "Leitstand's version, as a label; always 1.", ("version",))
        self.build.labels(version=__version__).set(1)
        self.cycle_seconds = Histogram(
            "leitstand_scheduling_cycle_duration_seconds", "Time of one scheduling cycle.",
            buckets=CYCLE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.wait_seconds = Histogram(
            "leitstand_job_wait_seconds", "Time from queued to running, per queue.", ("queue",),
            buckets=WAIT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.binds = Counter("leitstand_binds_total", "Pods bound.", registry=registry)
        self.bind_failures = Counter("leitstand_bind_failures_total", "Pod bindings that failed.", registry=registry)
        self.evictions = Counter(
            "leitstand_evictions_total", "Jobs evicted, by reason.", ("reason",), registry=registry
        )
        self.evicted_work = Counter(
            "leitstand_evicted_work_gpu_seconds_total",
            "Work at risk of the jobs evicted (GPUs times the time since their last checkpoint), by victim queue.",
            ("queue",), registry=registry,
        )  # fmt: skip
        self.cycles = Counter("leitstand_scheduling_cycles_total", "Scheduling cycles run.", registry=registry)
        self.backfilled = Counter(
            "leitstand_backfilled_binds_total",
            "Jobs started behind a reserved gang, on nodes it does not need or that they leave by its start.",
            registry=registry,
        )
        self.reserved = gauge(
            "leitstand_reserved_gpus", "GPUs on nodes reserved for waiting gangs, by state.", ("state",)
        )
        self.estimate_error = Histogram(
            "leitstand_start_estimate_error_seconds",
            "Actual minus estimated start of each job when it starts, per queue (negative: it started earlier).",
            ("queue",), buckets=ERROR_BUCKETS, registry=registry,
        )  # fmt: skip
        self.planning = gauge("leitstand_forecast_duration_seconds", "Time the last plan of start estimates took.")

    def observe_cycle(
        self,
        snapshot: model.Snapshot,
        decisions: model.Decisions,
        *,
        seconds: float,
        ended: float,
        level: str | None,
        levels: tuple[str, ...],
    ) -> None:
        """Everything one cycle tells: queue numbers, cluster state, evictions and timing."""
        self.cycles.inc()
        self.cycle_seconds.observe(seconds)
        self.last_cycle.set(ended)
        gauges = (self.guaranteed, self.limit, self.fair_share, self.allocated, self.reclaiming, self.pending)
        for gauge in (*gauges, self.waiting):
            gauge.clear()
        for queue, per_type in decisions.queues.items():
            for gpu_type, status in per_type.items():
                labels = {"queue": queue, "gpu_type": gpu_type}
                self.guaranteed.labels(**labels).set(status.guaranteed)
                if status.limit is not None:
                    self.limit.labels(**labels).set(status.limit)
                self.fair_share.labels(**labels).set(status.fair_share)
                self.allocated.labels(**labels).set(status.allocated)
                self.pending.labels(**labels).set(status.pending)
                self.reclaiming.labels(**labels).set(status.reclaiming)
        waiting = Tally((str(e.queue or "none"), e.reason.value) for e in decisions.pending)
        for (queue_name, reason), count in waiting.items():
            self.waiting.labels(queue=queue_name, reason=reason).set(count)
        self.usage.clear()
        for queue_spec in snapshot.queues:
            self.usage.labels(queue=queue_spec.name).set(queue_spec.usage)
        jobs = {job.key: job for job in snapshot.jobs} if decisions.evictions else {}
        queues = {queue_spec.name: queue_spec for queue_spec in snapshot.queues}
        for eviction in decisions.evictions:
            self.evictions.labels(reason=eviction.reason.value).inc()
            if eviction.job in jobs:  # what the core weighed: the work at risk when its pods stop
                victim, victim_queue = jobs[eviction.job], decisions.job_queues.get(eviction.job)
                stop = model.stop_time(victim, ended, model.preemption_notice(victim_queue, queues))
                self.evicted_work.labels(queue=victim_queue or "none").inc(model.work_at_risk(victim, stop))
        self.backfilled.inc(len(decisions.backfilled))
        self._cluster(snapshot, decisions, level, levels)

    def _cluster(
        self, snapshot: model.Snapshot, decisions: model.Decisions, level: str | None, levels: tuple[str, ...]
    ) -> None:
        used, owners_use = _usage(snapshot, decisions)
        owner_of = model.reservation_owners(snapshot)
        states: Tally[tuple[str, str]] = Tally()
        whole: Tally[str] = Tally()
        domains: Tally[tuple[str, str]] = Tally()
        index = levels.index(level) if level in levels else None
        for node in snapshot.nodes:
            if not node.ready or node.gpu_type is None:
                continue
            held = min(used.get(node.name, 0), node.gpus)
            idle = node.gpus - held
            if node.name in owner_of:
                mine = min(owners_use.get(node.name, 0), held)
                states[(node.gpu_type, "allocated")] += mine
                states[(node.gpu_type, "lent")] += held - mine
                states[(node.gpu_type, "reserved")] += idle
            else:
                states[(node.gpu_type, "allocated")] += held
                states[(node.gpu_type, "free")] += idle
            if held == 0:
                whole[node.gpu_type] += 1
            if index is not None and index < len(node.domains) and node.domains[index]:
                domains[(node.domains[index], "allocated")] += held
                domains[(node.domains[index], "free")] += idle
        self.cluster.clear()
        for gpu_type in sorted({t for t, _ in states} | {n.gpu_type for n in snapshot.nodes if n.gpu_type}):
            for state in STATES:
                self.cluster.labels(gpu_type=gpu_type, state=state).set(states[(gpu_type, state)])
            self.whole_free.labels(gpu_type=gpu_type).set(whole[gpu_type])
        self.domains.clear()
        for (domain, state), gpus in domains.items():
            self.domains.labels(level=level or "", domain=domain, state=state).set(gpus)
        reserved = {name for booked in decisions.reserved.values() for name in booked.nodes}
        nodes = {node.name: node for node in snapshot.nodes}
        idle = sum(max(nodes[name].gpus - used.get(name, 0), 0) for name in reserved if name in nodes)
        total = sum(nodes[name].gpus for name in reserved if name in nodes)
        self.reserved.labels(state="idle").set(idle)  # free now, kept for the gang (backfill may still use them)
        self.reserved.labels(state="in_use").set(total - idle)

    def observe_binds(self, *, bound: int, failed: int) -> None:
        self.binds.inc(bound)
        self.bind_failures.inc(failed)

    def observe_started(self, queue: str, waited_seconds: float) -> None:
        self.wait_seconds.labels(queue=queue).observe(max(waited_seconds, 0.0))

    def observe_estimate_error(self, queue: str, seconds: float) -> None:
        self.estimate_error.labels(queue=queue).observe(seconds)

    def observe_planning(self, seconds: float) -> None:
        self.planning.set(seconds)

    def observe_jobs(self, phases: Iterable[tuple[str, str]]) -> None:
        """Sets the job gauge from (queue, phase) pairs, one per TrainingJob."""
        self.jobs.clear()
        for (queue, phase), count in Tally(phases).items():
            self.jobs.labels(queue=queue, phase=phase).set(count)

    def observe_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)


def _usage(snapshot: model.Snapshot, decisions: model.Decisions) -> tuple[dict[str, int], dict[str, int]]:
    """GPUs used per node once the decisions are carried out, and the part used by each node's owner."""
    owners = model.reservation_owners(snapshot)
    parents = {q.name: q.parent for q in snapshot.queues}
    namespaces_of: dict[str, set[str]] = {}
    for queue in snapshot.queues:  # an owner holds the namespaces of every queue below it
        seen: set[str] = set()
        current: model.QueueName | None = queue.name
        while current is not None and current not in seen:
            seen.add(current)
            namespaces_of.setdefault(current, set()).update(queue.namespaces)
            current = parents.get(current)
    used: dict[str, int] = {}
    owners_use: dict[str, int] = {}
    for job, node in model.held_after(snapshot, decisions):
        used[node] = used.get(node, 0) + job.gpus_per_replica
        owner = owners.get(node)
        if owner is not None and job.namespace in namespaces_of.get(owner, set()):
            owners_use[node] = owners_use.get(node, 0) + job.gpus_per_replica
    return used, owners_use
