"""Tentative allocations with checkpoint, rollback and commit.

A ``Statement`` holds the free resources of every node and the GPUs each
queue holds, starting from a snapshot. Placement attempts write into it; a
gang that does not fit in full is rolled back to the checkpoint taken before
it, so a gang is never half placed. The snapshot itself is never mutated.

``free_by_type`` counts ready nodes only: a job on a NotReady or cordoned node
holds that node, not the capacity the rest of the cluster offers.

``version`` changes whenever resources are given back (an eviction or a
rollback of allocations), so callers may cache "does not fit" answers between
changes: allocation alone only ever makes fitting harder.
"""

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from leitstand.core.model import GPUType, Job, JobKey, Node, NodeName, QueueName


@dataclass(slots=True)
class Free:
    """What is left on a node."""

    gpus: int
    cpu_millis: int
    memory_bytes: int


@dataclass(slots=True)
class Holding:
    """What one job holds: nodes (one per placed replica), queue path and GPU type. Never changed once made
    (a change is a new holding); not frozen, as a frozen dataclass takes four times as long to make, and a
    cycle makes one per running pod."""

    nodes: tuple[NodeName, ...]
    queues: tuple[QueueName, ...]
    gpu_type: GPUType | None
    firm: bool


class Statement:
    """Mutable scheduling state over an immutable snapshot; see the module docstring."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes: Mapping[NodeName, Node] = {node.name: node for node in nodes}
        self.free: dict[NodeName, Free] = {
            node.name: Free(node.gpus, node.cpu_millis, node.memory_bytes) for node in nodes
        }
        self.allocated: dict[tuple[QueueName, GPUType], int] = {}
        self.firm: dict[tuple[QueueName, GPUType], int] = {}
        self.holdings: dict[JobKey, Holding] = {}
        self.free_by_type: dict[GPUType | None, int] = {}
        for node in nodes:
            if node.ready:
                self.free_by_type[node.gpu_type] = self.free_by_type.get(node.gpu_type, 0) + node.gpus
        self.version = 0
        self._log: list[tuple[bool, JobKey, Holding, Job]] = []  # (was a hold, job, holding, job)
        self._committed = 0  # changes made permanent so far: marks count from the first change
        self._buckets: dict[int, list[tuple[int, NodeName]]] | None = None  # by free GPUs; (free CPU, node) sorted

    # -- transactions ---------------------------------------------------------------------

    def checkpoint(self) -> int:
        """A mark to roll back to, valid until the next ``commit``."""
        return self._committed + len(self._log)

    def rollback(self, mark: int) -> None:
        """Undoes every change since ``mark``; idempotent for the same mark.

        A mark taken before the last ``commit`` (or never handed out) is an
        error: what was committed cannot be undone.
        """
        if not self._committed <= mark <= self._committed + len(self._log):
            raise ValueError(
                f"stale statement mark {mark}: changes since {self._committed} can be rolled back, "
                f"and {self._committed + len(self._log)} is the newest mark"
            )
        gave_back = False
        while self._committed + len(self._log) > mark:
            was_hold, key, holding, job = self._log.pop()
            if was_hold:
                self._apply(holding, job, sign=+1)
                del self.holdings[key]
                gave_back = True
            else:
                self._apply(holding, job, sign=-1)
                self.holdings[key] = holding
        if gave_back:
            self.version += 1

    def commit(self) -> None:
        """Makes every change permanent: marks taken before it can no longer be rolled back to."""
        self._committed += len(self._log)
        self._log.clear()

    # -- changes ------------------------------------------------------------------------------

    def _apply(self, holding: Holding, job: Job, *, sign: int) -> None:
        """Gives back (sign=+1) or takes (sign=-1) what ``holding`` describes."""
        buckets = self._buckets
        for name in holding.nodes:
            free = self.free[name]
            if buckets is not None and (job.gpus_per_replica or job.cpu_millis_per_replica):
                old = buckets[max(free.gpus, 0)]
                del old[bisect.bisect_left(old, (free.cpu_millis, name))]
                bucket = buckets.setdefault(max(free.gpus + sign * job.gpus_per_replica, 0), [])
                bisect.insort(bucket, (free.cpu_millis + sign * job.cpu_millis_per_replica, name))
            free.gpus += sign * job.gpus_per_replica
            free.cpu_millis += sign * job.cpu_millis_per_replica
            free.memory_bytes += sign * job.memory_bytes_per_replica
            node = self.nodes[name]
            if node.ready:  # free_by_type counts only what can be scheduled onto
                self.free_by_type[node.gpu_type] = self.free_by_type.get(node.gpu_type, 0) + sign * job.gpus_per_replica
        if holding.gpu_type is None:
            return
        gpus = job.gpus_per_replica * len(holding.nodes)
        for queue in holding.queues:
            key = (queue, holding.gpu_type)
            self.allocated[key] = self.allocated.get(key, 0) - sign * gpus
            if holding.firm:
                self.firm[key] = self.firm.get(key, 0) - sign * gpus

    def hold(self, job: Job, nodes: Iterable[NodeName], queues: tuple[QueueName, ...], *, firm: bool) -> None:
        """Records that ``job`` holds one replica on each of ``nodes`` (added to what it held)."""
        names = tuple(nodes)
        gpu_type = self.nodes[names[0]].gpu_type if names and job.gpus_per_replica else None
        previous = self.holdings.get(job.key)
        if previous is not None:
            self._log.append((False, job.key, previous, job))
            self._apply(previous, job, sign=+1)
            names = previous.nodes + names
        holding = Holding(names, queues, gpu_type, firm)
        self._apply(holding, job, sign=-1)
        self.holdings[job.key] = holding
        self._log.append((True, job.key, holding, job))

    def load(self, job: Job, nodes: Sequence[NodeName], queues: tuple[QueueName, ...], *, firm: bool) -> GPUType | None:
        """Records what a running job holds, permanently (no rollback): the fast path for the snapshot.
        Returns the GPU type it holds (None: none)."""
        gpus, cpu, memory = job.gpus_per_replica, job.cpu_millis_per_replica, job.memory_bytes_per_replica
        free, by_type, node_of = self.free, self.free_by_type, self.nodes
        self._buckets = None
        for name in nodes:
            entry = free[name]
            entry.gpus -= gpus
            entry.cpu_millis -= cpu
            entry.memory_bytes -= memory
            if gpus and (node := node_of[name]).ready:
                by_type[node.gpu_type] = by_type.get(node.gpu_type, 0) - gpus
        gpu_type = node_of[nodes[0]].gpu_type if gpus else None
        self.holdings[job.key] = Holding(tuple(nodes), queues, gpu_type, firm)
        if gpu_type is None:
            return None
        total = gpus * len(nodes)
        allocated = self.allocated
        for queue in queues:
            key = (queue, gpu_type)
            allocated[key] = allocated.get(key, 0) + total
            if firm:
                self.firm[key] = self.firm.get(key, 0) + total
        return gpu_type

    def reserve(
        self,
        taken: Mapping[NodeName, tuple[int, int, int]],
        queues: tuple[QueueName, ...],
        gpu_type: GPUType | None,
        gpus: int,
        *,
        firm: bool,
    ) -> None:
        """Takes (GPUs, CPU, memory) on nodes and counts ``gpus`` for ``queues``, for a job that waits for
        capacity being freed for it. Permanent: call it outside any checkpoint."""
        self._buckets = None
        for name, (node_gpus, cpu, memory) in taken.items():
            free = self.free[name]
            free.gpus -= node_gpus
            free.cpu_millis -= cpu
            free.memory_bytes -= memory
            node = self.nodes[name]
            if node.ready:
                self.free_by_type[node.gpu_type] = self.free_by_type.get(node.gpu_type, 0) - node_gpus
        if gpu_type is None:
            return
        for queue in queues:
            key = (queue, gpu_type)
            self.allocated[key] = self.allocated.get(key, 0) + gpus
            if firm:
                self.firm[key] = self.firm.get(key, 0) + gpus

    def release(self, job: Job) -> None:
        """Gives back everything ``job`` holds (an eviction or a released partial gang)."""
        holding = self.holdings.pop(job.key, None)
        if holding is None:
            return
        self._apply(holding, job, sign=+1)
        self._log.append((False, job.key, holding, job))
        self.version += 1

    # -- questions ----------------------------------------------------------------------------

    def queue_allocated(self, queue: QueueName, gpu_type: GPUType) -> int:
        return self.allocated.get((queue, gpu_type), 0)

    def queue_firm(self, queue: QueueName, gpu_type: GPUType) -> int:
        return self.firm.get((queue, gpu_type), 0)

    def replicas_fitting(self, node: NodeName, job: Job) -> int:
        """How many more replicas of ``job`` fit on ``node`` right now (at most ``job.replicas``)."""
        free = self.free[node]
        return replicas_in(job, free.gpus, free.cpu_millis, free.memory_bytes, job.replicas)

    def by_free_gpus(self, at_least: int) -> list[list[tuple[int, NodeName]]]:
        """Nodes grouped by free GPUs, fewest first, from ``at_least`` free GPUs up, each group as
        (free CPU, node) pairs in order (kept current as jobs are held).

        Bin packing asks for the fitting node with the fewest free GPUs, then the least
        free CPU: the first fitting node of the lowest group with one, so a search
        rarely reads more than a few nodes.
        """
        if self._buckets is None:
            self._buckets = {}
            for name, free in self.free.items():
                self._buckets.setdefault(max(free.gpus, 0), []).append((free.cpu_millis, name))
            for bucket in self._buckets.values():
                bucket.sort()
        return [self._buckets[level] for level in sorted(self._buckets) if level >= at_least and self._buckets[level]]


def replicas_in(job: Job, gpus: int, cpu_millis: int, memory_bytes: int, cap: int) -> int:
    """How many replicas of ``job`` fit into the given resources, at most ``cap``."""
    fit = cap
    if job.gpus_per_replica:
        fit = min(fit, gpus // job.gpus_per_replica)
    if job.cpu_millis_per_replica:
        fit = min(fit, cpu_millis // job.cpu_millis_per_replica)
    if job.memory_bytes_per_replica:
        fit = min(fit, memory_bytes // job.memory_bytes_per_replica)
    return max(fit, 0)
