"""The core's view of a cluster: immutable nodes and pods, keyed by NewType ids."""

from dataclasses import dataclass
from typing import NewType

NodeName = NewType("NodeName", str)
PodKey = NewType("PodKey", str)  # "<namespace>/<name>"


@dataclass(frozen=True, slots=True)
class Node:
    """A schedulable node: its GPU capacity and type, and whether it is ready."""

    name: NodeName
    gpus: int
    gpu_product: str
    ready: bool = True


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod that holds or wants GPUs; ``node`` is None while it waits."""

    key: PodKey
    gpus: int
    node: NodeName | None = None


@dataclass(frozen=True, slots=True)
class Bind:
    """A decision: put ``pod`` on ``node``."""

    pod: PodKey
    node: NodeName
