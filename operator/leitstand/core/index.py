"""What one cycle knows before it decides anything: the ``Index``, built once from a snapshot.

``build`` reads the snapshot in one pass and returns three things:

- the ``Index``: the queue tree (leaf of each namespace, paths, conflicts,
  parent cycles), the nodes (reservation owners, reserved pools, ready
  capacity), the running work (each job's queue, partly bound, terminating and
  preemptible jobs, nominees), every queue's fair share per GPU type, and the
  jobs that wait, per leaf queue in queue order. Fixed once built: the actions
  read it and never change it. Its questions (``candidates``, ``never_fits``,
  ``owner``, ...) are memoized for the cycle;
- the ``Statement`` holding what running jobs use, which the actions then change;
- a ``Decided`` with what building found out: the GPU type each running job
  holds and why jobs that can never run here, or have no queue, wait.

Pure.
"""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from leitstand.core import fairshare, placement, statements
from leitstand.core.decided import Decided, Waiting
from leitstand.core.model import (
    GPUType,
    Job,
    JobKey,
    Node,
    NodeName,
    Policy,
    Priority,
    Queue,
    QueueName,
    Reason,
    Snapshot,
    matches,
    order_key,
    reservation_owners,
    runtime_limit,
    tolerates,
)
from leitstand.core.statements import Holding, Statement

_UNBOUNDED = 1 << 40  # replicas per node when a job asks for no resources at all
_UNKNOWN = object()  # not looked up yet (a cached None means unbounded)

Holder = tuple[Job, Holding, float | None]  # a job holding resources, what it holds, when it ends (None: never)


