"""First-fit pod placement by GPU count: the interim policy of the foundation.

Places each waiting pod, in key order, on the first node (by name) with enough
free GPUs. No queues, gangs or topology: those arrive with ``core.schedule``
(issue 4), which replaces this. Pure and deterministic.
"""

from collections.abc import Iterable

from leitstand.core.model import Bind, Node, NodeName, Pod


def place(nodes: Iterable[Node], pods: Iterable[Pod]) -> list[Bind]:
    """Binds for the waiting pods that fit, sorted by pod key; never over-commits a node."""
    ready = sorted((node for node in nodes if node.ready), key=lambda node: node.name)
    free: dict[NodeName, int] = {node.name: node.gpus for node in ready}
    waiting = []
    for pod in pods:
        if pod.node is None:
            waiting.append(pod)
        elif pod.node in free:
            free[pod.node] -= pod.gpus
    binds = []
    for pod in sorted(waiting, key=lambda pod: pod.key):
        for node in ready:
            if free[node.name] >= pod.gpus:
                free[node.name] -= pod.gpus
                binds.append(Bind(pod.key, node.name))
                break
    return binds
