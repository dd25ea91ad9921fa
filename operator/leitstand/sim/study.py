"""A study: the same cluster, quotas and trace under Leitstand and each baseline, into one report."""

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from leitstand.core.model import Node, Policy, Queue, QueueName
from leitstand.sim import baselines, engine, report
from leitstand.sim.traces import TraceJob

SCHEDULERS = ("leitstand", "leitstand-hold", *baselines.BASELINES)


ESTIMATE_EVERY = 600.0  # simulated seconds between Leitstand's plans of start estimates


def scheduler(name: str, policy: Policy) -> engine.Scheduler:
    """The scheduler called ``name`` (one of ``SCHEDULERS``); ``leitstand-hold`` is Leitstand with round 1's
    whole-type starvation hold instead of reservations with backfill, to compare the two."""
    if name == "leitstand":
        return baselines.Leitstand(policy, estimate_every=ESTIMATE_EVERY)
    if name == "leitstand-hold":
        return baselines.Leitstand(replace(policy, backfill=False), name="leitstand-hold")
    chosen: engine.Scheduler = baselines.BASELINES[name]()
    return chosen


def default_queues(tenants: Sequence[str]) -> tuple[Queue, ...]:
    """A root queue ``cluster`` and one leaf per tenant owning the namespace of its name, equal weights."""
    root = QueueName("cluster")
    return (Queue(root), *(Queue(QueueName(t), root, (t,)) for t in sorted(set(tenants))))


def fitting(trace: Sequence[TraceJob], nodes: Sequence[Node]) -> tuple[list[TraceJob], list[TraceJob]]:
    """The jobs that could run on the empty cluster, and those that never could (too big, no such GPU type)."""
    by_type: dict[object, list[Node]] = {}
    for node in nodes:
        if node.ready and node.gpu_type is not None:
            by_type.setdefault(node.gpu_type, []).append(node)
            by_type.setdefault(None, []).append(node)
    room: dict[tuple[object, ...], bool] = {}
    keep: list[TraceJob] = []
    dropped: list[TraceJob] = []
    for job in trace:
        shape = (job.gpu_type, job.gpus_per_replica, job.cpu_millis_per_replica, job.memory_bytes_per_replica)
        key = (*shape, job.replicas)
        if key not in room:
            pool = nodes if not job.gpus_per_replica else by_type.get(job.gpu_type, [])
            replicas = 0
            for node in pool:
                fits = [
                    node.gpus // job.gpus_per_replica if job.gpus_per_replica else job.replicas,
                    node.cpu_millis // job.cpu_millis_per_replica if job.cpu_millis_per_replica else job.replicas,
                    node.memory_bytes // job.memory_bytes_per_replica if job.memory_bytes_per_replica else job.replicas,
                ]
                replicas += min(fits)
                if replicas >= job.replicas:
                    break
            room[key] = replicas >= job.replicas
        (keep if room[key] else dropped).append(job)
    return keep, dropped


def run(
    names: Sequence[str],
    nodes: Sequence[Node],
    queues: Sequence[Queue],
    trace: Sequence[TraceJob],
    policy: Policy,
    options: engine.Options,
    *,
    setup: dict[str, Any],
    progress: Callable[[str], engine.Progress | None] = lambda _name: None,
) -> dict[str, Any]:
    """Runs every scheduler of ``names`` on the same inputs; returns report.json's document."""
    summaries = []
    for name in names:
        simulation = engine.Simulation(scheduler(name, policy), nodes, queues, trace, options)
        summaries.append(report.summarise(simulation.run(progress(name))))
    return report.document(summaries, setup)