@dataclass(slots=True, eq=False)
class Index:
    """The facts of one cycle's snapshot that every action reads; see the module docstring."""

    snapshot: Snapshot
    policy: Policy
    now: float
    queues: dict[QueueName, Queue] = field(default_factory=dict)
    children: dict[QueueName, list[QueueName]] = field(default_factory=dict)
    paths: dict[QueueName, tuple[QueueName, ...]] = field(default_factory=dict)
    leaf_of_namespace: dict[str, QueueName] = field(default_factory=dict)
    conflicts: dict[str, tuple[QueueName, ...]] = field(default_factory=dict)
    queue_problems: dict[QueueName, str] = field(default_factory=dict)
    broken_namespaces: dict[str, QueueName] = field(default_factory=dict)
    owner_of_node: dict[NodeName, QueueName] = field(default_factory=dict)
    reserved_capacity: dict[QueueName, dict[GPUType, int]] = field(default_factory=dict)
    ready_nodes: list[Node] = field(default_factory=list)
    capacity: dict[GPUType, int] = field(default_factory=dict)
    all_nodes: list[Node] = field(default_factory=list)
    jobs_by_key: dict[JobKey, Job] = field(default_factory=dict)
    job_queue: dict[JobKey, QueueName] = field(default_factory=dict)
    partial_jobs: list[Job] = field(default_factory=list)  # bound in part, by key
    terminating_jobs: list[Job] = field(default_factory=list)  # holding nodes
    preemptible_by_queue: dict[QueueName, list[Job]] = field(default_factory=dict)  # running
    preemptible_gpu_jobs: dict[QueueName, list[Job]] = field(default_factory=dict)  # of those, the ones with GPUs
    queueless: list[Job] = field(default_factory=list)  # running preemptible jobs whose namespace has no queue
    nominees: list[Job] = field(default_factory=list)  # waiting jobs with a nomination
    growing: dict[JobKey, list[Job]] = field(default_factory=dict)  # elastic gangs' growth replicas, by rank
    moving: list[Job] = field(default_factory=list)  # terminating jobs nominated elsewhere (moved), by key
    running: dict[tuple[QueueName, GPUType], int] = field(default_factory=dict)  # held at the snapshot
    shares: dict[QueueName, dict[GPUType, int]] = field(default_factory=dict)
    waiting_by_queue: dict[QueueName, list[Job]] = field(default_factory=dict)  # in queue order
    _candidates: dict[tuple[object, ...], list[Node]] = field(default_factory=dict)
    _names: dict[int, frozenset[NodeName]] = field(default_factory=dict)
    _empty: Statement | None = None
    _never_fits: dict[tuple[object, ...], tuple[Reason, str] | None] = field(default_factory=dict)
    _rooms: dict[tuple[object, ...], dict[str, tuple[int, int]]] = field(default_factory=dict)
    _default_types: dict[QueueName, GPUType | None] = field(default_factory=dict)
    _owners: dict[QueueName, QueueName | None] = field(default_factory=dict)
    _limits: dict[tuple[float | None, QueueName | None], float | None] = field(default_factory=dict)
    _job_limits: dict[JobKey, float | None] = field(default_factory=dict)
    _largest: dict[GPUType, int] = field(default_factory=dict)
    fractions: dict[QueueName | None, float] = field(default_factory=dict)  # None: the site's, for the rest

    # -- the queue tree ---------------------------------------------------------------------

    def owner(self, queue: QueueName | None) -> QueueName | None:
        """The queue on ``queue``'s path that owns a reservation, if any."""
        if queue is None:
            return None
        if queue not in self._owners:
            self._owners[queue] = next((n for n in self.paths[queue] if self.queues[n].reservation is not None), None)
        return self._owners[queue]

    def lent(self, job: Job, queue: QueueName | None) -> bool:
        """May ``job`` use idle reserved nodes that their owner lends out? (Preemptible jobs outside any pool.)"""
        return job.priority.preemptible and self.owner(queue) is None

    def default_type(self, queue: QueueName) -> GPUType | None:
        """Where an untyped waiting job's demand counts: its queue's first typed share, else the first type."""
        if queue in self._default_types:
            return self._default_types[queue]
        result = min(self.capacity) if self.capacity else None
        for name in self.paths[queue]:
            typed = sorted(t for t in self.queues[name].shares if t in self.capacity)
            if typed:
                result = typed[0]
                break
        self._default_types[queue] = result
        return result

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

    # -- candidate nodes --------------------------------------------------------------------

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
        key = ("without", id(nodes), exclude)  # the set itself: a short-lived one's id may be reused
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

    # -- on an empty cluster ----------------------------------------------------------------

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
            nodes = self.candidates(job, queue, gpu_type, lent=self.lent(job, queue))  # lent nodes count too
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
            self._empty = Statement(self.all_nodes)
        return placement.place(job, job.replicas, self._empty, nodes, self.policy, gpu_type=gpu_type)

    def fits_empty(self, job: Job, queue: QueueName, gpu_type: GPUType | None) -> bool:
        """Would ``job`` fit on its own nodes of ``gpu_type`` if they were all free? The same arithmetic
        as ``never_fits``, cached the same way."""
        nodes = self.candidates(job, queue, gpu_type, lent=False)
        return bool(nodes) and self.room_when_empty(job, gpu_type, nodes) is None

    # -- running work -----------------------------------------------------------------------

    def largest_node(self, gpu_type: GPUType) -> int:
        """The most GPUs a ready node of ``gpu_type`` has."""
        if gpu_type not in self._largest:
            self._largest[gpu_type] = max((n.gpus for n in self.ready_nodes if n.gpu_type == gpu_type), default=0)
        return self._largest[gpu_type]

    def limit_of(self, job: Job) -> float | None:
        """``job``'s runtime limit in seconds, its own or its queue's (None: unbounded)."""
        limit = self._job_limits.get(job.key, _UNKNOWN)
        if limit is not _UNKNOWN:
            return limit  # type: ignore[return-value]
        key = (job.runtime_limit, self.job_queue.get(job.key))
        if key not in self._limits:
            self._limits[key] = runtime_limit(job.runtime_limit, key[1], self.queues)[0]
        limit = self._job_limits[job.key] = self._limits[key]
        return limit

    def runtime_fraction(self, job: Job) -> float:
        """How much of its runtime limit ``job`` is expected to use: the median of what its queue's finished
        jobs used, else the site's, else all of it (1.0)."""
        fractions = self.fractions
        return fractions.get(self.job_queue.get(job.key), fractions.get(None, 1.0))

    def likely_runtime(self, job: Job) -> float | None:
        """How long ``job`` is likely to run once started: its queue's runtime fraction of its limit."""
        limit = self.limit_of(job)
        return None if limit is None else limit * self.runtime_fraction(job)

    def likely_end(self, job: Job) -> float | None:
        """When ``job`` (holding resources now) is expected to end: its start plus its runtime fraction of its
        limit; once past that, now plus that fraction of the time left to its limit. Its limit, for a queue
        whose jobs run to their limits; None: no limit."""
        end, limit = self.expected_end(job), self.limit_of(job)
        if end is None or limit is None or job.terminating:
            return end
        fraction = self.runtime_fraction(job)
        started = job.started if job.running and job.started is not None else self.now
        typical = started + fraction * limit
        return typical if typical > self.now else self.now + fraction * (end - self.now)

    def expected_end(self, job: Job) -> float | None:
        """When ``job``, holding resources now, gives them back at the latest: at its runtime limit counted
        from its start (now, for a job not yet running), or now when it is terminating or overdue;
        None when it has no limit."""
        if job.terminating:
            return self.now
        limit = self.limit_of(job)
        if limit is None:
            return None
        started = job.started if job.started is not None and job.running else self.now
        return max(started + limit, self.now)

    def holders(self, holdings: Mapping[JobKey, Holding], *, likely: bool = False) -> list[Holder]:
        """Each holder of ``holdings`` that is a job of the snapshot, with its holding and when it gives its
        resources back (``expected_end``; ``likely``: ``likely_end``). In one pass, as a timeline of 100,000
        pods needs it: ``expected_end`` inlined, limits looked up by (own limit, queue)."""
        jobs = self.jobs_by_key
        if likely:
            likely_end = self.likely_end
            return [(job, held, likely_end(job)) for key, held in holdings.items() if (job := jobs.get(key))]
        now, limits, queue_of, limit_of = self.now, self._limits, self.job_queue, self.limit_of
        found: list[Holder] = []
        add = found.append
        for key, held in holdings.items():
            job = jobs.get(key)
            if job is None:
                continue
            if job.terminating:
                add((job, held, now))
                continue
            limit = limits.get((job.runtime_limit, queue_of.get(key)), _UNKNOWN)  # what ``limit_of`` caches
            if limit is _UNKNOWN:
                limit = limit_of(job)
            if limit is None:
                add((job, held, None))
                continue
            started = job.started if job.started is not None and job.running else now
            add((job, held, max(started + limit, now)))  # type: ignore[operator]
        return found

    def leaving_on(self, nodes: set[NodeName], evicted: Iterable[JobKey] = ()) -> list[Job]:
        """Jobs on ``nodes`` that are terminating or in ``evicted`` (their capacity is on its way)."""
        going = self.terminating_jobs + [self.jobs_by_key[key] for key in evicted]
        return [job for job in going if not nodes.isdisjoint(n for n in job.placement if n)]


