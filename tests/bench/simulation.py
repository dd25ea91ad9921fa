"""Leitstand's core beside the baselines in the simulator, on the real traces (``make bench``).

1. **Fragmentation (Alibaba GPU v2023)**: the 8,152 pods of ``openb_pod_list_default.csv``
   arrive in trace order on the trace's own 1,213 GPU nodes (6,212 GPUs; whole GPUs),
   nothing leaves, one arrival per cycle, until the first pod that does not fit: the
   unallocated GPUs at that moment, per scheduler ("Beware of Fragmentation", ATC '23).
2. **Queueing (Microsoft ITP 2021)**: clusters 03 and 06 as two tenants with equal
   guarantees on the ``dev`` profile (80 GPUs), their first 1,000 jobs on real time:
   queueing delay, completion time, allocation, evictions; runtime limits at 2x and 1x
   the durations; and the next 1,000 jobs, a window nothing was tuned on. Both windows once more with every
   job saving hourly under every scheduler (``-saving-3600``).
3. **A hero job** on ``industrial-ai-cloud`` (``hero``).
4. **Preemption that respects work** (``preemption``): the ITP study's two windows with Leitstand alone, as
   before issue 18 (jobs never save: an eviction loses the whole run), then with jobs that save hourly and
   resume from their last save, Leitstand blind to the checkpoints, told them, and told them with a
   10-minute preemption notice: evictions and the GPU-hours they lose, per tenant, beside queueing and
   fairness. ``--preemption-grid`` runs only this study, saving every 30, 60 and 90 minutes.

Run: ``make bench`` (or ``python -m tests.bench.simulation``). Prints one line per
scheduler and experiment, then the ratios; ``--out DIR`` also keeps report.json and plots.
"""

import argparse
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

from leitstand.cli import simulating
from leitstand.core.model import Node, Policy, Queue
from leitstand.sim import clusters, engine, plots, report, study, traces
from leitstand.sim.traces import TraceJob

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
QUOTAS = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "simulation" / "itp-quotas.yaml"


