"""The multi-cycle liveness harness: random contested clusters, the core run on its own output.

A scenario is a cluster (spines, leaves, two GPU types, NotReady nodes, a
reserved pool that may lend), a queue tree (sometimes deep, sometimes with
over-committed guarantees), and jobs that arrive over time (priorities,
required and preferred topology, ``minRuntimeSeconds``, some that finish).
``run`` feeds the core its own decisions cycle after cycle, the way the
operator does: binds start running, evicted jobs terminate for a few cycles
(holding their nodes) before they wait again, nominations are stored with the
jobs. After every cycle it checks the invariants; at the end, that the cluster
settled within a bounded number of cycles after the last event, that no job
was evicted twice for the same reason without an event in between, and that
reclaim is complete: no queue stays below its fair share while a job of it
that fits its share waits and evictable surplus elsewhere would make room.

The oracle for completeness is independent of the core's victim search: it
tries a few greedy orders of whole victim gangs. It can miss a possible reclaim
(then nothing is reported) but never reports one that is not possible.
"""

import math
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from leitstand.core import fairshare, placement
from leitstand.core.model import (
    Decisions,
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
    Reservation,
    Share,
    Snapshot,
    labels,
    matches,
    runtime_limit,
    tolerates,
)
from leitstand.core.scheduling import schedule
from leitstand.core.statements import Statement

B200, RTX = GPUType("b200"), GPUType("rtx-pro-6000")
SECONDS_PER_CYCLE = 10.0
SETTLE_CYCLES = 25  # a fixpoint must come within this many cycles after the last event
POLICY = Policy(move_settle_seconds=3 * SECONDS_PER_CYCLE)  # moves happen within a run's few cycles
NEVER = frozenset({Reason.UNSCHEDULABLE, Reason.NO_MATCHING_NODES})


@dataclass
class Scenario:
    seed: int
    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    arrivals: dict[int, list[Job]]  # cycle -> jobs arriving then
    durations: dict[JobKey, int]  # cycles a job runs before it finishes (absent: forever)
    termination_cycles: int
    half_life: float = 0.0  # of the queues' remembered usage, which moves their fair shares as the run goes (0: off)

    def describe(self) -> str:
        jobs = [job for batch in self.arrivals.values() for job in batch]
        return f"seed {self.seed}: {len(self.nodes)} nodes, {len(self.queues)} queues, {len(jobs)} jobs"


