"""``schedule``: one scheduling cycle, from a snapshot to decisions.

The cycle, in order:

1. resolve each job's queue from its namespace (leaf queues only; a namespace
   claimed by two leaves is scheduled by neither) and hold what running jobs use;
2. compute every queue's fair share per GPU type from the demand (``fairshare``);
   a queue that owns a reservation demands at most its pool;
3. finish or release gangs that the binder left partly bound;
4. serve queues least served first (allocated ÷ fair share; a higher-priority
   head first), jobs within a queue by priority then submission time, each gang
   placed in full or not at all through the statement (``placement``); a job
   waiting longer than ``Policy.starvation_seconds`` that could fit an empty
   cluster holds its GPU type, so a stream of smaller jobs cannot starve it;
5. for jobs still waiting, reclaim and preemption (``preemption``);
6. explain every job that still waits, with its place in its queue.

Pure and deterministic: no I/O, no clock (``now`` is an argument), ties broken
by names, every output sorted.
"""

import heapq
from dataclasses import dataclass, field

from leitstand.core import fairshare, placement, preemption
from leitstand.core.model import (
    Bind,
    Decisions,
    Eviction,
    Explanation,
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Policy,
    Queue,
    QueueName,
    QueueStatus,
    Reason,
    Release,
    Share,
    Snapshot,
    matches,
    tolerates,
)
from leitstand.core.statements import Statement

_NO_SHARE = Share()
_CAPACITY_REASONS = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE})


@dataclass(slots=True)
class Waiting:
    """A job that waits, with what the cycle found out about it."""

    job: Job
    queue: QueueName | None
    gpu_type: GPUType | None
    reason: Reason = Reason.INSUFFICIENT_CAPACITY
    message: str = ""
    tried: bool = False


