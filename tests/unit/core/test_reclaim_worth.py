"""Reclaim that weighs the work it destroys (``Policy.reclaim_work_per_wait``): a reclaim waits while the room
its job likely gets on its own comes so soon that waiting for it costs less (its GPUs x that wait x the ratio)
than the work its victims would lose, and at most ``reclaim_max_wait``."""

from dataclasses import replace

import pytest

from leitstand.core.model import Policy, Snapshot, utc_text
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import (
    a_job,
    a_queue,
    a_root,
    apply,
    evicted,
    messages,
    nodes_in_leaf,
    reasons,
    snapshot,
)

NOW = 1_800_000_000.0
HOUR = 3600.0
WEIGHING = Policy(reclaim_work_per_wait=1.0, reclaim_max_wait=4 * HOUR)


def contested(waited: float, *, young_limit: float | None = 1.5 * HOUR, saves: float | None = None) -> Snapshot:
    """Queue a holds both nodes (twice its share): a/old ran 10 h of 12, a/young 1 h of ``young_limit``
    (8 GPU-hours at risk); b's job of one node has waited ``waited``."""
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8), a_queue("b").with_share(8)]
    young = a_job("a/young").of(1, 8).running_on("su-1-n2", since=NOW - HOUR).checkpointing(every=saves)
    jobs = [
        a_job("a/old").of(1, 8).running_on("su-1-n1", since=NOW - 10 * HOUR).limited(12 * HOUR),
        young.limited(young_limit) if young_limit is not None else young,
        a_job("b/wants").of(1, 8).submitted_at(NOW - waited),
    ]
    return snapshot(nodes, queues, jobs)


def test_off_by_default_a_queue_below_its_share_reclaims_at_once() -> None:
    assert evicted(schedule(contested(10.0), now=NOW)) == {"a/young": "Reclaimed"}


def test_it_waits_for_room_that_frees_soon_rather_than_throw_away_more_work() -> None:
    # a/young likely ends in half an hour: 8 GPUs x 0.5 h of waiting against 8 GPU-hours of its work
    decisions = schedule(contested(10.0), WEIGHING, now=NOW)
    assert evicted(decisions) == {}
    assert reasons(decisions)["b/wants"] == "InsufficientCapacity"
    assert (
        "reclaiming 1 job of queues above their fair share would throw away 8.0 GPU-hours of their work, more than "
        f"waiting for the room likely free from {utc_text(NOW + HOUR / 2)} costs; it waits for that, and reclaims "
        f"by {utc_text(NOW - 10 + 4 * HOUR)} at the latest"
    ) in messages(decisions)["b/wants"]


@pytest.mark.parametrize(
    ("young_limit", "ratio", "goes"),
    [
        (1.5 * HOUR, 1.0, False),  # room in 0.5 h: 4 GPU-hours of waiting < 8 at risk
        (1.5 * HOUR, 2.0, True),  # weighed double, the wait costs as much as the work: reclaim
        (3 * HOUR, 1.0, True),  # room only in 2 h (both end then): 16 GPU-hours of waiting
        (None, 1.0, True),  # a/young has no limit and a/old ends in 2 h
    ],
)
def test_it_reclaims_when_the_room_that_frees_on_its_own_is_too_far_off(
    young_limit: float | None, ratio: float, goes: bool
) -> None:
    policy = replace(WEIGHING, reclaim_work_per_wait=ratio)
    decisions = schedule(contested(10.0, young_limit=young_limit), policy, now=NOW)
    assert evicted(decisions) == ({"a/young": "Reclaimed"} if goes else {})


def test_nothing_that_ever_frees_means_reclaim_at_once() -> None:
    snap = contested(10.0, young_limit=None)
    snap = replace(snap, jobs=tuple(replace(job, runtime_limit=None) for job in snap.jobs))
    assert evicted(schedule(snap, WEIGHING, now=NOW)) == {"a/young": "Reclaimed"}


def test_a_victim_that_just_saved_its_work_is_reclaimed_at_once() -> None:
    # a/young ran exactly one hour and saves hourly: it risks nothing
    decisions = schedule(contested(10.0, saves=HOUR), WEIGHING, now=NOW)
    assert evicted(decisions) == {"a/young": "Reclaimed"}


def test_past_the_longest_wait_it_reclaims_whatever_is_lost() -> None:
    assert evicted(schedule(contested(4 * HOUR - 1), WEIGHING, now=NOW)) == {}
    assert evicted(schedule(contested(4 * HOUR), WEIGHING, now=NOW)) == {"a/young": "Reclaimed"}


def test_cycle_after_cycle_it_takes_the_room_that_frees_and_nobody_is_evicted() -> None:
    snap = contested(0.0)
    binds: list[tuple[float, str]] = []
    for minute in range(0, 61):
        now = NOW + minute * 60.0
        ended = {job.key for job in snap.jobs if job.running and job.runtime_limit and job.started is not None
                 and job.started + job.runtime_limit <= now}  # fmt: skip
        snap = replace(snap, jobs=tuple(job for job in snap.jobs if job.key not in ended))
        decisions = schedule(snap, WEIGHING, now=now)
        assert decisions.evictions == (), f"evicted at minute {minute}"
        binds += [(now - NOW, bind.job) for bind in decisions.binds]
        snap = apply(snap, decisions, now=now)
    assert binds == [(HOUR / 2, "b/wants")]
