"""Placing one job through the statement: the attempt every action makes, and the quota it must respect.

``Places.attempt`` tries each GPU type a job may use, checks the quota of its
queue path (``quota_block``), places the gang in full or not at all
(``placement.place``) and holds the tightest fit in the statement. Failures
are cached per job shape until the statement gives resources back. Pure.
"""

from dataclasses import dataclass, field

from leitstand.core import placement
from leitstand.core.decided import Decided, Waiting
from leitstand.core.index import Index
from leitstand.core.model import CAPACITY_REASONS, GPUType, Job, NodeName, QueueName, Reason, Share
from leitstand.core.statements import Statement

_NO_SHARE = Share()


def quota_block(
    index: Index, statement: Statement, job: Job, queue: QueueName, gpu_type: GPUType, count: int
) -> tuple[Reason, str] | None:
    """Why ``count`` more replicas of ``job`` would break a limit on its queue path, or (for jobs that may
    not be preempted) its queue's guaranteed quota; None when they would not."""
    need = count * job.gpus_per_replica
    for name in index.paths[queue]:
        share = index.queues[name].shares.get(gpu_type, _NO_SHARE)
        held = statement.queue_allocated(name, gpu_type)
        if share.limit is not None and held + need > share.limit:
            return Reason.OVER_LIMIT, (
                f"needs {need} {gpu_type}; queue {name} holds {held} of its limit of {share.limit}"
            )
    if not job.priority.preemptible:
        share = index.queues[queue].shares.get(gpu_type, _NO_SHARE)
        firm = statement.queue_firm(queue, gpu_type)
        if firm + need > share.guaranteed:
            return Reason.QUOTA_EXHAUSTED, (
                f"{job.priority.name.lower()} jobs run only within guaranteed quota: needs {need} {gpu_type}, "
                f"queue {queue} has {firm} of {share.guaranteed} guaranteed in use"
            )
    return None


def served(index: Index, statement: Statement, queue: QueueName, gpu_type: GPUType | None) -> tuple[int, float]:
    """How well served a queue is: allocated ÷ fair share (queues without a share come last)."""
    if gpu_type is None:
        return (0, 0.0)
    held = statement.queue_allocated(queue, gpu_type)
    share = index.shares.get(queue, {}).get(gpu_type, 0)
    return (0, held / share) if share else (1, float(held))


def within_share(index: Index, statement: Statement, job: Job, queue: QueueName, gpu_type: GPUType | None) -> bool:
    """Would ``job`` keep its queue within its fair share of ``gpu_type``?"""
    if gpu_type is None:
        return False
    share = index.shares.get(queue, {}).get(gpu_type, 0)
    return statement.queue_allocated(queue, gpu_type) + job.gpus <= share


