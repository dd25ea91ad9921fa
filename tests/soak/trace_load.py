"""Soak: trace-driven load on the industrial-ai-cloud profile for a long run (``make soak``; not in CI).

Starts the real control plane with the ``industrial-ai-cloud`` profile (1,250 DGX B200 +
100 RTX PRO servers), the operator, ten tenants, and replays the Microsoft ITP traces in
``tests/data/traces/`` as TrainingJobs (time compressed, durations capped, so the run sees
a steady churn of arrivals, gangs, completions and reclaim). Finished jobs are deleted a
little later, as a TTL controller would. Every 10 s it samples the operator's memory and
the jobs by phase. At the end it checks: memory flat (the last fifth of the run within 10 %
of the second fifth), no error in the operator's log, and no job lost (every job submitted
either finished or still exists). Prints a JSON summary; exits 1 when a check fails.

Run: ``make soak`` (30 minutes) or ``python -m tests.soak.trace_load --minutes 5``.
"""

import argparse
import asyncio
import contextlib
import csv
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from leitstand.devcluster import cluster, profiles
from leitstand.kube import connection
from leitstand.kube.client import ApiError, Client
from tests import templates
from tests.e2e.operators import Operator

TRACES = Path(__file__).resolve().parent.parent / "data" / "traces" / "microsoft-itp-2021"
GROUP = "/apis/leitstand.dev/v1alpha1"
TENANTS = [f"tenant-{i:02d}" for i in range(10)]


def trace(speedup: float, cap_seconds: float, stretch: float = 20.0) -> list[tuple[float, int, float, str]]:
    """(arrival offset, GPUs, duration, tenant) from the two ITP clusters, time compressed.

    Durations are compressed ``stretch`` times less than arrivals, so many jobs overlap
    and the cluster stays busy enough for queues, gangs and reclaim to matter.
    """
    rows = []
    for index, name in enumerate(("cluster03.csv", "cluster06.csv")):
        with (TRACES / name).open() as stream:
            for row in csv.DictReader(stream):
                rows.append((float(row["submission_time"]), int(row["num_gpu"]), float(row["duration"]), index))
    start = min(r[0] for r in rows)
    rng = random.Random(3)
    return sorted(
        (
            (t - start) / speedup,
            gpus,
            min(max(d * stretch / speedup, 5.0), cap_seconds),
            TENANTS[(i * 5 + rng.randrange(5)) % 10],
        )
        for t, gpus, d, i in rows
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(minutes: float, speedup: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leitstand-soak-"))
    local = cluster.LocalCluster("soak", profiles.load("industrial-ai-cloud"), directory=workdir / "cluster")
    local.start()
    operator = Operator(local.kubeconfig, workdir / "operator.log")
    submitted: dict[str, str] = {}
    samples: list[dict[str, Any]] = []
    finished: set[str] = set()
    try:
        operator.wait_ready(within=120)
        async with Client(connection.load(local.kubeconfig)) as api:
            await api.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                                                   "metadata": {"name": "root"}, "spec": {}})  # fmt: skip
            for i, tenant in enumerate(TENANTS):
                await api.create(
                    "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant}}
                )
                await api.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                    "metadata": {"name": tenant}, "spec": {"parent": "root", "namespaces": [tenant],
                    "gpus": {"b200": {"guaranteed": 800, "overQuotaWeight": 1 + i % 3}}}})  # fmt: skip
            arrivals = trace(speedup, cap_seconds=600)
            started = time.monotonic()
            deadline = started + minutes * 60
            next_sample = started
            cursor = 0
            while time.monotonic() < deadline:
                elapsed = time.monotonic() - started
                while cursor < len(arrivals) and arrivals[cursor][0] <= elapsed:
                    _at, gpus, duration, tenant = arrivals[cursor]
                    replicas, per = (1, gpus) if gpus <= 8 else (math.ceil(gpus / 8), 8)
                    name = f"job-{cursor}"
                    body = {"apiVersion": "leitstand.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
                            "spec": {"replicas": replicas, "gpusPerReplica": per, "gpuType": "b200",
                                     "template": templates.pod(image="trainer", annotations={"leitstand.dev/sim-duration": f"{duration:.0f}s"})}}  # fmt: skip
                    await api.create(f"{GROUP}/namespaces/{tenant}/trainingjobs", body)
                    submitted[f"{tenant}/{name}"] = tenant
                    cursor += 1
                if time.monotonic() >= next_sample:
                    next_sample += 10
                    items = (await api.list(f"{GROUP}/trainingjobs"))["items"]
                    phases: dict[str, int] = {}
                    for item in items:
                        phase = (item.get("status") or {}).get("phase") or "New"
                        phases[phase] = phases.get(phase, 0) + 1
                        key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                        if phase in {"Succeeded", "Failed"} and key not in finished:
                            finished.add(key)
                            meta = item["metadata"]
                            with contextlib.suppress(ApiError):  # a TTL controller's job: finished jobs go away
                                await api.delete(f"{GROUP}/namespaces/{meta['namespace']}/trainingjobs/{meta['name']}")
                    samples.append({"t": round(elapsed), "rssMiB": round(rss_mib(operator.process.pid), 1), **phases})
                    print(json.dumps(samples[-1]), flush=True)
                await asyncio.sleep(0.2)
            remaining = {
                f"{i['metadata']['namespace']}/{i['metadata']['name']}"
                for i in (await api.list(f"{GROUP}/trainingjobs"))["items"]
            }
    finally:
        operator.stop()
        local.stop()
    log = (workdir / "operator.log").read_text(errors="replace")
    lost = sorted(set(submitted) - finished - remaining)
    fifth = max(len(samples) // 5, 1)
    early = statistics.mean(s["rssMiB"] for s in samples[fifth : 2 * fifth]) if len(samples) >= 5 else 0.0
    late = statistics.mean(s["rssMiB"] for s in samples[-fifth:]) if samples else 0.0
    errors = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    return {
        "minutes": minutes,
        "submitted": len(submitted),
        "finished": len(finished),
        "lost": lost,
        "operatorErrors": errors[:20],
        "rssMiBSecondFifth": round(early, 1),
        "rssMiBLastFifth": round(late, 1),
        "memoryGrowth": round((late - early) / early, 3) if early else None,
        "log": str(workdir / "operator.log"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--speedup", type=float, default=2000, help="trace seconds per wall-clock second")
    args = parser.parse_args()
    summary = asyncio.run(run(args.minutes, args.speedup))
    print(json.dumps(summary, indent=2))
    flat = summary["memoryGrowth"] is not None and summary["memoryGrowth"] <= 0.10
    sys.exit(0 if flat and not summary["lost"] and not summary["operatorErrors"] else 1)


if __name__ == "__main__":
    main()