def build(snapshot: Snapshot, policy: Policy, now: float) -> tuple[Index, Statement, Decided]:
    """The index of ``snapshot``, the statement of what runs, and what building found out; see the module."""
    index = Index(snapshot, policy, now)
    _index_queues(index)
    statement = _index_nodes(index)
    index.jobs_by_key = {job.key: job for job in snapshot.jobs}
    found = Decided()
    demand = _load_jobs(index, statement, found)
    index.shares = fairshare.fair_shares(snapshot.queues, _shareable_capacity(index, demand), demand)
    index.waiting_by_queue = _collect_waiting(index, found)
    index.fractions = _runtime_fractions(index)
    return index, statement, found


FRACTION_SAMPLES = 50  # the latest finished jobs per queue that its runtime fraction is learned from
FRACTION_MIN_SAMPLES = 5  # fewer: the site's fraction stands in
FRACTION_FLOOR = 0.05  # jobs that fail at once do not make every estimate "now"


def _runtime_fractions(index: Index) -> dict[QueueName | None, float]:
    """Per queue, the median share of their runtime limits that its latest finished jobs ran; under None,
    the same over every queue's (when enough jobs finished)."""
    latest: dict[QueueName, list[tuple[float, float]]] = {}
    for done in index.snapshot.finished:
        queue = index.leaf_of_namespace.get(done.namespace)
        if queue is None:
            continue
        limit = runtime_limit(done.runtime_limit, queue, index.queues)[0]
        if limit is not None and limit > 0:
            latest.setdefault(queue, []).append((done.finished, min(max(done.ran, 0.0) / limit, 1.0)))
    fractions: dict[QueueName | None, float] = {}
    site: list[float] = []
    for queue, samples in latest.items():
        used = [fraction for _finished, fraction in sorted(samples, reverse=True)[:FRACTION_SAMPLES]]
        site += used
        if len(used) >= FRACTION_MIN_SAMPLES:
            fractions[queue] = max(statistics.median(used), FRACTION_FLOOR)
    if len(site) >= FRACTION_MIN_SAMPLES:
        fractions[None] = max(statistics.median(site), FRACTION_FLOOR)
    return fractions


