"""Leitstand beside Kueue (with kube-scheduler) on the same control plane and the same workload (``make bench-full``).

Two stacks, one after the other, each on a fresh ``industrial-ai-cloud`` cluster (1,250
DGX B200 and 100 RTX PRO servers as kwok nodes; real etcd, kube-apiserver and
kube-controller-manager built by hack/):

- **Kueue** v0.17.0's manager admits, kube-scheduler 1.36.5 binds (kube-scheduler's client at
  QPS 1,000; Kueue's not rate-limited). The queues are the GPUQuota tree of
  ``deploy/examples/site/10-queues.yaml`` translated by ``leitstand.kube.kueue`` (cohorts,
  ClusterQueues, a LocalQueue per namespace, a flavor per GPU type and one for SOOFI's
  reserved block, a Topology of spine / leaf / hostname). Kueue's fair sharing is on; jobs
  carry ``kueue.x-k8s.io/queue-name``.
- **Leitstand** (``leitstand run``, its default configuration) with the same GPUQuotas.

Both get the same ``batch/v1`` Indexed Jobs (parallelism = completions = the gang's pods,
a B200 node selector, the pods finishing through the ``leitstand.dev/sim-duration`` kwok
stage), which differ only in how each scheduler is asked for them: the queue-name label
and Kueue's topology annotations, or ``schedulerName: leitstand`` and Leitstand's. The
Job controller of kube-controller-manager makes the pods in both.

The workload: the jobs of the Microsoft ITP traces (clusters 03 and 06, in submission
order, their sizes and durations; the three industry tenants take turns), durations
compressed ``COMPRESSION`` times (a trace hour is a minute). Arrivals are set as the
simulator's hero scenario sets them: a burst in the first minute that fills the site and
queues 30 % more, then arrivals at the rate that keeps it full. Multi-pod jobs prefer one
leaf. At ``HERO_AT`` the SOOFI pretraining (128 x 8 B200, required: one spine) arrives
into SOOFI's reserved block, which the others have borrowed by then. Quota fields that are
times (``minRuntimeSeconds``) are compressed too.

Measured the same way for both, from the API server: the binding time of every pod from
its audit log (which also shows who bound it, and Kueue's admissions), the rest from a
watch of pods and Jobs. Per job, create to all its pods bound (queueing delay; a job still
waiting at the end counts as waiting until then) and bound to finished; GPU allocation
over time; GPUs of pods bound while the rest of their gang is not; distance from fair share over time
(Leitstand's own water-filling on the tree and the moment's demand, both stacks); pods of
running jobs stopped before they finished (preemptions), their GPU time, and how long the
stopped jobs took to be whole again; how far each Job's creation fell behind its arrival;
the SOOFI job's wait; the schedulers' CPU seconds and peak RSS (Kueue's manager and kube-scheduler
together; Leitstand's operator).

Run: ``make bench-full`` or ``python -m tests.bench.kueue [--out DIR] [--minutes M]``.
Prints JSON; ``--out`` keeps ``report.json``, ``table.md`` (the side-by-side table with ratios) and
``kueue.png``.
"""

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from leitstand.cli.simulating import load_quotas
from leitstand.core import fairshare
from leitstand.core.model import GPUType, QueueName
from leitstand.devcluster import cluster, profiles
from leitstand.kube import connection, kueue
from leitstand.kube.client import ApiError, Client, TransportError
from leitstand.kube.resources import GPUQuotaSpec
from leitstand.sim import report, traces
from tests.e2e.operators import Operator