@dataclass(slots=True)
class Places:
    """Attempts to place jobs for one action, recording each placed job's GPU type in ``into``."""

    index: Index
    statement: Statement
    into: Decided
    failures: dict[tuple[object, ...], tuple[int, placement.Outcome]] = field(default_factory=dict)

    def attempt(
        self,
        job: Job,
        queue: QueueName,
        count: int,
        *,
        pinned: str | None = None,
        only_type: GPUType | None = None,
        exclude: frozenset[NodeName] = frozenset(),
    ) -> Waiting | tuple[NodeName, ...]:
        """Places ``count`` waiting replicas of ``job`` (holding them), never on ``exclude``, or says why not."""
        index = self.index
        result = Waiting(job, queue, None, tried=True)
        if job.gpus_per_replica and not index.capacity:
            result.reason, result.message = Reason.NO_MATCHING_NODES, "the cluster has no GPU nodes"
            return result
        best: tuple[int, Reason, str] | None = None
        fits: list[tuple[tuple[int, int], str, GPUType | None, tuple[NodeName, ...]]] = []
        for gpu_type in [only_type] if only_type is not None else index.types_for(job):
            if gpu_type is not None and gpu_type not in index.capacity:
                result.gpu_type = gpu_type
                known = ", ".join(sorted(index.capacity)) or "none"
                result.reason, result.message = (
                    Reason.NO_MATCHING_NODES,
                    f"no ready {gpu_type} nodes (GPU types: {known})",
                )
                continue
            if gpu_type is not None:
                blocked = quota_block(index, self.statement, job, queue, gpu_type, count)
                if blocked is not None:
                    rank = 1
                    if best is None or rank < best[0]:
                        best = (rank, *blocked)
                        result.gpu_type = gpu_type
                    continue
            outcome = self.try_place(job, queue, count, gpu_type, pinned=pinned, exclude=exclude)
            if outcome.nodes is not None:
                fits.append((self.leftover(job, outcome.nodes), gpu_type or "", gpu_type, outcome.nodes))
                continue
            assert outcome.reason is not None
            rank = 0 if outcome.reason in CAPACITY_REASONS else 2
            if best is None or rank < best[0]:
                best = (rank, outcome.reason, outcome.message)
                result.gpu_type = gpu_type
        if fits:
            _leftover, _name, gpu_type, nodes = min(fits)
            self.statement.hold(job, nodes, index.paths[queue], firm=not job.priority.preemptible)
            if gpu_type is not None:
                self.into.job_type[job.key] = gpu_type
            return nodes
        if best is not None:
            result.reason, result.message = best[1], best[2]
        return result

    def leftover(self, job: Job, nodes: tuple[NodeName, ...]) -> tuple[int, int]:
        """GPUs, then CPU, left free on ``nodes`` once ``job``'s replicas are on them.

        A job that may use any GPU type goes to the type where it fits tightest (as
        ``placement.binpack_order`` does within a type), so small jobs fill small or
        partly used nodes and whole large nodes stay whole.
        """
        replicas: dict[NodeName, int] = {}
        for node in nodes:
            replicas[node] = replicas.get(node, 0) + 1
        free = self.statement.free
        gpus = sum(free[node].gpus - count * job.gpus_per_replica for node, count in replicas.items())
        cpu = sum(free[node].cpu_millis - count * job.cpu_millis_per_replica for node, count in replicas.items())
        return gpus, cpu

    def try_place(
        self,
        job: Job,
        queue: QueueName | None,
        count: int,
        gpu_type: GPUType | None,
        *,
        pinned: str | None = None,
        exclude: frozenset[NodeName] = frozenset(),
    ) -> placement.Outcome:
        """Placement on the job's own nodes, then (preemptible jobs) on lent reserved nodes too.

        Failures are cached per shape and count (the message names the count)
        until the statement gives resources back.
        """
        index, statement = self.index, self.statement
        attempts = [False, True] if index.lent(job, queue) else [False]
        outcome = placement.Outcome(None, Reason.NO_MATCHING_NODES, "")
        for lent in attempts:
            nodes = index.candidates(job, queue, gpu_type, lent=lent)
            if exclude:
                nodes = index.without(nodes, exclude)
                if not nodes:  # every node it may use is held for an older job: the caller says so
                    outcome = placement.Outcome(None, Reason.NO_MATCHING_NODES, "its nodes are held")
                    continue
            if not nodes:
                if not lent:
                    outcome = placement.Outcome(
                        None, Reason.NO_MATCHING_NODES, index.no_nodes_message(job, queue, gpu_type)
                    )
                continue
            shape = (
                index.owner(queue), lent, gpu_type, job.gpus_per_replica, job.cpu_millis_per_replica,
                job.memory_bytes_per_replica, job.required_level, job.preferred_level, job.node_selector, pinned,
                job.tolerations, count, exclude or None,
            )  # fmt: skip
            known = self.failures.get(shape)
            if known is not None and known[0] == statement.version:
                outcome = known[1]
                continue
            need = count * job.gpus_per_replica
            free_of_type = statement.free_by_type.get(gpu_type, 0)
            if job.gpus_per_replica and free_of_type < need:  # cheap necessary condition before the scan
                outcome = placement.Outcome(
                    None,
                    Reason.INSUFFICIENT_CAPACITY,
                    f"needs {placement.describe(job, count, gpu_type)}; {free_of_type} {gpu_type} free in the cluster",
                )
                continue
            outcome = placement.place(
                job, count, statement, nodes, index.policy, gpu_type=gpu_type, pinned_domain=pinned,
                eligible=index.names_of(nodes),
            )  # fmt: skip
            if outcome.nodes is not None:
                return outcome
            self.failures[shape] = (statement.version, outcome)
        return outcome