def generate(seed: int) -> Scenario:
    """A random contested scenario; the same seed always gives the same scenario."""
    rng = random.Random(seed)
    nodes: list[Node] = []
    pool_leaf: str | None = None
    for s in range(rng.randint(1, 2)):
        for leaf in range(rng.randint(1, 3)):
            name = f"s{s}l{leaf}"
            rtx = rng.random() < 0.2
            pooled = pool_leaf is None and rng.random() < 0.3
            if pooled:
                pool_leaf = name
            for n in range(rng.randint(1, 4)):
                extra = {"pool": "res"} if pooled else {}
                nodes.append(
                    Node(
                        name=NodeName(f"{name}n{n}"),
                        gpu_type=RTX if rtx else B200,
                        gpus=4 if rtx else 8,
                        cpu_millis=128_000,
                        memory_bytes=1 << 40,
                        domains=(f"s{s}", name, f"{name}n{n}"),
                        labels=labels(extra),
                        ready=rng.random() > 0.06,
                        taints=(("gpu", "broken", "NoSchedule"),) if rng.random() < 0.04 else (),
                    )
                )
    capacity: Counter[GPUType] = Counter()
    for node in nodes:
        if node.ready and node.gpu_type is not None:
            capacity[node.gpu_type] += node.gpus
    tenants = [QueueName(f"t{i}") for i in range(rng.randint(2, 4))]
    queues = [Queue(QueueName("root"))]
    deep = rng.random() < 0.4
    if deep:
        queues.append(Queue(QueueName("org"), QueueName("root"), shares=_shares(rng, capacity, 2)))
    overcommit = rng.random() < 0.1
    for index, tenant in enumerate(tenants):
        parent = QueueName("org") if deep and index % 2 else QueueName("root")
        reservation = None
        if pool_leaf is not None and index == 0:
            reservation = Reservation(labels({"pool": "res"}), lend_idle=rng.random() < 0.6)
        queues.append(
            Queue(
                tenant,
                parent,
                namespaces=(tenant,),
                shares=_shares(rng, capacity, 1 if overcommit else len(tenants)),
                reservation=reservation,
                min_runtime_seconds=rng.choice([0.0, 0.0, 30.0]),
                preemption_notice=rng.choice([0.0, 0.0, 20.0]),  # victims weighed at the moment they stop
            )
        )
    arrivals: dict[int, list[Job]] = {}
    durations: dict[JobKey, int] = {}
    count = 0
    for cycle in sorted({0, *(rng.randint(0, 12) for _ in range(rng.randint(1, 4)))}):
        for _ in range(rng.randint(2, 10) if cycle == 0 else rng.randint(1, 4)):
            # the first tenant floods the idle cluster, the others arrive later and must reclaim
            tenant = rng.choice(tenants[:1] * 3 + tenants) if cycle == 0 else rng.choice(tenants)
            gpu_type = rng.choice([B200, B200, B200, RTX, None])
            per_replica = rng.choice([1, 2, 4] if gpu_type == RTX else [1, 2, 4, 8, 8, 8])
            key = JobKey(f"{tenant}/j{count}")
            count += 1
            aged = rng.random() < 0.15  # older than the starvation threshold when it arrives
            arrivals.setdefault(cycle, []).append(
                Job(
                    key=key,
                    namespace=tenant,
                    replicas=rng.choice([1, 1, 1, 2, 2, 3, 4]),
                    gpus_per_replica=per_replica,
                    cpu_millis_per_replica=rng.choice([0, 8_000]),
                    gpu_type=gpu_type,
                    priority=rng.choice([Priority.TRAIN] * 6 + [Priority.BUILD, Priority.INFERENCE]),
                    required_level=rng.choice([None, None, "leaf", "spine"]),
                    preferred_level=rng.choice([None, None, "leaf"]),
                    tolerations=(("gpu", "Exists", "", ""),) if rng.random() < 0.2 else (),
                    submitted=cycle * SECONDS_PER_CYCLE - (2 * POLICY.starvation_seconds if aged else 0),
                    checkpoint_interval=rng.choice([None, None, 30.0, 70.0]),
                    movable=rng.random() < 0.25,  # consolidation may move it whatever it saved
                )
            )
            if rng.random() < 0.2:  # elastic: a gang of 1 to 3 that grows to up to 6
                most = rng.randint(2, 6)
                arrivals[cycle][-1] = replace(
                    arrivals[cycle][-1], replicas=most, min_replicas=min(rng.randint(1, 3), most - 1)
                )
            if rng.random() < 0.3:
                durations[key] = rng.randint(2, 10)
            if rng.random() < 0.5:  # a runtime limit: at or above its duration (the operator ends it there)
                least = durations.get(key, rng.randint(2, 10))
                limit = rng.choice([least, least, least + rng.randint(1, 5)]) * SECONDS_PER_CYCLE
                arrivals[cycle][-1] = replace(arrivals[cycle][-1], runtime_limit=limit)
    if rng.random() < 0.35:  # fragmentation: small jobs scattered over the leaves, then a gang needing a whole one
        leaves: dict[str, int] = {}
        for node in nodes:
            if node.gpu_type == B200 and node.ready and not node.taints:
                leaves[node.domains[1]] = leaves.get(node.domains[1], 0) + 1
        if leaves:
            for leaf in sorted(leaves):
                key = JobKey(f"{rng.choice(tenants)}/scattered-{leaf}")
                arrivals.setdefault(0, []).append(
                    Job(key, key.split("/")[0], 1, 8, gpu_type=B200, movable=rng.random() < 0.7,
                        checkpoint_interval=rng.choice([None, 30.0]), submitted=0.0)
                )  # fmt: skip
            tenant = rng.choice(tenants)
            arrive = rng.randint(4, 8)
            gang = Job(JobKey(f"{tenant}/whole-leaf"), tenant, max(leaves.values()), 8, gpu_type=B200,
                       required_level="leaf", submitted=arrive * SECONDS_PER_CYCLE)  # fmt: skip
            arrivals.setdefault(arrive, []).append(gang)
    half_life = rng.choice([0.0, 0.0, 5.0, 20.0, 200.0]) * SECONDS_PER_CYCLE  # short: shares move within the run
    return Scenario(seed, tuple(nodes), tuple(queues), arrivals, durations, rng.randint(1, 3), half_life)


