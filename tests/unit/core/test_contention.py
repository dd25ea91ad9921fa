"""The faults that only show over many cycles, each as a named scenario, and the liveness harness.

Every scenario runs the core on its own output (``liveness.run`` for random
ones, ``settle`` here): binds start, evicted jobs terminate for a cycle while
holding their nodes, nominations are stored with the jobs.
"""

import os
from collections import Counter
from dataclasses import replace

import pytest

from leitstand.core.model import Decisions, GPUType, Job, Policy, Priority, Snapshot
from leitstand.core.scheduling import schedule
from tests.unit.core import liveness
from tests.unit.core.builders import (
    a_job,
    a_node,
    a_queue,
    a_root,
    bound,
    evicted,
    messages,
    nodes_in_leaf,
    reasons,
    snapshot,
)

B200 = GPUType("b200")
NOW = 100_000.0
DEFAULT = Policy()


def settle(
    snap: Snapshot, *, policy: Policy = DEFAULT, cycles: int = 40, now: float = NOW
) -> tuple[Snapshot, int, Counter[str], Decisions]:
    """Runs cycles until nothing changes; evicted jobs take one cycle to terminate. Returns the final
    snapshot, the cycles it took, evictions per job, and the last decisions."""
    evictions: Counter[str] = Counter()
    leaving: set[str] = set()
    for cycle in range(cycles):
        decisions = schedule(snap, policy, now=now + cycle)
        was_leaving = bool(leaving)
        jobs = []
        nominated = decisions.nominations
        for job in snap.jobs:
            if job.key in leaving:
                job = replace(job, placement=(), started=None, terminating=False)
                leaving.discard(job.key)
            jobs.append(replace(job, nominated=nominated.get(job.key, ())))
        snap = replace(snap, jobs=tuple(jobs))
        by_key = {job.key: job for job in snap.jobs}
        for eviction in decisions.evictions:
            evictions[eviction.job] += 1
            by_key[eviction.job] = replace(by_key[eviction.job], terminating=True)
            leaving.add(eviction.job)
        for bind in decisions.binds:
            job = by_key[bind.job]
            given = iter(bind.nodes)
            placement = tuple(n if n is not None else next(given) for n in (job.placement or (None,) * job.replicas))
            by_key[bind.job] = replace(job, placement=placement, started=now + cycle, nominated=())
        snap = replace(snap, jobs=tuple(by_key.values()))
        if not (decisions.binds or decisions.evictions or decisions.releases or leaving or was_leaving):
            return snap, cycle + 1, evictions, decisions
    raise AssertionError(f"no fixpoint after {cycles} cycles; evictions {dict(evictions)}")


def running(snap: Snapshot) -> set[str]:
    return {job.key for job in snap.jobs if job.running and not job.terminating}


def held(snap: Snapshot) -> Counter[str]:
    gpus: Counter[str] = Counter()
    for job in snap.jobs:
        if job.running and not job.terminating:
            gpus[job.namespace] += job.gpus
    return gpus


# -- 1. reclaim ping-pong between queues -------------------------------------------------------


@pytest.mark.parametrize("older", ["h100", "rtx-pro-6000"])
def test_an_older_job_of_another_gpu_type_does_not_make_reclaim_ping_pong(older: str) -> None:
    nodes = [*nodes_in_leaf("su-1", 2), a_node("rtx-1").with_gpus(4, "rtx-pro-6000").in_leaf("su-9").build()]
    queues = [a_root(), a_queue("a").with_share(8), a_queue("b").with_share(8)]
    jobs = [
        a_job("a/j1").of(1, 8).running_on("su-1-n1", since=NOW - 500),
        a_job("a/j2").of(1, 8).running_on("su-1-n2", since=NOW - 400),
        a_job("b/rtx-holder").of(1, 4, "rtx-pro-6000").running_on("rtx-1", since=NOW - 300),
        a_job("b/older").of(1, 4, older).submitted_at(NOW - 60),
        a_job("b/train").of(1, 8).submitted_at(NOW - 30),
    ]
    final, _cycles, evictions, _d = settle(snapshot(nodes, queues, jobs))
    assert "b/train" in running(final)
    assert max(evictions.values()) == 1  # one eviction, never the ping-pong


