"""Consolidation: cheap-to-move jobs leave one domain, all or nothing, so a waiting gang finds it whole."""

from dataclasses import replace

from leitstand.core.model import Policy, Priority, Reason
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import (
    a_job,
    a_queue,
    a_root,
    apply,
    bound,
    evicted,
    messages,
    nodes_in_leaf,
    reasons,
    snapshot,
)

NOW = 100_000.0
STARTED = NOW - 7200  # long enough ago to have settled


def leaves() -> list:  # type: ignore[type-arg]
    return nodes_in_leaf("su-1", 4) + nodes_in_leaf("su-2", 4)


def queues() -> list:  # type: ignore[type-arg]
    return [a_root(), a_queue("acme").with_share(32), a_queue("soofi").with_share(32)]


def scattered(**saved: float) -> list:  # type: ignore[type-arg]
    """One small job in each leaf, both saved ``saved`` seconds ago (by default just now)."""
    last = NOW - saved.get("ago", 60.0)
    return [
        a_job("acme/small-1").of(1, 8).running_on("su-1-n1", since=STARTED).checkpointing(every=3600, last=last),
        a_job("acme/small-2").of(1, 8).running_on("su-2-n1", since=STARTED).checkpointing(every=3600, last=last),
    ]


def test_a_gang_waiting_for_a_whole_leaf_gets_one_by_moving_a_job_that_just_saved_its_work() -> None:
    gang = a_job("soofi/llm").of(4, 8).requiring("leaf")
    decisions = schedule(snapshot(leaves(), queues(), [*scattered(), gang]), now=NOW)
    assert evicted(decisions) == {"acme/small-1": "Moved"}
    (move,) = decisions.evictions
    assert move.beneficiary == "soofi/llm"
    assert move.message == "moved to free leaf su-1 for soofi/llm; it moves to 1 other node"
    assert reasons(decisions) == {"soofi/llm": "WaitingForReclaim"}
    assert messages(decisions)["soofi/llm"].startswith(
        "moved 1 job (acme/small-1) to free leaf su-1 for soofi/llm; starts once they are gone"
    )
    assert set(decisions.nominations["soofi/llm"]) == {f"su-1-n{i}" for i in range(1, 5)}
    assert decisions.nominations["acme/small-1"][0].startswith("su-2-")


def test_the_moved_job_and_the_gang_both_start_where_the_plan_put_them_and_nothing_moves_again() -> None:
    snap = snapshot(leaves(), queues(), [*scattered(), a_job("soofi/llm").of(4, 8).requiring("leaf")])
    first = schedule(snap, now=NOW)
    target = first.nominations["acme/small-1"]
    snap = apply(snap, first, now=NOW)  # the moved job's pods are gone at once here
    second = schedule(snap, now=NOW + 10)
    assert bound(second) == {"acme/small-1": target, "soofi/llm": first.nominations["soofi/llm"]}
    assert second.evictions == ()
    third = schedule(apply(snap, second, now=NOW + 10), now=NOW + 20)
    assert third.binds == ()
    assert third.evictions == ()


def test_while_a_moved_job_terminates_the_nodes_it_moves_to_stay_its_own() -> None:
    snap = snapshot(leaves(), queues(), [*scattered(), a_job("soofi/llm").of(4, 8).requiring("leaf")])
    first = schedule(snap, now=NOW)
    target = first.nominations["acme/small-1"]
    leaving = [
        replace(j, terminating=True, nominated=target) if j.key == "acme/small-1" else
        replace(j, nominated=first.nominations.get(j.key, ())) for j in snap.jobs
    ]  # fmt: skip
    filler = a_job("acme/filler").of(1, 8).build()  # wants exactly one node: not the moved job's
    decisions = schedule(replace(snap, jobs=(*leaving, filler)), now=NOW + 10)
    assert decisions.nominations["acme/small-1"] == target
    assert bound(decisions).get("acme/filler") != target


def test_jobs_that_saved_nothing_recently_or_must_not_be_preempted_are_not_moved() -> None:
    gang = a_job("soofi/llm").of(4, 8).requiring("leaf")
    stale = schedule(snapshot(leaves(), queues(), [*scattered(ago=3000), gang]), now=NOW)
    assert stale.evictions == ()
    assert reasons(stale) == {"soofi/llm": "TopologyUnsatisfiable"}
    firm = [j.with_priority(Priority.BUILD) for j in scattered()]
    assert schedule(snapshot(leaves(), queues(), [*firm, gang]), now=NOW).evictions == ()
    # a job that says it may be moved needs no checkpoint
    movable = [replace(j.build(), checkpoint_interval=None, last_checkpoint=None, movable=True) for j in scattered()]
    assert evicted(schedule(snapshot(leaves(), queues(), [*movable, gang]), now=NOW)) == {"acme/small-1": "Moved"}


def test_a_plan_whose_moved_jobs_cannot_all_be_placed_elsewhere_at_once_moves_nothing() -> None:
    jobs = [
        *scattered(),
        a_job("acme/wide").of(3, 8).running_on("su-2-n2", "su-2-n3", "su-2-n4", since=STARTED),
        a_job("soofi/llm").of(4, 8).requiring("leaf"),
    ]
    # su-1 would be whole without small-1, but su-2 has no room for it (and wide saved nothing: it stays);
    # reclaim may still take what acme holds above its share: that is not a move
    decisions = schedule(snapshot(leaves(), queues(), jobs), now=NOW)
    assert Reason.MOVED not in {e.reason for e in decisions.evictions}


def test_moves_stay_within_the_budget_of_lost_work() -> None:
    gang = a_job("soofi/llm").of(4, 8).requiring("leaf")
    jobs = [*scattered(ago=500), gang]  # each would lose 8 GPUs x 500 s
    tight = Policy(move_budget=8 * 400.0)
    assert schedule(snapshot(leaves(), queues(), jobs), tight, now=NOW).evictions == ()
    assert evicted(schedule(snapshot(leaves(), queues(), jobs), now=NOW)) == {"acme/small-1": "Moved"}
    assert schedule(snapshot(leaves(), queues(), jobs), Policy(moves_per_cycle=0), now=NOW).evictions == ()


def test_a_job_that_just_started_is_not_moved() -> None:
    fresh = [replace(j.build(), started=NOW - 60) for j in scattered()]
    gang = a_job("soofi/llm").of(4, 8).requiring("leaf")
    assert schedule(snapshot(leaves(), queues(), [*fresh, gang]), now=NOW).evictions == ()


def test_a_gang_over_its_fair_share_moves_nobody() -> None:
    small = [a_root(), a_queue("acme").with_share(32), a_queue("soofi").with_share(0, weight=0)]
    gang = a_job("soofi/llm").of(4, 8).requiring("leaf")
    busy = [*scattered(), a_job("acme/more").of(4, 8)]  # acme wants everything: soofi's share is 0
    decisions = schedule(snapshot(leaves(), small, [*busy, gang]), now=NOW)
    assert Reason.MOVED not in {e.reason for e in decisions.evictions}
