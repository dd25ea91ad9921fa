"""The story ``leitstand demo`` tells on the ``demo`` profile, one step at a time.

Each step submits what a tenant would, waits (bounded) until the cluster shows
the outcome, prints one line of what happened with the numbers the API server
reports, and the ``kubectl`` command that shows it. A step that does not happen
in time stops the demo with one line that says which and where the log is.

1. SOOFI submits its pretraining (128 x 8 B200, ``required: spine``); it binds on its reserved block.
2. Fine-tunes of acme-robotics and nordwind-energy fill the shared B200 part beyond their
   guarantees, while helix-pharma's guarantee lies idle.
3. helix-pharma arrives below its share and reclaims: the victims are named, stopped and queued again.
4. A job that can never fit (more RTX PRO GPUs than the site has) says why.
5. A job with a runtime limit ends at its limit.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from rich.console import Console

from leitstand.errors import UserError
from leitstand.kube import resources
from leitstand.kube.client import Client

GROUP = f"/apis/{resources.API_VERSION}"
PROFILE = "demo"  # the cluster profile the story is written for
PRETRAINING = "20-soofi-pretraining.yaml"  # of deploy/examples/: step 1 submits it, the demo applies the rest
SOOFI_REPLICAS = 128
STEP_SECONDS = 90.0  # the longest a step may take on a busy 2-core machine
LIMITED_SECONDS = 40  # the runtime limit of step 5's job

T = TypeVar("T")


def finetune(namespace: str, name: str, *, gpu_type: str = "b200", limit: str | None = None) -> dict[str, Any]:
    """A single-node fine-tune: one replica of 8 GPUs that runs for an hour of the fake cluster's time."""
    spec: dict[str, Any] = {
        "replicas": 1,
        "gpusPerReplica": 8,
        "gpuType": gpu_type,
        "template": {
            "metadata": {"annotations": {"leitstand.dev/sim-duration": "1h"}},
            "spec": {
                "containers": [
                    {
                        "name": "trainer",
                        "image": "nvcr.io/nvidia/pytorch:25.10-py3",
                        "command": ["torchrun", "--nproc-per-node=8", "finetune.py"],
                        "resources": {"requests": {"cpu": "64", "memory": "512Gi"}},
                    }
                ]
            },
        },
    }
    if limit is not None:
        spec["runtimeLimit"] = limit
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"leitstand.dev/demo": "scenario"}},
        "spec": spec,
    }


# Step 2: 20 + 12 single-node fine-tunes fill the 32 shared DGX B200 (acme-robotics's example job is one of its 20).
FILL = {"acme-robotics": 19, "nordwind-energy": 12}
ARRIVING = ("helix-pharma", 4)  # step 3: 32 GPUs, half of helix-pharma's guarantee
NEVER = "helix-pharma/protein-fold-xl"  # step 4: 6 x 8 RTX PRO GPUs; the site has 4 x 8
LIMITED = "acme-robotics/eval-sweep"  # step 5: 8 RTX PRO GPUs, a runtime limit of LIMITED_SECONDS


def never_fits() -> dict[str, Any]:
    namespace, name = NEVER.split("/")
    body = finetune(namespace, name, gpu_type="rtx-pro-6000")
    body["spec"]["replicas"] = 6
    return body