def _index_queues(index: Index) -> None:
    index.queues = {queue.name: queue for queue in index.snapshot.queues}
    index.children = {name: [] for name in index.queues}
    for queue in sorted(index.queues.values(), key=lambda q: q.name):
        if queue.parent in index.queues:
            index.children[queue.parent].append(queue.name)
    for name in sorted(index.queues):
        path: list[QueueName] = []
        current: QueueName | None = name
        while current is not None and current in index.queues and current not in path:
            path.append(current)
            current = index.queues[current].parent
        index.paths[name] = tuple(path)
        if current is not None and current in path:  # the walk came back: a parent cycle at or above
            loop = [*path[path.index(current) :], current]
            where = "is in" if name in loop[:-1] else "is below"
            index.queue_problems[name] = (
                f"queue {name} {where} a parent cycle ({' -> '.join(loop)}); "
                "change spec.parent of one of them so the tree has a root"
            )
    claims: dict[str, list[QueueName]] = {}
    for queue in sorted(index.queues.values(), key=lambda q: q.name):
        if queue.name in index.queue_problems:
            for namespace in queue.namespaces:
                index.broken_namespaces.setdefault(namespace, queue.name)
            continue
        if index.children[queue.name]:
            continue  # only leaf queues hold workloads
        for namespace in queue.namespaces:
            claims.setdefault(namespace, []).append(queue.name)
    for namespace, owners in claims.items():
        if len(owners) == 1:
            index.leaf_of_namespace[namespace] = owners[0]
        else:
            index.conflicts[namespace] = tuple(sorted(owners))


def _index_nodes(index: Index) -> Statement:
    index.all_nodes = sorted(index.snapshot.nodes, key=lambda n: n.name)
    index.owner_of_node = reservation_owners(index.snapshot)
    for node in index.all_nodes:
        owner = index.owner_of_node.get(node.name)
        if owner is not None and node.ready and node.gpu_type is not None:
            pool = index.reserved_capacity.setdefault(owner, {})
            pool[node.gpu_type] = pool.get(node.gpu_type, 0) + node.gpus
        if node.ready:
            index.ready_nodes.append(node)
            if node.gpu_type is not None:
                index.capacity[node.gpu_type] = index.capacity.get(node.gpu_type, 0) + node.gpus
    return Statement(index.all_nodes)


