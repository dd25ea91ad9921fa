"""``schedule``: one scheduling cycle, from a snapshot to decisions.

The cycle, in order:

1. resolve each job's queue from its namespace (leaf queues only; a namespace
   claimed by two leaves is scheduled by neither; a queue in or below a parent
   cycle schedules nothing and says so) and hold what running jobs use
   (terminating jobs hold their nodes but no longer count for their queue);
2. set aside jobs that could never run here, even on an empty cluster
   (``Unschedulable``, ``NoMatchingNodes``): they demand nothing; then compute
   every queue's fair share per GPU type from the demand (``fairshare``); a
   queue that owns a reservation demands at most its pool;
3. finish or release gangs that the applier left partly bound;
4. honour nominations: a job that evictions freed capacity for binds there, or
   keeps it while its victims terminate;
5. serve lanes of (queue, GPU type), least served first (allocated ÷ fair share
   for that type; a higher-priority head first), jobs within a lane by priority
   then submission time, each gang placed in full or not at all through the
   statement (``placement``); a job waiting longer than
   ``Policy.starvation_seconds`` that could fit an empty cluster holds its GPU
   type (the nodes it could use), so a stream of smaller jobs cannot starve it;
6. for jobs still waiting, reclaim and preemption (``preemption``), nominating
   what each eviction frees for the job it was freed for;
7. explain every job that still waits, with its place in its queue, and report
   each queue's allocated, reclaiming and pending GPUs.

Pure and deterministic: no I/O, no clock (``now`` is an argument), ties broken
by names, every output sorted.
"""

import heapq
from dataclasses import dataclass, field

from leitstand.core import fairshare, placement, preemption, statements
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
    Priority,
    Queue,
    QueueName,
    QueueStatus,
    Reason,
    Release,
    Share,
    Snapshot,
    matches,
    reservation_owners,
    tolerates,
)
from leitstand.core.statements import Statement

