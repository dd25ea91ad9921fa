"""The in-memory store: what the watches last reported, by kind and key.

Fed only by lists and watch events (``reset``, ``apply``); read by the scheduling loop, which turns
it into a core snapshot (``kube.bodies``). Holds no API client and writes
nothing: writes are the applier's (``kube.applier``), and what it assumes lives there. Not thread-safe by design:
``apply`` must run on the event loop (the informers are coroutines), so a
snapshot taken between two awaits is consistent.
"""

import asyncio
from typing import cast

from leitstand.kube.objects import Body, GPUQuota, Node, Pod, TrainingJob, key_of

KINDS = ("Node", "Pod", "GPUQuota", "TrainingJob", "Job", "PyTorchJob", "PodGroup", "JobSet")


class Store:
    """Objects by kind and key; ``changed`` is set on every event."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Body]] = {kind: {} for kind in KINDS}
        self.changed = asyncio.Event()
        self.generation = 0

    def apply(self, kind: str, event_type: str, body: Body) -> None:
        """Records one watch event; idempotent for repeated events."""
        target = self.objects[kind]
        key = key_of(body)
        if event_type == "DELETED":
            target.pop(key, None)
        else:
            target[key] = body
        self.generation += 1
        self.changed.set()

    def reset(self, kind: str, bodies: list[Body]) -> None:
        """Replaces everything of ``kind`` with a fresh list (a relist after a lost watch)."""
        self.objects[kind] = {key_of(body): body for body in bodies}
        self.generation += 1
        self.changed.set()

    # typed views of the raw bodies (no copies): what each kind's fields are is in ``kube/objects.py``

    @property
    def nodes(self) -> dict[str, Node]:
        return cast(dict[str, Node], self.objects["Node"])

    @property
    def pods(self) -> dict[str, Pod]:
        return cast(dict[str, Pod], self.objects["Pod"])

    @property
    def quotas(self) -> dict[str, GPUQuota]:
        return cast(dict[str, GPUQuota], self.objects["GPUQuota"])

    @property
    def jobs(self) -> dict[str, TrainingJob]:
        return cast(dict[str, TrainingJob], self.objects["TrainingJob"])
