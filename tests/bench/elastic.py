"""Elastic gangs and consolidation in the simulator (issue 19), each beside Leitstand without it (``make bench``).

1. **Elasticity (Microsoft ITP 2021)**: the two-tenant study of ``simulation.queueing`` (clusters 03 and 06 on
   ``dev``, 80 GPUs, runtime limits 2x the durations), both windows of 1,000 jobs. ``rigid``: the trace as it
   is. ``elastic-half`` and ``elastic-one``: every gang of 2 or more replicas is elastic, its minimum half its
   replicas (rounded up) or 1, its maximum what the trace asked for. ``elastic-grow``: its minimum what the
   trace asked for, its maximum twice that (the idle capacity it could grow into). Work scales with the replicas that run
   (the simulator's model); a resize restarts from the last save (every 30 minutes), and what that throws
   away is counted. An elastic job's runtime limit is 2x the time it would take at its minimum, so no job is
   cut short by running smaller.
2. **Consolidation** on ``soofi`` (130 DGX B200, leaves of 32): four tenants, small jobs of the ITP traces (at
   most 8 GPUs; a share of them ``movable``: they save when told to stop) and gangs of 64 to 256 GPUs that
   require one leaf (3 or 5 % of the arrivals), arriving for 48 h at 1.2x or 1.5x the capacity after a burst
   that fills it; jobs save hourly. ``moves 0`` beside ``moves 2`` (the default) per cycle, three seeds each.

Run: ``python -m tests.bench.elastic [--out DIR]``; prints one JSON line per run and writes report.json.
"""

import argparse
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

from leitstand.cli import simulating
from leitstand.core.model import Node, Policy
from leitstand.sim import baselines, engine, report, study, traces
from leitstand.sim.traces import TraceJob
from tests.bench.simulation import DATA, QUOTAS, in_hours

ELASTIC_SAVES = 1800.0  # seconds between an elastic job's saves (the simulator's default)
HORIZON = 48 * 3600.0


