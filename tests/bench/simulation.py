"""Leitstand's core beside the baselines in the simulator, on the real traces (``make bench``).

1. **Fragmentation (Alibaba GPU v2023)**: the 8,152 pods of ``openb_pod_list_default.csv``
   arrive in trace order on the trace's own 1,213 GPU nodes (6,212 GPUs; whole GPUs),
   nothing leaves, one arrival per cycle, until the first pod that does not fit: the
   unallocated GPUs at that moment, per scheduler ("Beware of Fragmentation", ATC '23).
2. **Queueing (Microsoft ITP 2021)**: clusters 03 and 06 as two tenants with equal
   guarantees on the ``dev`` profile (80 GPUs), their first 1,000 jobs on real time:
   queueing delay, completion time, allocation, evictions.

Run: ``make bench`` (or ``python -m tests.bench.simulation``). Prints one line per
scheduler and experiment, then the ratios; ``--out DIR`` also keeps report.json and plots.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from leitstand.cli import simulating
from leitstand.core.model import Node, Policy, Queue
from leitstand.sim import clusters, engine, plots, study, traces
from leitstand.sim.traces import TraceJob

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
QUOTAS = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "simulation" / "itp-quotas.yaml"


def fragmentation(out: Path) -> dict[str, object]:
    nodes = clusters.node_list(DATA / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv")
    jobs = traces.load([DATA / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"])
    policy = simulating.load_cluster(str(DATA / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv"))[1]
    return _study("alibaba-fill", nodes, study.default_queues(["openb"]), jobs, policy,
                  engine.Options(interval=0, fill=True), out)  # fmt: skip


def queueing(out: Path) -> dict[str, object]:
    nodes, policy, _name = simulating.load_cluster("dev")
    jobs = traces.load([DATA / "microsoft-itp-2021" / "cluster03.csv", DATA / "microsoft-itp-2021" / "cluster06.csv"])
    jobs, _dropped = study.fitting(jobs[:1000], nodes)
    return _study("itp-dev", nodes, simulating.load_quotas(QUOTAS), jobs, policy, engine.Options(interval=10), out)


def _study(
    name: str,
    nodes: tuple[Node, ...],
    queues: tuple[Queue, ...],
    jobs: list[TraceJob],
    policy: Policy,
    options: engine.Options,
    out: Path,
) -> dict[str, object]:
    started = time.monotonic()
    document = study.run(study.SCHEDULERS, nodes, queues, jobs, policy, options, setup={"experiment": name})
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
            "meanQueueingDelayHours": _hours(summary["queueingDelaySeconds"]["mean"]),
            "p95QueueingDelayHours": _hours(summary["queueingDelaySeconds"]["p95"]),
            "meanCompletionHours": _hours(summary["completionTimeSeconds"]["mean"]),
            "meanAllocation": None if summary["meanAllocation"] is None else round(summary["meanAllocation"], 3),
            "meanWorkingAllocation": None
            if summary["meanWorkingAllocation"] is None
            else round(summary["meanWorkingAllocation"], 3),
            "evictions": summary["evictions"],
        }
        print(json.dumps(line), flush=True)
    print(json.dumps({"experiment": name, "leitstandVersus": document["leitstandVersus"],
                      "wallSeconds": document["setup"]["wallSeconds"]}), flush=True)  # fmt: skip
    return document


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep report.json and plots here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="leitstand-sim-bench-"))
    queueing(out)
    fragmentation(out)
    print(f"reports and plots in {out}")


if __name__ == "__main__":
    main()