_NO_SHARE = Share()
_UNBOUNDED = 1 << 40  # replicas per node when a job asks for no resources at all
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
    ranked: bool = True  # False: it can never run here, so it takes no place in its queue


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
    failures: dict[tuple[object, ...], tuple[int, placement.Outcome]] = field(default_factory=dict)
    partial_jobs: list[Job] = field(default_factory=list)
    jobs_by_key: dict[JobKey, Job] = field(default_factory=dict)
    _candidates: dict[tuple[object, ...], list[Node]] = field(default_factory=dict)
    _names: dict[int, frozenset[NodeName]] = field(default_factory=dict)
    _empty: Statement | None = None
    _never_fits: dict[tuple[object, ...], tuple[Reason, str] | None] = field(default_factory=dict)
    _rooms: dict[tuple[object, ...], dict[str, tuple[int, int]]] = field(default_factory=dict)
    queue_problems: dict[QueueName, str] = field(default_factory=dict)
    broken_namespaces: dict[str, QueueName] = field(default_factory=dict)
    nominations: dict[JobKey, tuple[NodeName, ...]] = field(default_factory=dict)
    spoken_for: set[JobKey] = field(default_factory=set)  # terminating jobs whose capacity a nominee waits for
    leaving: dict[NodeName, list[int]] = field(default_factory=dict)  # unclaimed resources of terminating jobs
    running: dict[tuple[QueueName, GPUType], int] = field(default_factory=dict)  # held at the snapshot
    settled: set[JobKey] = field(default_factory=set)  # bound before the queues are served
    freed: set[NodeName] = field(default_factory=set)  # nodes of jobs evicted this cycle
    victim_pool: "preemption.Pool | None" = None  # built by the first reclaim attempt
    preemptible_by_queue: dict[QueueName, list[Job]] = field(default_factory=dict)  # running, by load_jobs
    terminating_jobs: list[Job] = field(default_factory=list)  # holding nodes, by load_jobs
    nominees: list[Job] = field(default_factory=list)  # waiting jobs with a nomination, by load_jobs
    queueless: list[Job] = field(default_factory=list)  # running preemptible jobs whose namespace has no queue

    # -- setup ------------------------------------------------------------------------------

    def index_queues(self) -> None:
        self.queues = {queue.name: queue for queue in self.snapshot.queues}
        self.children = {name: [] for name in self.queues}
        for queue in sorted(self.queues.values(), key=lambda q: q.name):
            if queue.parent in self.queues:
                self.children[queue.parent].append(queue.name)
        for name in sorted(self.queues):
            path: list[QueueName] = []
            current: QueueName | None = name
            while current is not None and current in self.queues and current not in path:
                path.append(current)
                current = self.queues[current].parent
            self.paths[name] = tuple(path)
            if current is not None and current in path:  # the walk came back: a parent cycle at or above
                loop = [*path[path.index(current) :], current]
                where = "is in" if name in loop[:-1] else "is below"
                self.queue_problems[name] = (
                    f"queue {name} {where} a parent cycle ({' -> '.join(loop)}); "
                    "change spec.parent of one of them so the tree has a root"
                )
        claims: dict[str, list[QueueName]] = {}
        for queue in sorted(self.queues.values(), key=lambda q: q.name):
            if queue.name in self.queue_problems:
                for namespace in queue.namespaces:
                    self.broken_namespaces.setdefault(namespace, queue.name)
                continue
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
        self.owner_of_node = reservation_owners(self.snapshot)
        for node in nodes:
            owner = self.owner_of_node.get(node.name)
            if owner is not None and node.ready and node.gpu_type is not None:
                pool = self.reserved_capacity.setdefault(owner, {})
                pool[node.gpu_type] = pool.get(node.gpu_type, 0) + node.gpus
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

    def without(self, nodes: list[Node], exclude: frozenset[NodeName]) -> list[Node]:
        """``nodes`` minus ``exclude`` (both live, cached, for the whole cycle)."""
        key = ("without", id(nodes), id(exclude))
        cached = self._candidates.get(key)
        if cached is None:
            cached = self._candidates[key] = [node for node in nodes if node.name not in exclude]
        return cached

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
        leaving: dict[tuple[QueueName, GPUType], int] = {}
        train = Priority.TRAIN  # preemptible; compared directly, as this loop runs for every pod
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
                    preemptible = job.priority is train
                    if job.terminating:
                        self.terminating_jobs.append(job)
                    elif preemptible and queue is not None:
                        self.preemptible_by_queue.setdefault(queue, []).append(job)
                    elif preemptible:
                        self.queueless.append(job)  # still returned when it sits on lent capacity
                    path = self.paths[queue] if queue else ()
                    # a terminating job holds its nodes but no longer counts for its queue: its GPUs are on their way
                    # to whoever they were freed for, and counting them twice would let reclaim take too much
                    self.statement.load(job, placed, () if job.terminating else path, firm=not preemptible)
                    node_type = nodes[placed[0]].gpu_type
                    if node_type is not None and job.gpus_per_replica:
                        self.job_type[job.key] = node_type
                        gpu_type = node_type
                        if job.terminating:
                            for name in path:
                                key = (name, node_type)
                                leaving[key] = leaving.get(key, 0) + len(placed) * job.gpus_per_replica
            if queue is None or job.terminating:
                continue
            if not job.placement:
                if job.nominated:
                    self.nominees.append(job)
                never = self.never_fits(job, queue)
                if never is not None:  # no demand: it would take a share it can never use
                    self.waiting[job.key] = Waiting(job, queue, job.gpu_type, *never, tried=True, ranked=False)
                    continue
            if not job.gpus_per_replica:
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
        self.running = dict(self.statement.allocated)  # what runs now, for status: terminating jobs still do
        for key, gpus in leaving.items():
            self.running[key] = self.running.get(key, 0) + gpus
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

    def same_nodes(self, job: Job, queue: QueueName, gpu_type: GPUType | None, nodes: list[Node]) -> bool:
        """Is ``nodes`` (a cached candidate list) exactly what ``job`` of ``queue`` may use of ``gpu_type``?"""
        if job.gpu_type != gpu_type or not job.gpus_per_replica:
            return False
        lent = job.priority.preemptible and self.owner(queue) is None
        return self.candidates(job, queue, gpu_type, lent=lent) is nodes

    def held_nodes(self, holder: Job, gpu_type: GPUType | None) -> frozenset[NodeName]:
        """The nodes a job holding its GPU type could use: kept free for it."""
        queue = self.job_queue[holder.key]
        lent = holder.priority.preemptible and self.owner(queue) is None
        return self.names_of(self.candidates(holder, queue, gpu_type, lent=lent))  # both cached for the cycle

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
            outcome = self.try_place(job, queue, count, gpu_type, pinned=pinned, exclude=exclude)
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
        exclude: frozenset[NodeName] = frozenset(),
    ) -> placement.Outcome:
        """Placement on the job's own nodes, then (preemptible jobs) on lent reserved nodes too.

        Failures are cached per shape and count (the message names the count)
        until the statement gives resources back.
        """
        attempts = [False, True] if job.priority.preemptible and self.owner(queue) is None else [False]
        outcome = placement.Outcome(None, Reason.NO_MATCHING_NODES, "")
        for lent in attempts:
            nodes = self.candidates(job, queue, gpu_type, lent=lent)
            if exclude:
                nodes = self.without(nodes, exclude)
                if not nodes:  # every node it may use is held for an older job: the caller says so
                    outcome = placement.Outcome(None, Reason.NO_MATCHING_NODES, "its nodes are held")
                    continue
            if not nodes:
                if not lent:
                    outcome = placement.Outcome(
                        None, Reason.NO_MATCHING_NODES, self.no_nodes_message(job, queue, gpu_type)
                    )
                continue
            shape = (
                self.owner(queue), lent, gpu_type, job.gpus_per_replica, job.cpu_millis_per_replica,
                job.memory_bytes_per_replica, job.required_level, job.preferred_level, job.node_selector, pinned,
                job.tolerations, count, id(exclude) if exclude else None,
            )  # fmt: skip
            known = self.failures.get(shape)
            if known is not None and known[0] == self.statement.version:
                outcome = known[1]
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
            self.failures[shape] = (self.statement.version, outcome)
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

    def never_fits(self, job: Job, queue: QueueName) -> tuple[Reason, str] | None:
        """Why ``job`` could not run even on an empty cluster (no node it may use, or no room for the
        gang in any domain it may use); None when it could. Cached per shape for the cycle."""
        if job.replicas <= 0:
            return Reason.UNSCHEDULABLE, "the job has no replicas"
        shape = (self.owner(queue), job.gpu_type, job.replicas, job.gpus_per_replica, job.cpu_millis_per_replica,
                 job.memory_bytes_per_replica, job.required_level, job.preferred_level, job.node_selector,
                 job.tolerations, job.priority.preemptible)  # fmt: skip
        if shape in self._never_fits:
            return self._never_fits[shape]
        result: tuple[Reason, str] | None = None
        if job.gpus_per_replica and not self.capacity:
            result = Reason.NO_MATCHING_NODES, "the cluster has no ready GPU nodes"
        for gpu_type in self.types_for(job) if result is None else []:
            if gpu_type is not None and gpu_type not in self.capacity:
                known = ", ".join(sorted(self.capacity)) or "none"
                result = result or (Reason.NO_MATCHING_NODES, f"no ready {gpu_type} nodes (GPU types: {known})")
                continue
            lent = job.priority.preemptible and self.owner(queue) is None  # lent nodes are candidates too
            nodes = self.candidates(job, queue, gpu_type, lent=lent)
            if not nodes:
                result = result or (Reason.NO_MATCHING_NODES, self.no_nodes_message(job, queue, gpu_type))
                continue
            why = self.room_when_empty(job, gpu_type, nodes)
            if why is None:
                result = None
                break
            if result is None or result[0] is Reason.NO_MATCHING_NODES:
                result = Reason.UNSCHEDULABLE, f"never fits: {why} with every node free"
        self._never_fits[shape] = result
        return result

    def room_when_empty(self, job: Job, gpu_type: GPUType | None, nodes: list[Node]) -> str | None:
        """None when ``job``'s gang would fit ``nodes`` if they were all free; else why not, worded as
        ``placement.place`` words it. Arithmetic on node sizes, cached per (nodes, replica size, level)."""
        if job.required_level is not None and job.required_level not in self.policy.topology_levels:
            return self.place_empty(job, gpu_type, nodes).message
        level = self.policy.level_index(job.required_level)
        key = ("empty", id(nodes), job.gpus_per_replica, job.cpu_millis_per_replica, job.memory_bytes_per_replica,
               level)  # fmt: skip
        rooms = self._rooms.get(key)
        if rooms is None:
            rooms = self._rooms[key] = {}
            for node in nodes:
                fit = statements.replicas_in(job, node.gpus, node.cpu_millis, node.memory_bytes, _UNBOUNDED)
                if not fit:
                    continue
                domain = "" if level is None else (node.domains[level] if level < len(node.domains) else "")
                if level is not None and not domain:
                    continue
                room, count = rooms.get(domain, (0, 0))
                rooms[domain] = (room + fit, count + 1)
        what = placement.describe(job, job.replicas, gpu_type)
        if level is None:
            room, count = rooms.get("", (0, 0))
            if room >= job.replicas:
                return None
            return f"needs {what}; room for {room} on {count} of {len(nodes)} eligible nodes"
        best = max(((room, name) for name, (room, _count) in rooms.items()), default=(0, "none"))
        if best[0] >= job.replicas:
            return None
        level_name = job.required_level
        return f"needs {what} in one {level_name}; the best {level_name} ({best[1]}) has room for {best[0]}"

    def place_empty(self, job: Job, gpu_type: GPUType | None, nodes: list[Node]) -> placement.Outcome:
        """Where ``job`` would go if every node were free (the cluster as built, nothing running)."""
        if self._empty is None:
            self._empty = Statement(list(self.statement.nodes.values()))
        return placement.place(job, job.replicas, self._empty, nodes, self.policy, gpu_type=gpu_type)

    def fits_empty(self, job: Job, queue: QueueName, gpu_type: GPUType | None) -> bool:
        """Would ``job`` fit on its own nodes of ``gpu_type`` if they were all free? (Is holding the type worth
        it?) The same arithmetic as ``never_fits``, cached the same way."""
        nodes = self.candidates(job, queue, gpu_type, lent=False)
        return bool(nodes) and self.room_when_empty(job, gpu_type, nodes) is None

    # -- the passes -------------------------------------------------------------------------

    def finish_partial_gangs(self) -> None:
        """Completes gangs the applier left partly bound, or releases them.

        A released gang keeps its nodes for the rest of this cycle: its bound
        pods still run until the applier has deleted them.
        """
        for job in self.partial_jobs:
            queue = self.job_queue.get(job.key)
            placed = [node for node in job.placement if node is not None]
            vanished = [node for node in placed if node not in self.statement.nodes]
            outcome: Waiting | tuple[NodeName, ...] | None = None
            if queue is not None and not vanished and job.key in self.statement.holdings:
                waiting_replicas = sum(1 for node in job.placement if node is None) + job.replicas - len(job.placement)
                pinned = None
                level = self.policy.level_index(job.required_level)
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

    def honour_nominations(self) -> None:
        """Jobs with capacity nominated for them bind there, or keep it while their victims terminate.

        A nomination lapses when the job is gone or can no longer use the nodes
        (a node gone, NotReady, no longer a candidate, quota, or the capacity
        taken by something other than terminating jobs). Kept ones reserve what
        they need on their nodes (terminating jobs' resources first), so no other
        job takes it this cycle, and their queues count it.
        """
        statement = self.statement
        for job in self.terminating_jobs:
            for name in statement.holdings[job.key].nodes:
                left = self.leaving.setdefault(name, [0, 0, 0])
                left[0] += job.gpus_per_replica
                left[1] += job.cpu_millis_per_replica
                left[2] += job.memory_bytes_per_replica
        for job in sorted(self.nominees, key=lambda j: j.key):
            queue = self.job_queue.get(job.key)
            if queue is None or job.key in self.waiting or len(job.nominated) != job.replicas:
                continue
            nodes = job.nominated
            if any(name not in statement.nodes or not statement.nodes[name].ready for name in nodes):
                continue
            gpu_type = statement.nodes[nodes[0]].gpu_type if job.gpus_per_replica else None
            if job.gpus_per_replica and (gpu_type is None or job.gpu_type not in (None, gpu_type)):
                continue
            lent = job.priority.preemptible and self.owner(queue) is None
            if not set(nodes) <= self.names_of(self.candidates(job, queue, gpu_type, lent=lent)):
                continue
            if gpu_type is not None and self.quota_block(job, queue, gpu_type, job.replicas) is not None:
                continue
            need: dict[NodeName, tuple[int, int, int]] = {}
            for name in nodes:
                gpus, cpu, memory = need.get(name, (0, 0, 0))
                need[name] = (
                    gpus + job.gpus_per_replica,
                    cpu + job.cpu_millis_per_replica,
                    memory + job.memory_bytes_per_replica,
                )
            free = statement.free
            if all(
                free[name].gpus >= g and free[name].cpu_millis >= c and free[name].memory_bytes >= m
                for name, (g, c, m) in need.items()
            ):
                statement.hold(job, nodes, self.paths[queue], firm=not job.priority.preemptible)
                statement.commit()
                if gpu_type is not None:
                    self.job_type[job.key] = gpu_type
                self.binds.append(Bind(job.key, nodes))
                self.settled.add(job.key)
                continue
            soon = {name: self.leaving.get(name, [0, 0, 0]) for name in need}
            if not all(
                free[name].gpus + soon[name][0] >= g
                and free[name].cpu_millis + soon[name][1] >= c
                and free[name].memory_bytes + soon[name][2] >= m
                for name, (g, c, m) in need.items()
            ):
                continue  # something else took the capacity: the nomination lapses
            taken: dict[NodeName, tuple[int, int, int]] = {}
            for name, wanted in need.items():
                left = soon[name]
                from_leaving = [min(max(left[i], 0), wanted[i]) for i in range(3)]
                for i in range(3):
                    left[i] -= from_leaving[i]
                taken[name] = (wanted[0] - from_leaving[0], wanted[1] - from_leaving[1], wanted[2] - from_leaving[2])
            statement.reserve(taken, self.paths[queue], gpu_type, job.gpus, firm=not job.priority.preemptible)
            going = sorted(other.key for other in self.leaving_on(set(need)))
            self.spoken_for.update(going)
            self.nominations[job.key] = nodes
            self.waiting[job.key] = Waiting(
                job, queue, gpu_type, Reason.WAITING_FOR_RECLAIM,
                f"{job.gpus} {gpu_type or 'GPUs'} on {', '.join(sorted(need))} are being freed for it; "
                f"starts once {len(going)} terminating job{'s' if len(going) != 1 else ''} there "
                f"{'are' if len(going) != 1 else 'is'} gone",
            )  # fmt: skip

    def leaving_on(self, nodes: set[NodeName]) -> list[Job]:
        """Jobs on ``nodes`` that are terminating or were evicted this cycle (their capacity is on its way)."""
        evicted = [self.jobs_by_key[eviction.job] for eviction in self.evictions]
        return [job for job in self.terminating_jobs + evicted if not nodes.isdisjoint(n for n in job.placement if n)]

    def collect_waiting(self) -> dict[QueueName, list[Job]]:
        per_queue: dict[QueueName, list[Job]] = {}
        for job in self.snapshot.jobs:
            if job.placement or job.terminating or (job.key in self.waiting and self.waiting[job.key].queue is None):
                continue
            queue = self.leaf_of_namespace.get(job.namespace)
            if queue is None:
                if job.namespace in self.broken_namespaces:
                    broken = self.broken_namespaces[job.namespace]
                    message = self.queue_problems[broken]
                    self.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_CYCLE, message)
                elif job.namespace in self.conflicts:
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
        """Tries every waiting job once: lanes of (queue, GPU type), the least served lane first.

        A queue's jobs of different GPU types wait in separate lanes, each ranked
        by how well served the queue is for that type: a job of a type the queue
        has plenty of never lets the queue jump ahead for another type.
        """
        Lane = tuple[QueueName, GPUType | None]
        lanes: dict[Lane, list[Job]] = {}
        defaults: dict[QueueName, GPUType | None] = {}
        for queue in sorted(per_queue):
            for job in per_queue[queue]:
                if job.key in self.waiting or job.key in self.settled:
                    continue
                lane_type = job.gpu_type
                if lane_type is None and job.gpus_per_replica:
                    if queue not in defaults:
                        defaults[queue] = self.default_type(queue)
                    lane_type = defaults[queue]
                lanes.setdefault((queue, lane_type), []).append(job)
        heap: list[tuple[int, tuple[int, float], QueueName, str, Lane]] = []
        heads = dict.fromkeys(lanes, 0)

        def push(lane: Lane) -> None:
            jobs = lanes[lane]
            if heads[lane] < len(jobs):
                head = jobs[heads[lane]]
                queue, lane_type = lane
                heapq.heappush(heap, (-int(head.priority), self.served(queue, lane_type), queue, lane_type or "", lane))

        for lane in lanes:
            push(lane)
        held_types: dict[tuple[QueueName | None, GPUType | None], Job] = {}  # by (reserved pool owner, type)
        while heap:
            *_rank, lane = heapq.heappop(heap)
            queue, guess = lane
            job = lanes[lane][heads[lane]]
            heads[lane] += 1
            holder = held_types.get((self.owner(queue), guess))
            if holder is not None and job.gpus_per_replica:
                # only nodes the holder could never use stay open to others
                held = self.held_nodes(holder, guess)
                lent = job.priority.preemptible and self.owner(queue) is None
                outcome: Waiting | tuple[NodeName, ...]
                nodes = self.candidates(job, queue, guess, lent=lent)
                if job.gpu_type is not None and not self.without(nodes, held):
                    outcome = Waiting(job, queue, guess)  # every node it may use is held: nothing to try
                    jobs, minutes = lanes[lane], (self.now - holder.submitted) / 60
                    while heads[lane] < len(jobs) and self.same_nodes(jobs[heads[lane]], queue, guess, nodes):
                        behind = jobs[heads[lane]]  # the jobs behind it with the same nodes wait for the same reason
                        heads[lane] += 1
                        self.waiting[behind.key] = Waiting(
                            behind, queue, guess, Reason.WAITING_FOR_OLDER_JOB,
                            f"{guess} is held for {holder.key}, which has waited {minutes:.0f} min", tried=True,
                        )  # fmt: skip
                else:
                    outcome = self.attempt(job, queue, job.replicas, exclude=held)
                if isinstance(outcome, tuple):
                    self.binds.append(Bind(job.key, outcome))
                    self.statement.commit()
                elif outcome.gpu_type != guess and not self.fits_empty(job, queue, guess):
                    self.waiting[job.key] = outcome  # a job of any type that the held type could never take
                else:
                    minutes = (self.now - holder.submitted) / 60
                    self.waiting[job.key] = Waiting(
                        job, queue, guess, Reason.WAITING_FOR_OLDER_JOB,
                        f"{guess} is held for {holder.key}, which has waited {minutes:.0f} min", tried=True,
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
            push(lane)

    def run(self) -> Decisions:
        self.index_queues()
        self.index_nodes()
        self.jobs_by_key = {job.key: job for job in self.snapshot.jobs}
        demand = self.load_jobs()
        self.shares = fairshare.fair_shares(self.snapshot.queues, self.shareable_capacity(demand), demand)
        self.honour_nominations()  # first: completing a partial gang must not take a nominee's capacity
        self.finish_partial_gangs()
        per_queue = self.collect_waiting()
        self.serve_queues(per_queue)
        if self.policy.preemption:
            preemption.reclaim(self, per_queue)
        return self.decisions(per_queue)

    # -- results ----------------------------------------------------------------------------

    def decisions(self, per_queue: dict[QueueName, list[Job]]) -> Decisions:
        overcommitted = self.overcommitted()
        explanations = []
        explained: set[JobKey] = set()
        for queue in sorted(per_queue):
            position = 0
            for job in per_queue[queue]:
                waiting = self.waiting.get(job.key)
                if waiting is None or not waiting.ranked:
                    continue
                position += 1
                ahead = f"; {position - 1} job{'s' if position != 2 else ''} ahead in queue {queue}"
                message = waiting.message + (ahead if position > 1 else f"; next in queue {queue}")
                if waiting.reason in _CAPACITY_REASONS and waiting.gpu_type in overcommitted:
                    message += overcommitted[waiting.gpu_type]
                explanations.append(Explanation(job.key, waiting.reason, message, queue, position))
                explained.add(job.key)
        for key, waiting in self.waiting.items():
            if key not in explained:
                explanations.append(Explanation(key, waiting.reason, waiting.message, waiting.queue, None))
        allocated = dict(self.running)
        for bind in self.binds:
            bound_queue, gpu_type = self.job_queue.get(bind.job), self.job_type.get(bind.job)
            if bound_queue is not None and gpu_type is not None:
                gpus = len(bind.nodes) * self.jobs_by_key[bind.job].gpus_per_replica
                for name in self.paths[bound_queue]:
                    allocated[(name, gpu_type)] = allocated.get((name, gpu_type), 0) + gpus
        pending_gpus: dict[tuple[QueueName, GPUType], int] = {}
        reclaiming: dict[tuple[QueueName, GPUType], int] = {}
        for key, waiting in self.waiting.items():
            if waiting.queue is None:
                continue
            gpu_type = waiting.gpu_type or self.default_type(waiting.queue)
            if gpu_type is None:
                continue
            into = reclaiming if key in self.nominations else pending_gpus
            for name in self.paths[waiting.queue]:
                into[(name, gpu_type)] = into.get((name, gpu_type), 0) + waiting.job.gpus
        statuses = {}
        for name, spec in sorted(self.queues.items()):
            types = sorted(set(self.capacity) | set(spec.shares))
            statuses[name] = {
                t: QueueStatus(
                    guaranteed=spec.shares.get(t, _NO_SHARE).guaranteed,
                    limit=spec.shares.get(t, _NO_SHARE).limit,
                    fair_share=self.shares.get(name, {}).get(t, 0),
                    allocated=allocated.get((name, t), 0),
                    pending=pending_gpus.get((name, t), 0),
                    reclaiming=reclaiming.get((name, t), 0),
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
            nominations=dict(sorted(self.nominations.items())),
            queue_problems=dict(sorted(self.queue_problems.items())),
            namespace_conflicts=self.namespace_conflicts(),
        )

    def namespace_conflicts(self) -> dict[QueueName, str]:
        """Each leaf that claims a namespace another leaf claims too, with a message naming the others."""
        result: dict[QueueName, str] = {}
        for namespace, owners in sorted(self.conflicts.items()):
            for owner in owners:
                others = ", ".join(o for o in owners if o != owner)
                result.setdefault(
                    owner,
                    f"namespace {namespace} is also claimed by {others}; neither schedules it until one drops it",
                )
        return dict(sorted(result.items()))

    def overcommitted(self) -> dict[GPUType, str]:
        """Per GPU type whose leaf guarantees exceed the cluster: a note for jobs that wait for capacity."""
        leaves = [name for name in self.queues if not self.children[name] and name not in self.queue_problems]
        notes = {}
        for gpu_type, capacity in sorted(self.capacity.items()):
            promised = sum(self.queues[name].shares.get(gpu_type, _NO_SHARE).guaranteed for name in leaves)
            if promised > capacity:
                firm = sum(self.statement.queue_firm(name, gpu_type) for name in leaves)
                notes[gpu_type] = (
                    f"; guarantees are over-committed: queues are guaranteed {promised} {gpu_type} but the cluster "
                    f"has {capacity}, and jobs that may not be preempted hold {firm}"
                )
        return notes


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