@dataclass
class Scenario:
    client: Client
    console: Console
    pretraining: Path  # deploy/examples/20-soofi-pretraining.yaml: step 1 submits it
    alive: Callable[[], None]  # raises UserError when the cluster or the operator has died
    log: Path  # the operator's log, named when a step does not happen
    kubectl: str = "kubectl"  # the kubectl command line a user would type, up to the verb

    async def run(self) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[str]], str]] = [
            ("SOOFI submits its pretraining, 128 x 8 B200: it binds on its reserved block", self.soofi,
             "get tj -n soofi"),
            ("Fine-tunes of two companies fill the shared B200 beyond their guarantees", self.fill, "get gq"),
            ("helix-pharma arrives below its share and reclaims", self.reclaim,
             "get events -A --field-selector reason=Preempting"),
            ("A job that can never fit says why", self.never, f"get tj -n {NEVER.split('/')[0]} -o wide"),
            (f"A job with a runtime limit of {LIMITED_SECONDS} s ends at its limit", self.limited,
             f"get tj -n {LIMITED.split('/')[0]} {LIMITED.split('/')[1]}"),
        ]  # fmt: skip
        limited = finetune(*LIMITED.split("/"), gpu_type="rtx-pro-6000", limit=f"{LIMITED_SECONDS}s")
        await self.client.create(f"{GROUP}/namespaces/{LIMITED.split('/')[0]}/trainingjobs", limited)
        for number, (title, step, command) in enumerate(steps, 1):
            self.console.print(f"[bold]\\[{number}/{len(steps)}][/] {title} …")
            started = time.monotonic()
            outcome = await step()
            self.console.print(f"      {outcome} ({time.monotonic() - started:.1f} s)", markup=False)
            self.console.print(f"      see: {self.kubectl} {command}")

    async def jobs(self, namespace: str) -> dict[str, dict[str, Any]]:
        listed = await self.client.list(f"{GROUP}/namespaces/{namespace}/trainingjobs")
        return {body["metadata"]["name"]: body.get("status") or {} for body in listed["items"]}

    async def until(self, what: str, check: Callable[[], Awaitable[T | None]], *, every: float = 0.5) -> T:
        deadline = time.monotonic() + STEP_SECONDS
        while time.monotonic() < deadline:
            self.alive()
            found = await check()
            if found is not None:
                return found
            await asyncio.sleep(every)
        raise UserError(f"the demo waited {STEP_SECONDS:.0f} s for {what}, in vain; see {self.log}")

    async def soofi(self) -> str:
        started = time.monotonic()
        for document in yaml.safe_load_all(self.pretraining.read_text()):
            plural = {"PersistentVolumeClaim": "/api/v1", "TrainingJob": GROUP}[document["kind"]]
            kind = document["kind"].lower() + "s"
            await self.client.create(f"{plural}/namespaces/{document['metadata']['namespace']}/{kind}", document)
        made: float | None = None
        bound: float | None = None

        async def running() -> list[dict[str, Any]] | None:
            nonlocal made, bound
            pods = (await self.client.list("/api/v1/namespaces/soofi/pods"))["items"]
            if made is None and len(pods) == SOOFI_REPLICAS:
                made = time.monotonic()
            if bound is None and len(pods) == SOOFI_REPLICAS and all(p["spec"].get("nodeName") for p in pods):
                bound = time.monotonic()
            status = (await self.jobs("soofi")).get("llm-100b-pretrain", {})
            return pods if bound is not None and status.get("phase") == "Running" else None

        pods = await self.until("SOOFI's pretraining to run", running, every=0.1)
        assert made is not None
        assert bound is not None
        on_block = {p["spec"]["nodeName"] for p in pods if p["spec"]["nodeName"].startswith("soofi-")}
        return (
            f"the operator made its {len(pods)} pods in {made - started:.1f} s; all were bound "
            f"{bound - made:.1f} s later, on {len(on_block)} nodes of SOOFI's block"
        )

    async def submit(self, namespace: str, names: list[str]) -> None:
        for name in names:
            await self.client.ensure(f"{GROUP}/namespaces/{namespace}/trainingjobs", finetune(namespace, name))

    async def quotas(self) -> dict[str, dict[str, Any]]:
        listed = await self.client.list(f"{GROUP}/gpuquotas")
        return {
            body["metadata"]["name"]: ((body.get("status") or {}).get("gpus") or {}).get("b200") or {}
            for body in listed["items"]
        }

    async def fill(self) -> str:
        for namespace, count in FILL.items():
            await self.submit(namespace, [f"finetune-{i:02d}" for i in range(1, count + 1)])

        async def filled() -> dict[str, dict[str, Any]] | None:
            numbers = await self.quotas()
            over = all(numbers.get(q, {}).get("allocated", 0) > numbers.get(q, {}).get("guaranteed", 0) for q in FILL)
            free = await self.free_shared()
            return numbers if over and free == 0 else None

        numbers = await self.until("the shared B200 part to fill", filled)
        return "; ".join(
            f"{queue} holds {numbers[queue]['allocated']} GPUs, guaranteed {numbers[queue]['guaranteed']}"
            for queue in FILL
        )

    async def free_shared(self) -> int:
        pods = (await self.client.list("/api/v1/pods"))["items"]
        busy = {
            p["spec"].get("nodeName")
            for p in pods
            if p["status"].get("phase") in {"Pending", "Running"} and not p["metadata"].get("deletionTimestamp")
        }
        nodes = (await self.client.list("/api/v1/nodes"))["items"]
        shared = [n["metadata"]["name"] for n in nodes if n["metadata"]["name"].startswith("b200-")]
        return sum(1 for name in shared if name not in busy)

    async def reclaim(self) -> str:
        namespace, count = ARRIVING
        names = [f"assay-{i}" for i in range(1, count + 1)]
        await self.submit(namespace, names)

        async def arrived() -> bool | None:
            jobs = await self.jobs(namespace)
            return True if all(jobs.get(n, {}).get("phase") == "Running" for n in names) else None

        await self.until(f"{namespace}'s {count} jobs to run", arrived)
        events = (await self.client.list("/api/v1/events", limit=500))["items"]
        victims = sorted(
            {
                f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}"
                for e in events
                if e.get("reason") == "Preempting" and e["involvedObject"].get("kind") == "TrainingJob"
            }
        )
        if not victims:
            return f"all {count} of {namespace}'s jobs run; nothing had to be reclaimed"
        requeued = []
        for victim in victims:
            victim_namespace, name = victim.split("/")
            phase = (await self.jobs(victim_namespace)).get(name, {}).get("phase")
            requeued.append(f"{victim} ({phase})")
        return f"all {count} of {namespace}'s jobs run; reclaimed from {', '.join(requeued)}"

    async def never(self) -> str:
        namespace, name = NEVER.split("/")
        await self.client.create(f"{GROUP}/namespaces/{namespace}/trainingjobs", never_fits())

        async def explained() -> dict[str, Any] | None:
            status = (await self.jobs(namespace)).get(name, {})
            waits = status.get("reason") not in {None, "Pending"} and status.get("message")
            return status if waits else None

        status = await self.until(f"{NEVER} to be explained", explained)
        return f"{NEVER}: {status.get('phase')} / {status['reason']}: {status['message']}"

    async def limited(self) -> str:
        namespace, name = LIMITED.split("/")

        async def ended() -> dict[str, Any] | None:
            status = (await self.jobs(namespace)).get(name, {})
            return status if status.get("phase") in {"Failed", "Succeeded"} else None

        status = await self.until(f"{LIMITED} to end", ended)
        return f"{LIMITED}: {status['phase']} / {status.get('reason')}: {status.get('message')}"
