"""Benchmark of one scheduling cycle of ``leitstand.core`` (``make bench``).

Two cases, each measured on one pinned core after a warm-up, reporting median
and p99 cycle time and the peak memory allocated during a cycle (tracemalloc):

- ``industrial-ai-cloud``: the profile's 1,250 DGX B200 + 100 RTX PRO servers, a
  50-queue tree, 2,000 running and 5,000 pending jobs, sizes drawn from the
  Microsoft ITP traces in ``tests/data/traces/`` (gangs of 8-GPU replicas above 8 GPUs);
- ``kai-scale``: KAI-Scheduler's published scale, 4,000 nodes and 140,000 pods
  (most of them running), which KAI reports at 2.35-2.5 s per cycle.

Run: ``make bench`` (or ``python -m tests.bench.cycle``). Prints one line per case.
"""

import csv
import math
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from leitstand.core import model
from leitstand.core.scheduling import schedule
from leitstand.devcluster import profiles
from leitstand.kube import bodies as kube_bodies

TRACES = Path(__file__).resolve().parent.parent / "data" / "traces" / "microsoft-itp-2021"
NOW = 1_000_000.0


def trace_sizes() -> list[int]:
    sizes = []
    for name in ("cluster03.csv", "cluster06.csv"):
        with (TRACES / name).open() as stream:
            sizes += [int(row["num_gpu"]) for row in csv.DictReader(stream)]
    return sizes


def a_job(key: str, gpus: int, submitted: float, rng: random.Random, gpu_type: str = "b200") -> model.Job:
    replicas, per_replica = (1, gpus) if gpus <= 8 else (math.ceil(gpus / 8), 8)
    return model.Job(
        key=model.JobKey(key),
        namespace=key.split("/", 1)[0],
        replicas=replicas,
        gpus_per_replica=per_replica,
        cpu_millis_per_replica=per_replica * 24_000,
        memory_bytes_per_replica=per_replica * 200 * 2**30,
        gpu_type=model.GPUType(gpu_type),
        priority=rng.choice([model.Priority.TRAIN] * 8 + [model.Priority.BUILD, model.Priority.INFERENCE]),
        required_level="leaf" if gpus >= 64 else None,
        submitted=submitted,
    )


