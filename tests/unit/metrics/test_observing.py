"""The metrics tell what the cycle decided and what the cluster holds, per queue and state."""

from prometheus_client import CollectorRegistry

from leitstand.core.model import Priority
from leitstand.core.scheduling import schedule
from leitstand.metrics.observing import SchedulerMetrics
from tests.unit.core.builders import a_job, a_queue, a_root, nodes_in_leaf, snapshot

NOW = 10_000.0


def test_a_cycle_sets_queue_numbers_cluster_states_and_counts_evictions() -> None:
    nodes = nodes_in_leaf("su-1", 2, pool="soofi") + nodes_in_leaf("su-2", 2)
    queues = [
        a_root(),
        a_queue("soofi").with_share(16).reserving(pool="soofi", lend=True),
        a_queue("acme").with_share(16),
    ]
    jobs = [
        a_job("acme/lent").of(1, 8).running_on("su-1-n1", since=NOW - 60),
        a_job("acme/home").of(1, 4).running_on("su-2-n1", since=NOW - 60),
        a_job("soofi/big").of(2, 8).with_priority(Priority.BUILD).submitted_at(NOW - 5),
    ]
    snap = snapshot(nodes, queues, jobs)
    decisions = schedule(snap, now=NOW)
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    metrics.observe_cycle(snap, decisions, seconds=0.02, ended=NOW, level="leaf", levels=("spine", "leaf", "node"))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("leitstand_queue_fair_share_gpus", queue="soofi", gpu_type="b200") == 16
    assert value("leitstand_queue_pending_gpus", queue="soofi", gpu_type="b200") == 0
    assert value("leitstand_queue_reclaiming_gpus", queue="soofi", gpu_type="b200") == 16  # nominated, victims leaving
    assert value("leitstand_evictions_total", reason="ReturnedLentCapacity") == 1
    assert value("leitstand_waiting_jobs", queue="soofi", reason="WaitingForReclaim") == 1
    # after the eviction: su-2-n1 holds 4 of 8, the SOOFI pool is idle (reserved), nothing is lent
    assert value("leitstand_cluster_gpus", gpu_type="b200", state="allocated") == 4
    assert value("leitstand_cluster_gpus", gpu_type="b200", state="free") == 12
    assert value("leitstand_cluster_gpus", gpu_type="b200", state="reserved") == 16
    assert value("leitstand_cluster_gpus", gpu_type="b200", state="lent") == 0
    assert value("leitstand_cluster_whole_free_nodes", gpu_type="b200") == 3
    assert value("leitstand_domain_gpus", level="leaf", domain="su-2", state="allocated") == 4
    assert value("leitstand_scheduling_cycles_total") == 1
    assert value("leitstand_build_info", version="0.1.0") == 1


def test_wait_times_and_jobs_by_phase() -> None:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    metrics.observe_started("acme", 42.0)
    metrics.observe_jobs([("acme", "Running"), ("acme", "Running"), ("soofi", "Queued")])
    assert registry.get_sample_value("leitstand_job_wait_seconds_count", {"queue": "acme"}) == 1
    assert registry.get_sample_value("leitstand_jobs", {"queue": "acme", "phase": "Running"}) == 2


def test_reservations_backfill_and_estimates_are_measured() -> None:
    nodes = nodes_in_leaf("su-1", 4)
    queues = [a_root(), a_queue("hero").with_share(32), a_queue("small")]
    jobs = [
        a_job("small/a").of(1, 8).running_on("su-1-n1", since=NOW).limited(7200),
        a_job("hero/big").of(4, 8).submitted_at(0),
        a_job("small/short").of(1, 4).submitted_at(NOW - 5).limited(600),  # ends before the reservation starts
    ]
    snap = snapshot(nodes, queues, jobs)
    decisions = schedule(snap, now=NOW)
    assert decisions.backfilled == ("small/short",)
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    metrics.observe_cycle(snap, decisions, seconds=0.02, ended=NOW, level="leaf", levels=("spine", "leaf", "node"))
    metrics.observe_estimate_error("hero", -300.0)
    metrics.observe_planning(0.5)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("leitstand_backfilled_binds_total") == 1
    assert value("leitstand_reserved_gpus", state="idle") == 20  # 32 reserved: 8 run until the start, 4 backfilled
    assert value("leitstand_reserved_gpus", state="in_use") == 12
    assert value("leitstand_start_estimate_error_seconds_bucket", queue="hero", le="-60.0") == 1
    assert value("leitstand_forecast_duration_seconds") == 0.5


def test_evicted_work_and_remembered_usage_are_what_the_core_weighed() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8).noticing(900).having_used(7200), a_queue("b").with_share(8)]
    jobs = [  # both save hourly; x saves again within its notice, y does not
        a_job("a/x").of(1, 8).running_on("su-1-n1", since=NOW - 50 * 60).checkpointing(every=3600),
        a_job("a/y").of(1, 8).running_on("su-1-n2", since=NOW - 20 * 60).checkpointing(every=3600),
        a_job("b/wants").of(1, 8).submitted_at(NOW - 10),
    ]
    snap = snapshot(nodes, queues, jobs)
    decisions = schedule(snap, now=NOW)
    assert [e.job for e in decisions.evictions] == ["a/x"]
    registry = CollectorRegistry()
    SchedulerMetrics(registry).observe_cycle(snap, decisions, seconds=0.02, ended=NOW, level="leaf",
                                             levels=("spine", "leaf", "node"))  # fmt: skip
    # x stops a minute after its save at the hour: 8 GPUs x 60 s, not the 50 minutes it has run since its start
    assert registry.get_sample_value("leitstand_evicted_work_gpu_seconds_total", {"queue": "a"}) == 8 * 60
    assert registry.get_sample_value("leitstand_queue_usage_gpu_seconds", {"queue": "a"}) == 7200
