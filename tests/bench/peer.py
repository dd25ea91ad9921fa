"""Leitstand beside upstream kube-scheduler on the same real control plane (``make bench-full``).

One ``industrial-ai-cloud`` cluster (1,350 kwok nodes, 10,800 GPUs; real etcd and
kube-apiserver built by hack/). Each round creates the same ``--pods`` single-GPU
pods (``nvidia.com/gpu: 1``, 100m CPU, 128Mi) in a namespace of its own while no
scheduler runs, then starts one scheduler and waits until every pod is bound:

1. kube-scheduler 1.36.5 (built by hack/ from the same Kubernetes release), defaults
   (client QPS 50, burst 100);
2. the same kube-scheduler with client QPS and burst at 1,000;
3. the Leitstand operator (``leitstand run``), the pods in a namespace of one GPUQuota.

Throughput is taken from the API server's own audit log of ``pods/binding``
(first to last successful binding), so the watcher costs the schedulers nothing;
"start to all bound" also counts the scheduler's start-up. The pods of a round are
deleted before the next. Then, with the operator still running, the SOOFI
pretraining TrainingJob (128 x 8 B200 = 1,024 GPUs) from deploy/examples is applied
and timed from the create call to its last binding, and the operator's peak memory
(VmHWM) over the whole run is read from /proc.

Run: ``make bench-full`` or ``python -m tests.bench.peer [--pods N] [--leitstand-only]``;
``--raw-binds`` measures the API server's own ceiling instead (bare ``pods/binding``
calls at 16, 32 and 64 in flight, no scheduler). Prints JSON.
"""

import argparse
import asyncio
import datetime
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from leitstand.devcluster import binaries, cluster, profiles
from leitstand.kube import applier, connection
from leitstand.kube.client import ApiError, Client, TransportError
from tests.e2e.operators import Operator

GROUP = "/apis/leitstand.dev/v1alpha1"
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
WAIT_SECONDS = 900  # the slowest round (kube-scheduler at QPS 50) takes about a minute per 3,000 pods


def pod(name: str, scheduler: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "peer"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "work",
                    "image": "trainer",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "1", "cpu": "100m", "memory": "128Mi"},
                        "limits": {"nvidia.com/gpu": "1"},
                    },
                }
            ],
        },
    }


async def create_all(api: Client, namespace: str, count: int, scheduler: str) -> None:
    await api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    limit = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        async with limit:
            await api.create(f"/api/v1/namespaces/{namespace}/pods", pod(f"p{index:05d}", scheduler))

    await asyncio.gather(*(one(i) for i in range(count)))


async def unbound(api: Client, namespace: str) -> int:
    answer = await api.get(
        f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "spec.nodeName=", "limit": "1"}
    )
    items = answer.get("items") or []
    return len(items) + int((answer.get("metadata") or {}).get("remainingItemCount") or 0)