def queue_tree(groups: int, leaves_per_group: int, b200: int, rtx: int) -> list[model.Queue]:
    queues = [model.Queue(model.QueueName("root"))]
    leaves = groups * leaves_per_group
    for g in range(groups):
        group = model.QueueName(f"group-{g}")
        queues.append(model.Queue(group, model.QueueName("root"), shares={
            model.GPUType("b200"): model.Share(b200 // groups, None, 1 + g % 3),
            model.GPUType("rtx-pro-6000"): model.Share(rtx // groups, None, 1),
        }))  # fmt: skip
        for i in range(leaves_per_group):
            name = f"tenant-{g:02d}-{i:02d}"
            queues.append(
                model.Queue(
                    model.QueueName(name),
                    group,
                    (name,),
                    shares={
                        model.GPUType("b200"): model.Share(b200 // leaves, None, 1 + i % 4),
                        model.GPUType("rtx-pro-6000"): model.Share(rtx // leaves, None, 1),
                    },
                    min_runtime_seconds=600,
                )
            )
    return queues


def with_running(snapshot: model.Snapshot, candidates: list[model.Job], target: int) -> model.Snapshot:
    """Places ``candidates`` with the core itself until ``target`` of them run."""
    placed = schedule(replace(snapshot, jobs=tuple(candidates)), now=NOW - 3600)
    by_job = {bind.job: bind.nodes for bind in placed.binds}
    running = [replace(job, placement=by_job[job.key], started=NOW - 3600) for job in candidates if job.key in by_job][
        :target
    ]
    return replace(snapshot, jobs=tuple(running))


def industrial_ai_cloud() -> model.Snapshot:
    rng = random.Random(7)
    settings = kube_bodies.Settings()
    bodies = profiles.nodes(profiles.load("industrial-ai-cloud"))
    # kwok reports the nodes Ready on a live cluster; here they are ready by construction
    nodes = tuple(replace(kube_bodies.to_node(body, (0, 0, 0), settings), ready=True) for body in bodies)
    queues = queue_tree(7, 6, b200=9_000, rtx=800)
    tenants = [q.name for q in queues if q.namespaces]
    sizes = trace_sizes()
    empty = model.Snapshot(nodes, tuple(queues), ())
    # the running jobs are the trace's single-node jobs: 2,000 trace-sized gangs would not fit 10,000 GPUs
    single_node = [size for size in sizes if size <= 8]
    candidates = [
        a_job(f"{rng.choice(tenants)}/run-{i}", rng.choice(single_node), NOW - 7200 + i, rng) for i in range(2_400)
    ]
    snapshot = with_running(empty, candidates, 2_000)
    pending = [
        a_job(f"{rng.choice(tenants)}/wait-{i}", rng.choice(sizes), NOW - 3000 + i * 0.5, rng,
              "rtx-pro-6000" if rng.random() < 0.05 else "b200")
        for i in range(5_000)
    ]  # fmt: skip
    return replace(snapshot, jobs=snapshot.jobs + tuple(pending))


def kai_scale() -> model.Snapshot:
    rng = random.Random(11)
    nodes = tuple(
        model.Node(
            name=model.NodeName(f"node-{i:04d}"),
            gpu_type=model.GPUType("b200"),
            gpus=8,
            cpu_millis=224_000,
            memory_bytes=2048 * 2**30,
            domains=(f"spine-{i // 256}", f"leaf-{i // 32}", f"node-{i:04d}"),
        )
        for i in range(4_000)
    )
    queues = queue_tree(10, 10, b200=30_000, rtx=0)
    tenants = [q.name for q in queues if q.namespaces]
    jobs: list[model.Job] = []
    # 28,000 running one-GPU pods and 100,000 running CPU pods spread over the nodes
    for i in range(128_000):
        node = model.NodeName(f"node-{i % 4000:04d}")
        gpus = 1 if i < 28_000 else 0
        jobs.append(
            model.Job(
                key=model.JobKey(f"{tenants[i % len(tenants)]}/pod-{i}"),
                namespace=tenants[i % len(tenants)],
                replicas=1,
                gpus_per_replica=gpus,
                cpu_millis_per_replica=1_000,
                memory_bytes_per_replica=2**30,
                gpu_type=model.GPUType("b200") if gpus else None,
                submitted=NOW - 7200,
                placement=(node,),
                started=NOW - 3600,
            )
        )
    sizes = trace_sizes()
    for i in range(12_000):
        jobs.append(a_job(f"{rng.choice(tenants)}/wait-{i}", rng.choice(sizes), NOW - 1000 + i * 0.05, rng))
    return model.Snapshot(nodes, tuple(queues), tuple(jobs))


def with_limits(snapshot: model.Snapshot) -> model.Snapshot:
    """Every job with a runtime limit (1 h to 3 days) and every running one somewhere into it: reservations
    then plan real starts, and backfill has something to go by."""
    rng = random.Random(3)
    jobs = []
    for job in snapshot.jobs:
        limit = rng.choice([3600.0, 4 * 3600.0, 24 * 3600.0, 72 * 3600.0])
        started = NOW - rng.random() * limit if job.placement else job.started
        jobs.append(replace(job, runtime_limit=limit, started=started, submitted=min(job.submitted, NOW - 3600)))
    return replace(snapshot, jobs=tuple(jobs))


def measure(name: str, build: Callable[[], model.Snapshot], runs: int, *, estimate: bool = False) -> str:
    snapshot = build()
    pods = sum(job.replicas for job in snapshot.jobs)
    schedule(snapshot, now=NOW, estimate=estimate)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        decisions = schedule(snapshot, now=NOW, estimate=estimate)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    schedule(snapshot, now=NOW)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times.sort()
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
    return (
        f"{name}: median {statistics.median(times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"peak {peak / 2**20:.0f} MB ({len(snapshot.nodes)} nodes, {len(snapshot.jobs)} jobs, {pods} pods, "
        f"{len(decisions.binds)} binds, {len(decisions.evictions)} evictions, {len(decisions.reserved)} reserved, "
        f"{len(decisions.estimates)} estimates, {runs} runs)"
    )


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(measure("industrial-ai-cloud", industrial_ai_cloud, runs=21), flush=True)
    print(measure("kai-scale", kai_scale, runs=7), flush=True)
    limited = lambda: with_limits(industrial_ai_cloud())  # noqa: E731
    print(measure("industrial-ai-cloud, limits", limited, runs=21), flush=True)
    print(measure("industrial-ai-cloud, limits, cycle + estimates", limited, runs=5, estimate=True), flush=True)
    print(measure("kai-scale, limits", lambda: with_limits(kai_scale()), runs=7), flush=True)


if __name__ == "__main__":
    main()
