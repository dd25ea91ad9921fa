"""Topology-aware gang placement: where the waiting replicas of one job go, if anywhere.

The rules, each a plain function that ``place`` applies in turn:

- a replica fits a node when its GPUs, CPU and memory do (``fitting``, through
  ``Statement.replicas_fitting``);
- with a ``required`` level, every replica goes into one domain of that level;
  among domains with room, the tightest wins, so large domains stay whole for
  large jobs (``tightest_domain``); with a finer preferred level too, the domain
  that packs the job into the fewest preferred domains wins first
  (``best_packed_domain``);
- with a ``preferred`` level, the replicas go into as few domains as possible,
  the last one chosen by best fit (``pack_domains``);
- inside a domain, replicas fill partly used nodes first (``binpack_order``,
  ``binpack_quick``), keeping whole nodes free.

``place`` answers with the nodes for every waiting replica or with why not;
it reads the statement and never changes it. Pure and deterministic.
"""

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from leitstand.core.model import Job, Node, NodeName, Policy, Reason
from leitstand.core.statements import Statement

Candidate = tuple[Node, int]  # a node and how many replicas fit on it


@dataclass(frozen=True, slots=True)
class Outcome:
    """``nodes`` (one per waiting replica) on success; otherwise a reason and a message."""

    nodes: tuple[NodeName, ...] | None
    reason: Reason | None = None
    message: str = ""


def describe(job: Job, count: int, gpu_type: str | None) -> str:
    """``16 x 8 b200`` (or CPU-only wording) for messages."""
    if job.gpus_per_replica:
        return f"{count} x {job.gpus_per_replica} {gpu_type or 'GPU'}"
    return f"{count} CPU-only replica{'s' if count != 1 else ''}"


def fitting(
    statement: Statement, nodes: Sequence[Node], job: Job, eligible: AbstractSet[NodeName] | None = None
) -> list[Candidate]:
    """The nodes with room for at least one replica, with how many fit on each, in no set order (callers group
    and sort them). For a GPU job, read from the nodes with enough free GPUs only (on a busy cluster, most
    are full); ``eligible`` is the set of ``nodes``' names, when the caller has it."""
    if not job.gpus_per_replica:
        return [(node, fit) for node in nodes if (fit := statement.replicas_fitting(node.name, job))]
    names = eligible if eligible is not None else {node.name for node in nodes}
    result = []
    for group in statement.by_free_gpus(job.gpus_per_replica):
        for _cpu, name in group:
            if name in names and (fit := statement.replicas_fitting(name, job)):
                result.append((statement.nodes[name], fit))
    return result


def _group(candidates: Sequence[Candidate], level: int) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for node, fit in candidates:
        domain = node.domains[level] if level < len(node.domains) else ""
        if domain:
            groups.setdefault(domain, []).append((node, fit))
    return groups


def _room(group: Sequence[Candidate]) -> int:
    return sum(fit for _node, fit in group)


def tightest_domain(groups: dict[str, list[Candidate]], count: int) -> str | None:
    """The domain with room for ``count`` replicas that has the least room; ties by name."""
    fitting_domains = [(_room(group), domain) for domain, group in groups.items() if _room(group) >= count]
    return min(fitting_domains)[1] if fitting_domains else None


def best_packed_domain(groups: dict[str, list[Candidate]], count: int, preferred: int) -> str | None:
    """The required domain where ``count`` replicas span the fewest ``preferred`` domains, then the tightest.

    A job that requires a spine and prefers a leaf goes to the spine with a whole
    free leaf for it, not to the tightest spine that would split it over two.
    """
    best: tuple[int, int, str] | None = None
    for domain, group in groups.items():
        room = _room(group)
        if room < count:
            continue
        spread = len(pack_domains(_group(group, preferred), count))
        if best is None or (spread, room, domain) < best:
            best = (spread, room, domain)
    return best[2] if best is not None else None


def pack_domains(groups: dict[str, list[Candidate]], count: int) -> list[str]:
    """Domains to fill, in order: as few as possible, the last chosen by best fit."""
    rooms = {domain: _room(group) for domain, group in groups.items()}
    chosen: list[str] = []
    remaining = count
    while remaining > 0 and rooms:
        best_fit = [(room, domain) for domain, room in rooms.items() if room >= remaining]
        if best_fit:
            chosen.append(min(best_fit)[1])
            break
        largest = min(rooms.items(), key=lambda item: (-item[1], item[0]))[0]
        chosen.append(largest)
        remaining -= rooms.pop(largest)
    return chosen


