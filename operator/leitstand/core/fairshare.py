"""Hierarchical fair share by water-filling, per GPU type.

At every level of the GPUQuota tree the parent's share (the cluster's
capacity, for the roots) is divided among its children:

1. each child first receives its ``guaranteed``, capped by its demand and limit;
2. what is left goes to children with unmet demand in proportion to their
   ``weight`` (over-quota weight), each capped by its limit and demand; when a
   cap frees some, the split is repeated among the others;
3. the exact (rational) shares are turned into whole GPUs by largest
   remainder, ties broken by queue name.

Fairness remembers: each queue carries its decayed over-quota usage
(``Queue.usage``, GPU-seconds above its guarantee, halved every half-life:
``remember``). Among siblings, a queue whose share of their usage ``u`` is above
its share of their over-quota weight ``e`` splits the surplus with its weight
times ``e / u`` (``remembered_weights``): a queue that used twice its share
of what was shared competes with half its weight. Guarantees never change.

A child's demand is its subtree's demand. Exact fractions keep the result
independent of input order and free of floating-point drift. Pure.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from leitstand.core.model import GPUType, Queue, QueueName, Share

_DEFAULT_SHARE = Share()


@dataclass(frozen=True, slots=True)
class Claim:
    """One child's claim on a parent's capacity."""

    name: QueueName
    guaranteed: int
    limit: int | None
    weight: int | Fraction
    demand: int

    @property
    def cap(self) -> int:
        return self.demand if self.limit is None else min(self.demand, self.limit)


def _largest_remainder(exact: Mapping[QueueName, Fraction], total: int) -> dict[QueueName, int]:
    whole = {name: math.floor(value) for name, value in exact.items()}
    leftover = total - sum(whole.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - whole[name]), name))
    for name in by_remainder[: max(leftover, 0)]:
        whole[name] += 1
    return whole


def divide(capacity: int, claims: Sequence[Claim]) -> dict[QueueName, int]:
    """Whole GPUs for each claim out of ``capacity``; never above a claim's cap.

    Guarantees that together exceed the capacity are scaled down in proportion.
    """
    caps = {claim.name: claim.cap for claim in claims}
    base = {claim.name: Fraction(min(claim.guaranteed, caps[claim.name])) for claim in claims}
    promised = sum(base.values(), Fraction(0))
    if promised > capacity:
        scale = Fraction(capacity) / promised
        exact = {name: value * scale for name, value in base.items()}
        return _largest_remainder(exact, capacity)
    exact = dict(base)
    remaining = Fraction(capacity) - promised
    active = {c.name: c.weight for c in claims if c.weight > 0 and exact[c.name] < caps[c.name]}
    while remaining > 0 and active:
        total_weight = sum(active.values())
        saturated = [
            name for name, weight in active.items() if exact[name] + remaining * weight / total_weight >= caps[name]
        ]
        if not saturated:
            for name, weight in active.items():
                exact[name] += remaining * weight / total_weight
            remaining = Fraction(0)
            break
        for name in saturated:
            remaining -= caps[name] - exact[name]
            exact[name] = Fraction(caps[name])
            del active[name]
    handed_out = capacity - remaining
    return _largest_remainder(exact, math.floor(handed_out))


def _tree(queues: Sequence[Queue]) -> tuple[list[QueueName], dict[QueueName, list[QueueName]]]:
    """Roots and children, sorted by name; queues caught in a parent cycle are left out."""
    names = {queue.name for queue in queues}
    children: dict[QueueName, list[QueueName]] = {queue.name: [] for queue in queues}
    roots = []
    for queue in sorted(queues, key=lambda q: q.name):
        if queue.parent is None or queue.parent not in names:
            roots.append(queue.name)
        else:
            children[queue.parent].append(queue.name)
    return roots, children


def fair_shares(
    queues: Sequence[Queue],
    capacity: Mapping[GPUType, int],
    demand: Mapping[QueueName, Mapping[GPUType, int]],
) -> dict[QueueName, dict[GPUType, int]]:
    """Every queue's fair share per GPU type, for a leaf ``demand`` and the cluster ``capacity``.

    Inner queues receive their subtree's share. Queues unreachable from a root
    (a parent cycle) get nothing. Deterministic whatever the order of ``queues``.
    """
    by_name = {queue.name: queue for queue in queues}
    roots, children = _tree(queues)
    result: dict[QueueName, dict[GPUType, int]] = {queue.name: {} for queue in queues}
    for gpu_type in sorted(capacity):
        subtree = _subtree_demand(roots, children, by_name, demand, gpu_type)
        stack = [(roots, capacity[gpu_type])]
        while stack:
            names, available = stack.pop()
            given_shares = {name: by_name[name].shares.get(gpu_type, _DEFAULT_SHARE) for name in names}
            weights = remembered_weights(
                {name: share.weight for name, share in given_shares.items()},
                {name: by_name[name].usage for name in names},
            )
            claims = [
                Claim(name, share.guaranteed, share.limit, weights[name], subtree[name])
                for name, share in given_shares.items()
            ]
            for name, given in divide(available, claims).items():
                result[name][gpu_type] = given
                if children[name]:
                    stack.append((children[name], given))
    return result


def _subtree_demand(
    roots: list[QueueName],
    children: Mapping[QueueName, list[QueueName]],
    by_name: Mapping[QueueName, Queue],
    demand: Mapping[QueueName, Mapping[GPUType, int]],
    gpu_type: GPUType,
) -> dict[QueueName, int]:
    """Each queue's demand for ``gpu_type``: its own (leaves) or its children's, each capped by limit."""
    result: dict[QueueName, int] = {}

    def visit(name: QueueName) -> int:
        kids = children[name]
        total = demand.get(name, {}).get(gpu_type, 0) if not kids else 0
        for child in kids:
            limit = by_name[child].shares.get(gpu_type, _DEFAULT_SHARE).limit
            child_demand = visit(child)
            total += child_demand if limit is None else min(child_demand, limit)
        result[name] = total
        return total

    for root in roots:
        visit(root)
    return result


def remembered_weights(weights: Mapping[QueueName, int], usage: Mapping[QueueName, float]) -> dict[QueueName, Fraction]:
    """Siblings' over-quota weights, each lowered by how far its share of their decayed usage exceeds its share
    of their weight: ``w · min(1, (w / Σw) / (U / ΣU))``. Without usage, the weights as given. Exact: usage is
    taken in whole GPU-seconds."""
    used = {name: Fraction(round(max(usage.get(name, 0.0), 0.0))) for name in weights}
    total_used = sum(used.values(), Fraction(0))
    total_weight = sum(weights.values())
    result: dict[QueueName, Fraction] = {}
    for name, weight in weights.items():
        if not total_used or not used[name] or not weight:
            result[name] = Fraction(weight)
        else:
            result[name] = Fraction(weight) * min(Fraction(1), weight * total_used / (total_weight * used[name]))
    return result


def remember(
    usage: Mapping[QueueName, float],
    over_quota: Mapping[QueueName, int],
    elapsed: float,
    half_life: float,
) -> dict[QueueName, float]:
    """Decayed usage ``elapsed`` seconds later, when each queue held ``over_quota`` GPUs above its guarantee all
    that time: the old usage halves every ``half_life``, and what was held since adds in, decayed as it went
    (the exact integral). ``half_life`` 0 keeps no memory: every usage is 0."""
    if half_life <= 0:
        return {name: 0.0 for name in {*usage, *over_quota}}
    elapsed = max(elapsed, 0.0)
    kept = 0.5 ** (elapsed / half_life)
    added = half_life / math.log(2) * (1.0 - kept)  # ∫₀^elapsed 2^(-(elapsed - t) / half_life) dt
    return {
        name: usage.get(name, 0.0) * kept + max(over_quota.get(name, 0), 0) * added for name in {*usage, *over_quota}
    }