# -- 2. lent reserved capacity ------------------------------------------------------------------


def test_capacity_returned_by_a_lent_job_goes_to_the_pool_owner_not_back_to_the_borrower() -> None:
    nodes = nodes_in_leaf("pool", 3, pool="soofi") + nodes_in_leaf("su-1", 2)
    queues = [
        a_root(),
        a_queue("soofi").with_share(5).reserving(pool="soofi", lend=True),
        a_queue("acme").with_share(0, weight=2),
    ]
    jobs = [
        a_job("soofi/tiny").of(1, 1).running_on("pool-n1", since=NOW - 900),
        a_job("acme/gang").of(3, 8).running_on("pool-n2", "pool-n3", "su-1-n1", since=NOW - 900),
        a_job("soofi/pair").of(2, 4).submitted_at(NOW - 20),
        a_job("soofi/whole").of(1, 8).submitted_at(NOW - 10),
    ]
    final, _cycles, evictions, _d = settle(snapshot(nodes, queues, jobs))
    assert {"soofi/pair", "soofi/whole"} <= running(final)
    assert evictions == {"acme/gang": 1}  # returned once, never re-borrowed and returned again


def test_a_job_whose_namespace_lost_its_queue_still_returns_lent_capacity() -> None:
    nodes = [a_node("r1").labelled(pool="res").build(), a_node("s1").build()]
    queues = [a_root(), a_queue("t0").with_share(8).reserving(lend=True, pool="res"), a_queue("t1")]
    jobs = [
        a_job("orphan/v").of(1, 8).running_on("r1", since=0),  # its GPUQuota was deleted while it ran
        a_job("t1/o").of(1, 8).running_on("s1", since=0),
        a_job("t0/w").of(1, 8).submitted_at(50),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=1000)
    assert evicted(decisions) == {"orphan/v": "ReturnedLentCapacity"}
    assert decisions.nominations == {"t0/w": ("r1",)}


def test_completing_a_partly_bound_gang_never_takes_a_nominated_jobs_capacity() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("t0"), a_queue("t1").with_share(8), a_queue("t2").with_share(8)]
    jobs = [
        replace(a_job("t0/v").of(1, 4).running_on("su-1-n1", since=0).build(), terminating=True),
        replace(a_job("t1/a").of(1, 8).submitted_at(10).build(), nominated=("su-1-n1",)),
        a_job("t2/p").of(2, 4).running_on("su-1-n2", None, since=0),  # its second replica needs 4 more GPUs
        a_job("t2/q").of(1, 4).running_on("su-1-n2", since=0),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=100)
    assert decisions.nominations == {"t1/a": ("su-1-n1",)}
    assert "t2/p" not in bound(decisions)


# -- 3. whole victim gangs ----------------------------------------------------------------------


def test_reclaim_takes_whole_equal_age_gangs_spread_over_nodes() -> None:
    nodes = nodes_in_leaf("su-1", 8) + nodes_in_leaf("su-2", 8)
    queues = [a_root(), a_queue("a").with_share(64), a_queue("b").with_share(64)]
    spread = [(f"su-1-n{i + 1}", f"su-2-n{i + 1}") for i in range(8)]  # each gang has one replica in each leaf
    jobs: list[Job] = [
        a_job(f"a/g{i}").of(2, 8).running_on(*pair, since=NOW - 100).build() for i, pair in enumerate(spread)
    ]
    jobs.append(a_job("b/big").of(8, 8).submitted_at(NOW - 10).build())
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert len(decisions.evictions) == 4  # four whole gangs of 16 GPUs, not one replica of each of eight
    final, _cycles, _evictions, _d = settle(snapshot(nodes, queues, jobs))
    assert "b/big" in running(final)
    assert held(final) == {"a": 64, "b": 64}


# -- 4. hopeless jobs ---------------------------------------------------------------------------