ROOT = Path(__file__).resolve().parents[2]
QUOTAS = ROOT / "deploy" / "examples" / "site" / "10-queues.yaml"
NAMESPACES = ROOT / "deploy" / "examples" / "00-namespaces.yaml"
TRACES = [ROOT / "tests" / "data" / "traces" / "microsoft-itp-2021" / f"cluster0{n}.csv" for n in (3, 6)]
TENANTS = ("acme-robotics", "nordwind-energy", "helix-pharma")
HERO_NAMESPACE = "soofi"
COMPRESSION = 60.0  # trace seconds per wall second
HERO_AT = 240.0  # wall seconds after the first arrival
SHARED = {"bench.leitstand.dev/shared": "true"}  # on every node outside SOOFI's block, for Kueue's shared flavors
B200 = "NVIDIA-B200"
LEAF = "network.topology.nvidia.com/leaf"
SPINE = "network.topology.nvidia.com/spine"
GROUP = "/apis/leitstand.dev/v1alpha1"
KUEUE_API = "/apis/kueue.x-k8s.io/v1beta2"


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """One job of the workload: when (wall seconds from the start), whose, its gang and how long its pods run."""

    name: str
    namespace: str
    at: float
    replicas: int
    gpus_per_replica: int
    seconds: float
    required: str | None = None  # a topology level all pods share

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


def workload(minutes: float, capacity: int, seed: int = 16) -> list[Arrival]:
    """The trace's jobs in order, arriving as a burst that queues 30 % beyond ``capacity``, then at the rate that
    keeps it busy, for ``minutes``; and the hero at ``HERO_AT``."""
    jobs = sorted(traces.load(TRACES), key=lambda job: (job.submit, job.name))
    rng = random.Random(seed)
    mean_work = sum(job.gpus * max(job.duration / COMPRESSION, 5.0) for job in jobs) / len(jobs)
    rate = capacity / mean_work
    arrivals: list[Arrival] = []
    moment, backlog = 0.0, 0
    for index, job in enumerate(jobs):
        if backlog < 1.3 * capacity:
            at = rng.uniform(0, 60)
            backlog += job.gpus
        else:
            moment = max(moment, 60.0) + rng.expovariate(rate)
            at = moment
        if at > minutes * 60:
            break
        arrivals.append(
            Arrival(
                f"itp-{index:05d}",
                TENANTS[index % len(TENANTS)],
                at,
                job.replicas,
                job.gpus_per_replica,
                max(job.duration / COMPRESSION, 5.0),
            )
        )
    arrivals.append(Arrival("soofi-pretraining", HERO_NAMESPACE, HERO_AT, 128, 8, 3600.0, required="spine"))
    return sorted(arrivals, key=lambda a: a.at)


def job(arrival: Arrival, stack: str) -> dict[str, Any]:
    """The batch/v1 Indexed Job of ``arrival``, asked of ``stack`` (``kueue`` or ``leitstand``)."""
    labels = {"bench": "kueue-side-by-side"}
    annotations = {"leitstand.dev/sim-duration": f"{arrival.seconds:.0f}s"}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "nodeSelector": {"nvidia.com/gpu.product": B200},
        "containers": [
            {
                "name": "train",
                "image": "trainer",
                "resources": {
                    "requests": {"nvidia.com/gpu": str(arrival.gpus_per_replica), "cpu": "4", "memory": "64Gi"},
                    "limits": {"nvidia.com/gpu": str(arrival.gpus_per_replica)},
                },
            }
        ],
    }
    multi = arrival.replicas > 1
    if stack == "kueue":
        labels["kueue.x-k8s.io/queue-name"] = kueue.QUEUE_NAME
        if arrival.required == "spine":
            annotations["kueue.x-k8s.io/podset-required-topology"] = SPINE
        elif multi:
            annotations["kueue.x-k8s.io/podset-preferred-topology"] = LEAF
    else:
        spec["schedulerName"] = "leitstand"
        annotations["leitstand.dev/gpu-type"] = "b200"
        if arrival.required is not None:
            annotations["leitstand.dev/topology-required"] = arrival.required
        elif multi:
            annotations["leitstand.dev/topology-preferred"] = "leaf"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": arrival.name, "namespace": arrival.namespace, "labels": labels},
        "spec": {
            "parallelism": arrival.replicas,
            "completions": arrival.replicas,
            "completionMode": "Indexed",
            # per index: a pod Leitstand preempts is a failure to the Job controller, which then waits its failure
            # backoff before it makes the pod again; per index that is 10 s for a first failure, per Job it doubles
            # with every failed pod of the Job (an 8-pod gang would wait the 10-minute cap)
            "backoffLimitPerIndex": 10_000,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec},
        },
    }


