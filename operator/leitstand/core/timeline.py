"""When nodes free up: each node's free resources over time, from the running jobs' expected ends.

A ``Timeline`` starts from a statement (what is free now) and the expected end
of every job holding resources: a running job ends at ``started`` plus its
runtime limit, a job bound this cycle at ``now`` plus its limit, a terminating
job now; a job without a limit never ends (and is named when it blocks a plan).
Each node's profile is a step function over time. What jobs without a limit
hold comes back at ``math.inf``, so a plan can still say which nodes, and which
jobs must end first. A reservation blocks its nodes whole from its start until
its job would end, and a forecast takes each planned job's resources from its
start to its end, so profiles may dip: ``earliest`` asks for room over the
job's whole runtime, one sweep over the moments the candidates' free resources
change, each moment checked by placement on what stays free from then on.

Pure: times are numbers on the caller's clock; nothing here reads one.
"""

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from leitstand.core import placement
from leitstand.core.index import Holder, Index
from leitstand.core.model import GPUType, Job, JobKey, Node, NodeName, Planned, Policy
from leitstand.core.statements import Free, Statement, replicas_in

Point = list[float]  # [from time, free GPUs, free CPU millis, free memory bytes]


@dataclass(frozen=True, slots=True)
class Never:
    """No start can be planned: even once every job on the candidates ended, the gang would not fit (or,
    ``over_share``, it would start with its queue above its fair share)."""

    over_share: bool = False