async def wait_bound(api: Client, namespace: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the scheduler exited with {process.returncode}")
        if await unbound(api, namespace) == 0:
            return
        await asyncio.sleep(1.0)
    raise TimeoutError(f"pods in {namespace} not all bound within {WAIT_SECONDS} s")


async def delete_all(api: Client, namespace: str) -> None:
    """Deletes every pod of ``namespace`` (grace 0), repeating the collection delete until none is left.

    A collection delete stops where it is when its request times out (client side, or the
    server's 60 s deadline: 504), so it is sent again.
    """
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            await api.delete(f"/api/v1/namespaces/{namespace}/pods", grace_period_seconds=0)
        except TransportError:
            pass
        except ApiError as error:
            if error.status < 500:  # 504: the server's own deadline for a long collection delete
                raise
        if not (await api.get(f"/api/v1/namespaces/{namespace}/pods", params={"limit": "1"}))["items"]:
            return
        await asyncio.sleep(1.0)
    raise TimeoutError(f"pods in {namespace} not gone within 600 s")


def binding_span(local: cluster.LocalCluster, namespace: str) -> tuple[int, datetime.datetime, datetime.datetime]:
    times = [b.at for b in local.bindings() if b.pod.startswith(f"{namespace}/") and b.code < 300]
    return len(times), min(times), max(times)


def result(local: cluster.LocalCluster, name: str, namespace: str, started: float, finished: float) -> dict[str, Any]:
    count, first, last = binding_span(local, namespace)
    span = (last - first).total_seconds()
    return {
        "scheduler": name,
        "pods": count,
        "bindSpanSeconds": round(span, 2),
        "podsPerSecond": round((count - 1) / span, 1) if span > 0 else None,
        "startToAllBoundSeconds": round(finished - started, 2),
    }


def kube_scheduler(local: cluster.LocalCluster, workdir: Path, qps: int | None) -> subprocess.Popen[bytes]:
    args = [str(binaries.locate("kube-scheduler")), f"--kubeconfig={local.kubeconfig}", "--leader-elect=false",
            "--secure-port=0", "-v=1"]  # fmt: skip
    if qps is not None:
        config = workdir / f"scheduler-qps{qps}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "leaderElection": {"leaderElect": False},
                    "clientConnection": {"kubeconfig": str(local.kubeconfig), "qps": qps, "burst": qps},
                }
            )
        )
        args = [str(binaries.locate("kube-scheduler")), f"--config={config}", "--secure-port=0", "-v=1"]
    log = (workdir / f"kube-scheduler-{qps or 'default'}.log").open("wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=cluster.die_with_parent)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soofi_gang(api: Client, local: cluster.LocalCluster) -> dict[str, Any]:
    for name in ("00-namespaces.yaml", "site/10-queues.yaml"):
        for document in yaml.safe_load_all((EXAMPLES / name).read_text()):
            if not document:
                continue
            path = "/api/v1/namespaces" if document["kind"] == "Namespace" else f"{GROUP}/gpuquotas"
            try:
                await api.create(path, document)
            except ApiError as error:
                if error.status != 409:
                    raise
    job = yaml.safe_load((EXAMPLES / "20-soofi-pretraining.yaml").read_text())
    namespace = job["metadata"]["namespace"]
    started = datetime.datetime.now(datetime.UTC)
    await api.create(f"{GROUP}/namespaces/{namespace}/trainingjobs", job)
    replicas = job["spec"]["replicas"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        bound = [b for b in local.bindings() if b.pod.startswith(f"{namespace}/") and b.code < 300]
        if len(bound) >= replicas:
            last = max(b.at for b in bound)
            return {"replicas": replicas, "applyToAllBoundSeconds": round((last - started).total_seconds(), 2)}
        await asyncio.sleep(0.2)
    raise TimeoutError("the SOOFI gang was not bound within 120 s")


async def run(pods: int, kube_rounds: tuple[int | None, ...] = (None, 1000)) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leitstand-peer-"))
    local = cluster.LocalCluster("peer", profiles.load("industrial-ai-cloud"), directory=workdir / "cluster")
    local.start()
    rounds: list[dict[str, Any]] = []
    try:
        async with Client(connection.load(local.kubeconfig), timeout=300) as api:
            for qps in kube_rounds:
                name = "kube-scheduler" + (f" (QPS {qps})" if qps else " (defaults)")
                namespace = f"kube-{qps or 'default'}"
                await create_all(api, namespace, pods, "default-scheduler")
                started = time.monotonic()
                process = kube_scheduler(local, workdir, qps)
                try:
                    await wait_bound(api, namespace, process)
                    finished = time.monotonic()
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                rounds.append(result(local, name, namespace, started, finished))
                print(json.dumps(rounds[-1]), flush=True)
                await delete_all(api, namespace)
            namespace = "bench"
            await api.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                                                   "metadata": {"name": "bench-root"}, "spec": {}})  # fmt: skip
            await api.create(f"{GROUP}/gpuquotas", {"apiVersion": "leitstand.dev/v1alpha1", "kind": "GPUQuota",
                             "metadata": {"name": "bench"}, "spec": {"parent": "bench-root", "namespaces": [namespace],
                             "gpus": {"b200": {"guaranteed": 10000}, "rtx-pro-6000": {"guaranteed": 800}}}})  # fmt: skip
            await create_all(api, namespace, pods, "leitstand")
            started = time.monotonic()
            operator = Operator(local.kubeconfig, workdir / "operator.log")
            try:
                await wait_bound(api, namespace, operator.process)
                finished = time.monotonic()
                rounds.append(result(local, "leitstand", namespace, started, finished))
                rounds[-1]["operatorPeakRssMiB"] = round(peak_rss_mib(operator.process.pid), 1)
                print(json.dumps(rounds[-1]), flush=True)
                await delete_all(api, namespace)
                await api.delete(f"{GROUP}/gpuquotas/bench")
                await api.delete(f"{GROUP}/gpuquotas/bench-root")
                soofi = await soofi_gang(api, local)
                peak = round(peak_rss_mib(operator.process.pid), 1)
            finally:
                operator.stop()
    finally:
        local.stop()
    kube = next((r for r in rounds if "QPS 1000" in r["scheduler"]), {"podsPerSecond": None})
    ours = rounds[-1]
    return {
        "machine": f"{_cpus()} CPUs",
        "pods": pods,
        "rounds": rounds,
        "leitstandOverKubeSchedulerQps1000": round(ours["podsPerSecond"] / kube["podsPerSecond"], 2)
        if ours["podsPerSecond"] and kube["podsPerSecond"]
        else None,
        "soofiGang": soofi,
        "operatorPeakRssMiB": peak,
        "workdir": str(workdir),
    }


async def raw_binds(pods: int) -> dict[str, Any]:
    """The API server's own ceiling: ``pods`` bindings from a bare client (no scheduler, no watch) at 16/32/64 in flight."""
    workdir = Path(tempfile.mkdtemp(prefix="leitstand-raw-"))
    local = cluster.LocalCluster("raw", profiles.load("industrial-ai-cloud"), directory=workdir / "cluster")
    local.start()
    rates = {}
    try:
        async with Client(connection.load(local.kubeconfig), timeout=300) as api:
            for concurrency in (16, 32, 64):
                namespace = f"raw-{concurrency}"
                await create_all(api, namespace, pods, "nobody")
                nodes = [f"b200-{i + 1:04d}" for i in range(1120)]
                binds = [applier.PodBind(namespace, f"p{i:05d}", None, nodes[i % len(nodes)]) for i in range(pods)]
                started = time.monotonic()
                outcomes = await applier.bind_all(api, binds, concurrency=concurrency)
                rates[str(concurrency)] = round(sum(o.ok for o in outcomes) / (time.monotonic() - started), 1)
                print(json.dumps({"inFlight": concurrency, "bindsPerSecond": rates[str(concurrency)]}), flush=True)
                await delete_all(api, namespace)
    finally:
        local.stop()
    return {"pods": pods, "bindsPerSecondByInFlight": rates}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000, help="single-GPU pods per round (at most 10,800)")
    parser.add_argument("--leitstand-only", action="store_true", help="skip the kube-scheduler rounds")
    parser.add_argument("--raw-binds", action="store_true", help="only the API server's ceiling: bare bindings")
    args = parser.parse_args()
    if args.raw_binds:
        print(json.dumps(asyncio.run(raw_binds(min(args.pods, 3000))), indent=2))
        return
    print(json.dumps(asyncio.run(run(args.pods, () if args.leitstand_only else (None, 1000))), indent=2))


if __name__ == "__main__":
    main()
