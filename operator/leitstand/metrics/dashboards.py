"""Grafana dashboards and Prometheus alert rules, as code.

``dashboards()`` builds the four dashboards (Cluster, Queues, Jobs, Scheduler)
with grafana-foundation-sdk; ``alert_rules()`` the alert groups. ``leitstand
dashboards --out deploy`` writes them to ``deploy/grafana/*.json`` and
``deploy/prometheus/``; a unit test fails when those files drift from this
module. Every query uses only metrics of ``observing``.
"""

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    return query.legend_format(legend) if legend else query


def _series(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery, width: int = 12
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    panel = panel.min(0).height(8).span(width)
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _stat(title: str, description: str, unit: str, query: prometheus.Dataquery, width: int = 6) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.height(4).span(width).with_target(query.ref_id("A"))


def _board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    variable = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["leitstand", "gpu"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(variable)
    )


def cluster() -> dashboard.Dashboard:
    return (
        _board("leitstand-cluster", "Leitstand / Cluster", "GPU capacity and allocation of the whole cluster.")
        .with_panel(_stat("Free whole nodes", "Ready nodes with every GPU free, per GPU type.", "none",
                          _query("sum by (gpu_type) (leitstand_cluster_whole_free_nodes)", "{{gpu_type}}")))
        .with_panel(_stat("Allocated GPUs", "GPUs held by running pods.", "none",
                          _query('sum(leitstand_cluster_gpus{state=~"allocated|lent"})')))
        .with_panel(_stat("Free GPUs", "GPUs idle on shared nodes.", "none",
                          _query('sum(leitstand_cluster_gpus{state="free"})')))
        .with_panel(_stat("Idle reserved GPUs", "GPUs idle in reserved pools.", "none",
                          _query('sum(leitstand_cluster_gpus{state="reserved"})')))
        .with_panel(_series("Capacity and allocation by GPU type", "GPUs per type and state.", "none",
                            _query("sum by (gpu_type, state) (leitstand_cluster_gpus)", "{{gpu_type}} {{state}}"),
                            width=24))
        .with_panel(_series("Allocation per leaf group", "Allocated GPUs in each leaf group (scalable unit).", "none",
                            _query('sum by (domain) (leitstand_domain_gpus{level="leaf", state="allocated"})', "{{domain}}"),
                            width=24))
    )  # fmt: skip


def queues() -> dashboard.Dashboard:
    return (
        _board("leitstand-queues", "Leitstand / Queues", "Every queue's allocation against its fair share and guarantee.")
        .with_panel(_series("Allocated vs fair share vs guaranteed", "Per queue and GPU type.", "none",
                            _query("sum by (queue, gpu_type) (leitstand_queue_allocated_gpus)", "{{queue}} {{gpu_type}} allocated"),
                            _query("sum by (queue, gpu_type) (leitstand_queue_fair_share_gpus)", "{{queue}} {{gpu_type}} fair share"),
                            _query("sum by (queue, gpu_type) (leitstand_queue_guaranteed_gpus)", "{{queue}} {{gpu_type}} guaranteed"),
                            width=24))
        .with_panel(_series("Pending demand", "GPUs the waiting jobs of each queue ask for.", "none",
                            _query("sum by (queue, gpu_type) (leitstand_queue_pending_gpus)", "{{queue}} {{gpu_type}}")))
        .with_panel(_series("Served ratio", "Allocated divided by fair share (1 = exactly served).", "percentunit",
                            _query("sum by (queue) (leitstand_queue_allocated_gpus) / clamp_min(sum by (queue) "
                                   "(leitstand_queue_fair_share_gpus), 1)", "{{queue}}")))
        .with_panel(_series("Remembered usage", "Over-quota GPU-hours each queue used, halved every half-life: "
                            "a queue above its share of this competes for spare GPUs with less weight.", "none",
                            _query("sum by (queue) (leitstand_queue_usage_gpu_seconds) / 3600", "{{queue}}")))
        .with_panel(_series("Work lost to preemption", "GPU-hours since their last checkpoint of the jobs evicted, "
                            "per victim queue.", "none",
                            _query(f"sum by (queue) (increase(leitstand_evicted_work_gpu_seconds_total[{RATE}])) / 3600",
                                   "{{queue}}")))
        .with_panel(_series("Waiting jobs by reason", "Why jobs wait, per queue.", "none",
                            _query("sum by (queue, reason) (leitstand_waiting_jobs)", "{{queue}} {{reason}}"), width=24))
    )  # fmt: skip


def jobs() -> dashboard.Dashboard:
    def quantile(q: str) -> prometheus.Dataquery:
        expr = f"histogram_quantile({q}, sum by (le) (rate(leitstand_job_wait_seconds_bucket[{RATE}])))"
        return _query(expr, f"p{round(float(q) * 100)}")

    return (
        _board("leitstand-jobs", "Leitstand / Jobs", "Waiting times, running and queued jobs, evictions.")
        .with_panel(_series("Wait from queued to running", "Quantiles of the wait time of jobs that started.", "s",
                            quantile("0.5"), quantile("0.95"), quantile("0.99")))
        .with_panel(_series("Jobs by phase", "TrainingJobs by phase.", "none",
                            _query("sum by (phase) (leitstand_jobs)", "{{phase}}")))
        .with_panel(_series("Evictions", "Jobs evicted per second, by reason.", "ops",
                            _query(f"sum by (reason) (rate(leitstand_evictions_total[{RATE}]))", "{{reason}}")))
        .with_panel(_series("Running and queued per queue", "Jobs per queue.", "none",
                            _query('sum by (queue, phase) (leitstand_jobs{phase=~"Running|Queued"})', "{{queue}} {{phase}}")))
    )  # fmt: skip


def scheduler() -> dashboard.Dashboard:
    def latency(q: str) -> prometheus.Dataquery:
        expr = (
            f"histogram_quantile({q}, sum by (le) (rate(leitstand_scheduling_cycle_duration_seconds_bucket[{RATE}])))"
        )
        return _query(expr, f"p{round(float(q) * 100)}")

    return (
        _board("leitstand-scheduler", "Leitstand / Scheduler", "The scheduler's own health: cycles, binds, leader.")
        .with_panel(_stat("Leader", "1 when a replica leads.", "none", _query("max(leitstand_leader)")))
        .with_panel(_stat("Seconds since the last cycle", "Time since a scheduling cycle ended.", "s",
                          _query("time() - max(leitstand_last_cycle_timestamp_seconds)")))
        .with_panel(_stat("Cycles per second", "Scheduling cycles run.", "ops",
                          _query(f"sum(rate(leitstand_scheduling_cycles_total[{RATE}]))")))
        .with_panel(_stat("Version", "Running versions.", "none", _query("count by (version) (leitstand_build_info)", "{{version}}")))
        .with_panel(_series("Cycle latency", "Quantiles of the scheduling cycle time.", "s",
                            latency("0.5"), latency("0.99")))
        .with_panel(_series("Binds and errors", "Pods bound and bindings that failed, per second.", "ops",
                            _query(f"sum(rate(leitstand_binds_total[{RATE}]))", "bound"),
                            _query(f"sum(rate(leitstand_bind_failures_total[{RATE}]))", "failed")))
    )  # fmt: skip


def dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards as Grafana JSON models, by file name."""
    result = {}
    for build in (cluster, queues, jobs, scheduler):
        board = build().build()
        result[f"{board.uid}.json"] = json.loads(json.dumps(board, cls=JSONEncoder, sort_keys=True))
    return result


def alert_rules(*, below_guarantee_minutes: int = 15, no_cycle_seconds: int = 120) -> dict[str, Any]:
    """The alert rules as a Prometheus rule file (``groups``)."""
    return {
        "groups": [
            {
                "name": "leitstand",
                "rules": [
                    {
                        "alert": "LeitstandQueueBelowGuarantee",
                        "expr": "(leitstand_queue_allocated_gpus < leitstand_queue_guaranteed_gpus) "
                        "and (leitstand_queue_pending_gpus > 0)",
                        "for": f"{below_guarantee_minutes}m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Queue {{ $labels.queue }} waits below its {{ $labels.gpu_type }} guarantee",
                            "description": "Queue {{ $labels.queue }} holds {{ $value }} GPUs, less than it is "
                            f"guaranteed, while jobs wait, for {below_guarantee_minutes} minutes.",
                        },
                    },
                    {
                        "alert": "LeitstandNoSchedulingCycle",
                        "expr": f"time() - max(leitstand_last_cycle_timestamp_seconds) > {no_cycle_seconds}",
                        "for": "1m",
                        "labels": {"severity": "critical"},
                        "annotations": {
                            "summary": "No Leitstand scheduling cycle has ended recently",
                            "description": f"The last scheduling cycle ended more than {no_cycle_seconds} s ago.",
                        },
                    },
                    {
                        "alert": "LeitstandBindErrors",
                        "expr": "sum(rate(leitstand_bind_failures_total[5m])) / clamp_min(sum(rate(leitstand_binds_total[5m]))"
                        " + sum(rate(leitstand_bind_failures_total[5m])), 1e-9) > 0.05",
                        "for": "10m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Over 5% of Leitstand's bindings fail",
                            "description": "{{ $value | humanizePercentage }} of pod bindings failed over 5 minutes.",
                        },
                    },
                    {
                        "alert": "LeitstandNoLeader",
                        "expr": "max(leitstand_leader) < 1 or absent(leitstand_leader)",
                        "for": "1m",
                        "labels": {"severity": "critical"},
                        "annotations": {
                            "summary": "No Leitstand replica is the active scheduler",
                            "description": "No replica has held the leader Lease for a minute: nothing is scheduled.",
                        },
                    },
                ],
            }
        ]
    }


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The rule file in the Prometheus Operator's PrometheusRule form."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "leitstand", "labels": {"app.kubernetes.io/name": "leitstand"}},
        "spec": rules,
    }