def _shares(rng: random.Random, capacity: Counter[GPUType], tenants: int) -> dict[GPUType, Share]:
    shares = {}
    for gpu_type, gpus in capacity.items():
        guaranteed = rng.choice([0, gpus // tenants, gpus // (2 * tenants)])
        limit = rng.choice([None, None, guaranteed + rng.choice([0, 8, 16])])
        shares[gpu_type] = Share(guaranteed, limit, rng.randint(0, 3))
    return shares


@dataclass
class Run:
    """What happened in a run, and what went wrong."""

    scenario: Scenario
    cycles: int = 0
    failures: list[str] = field(default_factory=list)
    evictions: int = 0

    def fail(self, cycle: int, message: str) -> None:
        self.failures.append(f"cycle {cycle}: {message}")


def run(scenario: Scenario, *, max_cycles: int = 80) -> Run:
    """Runs the core on its own output until the cluster settles; every problem is a failure."""
    result = Run(scenario)
    jobs: dict[JobKey, Job] = {}
    terminating: dict[JobKey, int] = {}  # cycles left until an evicted job's pods are gone
    shrinking: dict[tuple[JobKey, int], int] = {}  # the same for replicas an elastic job gave back
    started_cycle: dict[JobKey, int] = {}
    nominations: dict[JobKey, tuple[NodeName, ...]] = {}
    reservations: dict[JobKey, tuple[NodeName, ...]] = {}
    last_event = 0
    last_arrival = max(scenario.arrivals)
    evicted_since_event: set[tuple[JobKey, Reason]] = set()
    quiet = 0
    queues = scenario.queues
    usage: dict[QueueName, float] = {}
    over_quota: dict[QueueName, int] = {}
    for cycle in range(max_cycles):
        now = cycle * SECONDS_PER_CYCLE
        events = False
        for job in scenario.arrivals.get(cycle, []):
            jobs[job.key] = job
            events = True
        for key in [k for k, left in terminating.items() if left <= 0]:
            del terminating[key]
            jobs[key] = replace(jobs[key], placement=(), started=None, terminating=False, leaving=())
            for part in [part for part in shrinking if part[0] == key]:
                del shrinking[part]
        for part in [part for part, left in shrinking.items() if left <= 0]:
            del shrinking[part]
            key, rank = part
            if key in jobs:
                job = jobs[key]
                placement = tuple(None if r == rank else node for r, node in enumerate(job.placement))
                jobs[key] = replace(job, placement=placement, leaving=tuple(r for r in job.leaving if r != rank))
        for key, started in list(started_cycle.items()):
            duration = scenario.durations.get(key)
            limit = jobs[key].runtime_limit
            ended = duration is not None and cycle - started >= duration
            if limit is not None and (cycle - started) * SECONDS_PER_CYCLE >= limit:
                ended = True  # the operator ends a job at its runtime limit
            if ended and key not in terminating:
                del jobs[key], started_cycle[key]
                for part in [part for part in shrinking if part[0] == key]:
                    del shrinking[part]
                events = True
        if events:
            last_event = cycle
            evicted_since_event.clear()
        for key in list(jobs):
            wanted = nominations.get(key, ())
            if jobs[key].nominated != wanted:
                jobs[key] = replace(jobs[key], nominated=wanted)
            kept = reservations.get(key, ())
            if jobs[key].reserved != kept:
                jobs[key] = replace(jobs[key], reserved=kept)
        if scenario.half_life:  # the usage of the cycles so far, as the operator keeps it
            usage = fairshare.remember(usage, over_quota, SECONDS_PER_CYCLE if cycle else 0.0, scenario.half_life)
            queues = tuple(replace(q, usage=usage.get(q.name, 0.0)) for q in scenario.queues)
        snap = Snapshot(scenario.nodes, queues, tuple(jobs.values()))
        decisions = schedule(snap, POLICY, now=now)
        over_quota = {
            name: sum(max(n.allocated - n.guaranteed, 0) for n in per_type.values())
            for name, per_type in decisions.queues.items()
        }
        result.cycles = cycle + 1
        check_cycle(result, cycle, snap, decisions, now)
        nominations = dict(decisions.nominations)
        reservations = {key: reserved.nodes for key, reserved in decisions.reserved.items()}
        for eviction in decisions.evictions:
            for name in [f"{eviction.job}#{rank}" for rank in eviction.ranks] or [eviction.job]:
                if (name, eviction.reason) in evicted_since_event:
                    result.fail(cycle, f"{name} evicted twice ({eviction.reason}) with no event in between")
                evicted_since_event.add((JobKey(name), eviction.reason))
            result.evictions += 1
        for stop in [*decisions.evictions, *decisions.releases]:
            job = jobs[stop.job]
            if stop.ranks:  # an elastic job shrinks: those replicas stop, the rest runs on
                jobs[stop.job] = replace(job, leaving=tuple(sorted({*job.leaving, *stop.ranks})))
                for rank in stop.ranks:
                    shrinking[(stop.job, rank)] = scenario.termination_cycles
                continue
            jobs[stop.job] = replace(job, terminating=True)
            terminating[stop.job] = scenario.termination_cycles
            started_cycle.pop(stop.job, None)
        for bind in decisions.binds:
            job = jobs[bind.job]
            current = job.placement or (None,) * job.replicas
            if bind.ranks:
                placed = tuple(
                    dict(zip(bind.ranks, bind.nodes, strict=True)).get(rank, node) for rank, node in enumerate(current)
                )
            else:
                given = iter(bind.nodes)
                placed = tuple(node if node is not None else next(given) for node in current)
            grown = replace(job, placement=placed, nominated=())
            if not job.running and grown.running:
                grown = replace(grown, started=now)
                started_cycle[bind.job] = cycle
            jobs[bind.job] = grown
        for key in terminating:
            terminating[key] -= 1
        for part in shrinking:
            shrinking[part] -= 1
        active = decisions.binds or decisions.evictions or decisions.releases or terminating or nominations
        active = active or shrinking
        protected = any(
            job.running
            and not job.terminating
            and now - (job.started or 0) < _queue_of(scenario, job).min_runtime_seconds
            for job in jobs.values()
            if _queue_of(scenario, job) is not None
        )
        finishing = any(key in scenario.durations for key in started_cycle)
        quiet = 0 if active else quiet + 1
        if cycle >= last_arrival and quiet >= 2 and not protected and not finishing:
            check_complete(result, cycle, Snapshot(scenario.nodes, queues, tuple(jobs.values())), now)
            return result
        if cycle - max(last_event, last_arrival) > SETTLE_CYCLES and active:
            result.fail(cycle, f"no fixpoint {SETTLE_CYCLES} cycles after the last event")
            return result
    result.fail(max_cycles, "the run did not settle")
    return result


def _limit_of(scenario: Scenario, job: Job) -> float | None:
    queue = _queue_of(scenario, job)
    queues = {q.name: q for q in scenario.queues}
    return runtime_limit(job.runtime_limit, queue.name if queue else None, queues)[0]


def _queue_of(scenario: Scenario, job: Job) -> Queue | None:
    for queue in scenario.queues:
        if job.namespace in queue.namespaces:
            return queue
    return None


# -- invariants after every cycle ---------------------------------------------------------------


def check_cycle(result: Run, cycle: int, snap: Snapshot, decisions: Decisions, now: float) -> None:
    nodes = {node.name: node for node in snap.nodes}
    jobs = {job.key: job for job in snap.jobs}
    queues = {queue.name: queue for queue in snap.queues}
    used: dict[NodeName, list[int]] = {name: [0, 0, 0] for name in nodes}

    def take(job: Job, names: Iterable[NodeName | None]) -> None:
        for name in names:
            if name is not None:
                entry = used[name]
                entry[0] += job.gpus_per_replica
                entry[1] += job.cpu_millis_per_replica
                entry[2] += job.memory_bytes_per_replica

    for job in snap.jobs:
        take(job, job.placement)
    bound = {bind.job for bind in decisions.binds}
    evicted_now = {e.job for e in decisions.evictions} | {r.job for r in decisions.releases}
    for bind in decisions.binds:
        job = jobs[bind.job]
        current = job.placement or (None,) * job.replicas
        if bind.ranks:  # an elastic job: its waiting gang whole, or replicas above its running gang
            gang = [r for r in range(job.gang) if current[r] is None]
            free = {r for r, node in enumerate(current) if node is None and r not in job.leaving}
            if (
                job.terminating
                or len(bind.ranks) != len(bind.nodes)
                or not set(bind.ranks) <= free
                or not set(gang) <= set(bind.ranks)
            ):
                result.fail(cycle, f"bind of {bind.job} (ranks {bind.ranks}) is not its gang or growth of it")
        else:
            waiting = sum(1 for n in job.placement if n is None) + job.replicas - len(job.placement)
            if job.terminating or len(bind.nodes) != waiting or not bind.nodes:
                result.fail(cycle, f"bind of {bind.job} is not its whole gang ({len(bind.nodes)} of {waiting})")
        take(job, bind.nodes)
        placed = [n for n in job.placement if n is not None] + list(bind.nodes)
        types = {nodes[n].gpu_type for n in placed}
        if job.gpus_per_replica and (len(types) != 1 or (job.gpu_type is not None and types != {job.gpu_type})):
            result.fail(cycle, f"{bind.job} ({job.gpu_type}) bound to GPU types {types}")
        if job.required_level is not None:
            level = POLICY.topology_levels.index(job.required_level)
            domains = {nodes[n].domains[level] for n in placed}
            if len(domains) != 1:
                result.fail(cycle, f"{bind.job} requires one {job.required_level} but spans {sorted(domains)}")
        for name in bind.nodes:
            node = nodes[name]
            if not node.ready or not tolerates(job.tolerations, node.taints):
                result.fail(cycle, f"{bind.job} bound to {name}, which is not ready or not tolerated")
            owner = next(
                (q for q in queues.values() if q.reservation and matches(q.reservation.node_selector, node.labels)),
                None,
            )
            mine = owner is not None and job.namespace in owner.namespaces
            if owner is not None and not mine and not (owner.reservation and owner.reservation.lend_idle):
                result.fail(cycle, f"{bind.job} bound to {name} of a pool reserved for {owner.name}")
            growth = bind.ranks and bind.ranks[bind.nodes.index(name)] >= job.gang  # always preemptible
            if owner is not None and not mine and not job.priority.preemptible and not growth:
                result.fail(cycle, f"non-preemptible {bind.job} bound to lent node {name}")
    # backfill never delays a reservation: at its start the gang fits its nodes beside what still runs there
    placed_now = {b.job: b.nodes for b in decisions.binds}
    for key, reserved in decisions.reserved.items():
        if key in placed_now:
            result.fail(cycle, f"{key} bound and still reserved")
        left = {name: [nodes[name].gpus, nodes[name].cpu_millis, nodes[name].memory_bytes] for name in reserved.nodes}
        for job in snap.jobs:
            if job.key in evicted_now:
                continue
            names = [n for r, n in enumerate(job.placement) if n is not None and r not in job.leaving]
            names += list(placed_now.get(job.key, ()))  # replicas an elastic job gave back are on their way
            if not names or job.terminating:
                continue
            limit = _limit_of(result.scenario, job)
            started = job.started if job.running and job.started is not None else now
            end = math.inf if limit is None else max(started + limit, now)  # a start at inf: once they end
            if end <= reserved.start:
                continue
            for name in names:
                if name in left:
                    left[name][0] -= job.gpus_per_replica
                    left[name][1] -= job.cpu_millis_per_replica
                    left[name][2] -= job.memory_bytes_per_replica
        gang = jobs[key]
        for name in reserved.nodes:
            left[name][0] -= gang.gpus_per_replica
            left[name][1] -= gang.cpu_millis_per_replica
            left[name][2] -= gang.memory_bytes_per_replica
        short = sorted(name for name, free in left.items() if min(free) < 0)
        if short:
            result.fail(cycle, f"{key} reserved from {reserved.start} on {short}, which will not have room then")
    for key, reserved in decisions.reserved.items():
        job = jobs[key]
        if job.running or len(reserved.nodes) != job.gang or reserved.start < now:
            result.fail(cycle, f"reservation of {key} is not for a waiting whole gang from now on: {reserved}")
    for name, (gpus, cpu, memory) in used.items():
        node = nodes[name]
        if gpus > node.gpus or cpu > node.cpu_millis or memory > node.memory_bytes:
            result.fail(cycle, f"node {name} over-committed: {gpus} of {node.gpus} GPUs")
    evicted = {e.job for e in decisions.evictions if not e.ranks}
    shrunk = {e.job: set(e.ranks) for e in decisions.evictions if e.ranks}
    for eviction in decisions.evictions:
        job = jobs[eviction.job]
        if eviction.reason is Reason.MOVED and not eviction.ranks:
            if eviction.job not in decisions.nominations or eviction.beneficiary not in decisions.nominations:
                result.fail(cycle, f"{eviction.job} moved for {eviction.beneficiary} without a place for both")
            if not job.priority.preemptible or not job.running or job.terminating:
                result.fail(cycle, f"{eviction.job} moved but not a running preemptible job")
        if eviction.ranks:  # growth is always preemptible, but only growth: never part of the gang
            held_ranks = {r for r, node in enumerate(job.placement) if node is not None and r not in job.leaving}
            if min(eviction.ranks) < job.gang or not set(eviction.ranks) <= held_ranks:
                result.fail(cycle, f"{eviction.job} shrunk by ranks {eviction.ranks}: not all growth it holds")
            continue
        if not job.priority.preemptible:
            result.fail(cycle, f"non-preemptible {eviction.job} evicted")
        if job.terminating or not job.running:
            result.fail(cycle, f"{eviction.job} evicted but not running")
        queue = _queue_of(result.scenario, job)
        if (
            eviction.reason in {Reason.RECLAIMED, Reason.PREEMPTED}
            and queue is not None
            and now - (job.started or 0) < queue.min_runtime_seconds
        ):
            result.fail(cycle, f"{eviction.job} evicted inside its queue's minRuntimeSeconds")
    held: Counter[tuple[QueueName, GPUType]] = Counter()
    for job in snap.jobs:
        queue = decisions.job_queues.get(job.key)
        if queue is None or job.terminating or job.key in evicted or not job.gpus_per_replica:
            continue
        gone = shrunk.get(job.key, set())
        gone = gone | set(job.leaving)  # replicas given back, still stopping, count no more (as terminating jobs)
        placed = [n for r, n in enumerate(job.placement) if n is not None and r not in gone]
        if job.key in bound:
            placed += list(next(b.nodes for b in decisions.binds if b.job == job.key))
        if not placed:
            continue
        gpu_type = nodes[placed[0]].gpu_type
        if gpu_type is None:
            continue
        path = _path(queues, queue)
        for name in path:
            held[(name, gpu_type)] += len(placed) * job.gpus_per_replica
    claimed = Counter(held)  # capacity nominated for a queue's jobs is on its way to that queue
    # a queue's own higher-priority job taking its train jobs is its choice, and lent capacity is only on loan:
    # neither counts against the fairness of a reclaim in the same cycle
    for eviction in decisions.evictions:
        if eviction.reason in {Reason.PREEMPTED, Reason.RETURNED_LENT_CAPACITY}:
            victim = jobs[eviction.job]
            gpu_type = nodes[next(n for n in victim.placement if n is not None)].gpu_type
            if gpu_type is not None:
                freed = len(eviction.ranks) * victim.gpus_per_replica if eviction.ranks else _held_gpus(victim)
                for name in _path(queues, decisions.job_queues[eviction.job]):
                    claimed[(name, gpu_type)] += freed
    for key, names in decisions.nominations.items():
        job, gpu_type = jobs[key], nodes[names[0]].gpu_type
        if gpu_type is not None and key in decisions.job_queues:
            for name in _path(queues, decisions.job_queues[key]):
                claimed[(name, gpu_type)] += job.gang * job.gpus_per_replica
    for (name, gpu_type), gpus in held.items():
        limit = queues[name].shares.get(gpu_type, Share()).limit
        if limit is not None and gpus > limit:
            result.fail(cycle, f"queue {name} holds {gpus} {gpu_type}, over its limit of {limit}")
    for eviction in decisions.evictions:
        if eviction.reason is not Reason.RECLAIMED:
            continue
        victim_queue = decisions.job_queues[eviction.job]
        gpu_type = nodes[next(n for n in jobs[eviction.job].placement if n is not None)].gpu_type
        assert gpu_type is not None
        beneficiary_path = set(_path(queues, decisions.job_queues[eviction.beneficiary]))
        for name in _path(queues, victim_queue):
            share = decisions.queues[name][gpu_type].fair_share
            if name not in beneficiary_path and claimed[(name, gpu_type)] < share:
                result.fail(
                    cycle, f"reclaim pushed queue {name} to {claimed[(name, gpu_type)]} {gpu_type}, below {share}"
                )
    _check_growth(result, cycle, snap, decisions)
    explained = {e.job: e for e in decisions.pending}
    free_before = sum(
        node.gpus - used_before
        for node in snap.nodes
        if node.ready
        for used_before in [sum(j.gpus_per_replica for j in snap.jobs for n in j.placement if n == node.name)]
    )
    for job in snap.jobs:
        if job.terminating or job.running or job.key in bound:
            continue
        explanation = explained.get(job.key)
        if explanation is None:
            result.fail(cycle, f"waiting job {job.key} has no explanation")
            continue
        message = explanation.message
        for count, per in re.findall(r"needs (\d+) x (\d+) ", message):
            if int(per) != job.gpus_per_replica or int(count) > job.replicas:
                result.fail(cycle, f"{job.key} ({job.replicas} x {job.gpus_per_replica}) explained as {message!r}")
        for free in re.findall(r"; (\d+) \S+ free in the cluster", message):
            if int(free) > free_before:
                result.fail(cycle, f"{job.key}: {free} free claimed, at most {free_before} were: {message!r}")
        names = re.search(r"evicting \d+ jobs? \(([^)]*)\)", message)
        if names is not None:
            claimed = set(names.group(1).split(", "))
            actual = {e.job for e in decisions.evictions if e.beneficiary == job.key}
            if claimed != actual:
                result.fail(cycle, f"{job.key} says it evicts {sorted(claimed)}, the decisions say {sorted(actual)}")


_WANTS = frozenset({Reason.INSUFFICIENT_CAPACITY, Reason.TOPOLOGY_UNSATISFIABLE, Reason.WAITING_FOR_OLDER_JOB,
                    Reason.WAITING_FOR_RECLAIM, Reason.GANG_INCOMPLETE})  # fmt: skip


def _check_growth(result: Run, cycle: int, snap: Snapshot, decisions: Decisions) -> None:
    """An elastic job grows only into capacity that no job waiting for capacity could start on now while its
    queue is at or below its fair share (nor a job of its own queue): without this cycle's growth, no such job
    fits where it may go (outside other gangs' reservations)."""
    grown: dict[JobKey, list[NodeName]] = {}
    jobs = {job.key: job for job in snap.jobs}
    for bind in decisions.binds:
        job = jobs[bind.job]
        for rank, name in zip(bind.ranks, bind.nodes, strict=True) if bind.ranks else ():
            if rank >= job.gang:
                grown.setdefault(bind.job, []).append(name)
    if not grown:
        return
    queues = {queue.name: queue for queue in snap.queues}
    growing_queues = {decisions.job_queues.get(key) for key in grown}
    statement = Statement(list(snap.nodes))  # what is held after the cycle, growth left out (victims still hold)
    for job in snap.jobs:
        placed = [n for n in job.placement if n is not None]
        if placed:
            statement.load(job, placed, (), firm=False)
    for bind in decisions.binds:
        job = jobs[bind.job]
        kept = [
            n for r, n in (zip(bind.ranks, bind.nodes, strict=True) if bind.ranks else enumerate(bind.nodes))
            if not bind.ranks or r < job.gang
        ]  # fmt: skip
        if kept:
            statement.hold(replace(job, key=JobKey(f"{job.key}@bound")), kept, (), firm=False)
    with_growth = Statement(list(snap.nodes))  # and what is held with it
    for job in snap.jobs:
        placed = [n for n in job.placement if n is not None]
        if placed:
            with_growth.load(job, placed, (), firm=False)
    for bind in decisions.binds:
        with_growth.hold(replace(jobs[bind.job], key=JobKey(f"{bind.job}@bound")), bind.nodes, (), firm=False)
    for explanation in decisions.pending:
        other, queue = jobs[explanation.job], explanation.queue
        if explanation.reason not in _WANTS or queue is None or not other.gpus_per_replica:
            continue
        reserved = {n for key, r in decisions.reserved.items() if key != other.key for n in r.nodes}
        for gpu_type in [other.gpu_type] if other.gpu_type else sorted({n.gpu_type for n in snap.nodes if n.gpu_type}):
            status = decisions.queues[queue].get(gpu_type)
            if status is None or (queue not in growing_queues and status.allocated > status.fair_share):
                continue
            nodes = [n for n in _candidates(queues, snap.nodes, other, queue, gpu_type) if n.name not in reserved]
            if placement.place(other, other.gang, statement, nodes, POLICY, gpu_type=gpu_type).nodes is None:
                continue  # it could not start now even without the growth
            if placement.place(other, other.gang, with_growth, nodes, POLICY, gpu_type=gpu_type).nodes is None:
                result.fail(cycle, f"growth of {sorted(grown)} took capacity {other.key} could start on now")


def _held_gpus(job: Job) -> int:
    return sum(job.gpus_per_replica for node in job.placement if node is not None)


def _path(queues: dict[QueueName, Queue], name: QueueName) -> list[QueueName]:
    path: list[QueueName] = []
    current: QueueName | None = name
    while current is not None and current in queues and current not in path:
        path.append(current)
        current = queues[current].parent
    return path


# -- completeness at the end ---------------------------------------------------------------------


def check_complete(result: Run, cycle: int, snap: Snapshot, now: float) -> None:
    """No queue below its fair share while a job of it that fits the share waits and evictable surplus
    elsewhere (or free capacity) would make room for it."""
    decisions = schedule(snap, POLICY, now=now)
    nodes = {node.name: node for node in snap.nodes}
    queues = {queue.name: queue for queue in snap.queues}
    reasons = {e.job: e.reason for e in decisions.pending}
    messages = {e.job: e.message for e in decisions.pending}
    for job in sorted(snap.jobs, key=lambda j: j.key):
        if job.placement or job.terminating or reasons.get(job.key) in NEVER or not job.gpus_per_replica:
            continue
        queue = decisions.job_queues.get(job.key)
        if queue is None:
            continue
        types = [job.gpu_type] if job.gpu_type else sorted({n.gpu_type for n in snap.nodes if n.gpu_type})
        held_type = re.match(r"(\S+) is held for ", messages.get(job.key, ""))
        if held_type is not None:  # a job of any type held back for an older job waits for that type
            types = [GPUType(held_type.group(1))]
        for gpu_type in types:
            status = decisions.queues[queue].get(gpu_type)
            if status is None or status.allocated + job.gang * job.gpus_per_replica > status.fair_share:
                continue
            if not _within_quota(queues, decisions, queue, job, gpu_type, snap, nodes):
                continue
            held_back = reasons.get(job.key) is Reason.WAITING_FOR_OLDER_JOB
            room = _reclaimable(snap, decisions, queues, nodes, job, queue, gpu_type, now, held_back=held_back)
            if room is not None:
                result.fail(
                    cycle,
                    f"{job.key} waits ({reasons.get(job.key)}) with queue {queue} at {status.allocated} of its "
                    f"fair share {status.fair_share} {gpu_type}, yet evicting {room or 'nothing'} would make room",
                )
                return


def _within_quota(
    queues: dict[QueueName, Queue],
    decisions: Decisions,
    queue: QueueName,
    job: Job,
    gpu_type: GPUType,
    snap: Snapshot,
    nodes: dict[NodeName, Node],
) -> bool:
    for name in _path(queues, queue):
        share = queues[name].shares.get(gpu_type, Share())
        need = job.gang * job.gpus_per_replica
        if share.limit is not None and decisions.queues[name][gpu_type].allocated + need > share.limit:
            return False
    if not job.priority.preemptible:
        firm = sum(
            j.gpus
            for j in snap.jobs
            if j.running
            and not j.priority.preemptible
            and j.namespace in queues[queue].namespaces
            and nodes[j.placement[0] or NodeName("")].gpu_type == gpu_type
        )
        if firm + job.gang * job.gpus_per_replica > queues[queue].shares.get(gpu_type, Share()).guaranteed:
            return False
    return True


def _candidates(
    queues: dict[QueueName, Queue], nodes: Iterable[Node], job: Job, queue: QueueName, gpu_type: GPUType
) -> list[Node]:
    owner = next((name for name in _path(queues, queue) if queues[name].reservation is not None), None)
    result = []
    for node in sorted(nodes, key=lambda n: n.name):
        if not node.ready or node.gpu_type != gpu_type or not tolerates(job.tolerations, node.taints):
            continue
        pool = next(
            (q.name for q in queues.values() if q.reservation and matches(q.reservation.node_selector, node.labels)),
            None,
        )
        if (owner is not None and pool != owner) or (owner is None and pool is not None):
            continue
        result.append(node)
    return result


def _reclaimable(
    snap: Snapshot,
    decisions: Decisions,
    queues: dict[QueueName, Queue],
    nodes: dict[NodeName, Node],
    job: Job,
    queue: QueueName,
    gpu_type: GPUType,
    now: float,
    *,
    held_back: bool,
) -> list[str] | None:
    """Victims (whole gangs) whose eviction the rules allow and that make room for ``job``; None if no
    greedy order finds any."""
    candidates = _candidates(queues, snap.nodes, job, queue, gpu_type)
    reserved = {n for key, booked in decisions.reserved.items() if key != job.key for n in booked.nodes}
    candidates = [node for node in candidates if node.name not in reserved]  # another gang's, from its start
    if not candidates:
        return None
    own_path = set(_path(queues, queue))
    owner = next((name for name in _path(queues, queue) if queues[name].reservation is not None), None)
    evictable: list[tuple[Job, bool]] = []  # (victim, counts against its queue's fair share)
    for victim in snap.jobs:
        if not victim.running or victim.terminating or not victim.priority.preemptible:
            continue
        victim_queue = decisions.job_queues.get(victim.key)
        if victim_queue is None:
            continue
        on_pool = (
            owner is not None
            and victim_queue not in own_path
            and any(
                (q := queues[owner].reservation) is not None and matches(q.node_selector, nodes[n].labels)
                for n in victim.placement
                if n is not None
            )
        )
        if on_pool:
            evictable.append((victim, False))
            continue
        if now - (victim.started or 0) < queues[victim_queue].min_runtime_seconds:
            continue
        if victim_queue == queue:
            if job.priority > victim.priority:
                evictable.append((victim, False))
            continue
        if nodes[victim.placement[0] or NodeName("")].gpu_type != gpu_type:
            continue
        evictable.append((victim, True))
    orders = [
        sorted(evictable, key=lambda item: (item[0].gpus, item[0].key)),
        sorted(evictable, key=lambda item: (-item[0].gpus, item[0].key)),
        sorted(evictable, key=lambda item: (min(n or "" for n in item[0].placement), item[0].key)),
    ]
    for order in [[], *orders]:
        statement = Statement(list(snap.nodes))
        for other in snap.jobs:
            placed = [n for n in other.placement if n is not None]
            if placed:
                statement.load(other, placed, (), firm=False)
        taken: Counter[QueueName] = Counter()
        chosen: list[str] = []
        freed: set[NodeName] = set()
        for victim, fair in order:
            if fair:
                path = [n for n in _path(queues, decisions.job_queues[victim.key]) if n not in own_path]
                if any(
                    decisions.queues[n][gpu_type].allocated - taken[n] - _held_gpus(victim)
                    < decisions.queues[n][gpu_type].fair_share
                    for n in path
                ):
                    continue
                for n in path:
                    taken[n] += _held_gpus(victim)
            statement.release(victim)
            chosen.append(victim.key)
            freed.update(n for n in victim.placement if n is not None)
            # a job held back for an older one may use what its victims free, not the free capacity kept
            usable = [n for n in candidates if n.name in freed] if held_back else candidates
            if placement.place(job, job.gang, statement, usable, POLICY, gpu_type=gpu_type).nodes is not None:
                return chosen
        if not order and placement.place(job, job.replicas, statement, candidates, POLICY, gpu_type=gpu_type).nodes:
            # free capacity kept for an older job is the starvation hold, not a failure of reclaim
            return None if held_back else chosen
    return None