class Timeline:
    """Free resources of nodes over time; see the module docstring."""

    def __init__(self, now: float, nodes: Mapping[NodeName, Node], policy: Policy) -> None:
        self.now = now
        self.nodes = nodes
        self.policy = policy
        self._points: dict[NodeName, list[Point]] = {}
        self.versions: dict[NodeName, int] = {}  # bumped whenever a node's profile changes
        self.version = 0  # bumped whenever any node's profile changes
        self.unbounded: dict[NodeName, list[JobKey]] = {}  # jobs with no limit, by node they hold

    @classmethod
    def of(cls, statement: Statement, holders: Iterable[Holder], now: float, policy: Policy) -> "Timeline":
        """The timeline of ``statement``, whose ``holders`` end as each says (``Index.holders``)."""
        timeline = cls(now, statement.nodes, policy)
        unbounded = timeline.unbounded
        changes: dict[NodeName, dict[float, list[int]]] = {}  # per node, per end: what comes back then
        for job, holding, end in holders:  # at the scale of 100,000 pods, every lookup here counts
            nodes = holding.nodes
            if end is None:
                for name in nodes if len(nodes) == 1 else dict.fromkeys(nodes):
                    named = unbounded.get(name)
                    if named is None:
                        unbounded[name] = [job.key]
                    else:
                        named.append(job.key)
                end = math.inf
            elif end < now:
                end = now
            gpus, cpu, memory = job.gpus_per_replica, job.cpu_millis_per_replica, job.memory_bytes_per_replica
            for name in nodes:
                per_end = changes.get(name)
                if per_end is None:
                    changes[name] = {end: [gpus, cpu, memory]}
                    continue
                delta = per_end.get(end)
                if delta is None:
                    per_end[end] = [gpus, cpu, memory]
                else:
                    delta[0] += gpus
                    delta[1] += cpu
                    delta[2] += memory
        for name, free in statement.free.items():
            points: list[Point] = [[now, free.gpus, free.cpu_millis, free.memory_bytes]]
            per_end = changes.get(name)
            if per_end:
                for at in sorted(per_end) if len(per_end) > 1 else per_end:
                    gpus, cpu, memory = per_end[at]
                    last = points[-1]
                    if at <= now:
                        last[1] += gpus
                        last[2] += cpu
                        last[3] += memory
                    else:
                        points.append([at, last[1] + gpus, last[2] + cpu, last[3] + memory])
            timeline._points[name] = points
        return timeline

    @classmethod
    def of_cycle(cls, index: Index, statement: Statement, *, likely: bool = False) -> "Timeline":
        """The timeline of what ``statement`` holds, each holder ending at its limit (``Index.expected_end``)
        or, ``likely``, when its queue's history says it will (``Index.likely_end``)."""
        return cls.of(statement, index.holders(statement.holdings, likely=likely), index.now, index.policy)

    # -- questions ----------------------------------------------------------------------------

    def free_at(self, name: NodeName, at: float) -> Point:
        points = self._points[name]
        return points[max(bisect.bisect_right(points, at, key=lambda p: p[0]) - 1, 0)]

    def fits_on(self, job: Job, nodes: Sequence[NodeName], length: float | None = None) -> float | None:
        """The first moment from which the replicas of ``job`` fit on ``nodes`` (one per replica) for
        ``length`` seconds (None: for good); None: never."""
        counts: dict[NodeName, int] = {}
        for name in nodes:
            counts[name] = counts.get(name, 0) + 1
        if any(name not in self._points for name in counts):
            return None
        moments = sorted({max(p[0], self.now) for name in counts for p in self._points[name]})
        for at in moments:
            until = math.inf if length is None else at + length
            if all(
                replicas_in(job, *self.free_during(name, at, until), count) >= count for name, count in counts.items()
            ):
                return at
        return None

    def earliest(
        self,
        job: Job,
        candidates: Sequence[Node],
        gpu_type: GPUType | None,
        *,
        length: float | None = None,
        not_before: float | None = None,
    ) -> Planned | Never:
        """The earliest start of ``job``'s whole gang on ``candidates``, in one domain of its required level,
        with room for ``length`` seconds from then (None: for good), never before ``not_before``.

        One sweep over the moments the candidates' free resources change: each
        node's room (replicas that fit) changes the room of its domain (or, without
        a required level, of all the candidates together); at the first moment a
        domain has room for every replica, ``placement.place`` picks the nodes as
        it would were that moment now, on what stays free for ``length``.
        """
        replicas = job.replicas
        level = self.policy.level_index(job.required_level)
        since = self.now if not_before is None else max(not_before, self.now)
        changes: dict[float, list[tuple[str, int, Node]]] = {}  # moment -> (domain, change of room, node)
        for node in candidates:
            if level is not None and (level >= len(node.domains) or not node.domains[level]):
                continue
            domain = node.domains[level] if level is not None else ""
            points = self._points.get(node.name)
            if not points:
                continue
            if len(points) > 1 and points[1][0] <= since:
                points = points[max(bisect.bisect_right(points, since, key=lambda p: p[0]) - 1, 0) :]
            before = 0
            for at, gpus, cpu, memory in points:  # from the step in force at ``since``
                fit = replicas_in(job, int(gpus), int(cpu), int(memory), replicas)
                if fit != before:
                    changes.setdefault(max(at, since), []).append((domain, fit - before, node))
                    before = fit
        room: dict[str, int] = {}
        fit_of: dict[NodeName, int] = {}
        roomy: dict[str, dict[NodeName, Node]] = {}  # per domain, the nodes with room at the moment
        for at in sorted(changes):
            for domain, change, node in changes[at]:
                room[domain] = room.get(domain, 0) + change
                fit = fit_of[node.name] = fit_of.get(node.name, 0) + change
                if fit > 0:
                    roomy.setdefault(domain, {})[node.name] = node
                else:
                    roomy.get(domain, {}).pop(node.name, None)
            if any(room[d] >= replicas for d, change, _node in changes[at] if change > 0 or at == since):
                until = math.inf if length is None else at + length
                ready = [node for d in sorted(room) if room[d] >= replicas for node in roomy[d].values()]
                start = self._place_at(job, sorted(ready, key=lambda n: n.name), gpu_type, at, until)
                if start is not None:
                    return start
        return Never()

    def first_fit(self, job: Job, name: NodeName, length: float | None, since: float) -> float | None:
        """The first moment from ``since`` at which one replica of ``job`` fits ``name`` for ``length``
        seconds (None: for good); None when it never does."""
        points = self._points.get(name)
        if not points:
            return None
        first = max(bisect.bisect_right(points, since, key=lambda p: p[0]) - 1, 0)
        for index in range(first, len(points)):
            at = max(points[index][0], since)
            until = math.inf if length is None else at + length
            if replicas_in(job, *self.free_during(name, at, until), 1) > 0:
                return at
        return None

    def _place_at(
        self, job: Job, candidates: Sequence[Node], gpu_type: GPUType | None, at: float, until: float
    ) -> Planned | None:
        """Nodes for ``job`` from ``at`` to ``until``, chosen by the placement rules on what stays free then."""
        then = Statement(candidates)
        for node in candidates:
            gpus, cpu, memory = self.free_during(node.name, at, until)
            then.free[node.name] = Free(gpus, cpu, memory)
        outcome = placement.place(job, job.replicas, then, candidates, self.policy, gpu_type=gpu_type)
        if outcome.nodes is None:
            return None
        level = self.policy.level_index(job.required_level)
        domain = None
        if level is not None:
            first = self.nodes[outcome.nodes[0]]
            domain = first.domains[level] if level < len(first.domains) else None
        return Planned(at, outcome.nodes, domain, self.blockers(outcome.nodes) if at == math.inf else ())

    def free_during(self, name: NodeName, at: float, until: float) -> tuple[int, int, int]:
        """What stays free on ``name`` from ``at`` until ``until``: the least of each resource."""
        points = self._points.get(name)
        if not points:
            return 0, 0, 0
        index = max(bisect.bisect_right(points, at, key=lambda p: p[0]) - 1, 0)
        gpus, cpu, memory = points[index][1], points[index][2], points[index][3]
        for point in points[index + 1 :]:
            if point[0] >= until:
                break
            gpus, cpu, memory = min(gpus, point[1]), min(cpu, point[2]), min(memory, point[3])
        return int(gpus), int(cpu), int(memory)

    def blockers(self, nodes: Iterable[NodeName]) -> tuple[JobKey, ...]:
        """The jobs without a runtime limit on ``nodes``, by key."""
        return tuple(sorted({key for name in nodes for key in self.unbounded.get(name, ())}))

    # -- planning -----------------------------------------------------------------------------

    def take(self, job: Job, nodes: Sequence[NodeName], until: float | None, *, since: float | None = None) -> None:
        """``job`` holds one replica on each of ``nodes`` from ``since`` (None: now) until ``until`` (None: no
        limit)."""
        counts: dict[NodeName, int] = {}
        for name in nodes:
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            gpus, cpu, memory = (
                count * job.gpus_per_replica, count * job.cpu_millis_per_replica, count * job.memory_bytes_per_replica
            )  # fmt: skip

            def less(point: Point, gpus: int = gpus, cpu: int = cpu, memory: int = memory) -> Point:
                return [point[0], point[1] - gpus, point[2] - cpu, point[3] - memory]

            self._lower(name, until, less, since=since)
            if until is None:
                self.unbounded.setdefault(name, []).append(job.key)

    def reserve(self, planned: Planned, limit: float | None) -> None:
        """Blocks ``planned``'s nodes whole from its start until the gang, running ``limit`` seconds
        (None: no limit), would end; a start at ``math.inf`` blocks nothing that can be planned."""
        self.block(planned.nodes, None if limit is None else planned.start + limit, since=planned.start)

    def block(self, nodes: Iterable[NodeName], until: float | None, *, since: float | None = None) -> None:
        """Nothing else may use ``nodes`` from ``since`` (None: now) until ``until`` (None: no limit)."""
        for name in dict.fromkeys(nodes):
            self._lower(
                name, until, lambda point: [point[0], min(point[1], 0), min(point[2], 0), min(point[3], 0)], since=since
            )

    def _lower(
        self, name: NodeName, until: float | None, lowered: Callable[[Point], Point], *, since: float | None = None
    ) -> None:
        """Lowers ``name``'s profile from ``since`` (None: now) until ``until`` (None: ``math.inf``, when jobs
        without a limit end)."""
        points = self._points.get(name)
        until = math.inf if until is None else until
        if points is None or until <= self.now or since == math.inf:  # nothing to lower before the end of time
            return
        self.versions[name] = self.versions.get(name, 0) + 1
        self.version += 1
        for moment in (until, since):
            if moment is None or moment <= self.now:
                continue
            index = bisect.bisect_right(points, moment, key=lambda p: p[0])
            if points[index - 1][0] != moment:  # a step of its own, holding what the node had then
                points.insert(index, [moment, *points[index - 1][1:]])
        for i, point in enumerate(points):
            if point[0] >= until:
                break
            if since is None or point[0] >= since:
                points[i] = lowered(point)