def test_jobs_that_can_never_fit_take_no_share_and_no_reclaim_attempt() -> None:
    nodes = [node for leaf in ("su-1", "su-2", "su-3", "su-4") for node in nodes_in_leaf(leaf, 4)]
    queues = [a_root(), a_queue("wide").with_share(48), a_queue("small").with_share(16), a_queue("greedy")]
    jobs: list[Job] = [a_job(f"wide/j{i}").of(5, 8).requiring("leaf").submitted_at(i).build() for i in range(16)]
    jobs += [
        a_job(f"greedy/j{i}").of(1, 8).running_on(node.name, since=NOW - 900).build() for i, node in enumerate(nodes)
    ]
    jobs.append(a_job("small/one").of(1, 8).submitted_at(NOW - 5).build())
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert decisions.queues["wide"][B200].fair_share == 0
    assert reasons(decisions)["wide/j0"] == "Unschedulable"
    assert "the best leaf (su-4) has room for 4 with every node free" in messages(decisions)["wide/j0"]
    assert [e.beneficiary for e in decisions.evictions] == ["small/one"]


# -- 5. jobs on NotReady or cordoned nodes ------------------------------------------------------


def test_a_job_on_a_not_ready_node_does_not_shrink_the_free_count_of_the_rest() -> None:
    nodes = [*nodes_in_leaf("su-1", 2), a_node("su-1-n3").not_ready().build()]
    jobs = [a_job("acme/stuck").of(1, 8).running_on("su-1-n3"), a_job("acme/pair").of(2, 8)]
    decisions = schedule(snapshot(nodes, [a_root(), a_queue("acme")], jobs), now=NOW)
    assert bound(decisions) == {"acme/pair": ("su-1-n1", "su-1-n2")}


# -- 6. explanations carry their own numbers ----------------------------------------------------


def test_an_explanation_names_its_own_replica_count_not_a_cached_one() -> None:
    nodes = [node for leaf in ("su-1", "su-2") for node in nodes_in_leaf(leaf, 8)]
    queues = [a_root(), a_queue("a"), a_queue("b")]
    busy = [f"su-{leaf}-n{i}" for leaf in (1, 2) for i in (1, 2, 3)]  # five nodes free in each leaf
    jobs = [
        a_job("a/busy").of(6, 8).running_on(*busy),
        a_job("a/six").of(6, 8).requiring("leaf").submitted_at(NOW - 3),
        a_job("a/seven").of(7, 8).requiring("leaf").submitted_at(NOW - 2),
        a_job("b/seven").of(7, 8).requiring("leaf").submitted_at(NOW - 1),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), Policy(preemption=False), now=NOW)
    assert messages(decisions)["a/six"].startswith("needs 6 x 8 b200 in one leaf")
    assert messages(decisions)["a/seven"].startswith("needs 7 x 8 b200 in one leaf")
    assert messages(decisions)["b/seven"].startswith("needs 7 x 8 b200 in one leaf")


# -- 8. smaller faults --------------------------------------------------------------------------


def test_preferred_leaf_inside_a_required_spine_wins_over_the_tightest_spine() -> None:
    nodes = (
        nodes_in_leaf("a1", 2, spine="sp-a")
        + nodes_in_leaf("a2", 2, spine="sp-a")  # tight, but only split leaves
        + nodes_in_leaf("b1", 4, spine="sp-b")
        + nodes_in_leaf("b2", 4, spine="sp-b")
    )
    jobs = [
        a_job("acme/a1").of(1, 8).running_on("a1-n1"),
        a_job("acme/a2").of(1, 8).running_on("a2-n1"),
        a_job("acme/b").of(2, 8).running_on("b1-n1", "b1-n2"),
        a_job("acme/new").of(2, 8).requiring("spine").preferring("leaf"),
    ]
    decisions = schedule(snapshot(nodes, [a_root(), a_queue("acme")], jobs), now=NOW)
    assert bound(decisions) == {"acme/new": ("b1-n3", "b1-n4")}


def test_a_parent_cycle_is_named_for_its_namespaces_and_on_the_queue() -> None:
    queues = [a_root(), a_queue("x").under("y"), a_queue("y").under("x"), a_queue("leaf").under("x")]
    jobs = [a_job("x/j").of(1, 8), a_job("leaf/j").of(1, 8)]
    decisions = schedule(snapshot(nodes_in_leaf("su-1", 1), queues, jobs), now=NOW)
    assert reasons(decisions) == {"x/j": "QueueCycle", "leaf/j": "QueueCycle"}
    assert "queue x is in a parent cycle (x -> y -> x)" in messages(decisions)["x/j"]
    assert "queue leaf is below a parent cycle" in decisions.queue_problems["leaf"]
    assert bound(decisions) == {}