def binpack_order(statement: Statement, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Partly used nodes first (least free GPUs, then CPU), then by name.

    An overcommitted node (more GPUs held than it has) counts as none free, as in
    the statement's free-GPU groups that ``binpack_quick`` reads.
    """
    return sorted(
        candidates,
        key=lambda item: (
            max(statement.free[item[0].name].gpus, 0),
            statement.free[item[0].name].cpu_millis,
            item[0].name,
        ),
    )


def binpack_quick(
    statement: Statement, eligible: AbstractSet[NodeName], job: Job, count: int
) -> tuple[NodeName, ...] | None:
    """``count`` replicas in ``binpack_order``, read from the statement's free-GPU groups; None if they do not fit.

    The same choice as sorting every candidate, without reading every node: the
    groups are visited fewest free GPUs first, and within one, by free CPU then name.
    """
    chosen: list[NodeName] = []
    for group in statement.by_free_gpus(job.gpus_per_replica):
        for _cpu, name in group:
            if name not in eligible:
                continue
            fit = statement.replicas_fitting(name, job)
            if fit <= 0:
                continue
            chosen.extend([name] * min(fit, count - len(chosen)))
            if len(chosen) == count:
                return tuple(chosen)
    return None


def place(
    job: Job,
    count: int,
    statement: Statement,
    nodes: Sequence[Node],
    policy: Policy,
    *,
    gpu_type: str | None,
    pinned_domain: str | None = None,
    eligible: AbstractSet[NodeName] | None = None,
) -> Outcome:
    """Nodes for ``count`` waiting replicas of ``job`` among ``nodes``, or why they do not fit.

    ``pinned_domain`` keeps a partly placed gang inside the required domain its
    bound replicas already use. ``eligible`` is the set of ``nodes``' names, when
    the caller has it at hand.
    """
    what = describe(job, count, gpu_type)
    if job.required_level is not None and job.required_level not in policy.topology_levels:
        levels = ", ".join(policy.topology_levels)
        return Outcome(None, Reason.TOPOLOGY_UNSATISFIABLE, f"unknown topology level {job.required_level!r} ({levels})")
    unconstrained = job.required_level is None and (
        policy.level_index(job.preferred_level) is None
        and (
            job.preferred_level is not None or count == 1 or policy.level_index(policy.default_preferred_level) is None
        )
    )
    if unconstrained:  # plain bin packing: the quick search finds what sorting every candidate would
        eligible = eligible if eligible is not None else {n.name for n in nodes}
        quick = binpack_quick(statement, eligible, job, count)
        if quick is not None:
            return Outcome(quick)
    candidates = fitting(statement, nodes, job, eligible)
    room = _room(candidates)
    if room < count:
        return Outcome(
            None,
            Reason.INSUFFICIENT_CAPACITY,
            f"needs {what}; room for {room} on {len(candidates)} of {len(nodes)} eligible nodes",
        )
    required = policy.level_index(job.required_level)
    preferred = policy.level_index(job.preferred_level)
    if preferred is None and job.preferred_level is None and count > 1:
        preferred = policy.level_index(policy.default_preferred_level)
    if required is not None:
        groups = _group(candidates, required)
        if pinned_domain is not None:
            groups = {pinned_domain: groups.get(pinned_domain, [])}
        if preferred is not None and preferred > required:
            domain = best_packed_domain(groups, count, preferred)
        else:
            domain = tightest_domain(groups, count)
        if domain is None:
            best = max(((_room(group), name) for name, group in groups.items()), default=(0, "none"))
            return Outcome(
                None,
                Reason.TOPOLOGY_UNSATISFIABLE,
                f"needs {what} in one {job.required_level}; the best {job.required_level} ({best[1]}) "
                f"has room for {best[0]}",
            )
        candidates = groups[domain]
    if preferred is not None and (required is None or preferred > required):
        groups = _group(candidates, preferred)
        ordered = [item for domain in pack_domains(groups, count) for item in binpack_order(statement, groups[domain])]
        if _room(ordered) < count:  # nodes without a label for the preferred level fill the rest
            placed = {node.name for node, _fit in ordered}
            ordered += binpack_order(statement, [item for item in candidates if item[0].name not in placed])
    else:
        ordered = binpack_order(statement, candidates)
    chosen: list[NodeName] = []
    for node, fit in ordered:
        take = min(fit, count - len(chosen))
        chosen.extend([node.name] * take)
        if len(chosen) == count:
            break
    return Outcome(tuple(chosen))