def fragmentation(out: Path) -> dict[str, object]:
    nodes = clusters.node_list(DATA / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv")
    jobs = traces.load([DATA / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"])
    policy = simulating.load_cluster(str(DATA / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv"))[1]
    return _study("alibaba-fill", nodes, study.default_queues(["openb"]), jobs, policy,
                  engine.Options(interval=0, fill=True), out)  # fmt: skip


def queueing(out: Path, factor: float = 2.0, first: int = 0, saving: float | None = None) -> dict[str, object]:
    """The ITP study on 1,000 jobs from the ``first``: 0 is the study the issues set targets on; 1,000 the
    next thousand, a window nothing was tuned on (heavier: the queue grows for weeks). With ``saving``, every
    job saves its work that often (seconds) under every scheduler, and evicted pods take 30 s to go."""
    nodes, policy, _name = simulating.load_cluster("dev")
    jobs = traces.load([DATA / "microsoft-itp-2021" / "cluster03.csv", DATA / "microsoft-itp-2021" / "cluster06.csv"])
    jobs, _dropped = study.fitting(jobs[first : first + 1000], nodes)
    options = engine.Options(interval=10, runtime_limit_factor=factor)
    if saving is not None:
        options = dataclasses.replace(options, checkpoint_interval=saving, grace_seconds=30.0)
    name = "itp-dev" if factor == 2 else f"itp-dev-factor-{factor:g}"
    if first:
        name += f"-from-{first}"
    if saving is not None:
        name += f"-saving-{saving:g}"
    schedulers = study.SCHEDULERS if factor == 2 else ("leitstand",)
    return _study(name, nodes, simulating.load_quotas(QUOTAS), jobs, policy, options, out, schedulers)


HERO_SUBMIT = 12 * 3600.0  # the hero gang arrives once the cluster is busy
HERO = "hero/llm-100b"


def hero(out: Path, factor: float = 1.0, hours: float = 48.0) -> dict[str, object]:
    """The shared B200 part of industrial-ai-cloud (1,120 DGX B200, spines of 256) busy with ITP-sized jobs of
    six tenants (a burst that fills it and queues 30 % more in the first hour, then arrivals at the rate that
    keeps it full), and a 128 x 8 ``required: spine`` gang of a seventh arriving at 12 h."""
    nodes, policy, _name = simulating.load_cluster("industrial-ai-cloud")
    nodes = tuple(n for n in nodes if n.gpu_type == "b200" and not dict(n.labels).get("leitstand.dev/pool"))
    sizes = []
    for name in ("cluster03.csv", "cluster06.csv"):
        sizes += [
            (job.replicas, job.gpus_per_replica, job.duration)
            for job in traces.load([DATA / "microsoft-itp-2021" / name])
        ]
    rng = random.Random(14)
    capacity = sum(n.gpus for n in nodes)
    mean_work = sum(r * g * d for r, g, d in sizes) / len(sizes)
    rate = capacity / mean_work  # arrivals per second that keep the cluster full
    jobs: list[TraceJob] = []
    moment, backlog = 0.0, 0
    while backlog < 1.3 * capacity:  # a burst in the first hour: the cluster full and a queue waiting
        replicas, per_replica, duration = rng.choice(sizes)
        tenant = f"t{rng.randrange(6)}"
        jobs.append(TraceJob(f"{tenant}/j{len(jobs)}", tenant, rng.uniform(0, 3600), replicas, per_replica,
                             max(duration, 60.0)))  # fmt: skip
        backlog += replicas * per_replica
    while moment < hours * 3600:
        moment += rng.expovariate(rate)
        replicas, per_replica, duration = rng.choice(sizes)
        tenant = f"t{rng.randrange(6)}"
        jobs.append(TraceJob(f"{tenant}/j{len(jobs)}", tenant, moment, replicas, per_replica, max(duration, 60.0)))
    jobs.append(TraceJob(HERO, "hero", HERO_SUBMIT, 128, 8, 24 * 3600.0, required_level="spine"))
    jobs.sort(key=lambda job: job.submit)
    options = engine.Options(interval=60, until=hours * 3600, runtime_limit_factor=factor)
    queues = study.default_queues(sorted({job.tenant for job in jobs}))
    return _study(f"hero-industrial-factor-{factor:g}", nodes, queues, jobs, policy, options, out,
                  ("leitstand", "leitstand-hold"))  # fmt: skip


CHECKPOINTS = 3600.0  # the preemption study's jobs save hourly


def variants(interval: float = CHECKPOINTS) -> dict[str, dict[str, object]]:
    """The preemption study's variants: the engine options beyond the study's, by name."""
    saving = {"checkpoint_interval": interval, "grace_seconds": 30.0}
    return {
        "today": {},  # jobs never save; evicted pods vanish at once (the simulator before issue 18)
        "today-grace-30": {"grace_seconds": 30.0},  # the same, the pods taking 30 s to go as the operator's do
        "checkpoints-blind": {**saving, "checkpoints_known": False},
        "checkpoints-known": saving,
        "checkpoints-known-notice-600": {**saving, "preemption_notice": 600.0},
        "checkpoints-blind-notice-600": {**saving, "checkpoints_known": False, "preemption_notice": 600.0},
    }


def preemption(
    out: Path, first: int = 0, names: tuple[str, ...] = (), interval: float = CHECKPOINTS
) -> list[dict[str, object]]:
    """Leitstand alone on one ITP window under each variant (``names``; default all) of what jobs save and what
    it is told."""
    nodes, policy, _name = simulating.load_cluster("dev")
    jobs = traces.load([DATA / "microsoft-itp-2021" / "cluster03.csv", DATA / "microsoft-itp-2021" / "cluster06.csv"])
    jobs, _dropped = study.fitting(jobs[first : first + 1000], nodes)
    name = (
        "itp-dev-preemption"
        + (f"-from-{first}" if first else "")
        + (f"-every-{interval:g}s" if interval != CHECKPOINTS else "")
    )
    lines = []
    every = variants(interval)
    for variant in names or tuple(every):
        started = time.monotonic()
        options = engine.Options(interval=10, runtime_limit_factor=2.0, **every[variant])  # type: ignore[arg-type]
        simulation = engine.Simulation(study.scheduler("leitstand", policy), nodes, simulating.load_quotas(QUOTAS),
                                       jobs, options)  # fmt: skip
        summary = report.summarise(simulation.run())
        line = {
            "experiment": name,
            "variant": variant,
            "meanQueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["mean"]),
            "p95QueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["p95"]),
            "distanceFromFairShare": _rounded(summary["meanDistanceFromFairShare"]),
            "rememberedDistanceFromFairShare": _rounded(summary["rememberedDistanceFromFairShare"]),
            "evictions": summary["evictions"],
            "lostGPUHours": round(summary["lostGPUHours"], 1),
            "lostGPUHoursByTenant": _rounded(summary["lostGPUHoursByTenant"]),
            "wallSeconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "lines.json").write_text(json.dumps(lines, indent=1))
    plots.preemption(lines, out / name)
    return lines


def _study(
    name: str,
    nodes: tuple[Node, ...],
    queues: tuple[Queue, ...],
    jobs: list[TraceJob],
    policy: Policy,
    options: engine.Options,
    out: Path,
    schedulers: tuple[str, ...] = study.SCHEDULERS,
) -> dict[str, object]:
    started = time.monotonic()
    document = study.run(schedulers, nodes, queues, jobs, policy, options, setup={"experiment": name})
    document["setup"]["wallSeconds"] = round(time.monotonic() - started, 1)
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(document, indent=1))
    plots.draw(document, directory)
    for summary in document["schedulers"]:
        failure = summary["firstFailure"] or {}
        line = {
            "experiment": name,
            "scheduler": summary["scheduler"],
            "unallocatedAtFirstFailure": failure.get("unallocatedGPUs"),
            "placedBeforeFailure": summary["jobs"]["started"],
            "meanQueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["mean"]),
            "p95QueueingDelayHours": in_hours(summary["queueingDelaySeconds"]["p95"]),
            "meanCompletionHours": in_hours(summary["completionTimeSeconds"]["mean"]),
            "meanAllocation": None if summary["meanAllocation"] is None else round(summary["meanAllocation"], 3),
            "meanWorkingAllocation": None
            if summary["meanWorkingAllocation"] is None
            else round(summary["meanWorkingAllocation"], 3),
            "evictions": summary["evictions"],
            "lostGPUHours": round(summary["lostGPUHours"], 1),
            "distanceFromFairShare": _rounded(summary["meanDistanceFromFairShare"]),
            "heroJobs": _rounded({k: v for k, v in summary["heroJobs"].items() if k != "estimateErrorRatios"}),
        }
        print(json.dumps(line), flush=True)
    print(json.dumps({"experiment": name, "leitstandVersus": document["leitstandVersus"],
                      "wallSeconds": document["setup"]["wallSeconds"]}), flush=True)  # fmt: skip
    return document


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def in_hours(seconds: float | None) -> float | None:
    """Seconds as hours, to two decimals (None stays None)."""
    return None if seconds is None else round(seconds / 3600, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep report.json and plots here")
    parser.add_argument(
        "--preemption-grid", action="store_true",
        help="only the preemption study, blind and told, with and without notice, saving every 30, 60 and 90 min",
    )  # fmt: skip
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="leitstand-sim-bench-"))
    if args.preemption_grid:
        told = (
            "checkpoints-blind",
            "checkpoints-known",
            "checkpoints-blind-notice-600",
            "checkpoints-known-notice-600",
        )
        for interval in (1800.0, 3600.0, 5400.0):
            for first in (0, 1000):
                preemption(out, first, told, interval)
        return
    queueing(out)
    queueing(out, factor=1.0)
    queueing(out, first=1000)
    for first in (0, 1000):  # the same, every job saving hourly under every scheduler
        queueing(out, first=first, saving=3600.0)
    hero(out)
    preemption(out, names=("today", "today-grace-30", "checkpoints-blind", "checkpoints-known",
                           "checkpoints-known-notice-600"))  # fmt: skip
    preemption(out, 1000, ("today", "today-grace-30", "checkpoints-blind", "checkpoints-known-notice-600"))
    fragmentation(out)
    print(f"reports and plots in {out}")


if __name__ == "__main__":
    main()
