"""Every tenant of a trace directory on one shared cluster, a week at a time, under every scheduler.

Issue 14 asks Leitstand to lead on real traces it was never tuned on. This repository carries two
files of the Microsoft ITP 2021 release (clusters 03 and 06), and every study in ``make bench`` uses
them. The release has ten (github.com/microsoft/elasticflow-traces, ``data/raw-traces.tar.gz``); this
benchmark takes a directory holding any of them, makes each file one tenant with an equal queue (the
files share one clock), cuts one week of submissions, and replays it on a profile's cluster under
Leitstand and each baseline, with runtime limits 2x the durations and a cycle every minute; with
``--checkpoint-interval`` every job saves that often and an evicted job resumes from its last save.

Run: ``python -m tests.bench.weeks --traces DIR [--week 3] [--cluster soofi] [--scheduler NAME]
[--checkpoint-interval S] [--reservations K] [--out DIR]``;
prints one JSON line per run (and writes them to DIR/report.json). Not part of ``make bench``: the
files it reads are not in the repository.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from leitstand.cli import simulating
from leitstand.sim import engine, report, study, traces
from tests.bench.simulation import in_hours

WEEK = 7 * 86400.0


def week(
    directory: Path,
    index: int,
    cluster: str,
    schedulers: list[str],
    interval: float,
    saving: float | None,
    reservations: int | None = None,
) -> list[dict[str, object]]:
    files = sorted(directory.glob("cluster*.csv"))
    if not files:
        raise SystemExit(f"no cluster*.csv in {directory}: give the directory of the ITP 2021 trace files")
    try:
        every = traces.load(files)
    except traces.TraceError as error:
        raise SystemExit(str(error)) from None
    start = min((job.submit for job in every), default=0.0) + index * WEEK
    jobs = [dataclasses.replace(job, submit=job.submit - start) for job in every if start <= job.submit < start + WEEK]
    if not jobs:
        raise SystemExit(f"no jobs in week {index} of {directory}: weeks count from 0, the week of the first job")
    nodes, policy, _name = simulating.load_cluster(cluster)
    policy = simulating.tuned(policy, reservations=reservations)
    jobs, dropped = study.fitting(jobs, nodes)
    queues = study.default_queues(sorted({job.tenant for job in jobs}))
    options = engine.Options(interval=interval, runtime_limit_factor=2.0)
    if saving is not None:  # every job saves that often; evicted pods take 30 s to go
        options = dataclasses.replace(options, checkpoint_interval=saving, grace_seconds=30.0)
    lines = []
    for name in schedulers:
        started = time.monotonic()
        simulation = engine.Simulation(study.scheduler(name, policy), nodes, queues, jobs, options)
        summary = report.summarise(simulation.run())
        delay = summary["queueingDelaySeconds"]
        line = {
            "experiment": f"itp-week-{index}-{cluster}" + (f"-saving-{saving:g}" if saving else ""),
            "scheduler": name,
            "reservations": policy.reservations,
            "tenants": len(queues) - 1,
            "jobs": len(jobs),
            "dropped": len(dropped),
            "started": summary["jobs"]["started"],
            "meanQueueingDelayHours": in_hours(delay["mean"]),
            "p95QueueingDelayHours": in_hours(delay["p95"]),
            "distanceFromFairShare": round(summary["meanDistanceFromFairShare"], 3),
            "meanAllocation": round(summary["meanAllocation"], 3),
            "evictions": summary["evictions"],
            "lostGPUHours": round(summary["lostGPUHours"], 1),
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, required=True, help="a directory of ITP 2021 cluster*.csv files")
    parser.add_argument("--week", type=int, action="append", help="week index from the first submission (repeatable)")
    parser.add_argument("--cluster", default="soofi", help="a profile: dev, soofi, industrial-ai-cloud")
    parser.add_argument("--scheduler", action="append", choices=study.SCHEDULERS, help="default: all")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between cycles")
    parser.add_argument("--checkpoint-interval", type=float, default=None, help="every job saves this often (s)")
    parser.add_argument("--reservations", type=int, default=None, help="gangs holding reservations at once")
    parser.add_argument("--out", type=Path, default=None, help="write report.json here")
    args = parser.parse_args()
    lines = []
    for index in args.week or [3, 4]:
        schedulers = args.scheduler if args.scheduler is not None else list(study.SCHEDULERS)
        lines += week(
            args.traces, index, args.cluster, schedulers, args.interval, args.checkpoint_interval, args.reservations
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(lines, indent=1))


if __name__ == "__main__":
    main()