def _load_jobs(index: Index, statement: Statement, found: Decided) -> dict[QueueName, dict[GPUType, int]]:
    """Holds what running (and partly bound) jobs use; returns each leaf queue's demand per GPU type.

    One pass over the jobs: at the scale of 100,000 pods this loop is most of a cycle.
    """
    demand: dict[QueueName, dict[GPUType, int]] = {}
    free = statement.free
    leaf_of = index.leaf_of_namespace
    leaving: dict[tuple[QueueName, GPUType], int] = {}
    train = Priority.TRAIN  # preemptible; compared directly, as this loop runs for every pod
    job_queue, paths, job_type = index.job_queue, index.paths, found.job_type
    preemptible_by_queue = index.preemptible_by_queue
    for job in index.snapshot.jobs:
        queue = leaf_of.get(job.namespace)
        if queue is not None:
            job_queue[job.key] = queue
        gpu_type = job.gpu_type
        placement = job.placement
        if placement:
            placed: Sequence[NodeName]
            if len(placement) == 1:  # most running jobs are one pod: its placement is what it holds
                placed = cast(tuple[NodeName], placement) if placement[0] in free else ()
            else:
                placed = [node for node in placement if node is not None and node in free]
            whole = len(placed) == job.replicas and len(placement) == job.replicas
            if not whole and not job.terminating and job.grows is None:
                index.partial_jobs.append(job)
            if placed:
                preemptible = job.priority is train
                if job.terminating:
                    index.terminating_jobs.append(job)
                    if job.nominated and queue is not None:
                        index.moving.append(job)
                elif preemptible and queue is not None:
                    victims = preemptible_by_queue.get(queue)
                    if victims is None:
                        preemptible_by_queue[queue] = [job]
                    else:
                        victims.append(job)
                    if job.gpus_per_replica:
                        index.preemptible_gpu_jobs.setdefault(queue, []).append(job)
                elif preemptible:
                    index.queueless.append(job)  # still returned when it sits on lent capacity
                path = paths[queue] if queue else ()
                # a terminating job holds its nodes but no longer counts for its queue: its GPUs are on their way
                # to whoever they were freed for, and counting them twice would let reclaim take too much
                node_type = statement.load(job, placed, () if job.terminating else path, firm=not preemptible)
                if node_type is not None:
                    job_type[job.key] = node_type
                    gpu_type = node_type
                    if job.terminating:
                        for name in path:
                            key = (name, node_type)
                            leaving[key] = leaving.get(key, 0) + len(placed) * job.gpus_per_replica
        if job.grows is not None:  # an elastic job's replica above its gang: never demand (``elastic``)
            index.growing.setdefault(job.grows, []).append(job)
            continue
        if queue is None or job.terminating:
            continue
        if not placement:
            if job.nominated:
                index.nominees.append(job)
            never = index.never_fits(job, queue)
            if never is None and job.runtime_limit is not None:
                _limit, too_long = runtime_limit(job.runtime_limit, queue, index.queues)
                if too_long is not None:
                    never = Reason.RUNTIME_LIMIT_TOO_LONG, too_long
            if never is not None:  # no demand: it would take a share it can never use
                found.waiting[job.key] = Waiting(job, queue, job.gpu_type, *never, tried=True, ranked=False)
                continue
        if not job.gpus_per_replica:
            continue
        if gpu_type is None:
            gpu_type = index.default_type(queue)
            if gpu_type is None:
                continue
        per_type = demand.setdefault(queue, {})
        per_type[gpu_type] = per_type.get(gpu_type, 0) + job.replicas * job.gpus_per_replica
    index.partial_jobs.sort(key=lambda j: j.key)
    for replicas in index.growing.values():
        replicas.sort(key=lambda j: j.rank)
    index.nominees.sort(key=lambda j: j.key)
    index.moving.sort(key=lambda j: j.key)
    index.running = dict(statement.allocated)  # what runs now, for status: terminating jobs still do
    for key, gpus in leaving.items():
        index.running[key] = index.running.get(key, 0) + gpus
    for queue, per_type in demand.items():  # a queue bound to its reserved pool cannot use more than the pool
        owner = index.owner(queue)
        if owner is not None:
            pool = index.reserved_capacity.get(owner, {})
            for gpu_type in per_type:
                per_type[gpu_type] = min(per_type[gpu_type], pool.get(gpu_type, 0))
    return demand


def _shareable_capacity(index: Index, demand: dict[QueueName, dict[GPUType, int]]) -> dict[GPUType, int]:
    """The capacity the queue tree divides: reserved GPUs that neither their owner wants
    nor anyone may borrow (a pool that does not lend) are nobody's to share."""
    capacity = dict(index.capacity)
    for owner, pool in index.reserved_capacity.items():
        reservation = index.queues[owner].reservation
        if reservation is None or reservation.lend_idle:
            continue
        for gpu_type, gpus in pool.items():
            wanted = sum(per_type.get(gpu_type, 0) for queue, per_type in demand.items() if owner in index.paths[queue])
            capacity[gpu_type] -= max(gpus - wanted, 0)
    return capacity


def _collect_waiting(index: Index, found: Decided) -> dict[QueueName, list[Job]]:
    """The jobs that wait, per leaf queue in queue order; jobs without a usable queue are explained in ``found``."""
    per_queue: dict[QueueName, list[Job]] = {}
    for job in index.snapshot.jobs:
        if job.placement or job.terminating or job.grows is not None:
            continue
        queue = index.leaf_of_namespace.get(job.namespace)
        if queue is None:
            if job.namespace in index.broken_namespaces:
                broken = index.broken_namespaces[job.namespace]
                message = index.queue_problems[broken]
                found.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_CYCLE, message)
            elif job.namespace in index.conflicts:
                owners = " and ".join(index.conflicts[job.namespace])
                message = (
                    f"namespace {job.namespace} is claimed by queues {owners}; "
                    "it is scheduled by neither until one drops it"
                )
                found.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_CONFLICT, message)
            else:
                message = (
                    f"namespace {job.namespace} belongs to no GPUQuota; a leaf queue must list it in spec.namespaces"
                )
                found.waiting[job.key] = Waiting(job, None, job.gpu_type, Reason.QUEUE_NOT_FOUND, message)
            continue
        per_queue.setdefault(queue, []).append(job)
    for jobs in per_queue.values():
        jobs.sort(key=order_key)
    return per_queue