def test_a_job_with_no_replicas_is_never_bound() -> None:
    decisions = schedule(
        snapshot(nodes_in_leaf("su-1", 1), [a_root(), a_queue("acme")], [a_job("acme/none").of(0, 8)]), now=NOW
    )
    assert decisions.binds == ()
    assert reasons(decisions) == {"acme/none": "Unschedulable"}


def test_queue_status_separates_allocated_reclaiming_and_pending() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8), a_queue("b").with_share(8)]
    jobs = [
        a_job("a/j1").of(1, 8).running_on("su-1-n1", since=NOW - 500),
        a_job("a/j2").of(1, 8).running_on("su-1-n2", since=NOW - 400),
        a_job("b/one").of(1, 8).submitted_at(NOW - 30),
        a_job("b/two").of(1, 8).submitted_at(NOW - 20),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert len(decisions.evictions) == 1
    a, b = decisions.queues["a"][B200], decisions.queues["b"][B200]
    assert (a.allocated, a.reclaiming, a.pending) == (16, 0, 0)  # the victim still runs until it is gone
    assert (b.allocated, b.reclaiming, b.pending) == (0, 8, 8)


def test_over_committed_guarantees_are_named_for_a_waiting_inference_job() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("big").with_share(1000), a_queue("svc").with_share(8)]
    jobs = [
        a_job("big/b1").of(2, 8).with_priority(Priority.BUILD).running_on("su-1-n1", "su-1-n2"),
        a_job("svc/infer").of(1, 8).with_priority(Priority.INFERENCE),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert (
        "guarantees are over-committed: queues are guaranteed 1008 b200 but the cluster has 16"
        in messages(decisions)["svc/infer"]
    )


# -- 9. convergence of the worked example -------------------------------------------------------


@pytest.mark.parametrize("age", [0.0, 2 * Policy().starvation_seconds])
def test_the_worked_example_converges_within_ten_cycles(age: float) -> None:
    nodes = [node for leaf in range(32) for node in nodes_in_leaf(f"su-{leaf}", 4)][:125]  # 1,000 GPUs
    queues = [
        a_root(),
        a_queue("a").with_share(400, limit=1000, weight=1),
        a_queue("b").with_share(200, limit=500, weight=3),
        a_queue("c").with_share(100, limit=1000, weight=1),
    ]
    names = iter(node.name for node in nodes)
    jobs: list[Job] = []
    for tenant, gpus in (("a", 488), ("b", 462), ("c", 50)):
        jobs += [
            a_job(f"{tenant}/run{i}").of(1, 8).running_on(next(names), since=NOW - 3600).build()
            for i in range(gpus // 8)
        ]
    jobs += [a_job(f"a/more{i}").of(1, 8).submitted_at(NOW - 3000).build() for i in range(40)]
    jobs += [a_job(f"b/more{i}").of(1, 8).submitted_at(NOW - 3000).build() for i in range(20)]
    jobs += [a_job(f"c/more{i}").of(1, 8).submitted_at(NOW - age - i).build() for i in range(32)]  # demand 300
    final, cycles, evictions, decisions = settle(snapshot(nodes, queues, jobs))
    assert cycles <= 10
    assert max(evictions.values()) == 1
    shares = {q: decisions.queues[q][B200].fair_share for q in "abc"}
    assert shares == {"a": 460, "b": 380, "c": 160}  # as in the README's worked example
    for tenant in "abc":
        assert abs(held(final)[tenant] - shares[tenant]) <= 8  # one job of 8 GPUs is the granularity


# -- the harness --------------------------------------------------------------------------------

SCENARIOS = int(os.environ.get("LEITSTAND_LIVENESS_SCENARIOS", "2000"))


def test_every_contested_cluster_settles_and_reclaim_is_complete() -> None:
    failed = []
    for seed in range(SCENARIOS):
        result = liveness.run(liveness.generate(seed))
        if result.failures:
            failed.append(f"{result.scenario.describe()}: {result.failures[0]}")
    assert not failed, f"{len(failed)} of {SCENARIOS} scenarios failed:\n" + "\n".join(failed[:20])
