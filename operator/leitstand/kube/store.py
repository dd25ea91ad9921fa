"""The in-memory store: nodes and pods as the watch last reported them.

Fed only by watch events (``apply``); read by the scheduling loop through
``snapshot``, which converts raw bodies into the core's immutable model. Holds
no API client and writes nothing: applying decisions is the binder's job.
"""

import asyncio
from typing import Any

from leitstand.core import model

Body = dict[str, Any]
GPU_RESOURCE = "nvidia.com/gpu"
SCHEDULER_NAME = "leitstand"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def pod_gpus(pod: Body) -> int:
    """GPUs a pod requests: the sum over its containers (limits count when requests are absent)."""
    total = 0
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU_RESOURCE) or (resources.get("limits") or {}).get(
            GPU_RESOURCE
        )
        if value is not None:
            total += int(value)
    return total


def node_ready(node: Body) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    unschedulable = bool(node.get("spec", {}).get("unschedulable"))
    return not unschedulable and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def _key(body: Body) -> str:
    meta = body["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Store:
    """Nodes and live pods by key; ``changed`` is set on every event that matters."""

    def __init__(self) -> None:
        self.nodes: dict[str, Body] = {}
        self.pods: dict[str, Body] = {}
        self.changed = asyncio.Event()

    def apply(self, kind: str, event_type: str, body: Body) -> None:
        """Records one watch event; idempotent for repeated events."""
        target = self.nodes if kind == "Node" else self.pods
        key = body["metadata"]["name"] if kind == "Node" else _key(body)
        finished = kind == "Pod" and body.get("status", {}).get("phase") in TERMINAL_PHASES
        if event_type == "DELETED" or finished:
            if target.pop(key, None) is not None:
                self.changed.set()
            return
        target[key] = body
        self.changed.set()

    def snapshot(self) -> tuple[list[model.Node], list[model.Pod]]:
        """The store as core model objects: all nodes, and the pods that hold or want GPUs."""
        nodes = [
            model.Node(
                name=model.NodeName(name),
                gpus=int((body.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, 0)),
                gpu_product=body["metadata"].get("labels", {}).get("nvidia.com/gpu.product", ""),
                ready=node_ready(body),
            )
            for name, body in self.nodes.items()
        ]
        pods = []
        for key, body in self.pods.items():
            spec = body.get("spec", {})
            node = spec.get("nodeName")
            if node is None and spec.get("schedulerName") != SCHEDULER_NAME:
                continue
            if body["metadata"].get("deletionTimestamp") and node is None:
                continue
            pods.append(
                model.Pod(
                    key=model.PodKey(key),
                    gpus=pod_gpus(body),
                    node=model.NodeName(node) if node else None,
                )
            )
        return nodes, pods