def elasticity(first: int) -> list[dict[str, object]]:
    nodes, policy, _name = simulating.load_cluster("dev")
    jobs = traces.load([DATA / "microsoft-itp-2021" / "cluster03.csv", DATA / "microsoft-itp-2021" / "cluster06.csv"])
    jobs, _dropped = study.fitting(jobs[first : first + 1000], nodes)
    queues = simulating.load_quotas(QUOTAS)
    options = engine.Options(interval=10, runtime_limit_factor=2.0, elastic_checkpoint_interval=ELASTIC_SAVES)
    variants = {
        "rigid": jobs,
        "elastic-half": _elastic(jobs, lambda replicas: math.ceil(replicas / 2)),
        "elastic-one": _elastic(jobs, lambda _replicas: 1),
        "elastic-grow": _growing(jobs),
    }
    lines = []
    for variant, trace in variants.items():
        started = time.monotonic()
        simulation = engine.Simulation(baselines.Leitstand(policy), nodes, queues, trace, options)
        summary = report.summarise(simulation.run())
        gangs = [r for r in simulation.records.values() if r.trace.replicas >= 2 and r.first_start is not None]
        line = {
            "experiment": "itp-dev-elastic" + (f"-from-{first}" if first else ""),
            "variant": variant,
            "elasticJobs": sum(1 for job in trace if job.min_replicas is not None),
            "meanAllocation": round(summary["meanAllocation"], 3),
            # the capacity left idle, over time: while jobs waited, while nothing did, and of that what running
            # elastic jobs could still have grown into (their maximum is what the trace asked for)
            "idle": {key: round(value, 4) for key, value in summary["idle"].items()},
            "meanQueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["mean"]),
            "p95QueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["p95"]),
            "meanGangDelayHours": in_hours(sum(r.first_start - r.trace.submit for r in gangs) / max(len(gangs), 1)),
            "meanCompletionHours": in_hours(summary["completionTimeSeconds"]["mean"]),
            "lastFinishHours": in_hours(max(r.finish or 0.0 for r in simulation.records.values())),
            "evictions": summary["evictions"],
            "resizes": summary["resizes"],
            "lostGPUHours": round(summary["lostGPUHours"], 1),
            "distanceFromFairShare": round(summary["meanDistanceFromFairShare"], 3),
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


def _elastic(jobs: list[TraceJob], least: Callable[[int], int]) -> list[TraceJob]:
    result = []
    for job in jobs:
        if job.replicas < 2:
            result.append(job)
            continue
        low = least(job.replicas)
        limit = 2.0 * job.duration * job.replicas / low  # 2x its time at its minimum: never cut short by it
        result.append(dataclasses.replace(job, min_replicas=low, runtime_limit=limit))
    return result


def _growing(jobs: list[TraceJob]) -> list[TraceJob]:
    """Every gang of 2 or more replicas never runs smaller than the trace asked and grows to twice that: the
    same work (``replicas`` x ``duration``) at twice the replicas takes half the time."""
    result = []
    for job in jobs:
        if job.replicas < 2:
            result.append(job)
            continue
        most = 2 * job.replicas
        result.append(
            dataclasses.replace(
                job, replicas=most, min_replicas=job.replicas, duration=job.duration / 2, runtime_limit=2 * job.duration
            )
        )
    return result


def consolidation(load: float, big_share: float, seed: int, movable: float = 0.8) -> list[dict[str, object]]:
    nodes, policy, _name = simulating.load_cluster("soofi")
    jobs = _fragmenting_workload(nodes, load, big_share, seed, movable)
    queues = study.default_queues(sorted({job.tenant for job in jobs}))
    options = engine.Options(interval=60, until=HORIZON, runtime_limit_factor=2.0, checkpoint_interval=3600.0)
    lines = []
    for moves in (0, Policy().moves_per_cycle):
        started = time.monotonic()
        chosen = dataclasses.replace(policy, moves_per_cycle=moves)
        simulation = engine.Simulation(baselines.Leitstand(chosen), nodes, queues, jobs, options)
        summary = report.summarise(simulation.run())
        big = [r for r in simulation.records.values() if r.trace.gpus >= 64 and r.trace.submit <= HORIZON]
        waits = [(r.first_start if r.first_start is not None else HORIZON) - r.trace.submit for r in big]
        line = {
            "experiment": f"soofi-consolidation-load-{load:g}-big-{big_share:g}-seed-{seed}",
            "movesPerCycle": moves,
            "bigGangs": len(big),
            "bigGangsStarted": sum(1 for r in big if r.first_start is not None),
            "meanBigGangWaitHours": in_hours(sum(waits) / max(len(waits), 1)),
            "meanQueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["mean"]),
            "meanAllocation": round(summary["meanAllocation"], 3),
            "moves": summary["moves"],
            "movedGPUHours": round(summary["movedGPUHours"], 2),
            "evictions": summary["evictions"],
            "lostGPUHours": round(summary["lostGPUHours"], 1),
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


def _fragmenting_workload(
    nodes: tuple[Node, ...], load: float, big_share: float, seed: int, movable: float
) -> list[TraceJob]:
    """Small ITP jobs and leaf-sized gangs arriving at ``load`` times the capacity (see the module)."""
    sizes = []
    for name in ("cluster03.csv", "cluster06.csv"):
        sizes += [
            (j.replicas, j.gpus_per_replica, j.duration) for j in traces.load([DATA / "microsoft-itp-2021" / name])
        ]
    small = [s for s in sizes if s[0] * s[1] <= 8]
    bigs = [(max(8, r), 8, d) for r, g, d in sizes if 32 <= r * g <= 256]
    rng = random.Random(seed)
    capacity = sum(node.gpus for node in nodes)
    mean_small = sum(r * g * d for r, g, d in small) / len(small)
    mean_big = sum(r * g * d for r, g, d in bigs) / len(bigs)
    rate = load * capacity / ((1 - big_share) * mean_small + big_share * mean_big)
    jobs: list[TraceJob] = []

    def make(moment: float) -> TraceJob:
        replicas, per_replica, duration = rng.choice(bigs) if rng.random() < big_share else rng.choice(small)
        tenant = f"t{rng.randrange(4)}"
        big = replicas * per_replica >= 64
        return TraceJob(f"{tenant}/j{len(jobs)}", tenant, moment, replicas, per_replica, max(duration, 60.0),
                        required_level="leaf" if big else None,
                        movable=replicas == 1 and rng.random() < movable)  # fmt: skip

    backlog = 0
    while backlog < 1.3 * capacity:  # a burst in the first hour: the cluster full and a queue waiting
        jobs.append(make(rng.uniform(0, 3600)))
        backlog += jobs[-1].gpus
    moment = 0.0
    while moment < HORIZON:
        moment += rng.expovariate(rate)
        jobs.append(make(moment))
    return sorted(jobs, key=lambda job: job.submit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write report.json here")
    args = parser.parse_args()
    lines = [*elasticity(0), *elasticity(1000)]
    for load, big_share in ((1.2, 0.05), (1.5, 0.03)):
        for seed in (19, 20, 21):
            lines += consolidation(load, big_share, seed)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(lines, indent=1))


if __name__ == "__main__":
    main()