@dataclasses.dataclass
class PodRecord:
    job: str  # namespace/name of its Job
    gpus: int
    bound: float | None = None  # wall seconds from the start
    node: str = ""
    ended: float | None = None
    succeeded: bool = False


@dataclasses.dataclass
class Recorder:
    """Pods and Jobs as a watch sees them, timed from ``start`` (monotonic)."""

    start: float
    pods: dict[str, PodRecord] = dataclasses.field(default_factory=dict)  # by uid
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # namespace/name -> uid
    completed: dict[str, float] = dataclasses.field(default_factory=dict)  # Job -> when Complete

    def now(self) -> float:
        return time.monotonic() - self.start

    def pod(self, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        job_name = (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
        if not job_name:
            return
        uid = meta["uid"]
        record = self.pods.get(uid)
        if record is None:
            gpus = sum(
                int(((c.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu", 0))
                for c in body["spec"].get("containers") or []
            )
            record = self.pods[uid] = PodRecord(f"{meta['namespace']}/{job_name}", gpus)
            self.names[f"{meta['namespace']}/{meta['name']}"] = uid
        now = self.now()
        if body["spec"].get("nodeName") and record.bound is None:
            record.bound = now
            record.node = body["spec"]["nodeName"]
        phase = (body.get("status") or {}).get("phase")
        if record.ended is None and (
            kind == "DELETED" or phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp")
        ):
            record.ended = now
            record.succeeded = phase == "Succeeded"

    def job(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        done = any(
            c.get("type") == "Complete" and c.get("status") == "True"
            for c in (body.get("status") or {}).get("conditions") or []
        )
        if done and key not in self.completed:
            self.completed[key] = self.now()

    async def follow(self, api: Client, path: str, handle: Any) -> None:
        """Lists and watches ``path`` until cancelled, relisting on 410 and on a broken stream."""
        while True:
            listed = await api.get(path)
            for item in listed.get("items") or []:
                handle("ADDED", item)
            version = listed["metadata"]["resourceVersion"]
            try:
                while True:
                    async for event in api.watch(path, resource_version=version, timeout_seconds=120):
                        body = event.get("object") or {}
                        version = (body.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            handle(event["type"], body)
            except (ApiError, TransportError):
                await asyncio.sleep(0.5)


async def apply_all(api: Client, documents: Sequence[dict[str, Any]], collection: Any) -> None:
    for document in documents:
        try:
            await api.create(collection(document), document)
        except ApiError as error:
            if error.status != 409:
                raise


def kueue_path(document: dict[str, Any]) -> str:
    kind = document["kind"].lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    namespace = document["metadata"].get("namespace")
    return f"{KUEUE_API}/namespaces/{namespace}/{plural}" if namespace else f"{KUEUE_API}/{plural}"


def compressed_quotas() -> list[dict[str, Any]]:
    """The example's GPUQuotas with their times compressed as the workload's are."""
    documents = [d for d in yaml.safe_load_all(QUOTAS.read_text()) if d and d.get("kind") == "GPUQuota"]
    for document in documents:
        spec = document["spec"]
        if spec.get("minRuntimeSeconds"):
            spec["minRuntimeSeconds"] = max(1, round(spec["minRuntimeSeconds"] / COMPRESSION))
    return documents


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak resident MiB of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


async def run_stack(stack: str, arrivals: list[Arrival], minutes: float, workdir: Path) -> dict[str, Any]:
    controllers = ("kube", "kube-scheduler", "kueue") if stack == "kueue" else ("kube",)
    local = cluster.LocalCluster(
        f"bench-{stack}", profiles.load("industrial-ai-cloud"), directory=workdir / stack, controllers=controllers
    )
    local.start()
    operator: Operator | None = None
    try:
        async with Client(connection.load(local.kubeconfig), timeout=120) as api:
            await label_shared_nodes(api)
            namespaces = [d for d in yaml.safe_load_all(NAMESPACES.read_text()) if d]
            await apply_all(api, namespaces, lambda _d: "/api/v1/namespaces")
            quotas = compressed_quotas()
            if stack == "kueue":
                specs = {d["metadata"]["name"]: GPUQuotaSpec.model_validate(d.get("spec") or {}) for d in quotas}
                translation = kueue.translate(specs, shared_node_labels=SHARED)
                await apply_all(api, translation.objects, kueue_path)
                schedulers = [local.pid("kueue"), local.pid("kube-scheduler")]
            else:
                await apply_all(api, quotas, lambda _d: f"{GROUP}/gpuquotas")
                operator = Operator(
                    local.kubeconfig, workdir / f"{stack}-operator.log", env={"LEITSTAND_CYCLE_INTERVAL_SECONDS": "5"}
                )  # its default
                operator.wait_ready(120)
                schedulers = [operator.process.pid]
            await asyncio.sleep(5)  # the queues reach the schedulers' caches
            before = [process_usage(pid)[0] for pid in schedulers]
            recorder = Recorder(time.monotonic())
            created: dict[str, float] = {}
            followers = [
                asyncio.create_task(recorder.follow(api, "/api/v1/pods", recorder.pod)),
                asyncio.create_task(recorder.follow(api, "/apis/batch/v1/jobs", lambda _k, body: recorder.job(body))),
            ]
            limit = asyncio.Semaphore(16)

            async def submit(arrival: Arrival) -> None:
                await asyncio.sleep(max(0.0, arrival.at - recorder.now()))
                async with limit:
                    created[f"{arrival.namespace}/{arrival.name}"] = recorder.now()
                    await api.create(f"/apis/batch/v1/namespaces/{arrival.namespace}/jobs", job(arrival, stack))

            await asyncio.gather(*(submit(a) for a in arrivals))
            await asyncio.sleep(max(0.0, minutes * 60 - recorder.now()))
            end = recorder.now()
            usage = [process_usage(pid) for pid in schedulers]
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            admitted = await kueue_admissions(api) if stack == "kueue" else None
    finally:
        if operator is not None:
            operator.stop()
        local.stop()
    audit = [entry for entry in local.audit()]
    started_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=time.monotonic() - recorder.start)
    binders = sorted(
        {entry.user_agent.split("/")[0] for entry in audit if entry.resource == "pods/binding" and entry.code < 300}
    )
    for entry in audit:  # the API server's own time of each binding
        uid = recorder.names.get(entry.pod)
        if entry.resource == "pods/binding" and entry.code < 300 and uid is not None:
            record = recorder.pods[uid]
            record.bound = (entry.at - started_at).total_seconds()
    result = measure(arrivals, created, recorder, end)
    result["stack"] = stack
    result["boundBy"] = binders
    result["kueueWorkloadStatusWrites"] = (
        sum(1 for e in audit if e.resource == "workloads/status" and e.code < 300) if stack == "kueue" else None
    )
    result["kueueWorkloadsAdmitted"] = admitted
    result["schedulerCpuSeconds"] = round(sum(u[0] for u in usage) - sum(before), 1)
    result["schedulerPeakRssMiB"] = round(sum(u[1] for u in usage), 1)
    return result


async def label_shared_nodes(api: Client) -> None:
    """Labels every node outside SOOFI's block with ``SHARED`` (Kueue's shared flavors select them by it)."""
    nodes = (await api.list("/api/v1/nodes"))["items"]
    limit = asyncio.Semaphore(32)

    async def one(node: dict[str, Any]) -> None:
        if (node["metadata"].get("labels") or {}).get("leitstand.dev/pool"):
            return
        async with limit:
            await api.patch(f"/api/v1/nodes/{node['metadata']['name']}", {"metadata": {"labels": SHARED}})

    await asyncio.gather(*(one(node) for node in nodes))


async def kueue_admissions(api: Client) -> int:
    workloads = (await api.list(f"{KUEUE_API}/workloads"))["items"]
    return sum(
        1
        for w in workloads
        if any(
            c.get("type") == "Admitted" and c.get("status") == "True"
            for c in w.get("status", {}).get("conditions") or []
        )
    )


def measure(arrivals: list[Arrival], created: dict[str, float], recorder: Recorder, end: float) -> dict[str, Any]:
    """The figures of one stack's run, from what the recorder saw (times in wall seconds from the start)."""
    by_job: dict[str, list[PodRecord]] = {}
    for record in recorder.pods.values():
        by_job.setdefault(record.job, []).append(record)
    size = {f"{a.namespace}/{a.name}": a for a in arrivals}
    started: dict[str, float] = {}  # the first moment all of a gang's pods were bound at once
    whole: dict[str, list[float]] = {}  # every moment a pod's binding made its gang whole
    for key, records in by_job.items():
        arrival = size.get(key)
        if arrival is None:
            continue
        moments = sorted({r.bound for r in records if r.bound is not None})
        whole[key] = [m for m in moments if _holding(records, m) >= arrival.replicas]
        if whole[key]:
            started[key] = whole[key][0]
    # jobs whose pods were stopped before they finished: how long until they were whole again
    restarts, not_again = [], 0
    for key, records in by_job.items():
        if key not in started:
            continue
        stops = [r.ended for r in records if r.ended is not None and not r.succeeded and r.ended > started[key]]
        if not stops:
            continue
        stop = min(stops)
        again = next((m for m in whole[key] if m > stop), None)
        if again is None:
            not_again += 1
        restarts.append((again if again is not None else end) - stop)
    lags = [created[key] - size[key].at for key in created]
    delays, later, waiting = [], [], 0  # later: the jobs that arrived after the first minute's burst
    hero_key = f"{HERO_NAMESPACE}/soofi-pretraining"
    for key, at in created.items():
        if key == hero_key:
            continue
        if key in started:
            delays.append(max(0.0, started[key] - at))
        else:
            waiting += 1
            delays.append(end - at)
        if at >= 60:
            later.append(delays[-1])
    runs = [recorder.completed[k] - started[k] for k in recorder.completed if k in started]
    # allocation, partly bound gangs and fair share: a sample every second
    queues = load_quotas(QUOTAS)
    capacity = 10_000
    samples: list[dict[str, Any]] = []
    tenants = [*TENANTS, HERO_NAMESPACE]
    for second in range(int(end) + 1):
        t = float(second)
        by_tenant = dict.fromkeys(tenants, 0)
        partial = 0
        demand = dict.fromkeys(tenants, 0)
        for key, records in by_job.items():
            arrival = size.get(key)
            if arrival is None:
                continue
            held = [r for r in records if r.bound is not None and r.bound <= t and (r.ended is None or r.ended > t)]
            by_tenant[arrival.namespace] += sum(r.gpus for r in held)
            # pods bound while the rest of their gang is not: bound since the gang was last whole
            moments = whole.get(key, [])
            partial += sum(r.gpus for r in held if not any((r.bound or 0.0) <= m <= t for m in moments))
        for key, at in created.items():
            done = recorder.completed.get(key)
            if at <= t and (done is None or done > t):
                demand[key.split("/")[0]] += size[key].gpus
        shares = fairshare.fair_shares(
            queues, {GPUType("b200"): capacity}, {QueueName(q): {GPUType("b200"): d} for q, d in demand.items()}
        )
        fair = {q: sum(shares.get(QueueName(q), {}).values()) for q in tenants}
        samples.append(
            {
                "t": t,
                "allocated": sum(by_tenant.values()),
                "partial": partial,
                "byTenant": by_tenant,
                "distance": sum(abs(by_tenant[q] - fair[q]) for q in tenants) / capacity,
            }
        )
    busy = [s for s in samples if 60 <= s["t"] <= end]  # after the first minute's burst
    lost = [r for r in recorder.pods.values() if r.bound is not None and r.ended is not None and not r.succeeded]
    hero_created = created.get(hero_key)
    hero_started = started.get(hero_key)
    return {
        "jobs": len(created),
        "jobsStarted": len(started) - (hero_started is not None),
        "jobsStillWaitingAtEnd": waiting,
        "meanQueueingDelaySeconds": _round(report.mean(delays)),
        "p95QueueingDelaySeconds": _round(report.percentile(delays, 0.95)),
        "meanRunSeconds": _round(report.mean(runs)),
        "meanQueueingDelayAfterTheBurstSeconds": _round(report.mean(later)),
        "p95QueueingDelayAfterTheBurstSeconds": _round(report.percentile(later, 0.95)),
        "meanAllocation": _round(report.mean([s["allocated"] / capacity for s in busy]), 3),
        "meanAllocationFrom150Seconds": _round(
            report.mean([s["allocated"] / capacity for s in samples if s["t"] >= 150]), 3
        ),
        "meanGpusInPartlyBoundGangs": _round(report.mean([s["partial"] for s in busy])),
        "maxGpusInPartlyBoundGangs": max((s["partial"] for s in busy), default=0),
        "meanDistanceFromFairShare": _round(report.mean([s["distance"] for s in busy]), 3),
        "podsDeletedBeforeFinishing": len(lost),
        "jobsStoppedBeforeFinishing": len(restarts),
        "meanSecondsUntilWholeAgain": _round(report.mean(restarts)),
        "jobsNotWholeAgainAtEnd": not_again,
        "meanSubmitLagSeconds": _round(report.mean(lags), 2),
        "maxSubmitLagSeconds": _round(max(lags, default=0.0), 2),
        "gpuHoursLost": _round(_gpu_hours(lost)),
        "gpuHoursLostOnSoofisBlock": _round(_gpu_hours([r for r in lost if r.node.startswith("soofi-")])),
        "gpuHoursLostInTheFirstTwoMinutes": _round(_gpu_hours([r for r in lost if r.ended and r.ended < 120])),
        "soofiWaitSeconds": _round(hero_started - hero_created)
        if hero_started is not None and hero_created is not None
        else None,
        "soofiStartedWithinRun": hero_started is not None,
        "wallSeconds": _round(end),
        "series": {key: [s[key] for s in samples] for key in ("t", "allocated", "partial", "distance")},
    }


def _holding(records: Sequence[PodRecord], moment: float) -> int:
    """How many of ``records`` were bound and not yet stopped at ``moment``."""
    return sum(
        1 for r in records if r.bound is not None and r.bound <= moment and (r.ended is None or r.ended > moment)
    )


def _gpu_hours(records: Sequence[PodRecord]) -> float:
    """Trace GPU-hours the pods of ``records`` ran before they were stopped (their work is lost)."""
    return (
        sum(r.gpus * (r.ended - r.bound) for r in records if r.ended is not None and r.bound is not None)
        * COMPRESSION
        / 3600
    )


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def plot(results: dict[str, dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (allocation, fairness) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for stack, colour in (("leitstand", "#0b6e4f"), ("kueue", "#c84c09")):
        series = results[stack]["series"]
        allocation.plot(series["t"], [a / 100 for a in series["allocated"]], label=f"{stack}: allocated", color=colour)
        allocation.plot(
            series["t"],
            [p / 100 for p in series["partial"]],
            label=f"{stack}: in partly bound gangs",
            color=colour,
            linestyle=":",
        )
        fairness.plot(series["t"], series["distance"], label=stack, color=colour)
        wait = results[stack]["soofiWaitSeconds"]
        if wait is not None:
            allocation.axvline(HERO_AT + wait, color=colour, linestyle="--", linewidth=0.8)
    allocation.axvline(
        HERO_AT, color="grey", linestyle="--", linewidth=0.8, label="SOOFI job submitted (dashed: started)"
    )
    allocation.set(ylabel="% of 10,000 B200", title="GPU allocation, Leitstand beside Kueue + kube-scheduler")
    allocation.legend(fontsize=8, loc="lower right")
    fairness.set(xlabel="wall seconds (1 s = 1 trace minute)", ylabel="distance from fair share", ylim=(0, None))
    fairness.legend(fontsize=8)
    figure.tight_layout()
    path = out / "kueue.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


RATIOS = (
    "meanQueueingDelaySeconds",
    "p95QueueingDelaySeconds",
    "meanQueueingDelayAfterTheBurstSeconds",
    "p95QueueingDelayAfterTheBurstSeconds",
    "meanAllocation",
    "meanAllocationFrom150Seconds",
    "meanGpusInPartlyBoundGangs",
    "meanDistanceFromFairShare",
    "gpuHoursLost",
    "soofiWaitSeconds",
    "schedulerCpuSeconds",
    "schedulerPeakRssMiB",
)


ROWS = (
    ("mean queueing delay (s)", "meanQueueingDelaySeconds"),
    ("p95 queueing delay (s)", "p95QueueingDelaySeconds"),
    ("mean queueing delay after the burst (s)", "meanQueueingDelayAfterTheBurstSeconds"),
    ("p95 queueing delay after the burst (s)", "p95QueueingDelayAfterTheBurstSeconds"),
    ("jobs still waiting at the end", "jobsStillWaitingAtEnd"),
    ("mean bound to finished (s)", "meanRunSeconds"),
    ("mean allocation", "meanAllocation"),
    ("mean allocation from 150 s", "meanAllocationFrom150Seconds"),
    ("GPUs in partly bound gangs, mean", "meanGpusInPartlyBoundGangs"),
    ("GPUs in partly bound gangs, max", "maxGpusInPartlyBoundGangs"),
    ("distance from fair share", "meanDistanceFromFairShare"),
    ("SOOFI job: created to all bound (s)", "soofiWaitSeconds"),
    ("pods stopped before they finished", "podsDeletedBeforeFinishing"),
    ("jobs stopped before they finished", "jobsStoppedBeforeFinishing"),
    ("stopped jobs: mean time until whole again (s)", "meanSecondsUntilWholeAgain"),
    ("stopped jobs not whole again at the end", "jobsNotWholeAgainAtEnd"),
    ("GPU-hours lost", "gpuHoursLost"),
    ("GPU-hours lost on SOOFI's block", "gpuHoursLostOnSoofisBlock"),
    ("submission lag, mean / max (s)", "meanSubmitLagSeconds"),
    ("scheduler CPU seconds", "schedulerCpuSeconds"),
    ("scheduler peak RSS (MiB)", "schedulerPeakRssMiB"),
)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side table in Markdown, with Leitstand ÷ Kueue."""
    lines = ["| | Kueue + kube-scheduler | Leitstand | Leitstand ÷ Kueue |", "|---|---|---|---|"]
    for label, key in ROWS:
        theirs, ours = results["kueue"].get(key), results["leitstand"].get(key)
        ratio = (
            f"{ours / theirs:.2f}"
            if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs
            else "—"
        )
        lines.append(f"| {label} | {theirs} | {ours} | {ratio} |")
    return "\n".join(lines) + "\n"


async def run(minutes: float, out: Path, stacks: Sequence[str]) -> dict[str, Any]:
    arrivals = workload(minutes, capacity=10_000)
    workdir = Path(tempfile.mkdtemp(prefix="leitstand-kueue-bench-"))  # the clusters' state and logs
    results = {}
    for stack in stacks:
        results[stack] = await run_stack(stack, arrivals, minutes, workdir)
        print(json.dumps({k: v for k, v in results[stack].items() if k != "series"}), flush=True)
    document: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{len(os.sched_getaffinity(0))} CPUs",
        "minutes": minutes,
        "jobs": len(arrivals),
        "gpusAsked": sum(a.gpus for a in arrivals),
        "stacks": results,
        "workdir": str(workdir),
    }
    if {"leitstand", "kueue"} <= set(results):
        document["leitstandOverKueue"] = {
            key: round(results["leitstand"][key] / results["kueue"][key], 2)
            if results["leitstand"].get(key) and results["kueue"].get(key)
            else None
            for key in RATIOS
        }
        plot(results, out)
        (out / "table.md").write_text(table(results))
    (out / "report.json").write_text(json.dumps(document, indent=1))
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep report.json, table.md and kueue.png here")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall minutes of arrivals and measurement")
    parser.add_argument("--stacks", default="kueue,leitstand", help="which stacks, in order")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="leitstand-kueue-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    document = asyncio.run(run(args.minutes, out, args.stacks.split(",")))
    shown = {
        **document,
        "stacks": {k: {x: y for x, y in v.items() if x != "series"} for k, v in document["stacks"].items()},
    }
    print(json.dumps(shown, indent=2))
    print(f"report and plot in {out}")


if __name__ == "__main__":
    main()