@dataclass(slots=True)
class Cycle:
    """The working state of one ``schedule`` call."""

    snapshot: Snapshot
    policy: Policy
    now: float
    queues: dict[QueueName, Queue] = field(default_factory=dict)
    children: dict[QueueName, list[QueueName]] = field(default_factory=dict)
    paths: dict[QueueName, tuple[QueueName, ...]] = field(default_factory=dict)
    leaf_of_namespace: dict[str, QueueName] = field(default_factory=dict)
    conflicts: dict[str, tuple[QueueName, ...]] = field(default_factory=dict)
    owner_of_node: dict[NodeName, QueueName] = field(default_factory=dict)
    reserved_capacity: dict[QueueName, dict[GPUType, int]] = field(default_factory=dict)
    ready_nodes: list[Node] = field(default_factory=list)
    capacity: dict[GPUType, int] = field(default_factory=dict)
    shares: dict[QueueName, dict[GPUType, int]] = field(default_factory=dict)
    statement: Statement = field(init=False)
    job_queue: dict[JobKey, QueueName] = field(default_factory=dict)
    job_type: dict[JobKey, GPUType] = field(default_factory=dict)
    binds: list[Bind] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    waiting: dict[JobKey, Waiting] = field(default_factory=dict)
    failures: dict[tuple[object, ...], tuple[int, int, placement.Outcome]] = field(default_factory=dict)
    partial_jobs: list[Job] = field(default_factory=list)
    jobs_by_key: dict[JobKey, Job] = field(default_factory=dict)
    _candidates: dict[tuple[object, ...], list[Node]] = field(default_factory=dict)
    _names: dict[int, frozenset[NodeName]] = field(default_factory=dict)
    _empty: Statement | None = None
    _fits_empty: dict[tuple[object, ...], bool] = field(default_factory=dict)

    # -- setup ------------------------------------------------------------------------------

    def index_queues(self) -> None:
        self.queues = {queue.name: queue for queue in self.snapshot.queues}
        self.children = {name: [] for name in self.queues}
        for queue in sorted(self.queues.values(), key=lambda q: q.name):
            if queue.parent in self.queues:
                self.children[queue.parent].append(queue.name)
        for name in self.queues:
            path: list[QueueName] = []
            current: QueueName | None = name
            while current is not None and current in self.queues and current not in path:
                path.append(current)
                current = self.queues[current].parent
            self.paths[name] = tuple(path)
        claims: dict[str, list[QueueName]] = {}
        for queue in self.queues.values():
            if self.children[queue.name]:
                continue  # only leaf queues hold workloads
            for namespace in queue.namespaces:
                claims.setdefault(namespace, []).append(queue.name)
        for namespace, owners in claims.items():
            if len(owners) == 1:
                self.leaf_of_namespace[namespace] = owners[0]
            else:
                self.conflicts[namespace] = tuple(sorted(owners))

    def index_nodes(self) -> None:
        nodes = sorted(self.snapshot.nodes, key=lambda n: n.name)
        reserving = sorted((q for q in self.queues.values() if q.reservation), key=lambda q: q.name)
        for node in nodes:
            for queue in reserving:
                assert queue.reservation is not None
                if matches(queue.reservation.node_selector, node.labels):
                    self.owner_of_node[node.name] = queue.name
                    if node.ready and node.gpu_type is not None:
                        pool = self.reserved_capacity.setdefault(queue.name, {})
                        pool[node.gpu_type] = pool.get(node.gpu_type, 0) + node.gpus
                    break
            if node.ready:
                self.ready_nodes.append(node)
                if node.gpu_type is not None:
                    self.capacity[node.gpu_type] = self.capacity.get(node.gpu_type, 0) + node.gpus
        self.statement = Statement(nodes)

    def owner(self, queue: QueueName | None) -> QueueName | None:
        """The queue on ``queue``'s path that owns a reservation, if any."""
        if queue is None:
            return None
        for name in self.paths[queue]:
            if self.queues[name].reservation is not None:
                return name
        return None

    def path(self, queue: QueueName | None) -> tuple[QueueName, ...]:
        return self.paths[queue] if queue is not None else ()

    # -- candidates -------------------------------------------------------------------------

    def candidates(self, job: Job, queue: QueueName | None, gpu_type: GPUType | None, *, lent: bool) -> list[Node]:
        """Ready nodes of ``gpu_type`` that ``job`` may use: its reserved pool, or the shared
        nodes (plus idle reserved nodes lent out, when ``lent``)."""
        owner = self.owner(queue)
        key = (owner, gpu_type, job.gpus_per_replica > 0, lent, job.node_selector, job.tolerations)
        cached = self._candidates.get(key)
        if cached is not None:
            return cached
        result = []
        for node in self.ready_nodes:
            if job.gpus_per_replica and node.gpu_type != gpu_type:
                continue
            node_owner = self.owner_of_node.get(node.name)
            if owner is not None:
                if node_owner != owner:
                    continue
            elif node_owner is not None:
                reservation = self.queues[node_owner].reservation
                if not (lent and reservation is not None and reservation.lend_idle):
                    continue
            if not matches(job.node_selector, node.labels):
                continue
            if node.taints and not tolerates(job.tolerations, node.taints):
                continue
            result.append(node)
        self._candidates[key] = result
        return result

    def names_of(self, nodes: list[Node]) -> frozenset[NodeName]:
        """The names of a candidate list (lists from ``candidates`` live, cached, for the whole cycle)."""
        names = self._names.get(id(nodes))
        if names is None:
            names = self._names[id(nodes)] = frozenset(node.name for node in nodes)
        return names

    def types_for(self, job: Job) -> list[GPUType | None]:
        if not job.gpus_per_replica:
            return [None]
        if job.gpu_type is not None:
            return [job.gpu_type]
        return [*sorted(self.capacity)]

    # -- running work and demand ------------------------------------------------------------

    def load_jobs(self) -> dict[QueueName, dict[GPUType, int]]:
        """Holds what running (and partly bound) jobs use; returns each leaf queue's demand per GPU type.

        One pass over the jobs: at the scale of 100,000 pods this loop is most of a cycle.
        """
        demand: dict[QueueName, dict[GPUType, int]] = {}
        free = self.statement.free
        nodes = self.statement.nodes
        leaf_of = self.leaf_of_namespace
        default_types: dict[QueueName, GPUType | None] = {}
        for job in self.snapshot.jobs:
            queue = leaf_of.get(job.namespace)
            if queue is not None:
                self.job_queue[job.key] = queue
            gpu_type = job.gpu_type
            if job.placement:
                placed = [node for node in job.placement if node is not None and node in free]
                if not job.terminating and (len(placed) != job.replicas or len(job.placement) != job.replicas):
                    self.partial_jobs.append(job)
                if placed:
                    self.statement.load(
                        job, placed, self.paths[queue] if queue else (), firm=not job.priority.preemptible
                    )
                    node_type = nodes[placed[0]].gpu_type
                    if node_type is not None and job.gpus_per_replica:
                        self.job_type[job.key] = node_type
                        gpu_type = node_type
            if queue is None or not job.gpus_per_replica or job.terminating:
                continue
            if gpu_type is None:
                if queue not in default_types:
                    default_types[queue] = self.default_type(queue)
                gpu_type = default_types[queue]
                if gpu_type is None:
                    continue
            per_type = demand.setdefault(queue, {})
            per_type[gpu_type] = per_type.get(gpu_type, 0) + job.replicas * job.gpus_per_replica
        self.partial_jobs.sort(key=lambda j: j.key)
        for queue, per_type in demand.items():  # a queue bound to its reserved pool cannot use more than the pool
            owner = self.owner(queue)
            if owner is not None:
                pool = self.reserved_capacity.get(owner, {})
                for gpu_type in per_type:
                    per_type[gpu_type] = min(per_type[gpu_type], pool.get(gpu_type, 0))
        return demand

    def shareable_capacity(self, demand: dict[QueueName, dict[GPUType, int]]) -> dict[GPUType, int]:
        """The capacity the queue tree divides: reserved GPUs that neither their owner wants
        nor anyone may borrow (a pool that does not lend) are nobody's to share."""
        capacity = dict(self.capacity)
        for owner, pool in self.reserved_capacity.items():
            reservation = self.queues[owner].reservation
            if reservation is None or reservation.lend_idle:
                continue
            for gpu_type, gpus in pool.items():
                wanted = sum(
                    per_type.get(gpu_type, 0) for queue, per_type in demand.items() if owner in self.paths[queue]
                )
                capacity[gpu_type] -= max(gpus - wanted, 0)
        return capacity

    def default_type(self, queue: QueueName) -> GPUType | None:
        """Where an untyped waiting job's demand counts: its queue's first typed share, else the first type."""
        for name in self.paths[queue]:
            typed = sorted(t for t in self.queues[name].shares if t in self.capacity)
            if typed:
                return typed[0]
        return min(self.capacity) if self.capacity else None

    # -- one attempt ------------------------------------------------------------------------

    def quota_block(self, job: Job, queue: QueueName, gpu_type: GPUType, count: int) -> tuple[Reason, str] | None:
        need = count * job.gpus_per_replica
        for name in self.paths[queue]:
            share = self.queues[name].shares.get(gpu_type, _NO_SHARE)
            held = self.statement.queue_allocated(name, gpu_type)
            if share.limit is not None and held + need > share.limit:
                return Reason.OVER_LIMIT, (
                    f"needs {need} {gpu_type}; queue {name} holds {held} of its limit of {share.limit}"
                )
        if not job.priority.preemptible:
            share = self.queues[queue].shares.get(gpu_type, _NO_SHARE)
            firm = self.statement.queue_firm(queue, gpu_type)
            if firm + need > share.guaranteed:
                return Reason.QUOTA_EXHAUSTED, (
                    f"{job.priority.name.lower()} jobs run only within guaranteed quota: needs {need} {gpu_type}, "
                    f"queue {queue} has {firm} of {share.guaranteed} guaranteed in use"
                )
        return None

    def attempt(
        self,
        job: Job,
        queue: QueueName,
        count: int,
        *,
        pinned: str | None = None,
        only_type: GPUType | None = None,
    ) -> Waiting | tuple[NodeName, ...]:
        """Places ``count`` waiting replicas of ``job`` (holding them) or says why not."""
        result = Waiting(job, queue, None, tried=True)
        if job.gpus_per_replica and not self.capacity:
            result.reason, result.message = Reason.NO_MATCHING_NODES, "the cluster has no GPU nodes"
            return result
        best: tuple[int, Reason, str] | None = None
        fits: list[tuple[tuple[int, int], str, GPUType | None, tuple[NodeName, ...]]] = []
        for gpu_type in [only_type] if only_type is not None else self.types_for(job):
            if gpu_type is not None and gpu_type not in self.capacity:
                result.gpu_type = gpu_type
                known = ", ".join(sorted(self.capacity)) or "none"
                result.reason, result.message = (
                    Reason.NO_MATCHING_NODES,
                    f"no ready {gpu_type} nodes (GPU types: {known})",
                )
                continue
            if gpu_type is not None:
                blocked = self.quota_block(job, queue, gpu_type, count)
                if blocked is not None:
                    rank = 1
                    if best is None or rank < best[0]:
                        best = (rank, *blocked)
                        result.gpu_type = gpu_type
                    continue
            outcome = self.try_place(job, queue, count, gpu_type, pinned=pinned)
            if outcome.nodes is not None:
                fits.append((self.leftover(job, outcome.nodes), gpu_type or "", gpu_type, outcome.nodes))
                continue
            assert outcome.reason is not None
            rank = 0 if outcome.reason in _CAPACITY_REASONS else 2
            if best is None or rank < best[0]:
                best = (rank, outcome.reason, outcome.message)
                result.gpu_type = gpu_type
        if fits:
            _leftover, _name, gpu_type, nodes = min(fits)
            self.statement.hold(job, nodes, self.paths[queue], firm=not job.priority.preemptible)
            if gpu_type is not None:
                self.job_type[job.key] = gpu_type
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
    ) -> placement.Outcome:
        """Placement on the job's own nodes, then (preemptible jobs) on lent reserved nodes too."""
        attempts = [False, True] if job.priority.preemptible and self.owner(queue) is None else [False]
        outcome = placement.Outcome(None, Reason.NO_MATCHING_NODES, "")
        for lent in attempts:
            nodes = self.candidates(job, queue, gpu_type, lent=lent)
            if not nodes:
                if not lent:
                    outcome = placement.Outcome(
                        None, Reason.NO_MATCHING_NODES, self.no_nodes_message(job, queue, gpu_type)
                    )
                continue
            shape = (
                self.owner(queue), lent, gpu_type, job.gpus_per_replica, job.cpu_millis_per_replica,
                job.memory_bytes_per_replica, job.required_level, job.preferred_level, job.node_selector, pinned,
                job.tolerations,
            )  # fmt: skip
            known = self.failures.get(shape)
            if known is not None and known[0] == self.statement.version and count >= known[1]:
                outcome = known[2]
                continue
            need = count * job.gpus_per_replica
            free_of_type = self.statement.free_by_type.get(gpu_type, 0)
            if job.gpus_per_replica and free_of_type < need:  # cheap necessary condition before the scan
                outcome = placement.Outcome(
                    None,
                    Reason.INSUFFICIENT_CAPACITY,
                    f"needs {placement.describe(job, count, gpu_type)}; {free_of_type} {gpu_type} free in the cluster",
                )
                continue
            outcome = placement.place(
                job, count, self.statement, nodes, self.policy, gpu_type=gpu_type, pinned_domain=pinned,
                eligible=self.names_of(nodes),
            )  # fmt: skip
            if outcome.nodes is not None:
                return outcome
            self.failures[shape] = (self.statement.version, count, outcome)
        return outcome

    def no_nodes_message(self, job: Job, queue: QueueName | None, gpu_type: GPUType | None) -> str:
        owner = self.owner(queue)
        where = f"in the pool reserved for queue {owner}" if owner else "outside reserved pools"
        tainted = sum(
            1
            for node in self.ready_nodes
            if node.taints
            and not tolerates(job.tolerations, node.taints)
            and (not job.gpus_per_replica or node.gpu_type == gpu_type)
        )
        if tainted:
            return (
                f"no ready {gpu_type or 'CPU'} node {where} that the job tolerates: "
                f"{tainted} have taints it does not tolerate"
            ).replace("  ", " ")
        if job.node_selector:
            selector = ",".join(f"{k}={v}" for k, v in job.node_selector)
            return f"no ready {gpu_type or ''} node {where} matches {selector}".replace("  ", " ")
        return f"no ready {gpu_type or 'CPU'} nodes {where}"

    def entitled(self, job: Job, queue: QueueName, gpu_type: GPUType | None) -> bool:
        """Would ``job`` keep its queue within its fair share? Only such a job may hold its GPU type."""
        if gpu_type is None:
            return False
        share = self.shares.get(queue, {}).get(gpu_type, 0)
        return self.statement.queue_allocated(queue, gpu_type) + job.gpus <= share

    def fits_empty(self, job: Job, queue: QueueName, gpu_type: GPUType | None) -> bool:
        """Would ``job`` fit on its nodes if they were all free? (Is holding its type worth it?)"""
        if self._empty is None:
            self._empty = Statement(list(self.statement.nodes.values()))
        shape = (self.owner(queue), gpu_type, job.replicas, job.gpus_per_replica, job.cpu_millis_per_replica,
                 job.memory_bytes_per_replica, job.required_level, job.node_selector, job.tolerations)  # fmt: skip
        known = self._fits_empty.get(shape)
        if known is None:
            nodes = self.candidates(job, queue, gpu_type, lent=False)
            outcome = placement.place(job, job.replicas, self._empty, nodes, self.policy, gpu_type=gpu_type)
            known = self._fits_empty[shape] = outcome.nodes is not None
        return known

    # -- the passes -------------------------------------------------------------------------

    def finish_partial_gangs(self) -> None:
        """Completes gangs the binder left partly bound, or releases them.

        A released gang keeps its nodes for the rest of this cycle: its bound
        pods still run until the binder has deleted them.
        """
        for job in self.partial_jobs:
            queue = self.job_queue.get(job.key)
            placed = [node for node in job.placement if node is not None]
            vanished = [node for node in placed if node not in self.statement.nodes]
            outcome: Waiting | tuple[NodeName, ...] | None = None
            if queue is not None and not vanished and job.key in self.statement.holdings:
                waiting_replicas = sum(1 for node in job.placement if node is None) + job.replicas - len(job.placement)
                pinned = None
                level = (
                    self.policy.topology_levels.index(job.required_level)
                    if job.required_level in self.policy.topology_levels
                    else None
                )
                domains = self.statement.nodes[placed[0]].domains
                if level is not None and level < len(domains):
                    pinned = domains[level] or None
                outcome = self.attempt(
                    job, queue, waiting_replicas, pinned=pinned, only_type=self.statement.holdings[job.key].gpu_type
                )
                if isinstance(outcome, tuple):
                    self.binds.append(Bind(job.key, outcome))
                    continue
            if vanished:
                why = f"replicas are bound to nodes that no longer exist ({', '.join(sorted(vanished))})"
            elif queue is None:
                why = "its namespace has no queue"
            else:
                why = outcome.message if isinstance(outcome, Waiting) else "the rest cannot be placed"
            self.releases.append(
                Release(job.key, f"{len(placed)} of {job.replicas} replicas were bound; released because {why}")
            )
            self.waiting[job.key] = Waiting(
                job, queue, self.job_type.get(job.key), Reason.GANG_INCOMPLETE,
                "released a partly bound gang; it waits whole", tried=True,
            )  # fmt: skip
        self.statement.commit()

    def collect_waiting(self) -> dict[QueueName, list[Job]]:
        per_queue: dict[QueueName, list[Job]] = {}
        for job in self.snapshot.jobs:
            if job.placement or job.key in self.waiting:
                continue
            queue = self.leaf_of_namespace.get(job.namespace)
            if queue is None:
                if job.namespace in self.conflicts:
                    owners = " and ".join(self.conflicts[job.namespace])
                    message = (
                        f"namespace {job.namespace} is claimed by queues {owners}; "
                        "it is scheduled by neither until one drops it"
                    )
                    self.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_CONFLICT, message)
                else:
                    message = (
                        f"namespace {job.namespace} belongs to no GPUQuota; "
                        "a leaf queue must list it in spec.namespaces"
                    )
                    self.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_NOT_FOUND, message)
                continue
            per_queue.setdefault(queue, []).append(job)
        for jobs in per_queue.values():
            jobs.sort(key=order_key)
        return per_queue

    def served(self, queue: QueueName, gpu_type: GPUType | None) -> tuple[int, float]:
        """How well served a queue is: allocated ÷ fair share (queues without a share come last)."""
        if gpu_type is None:
            return (0, 0.0)
        held = self.statement.queue_allocated(queue, gpu_type)
        share = self.shares.get(queue, {}).get(gpu_type, 0)
        return (0, held / share) if share else (1, float(held))

    def serve_queues(self, per_queue: dict[QueueName, list[Job]]) -> None:
        heap: list[tuple[int, tuple[int, float], QueueName]] = []
        heads = dict.fromkeys(per_queue, 0)

        def push(queue: QueueName) -> None:
            jobs = per_queue[queue]
            if heads[queue] < len(jobs):
                head = jobs[heads[queue]]
                gpu_type = head.gpu_type or self.default_type(queue)
                heapq.heappush(heap, (-int(head.priority), self.served(queue, gpu_type), queue))

        for queue in sorted(per_queue):
            push(queue)
        held_types: dict[tuple[QueueName | None, GPUType | None], Job] = {}  # by (reserved pool owner, type)
        while heap:
            _priority, _served, queue = heapq.heappop(heap)
            job = per_queue[queue][heads[queue]]
            heads[queue] += 1
            guess = job.gpu_type or (self.default_type(queue) if job.gpus_per_replica else None)
            holder = held_types.get((self.owner(queue), guess))
            if holder is not None and job.gpus_per_replica:
                minutes = (self.now - holder.submitted) / 60
                self.waiting[job.key] = Waiting(
                    job, queue, guess, Reason.WAITING_FOR_OLDER_JOB,
                    f"{guess} is held for {holder.key}, which has waited {minutes:.0f} min",
                )  # fmt: skip
            else:
                outcome = self.attempt(job, queue, job.replicas)
                if isinstance(outcome, tuple):
                    self.binds.append(Bind(job.key, outcome))
                    self.statement.commit()
                else:
                    self.waiting[job.key] = outcome
                    aged = self.now - job.submitted >= self.policy.starvation_seconds
                    starving = aged and outcome.reason in _CAPACITY_REASONS and job.gpus_per_replica > 0
                    if (
                        starving
                        and (self.owner(queue), outcome.gpu_type) not in held_types
                        and self.entitled(job, queue, outcome.gpu_type)
                        and self.fits_empty(job, queue, outcome.gpu_type)
                    ):
                        held_types[(self.owner(queue), outcome.gpu_type)] = job
            push(queue)

    def run(self) -> Decisions:
        self.index_queues()
        self.index_nodes()
        self.jobs_by_key = {job.key: job for job in self.snapshot.jobs}
        demand = self.load_jobs()
        self.shares = fairshare.fair_shares(self.snapshot.queues, self.shareable_capacity(demand), demand)
        self.finish_partial_gangs()
        per_queue = self.collect_waiting()
        self.serve_queues(per_queue)
        if self.policy.preemption:
            preemption.reclaim(self, per_queue)
        return self.decisions(per_queue)

    # -- results ----------------------------------------------------------------------------

    def decisions(self, per_queue: dict[QueueName, list[Job]]) -> Decisions:
        explanations = []
        for queue in sorted(per_queue):
            position = 0
            for job in per_queue[queue]:
                waiting = self.waiting.get(job.key)
                if waiting is None:
                    continue
                position += 1
                ahead = f"; {position - 1} job{'s' if position != 2 else ''} ahead in queue {queue}"
                message = waiting.message + (ahead if position > 1 else f"; next in queue {queue}")
                explanations.append(Explanation(job.key, waiting.reason, message, queue, position))
        for key, waiting in self.waiting.items():
            if waiting.queue is None or waiting.reason is Reason.GANG_INCOMPLETE:
                explanations.append(Explanation(key, waiting.reason, waiting.message, waiting.queue, None))
        pending_gpus: dict[tuple[QueueName, GPUType], int] = {}
        for waiting in self.waiting.values():
            if waiting.queue is None:
                continue
            gpu_type = waiting.gpu_type or self.default_type(waiting.queue)
            if gpu_type is None:
                continue
            for name in self.paths[waiting.queue]:
                pending_gpus[(name, gpu_type)] = pending_gpus.get((name, gpu_type), 0) + waiting.job.gpus
        statuses = {}
        for name, spec in sorted(self.queues.items()):
            types = sorted(set(self.capacity) | set(spec.shares))
            statuses[name] = {
                t: QueueStatus(
                    guaranteed=spec.shares.get(t, _NO_SHARE).guaranteed,
                    limit=spec.shares.get(t, _NO_SHARE).limit,
                    fair_share=self.shares.get(name, {}).get(t, 0),
                    allocated=self.statement.queue_allocated(name, t),
                    pending=pending_gpus.get((name, t), 0),
                )
                for t in types
            }
        return Decisions(
            binds=tuple(sorted(self.binds, key=lambda b: b.job)),
            evictions=tuple(sorted(self.evictions, key=lambda e: e.job)),
            releases=tuple(sorted(self.releases, key=lambda r: r.job)),
            pending=tuple(sorted(explanations, key=lambda e: e.job)),
            queues=statuses,
            job_queues=dict(sorted(self.job_queue.items())),
        )


def order_key(job: Job) -> tuple[int, float, str]:
    """Within a queue: higher priority first, then earlier submission, then name."""
    return (-int(job.priority), job.submitted, job.key)


DEFAULT_POLICY = Policy()


def schedule(snapshot: Snapshot, policy: Policy = DEFAULT_POLICY, *, now: float) -> Decisions:
    """One scheduling cycle: binds, evictions, releases and explanations for ``snapshot``.

    Idempotent for the same inputs; the order of the snapshot's tuples does not
    change the result.
    """
    return Cycle(snapshot, policy, now).run()
