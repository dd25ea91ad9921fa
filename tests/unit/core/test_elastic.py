"""Elastic jobs: a gang of ``min_replicas`` that grows into idle capacity and gives it back first."""

from leitstand.core.model import Priority, Reason
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import (
    a_job,
    a_queue,
    a_root,
    apply,
    bound,
    evicted,
    nodes_in_leaf,
    reasons,
    snapshot,
)

NOW = 10_000.0


def leaves(first: int = 4, second: int = 4) -> list:  # type: ignore[type-arg]
    return nodes_in_leaf("su-1", first) + nodes_in_leaf("su-2", second)


def tenants(guaranteed: int = 32) -> list:  # type: ignore[type-arg]
    return [a_root(), a_queue("acme").with_share(guaranteed), a_queue("helix").with_share(guaranteed)]


def test_an_elastic_job_on_an_idle_cluster_starts_its_gang_and_grows_to_its_maximum_in_one_cycle() -> None:
    elastic = a_job("acme/elastic").of(8, 8).elastic(2)
    decisions = schedule(snapshot(leaves(), tenants(), [elastic]), now=NOW)
    (bind,) = decisions.binds
    assert bind.job == "acme/elastic"
    assert bind.ranks == tuple(range(8))
    assert len(set(bind.nodes)) == 8
    assert decisions.pending == ()
    assert decisions.queues["acme"]["b200"].allocated == 64


def test_an_elastic_job_starts_with_what_is_free_and_grows_as_gpus_free_up() -> None:
    others = [a_job(f"helix/small-{i}").of(1, 8).running_on(f"su-2-n{i + 1}").limited(600) for i in range(4)]
    snap = snapshot(leaves(), tenants(), [a_job("acme/elastic").of(8, 8).elastic(2), *others])
    first = schedule(snap, now=NOW)
    assert bound(first) == {"acme/elastic": ("su-1-n1", "su-1-n2", "su-1-n3", "su-1-n4")}
    assert first.binds[0].ranks == (0, 1, 2, 3)
    snap = apply(snap, first, now=NOW)
    # two of the other tenant's jobs end: the job grows into their nodes, the next ranks first
    snap = snapshot(leaves(), tenants(), [j for j in snap.jobs if j.key not in {"helix/small-0", "helix/small-1"}])
    second = schedule(snap, now=NOW + 10)
    assert [(b.job, b.ranks, b.nodes) for b in second.binds] == [("acme/elastic", (4, 5), ("su-2-n1", "su-2-n2"))]
    assert second.evictions == ()


def test_a_tenant_below_its_share_takes_the_highest_ranks_first_and_the_gang_keeps_running() -> None:
    snap = snapshot(leaves(), tenants(), [a_job("acme/elastic").of(8, 8).elastic(2)])
    snap = apply(snap, schedule(snap, now=NOW), now=NOW)
    snap = snapshot(leaves(), tenants(), [*snap.jobs, a_job("helix/train").of(2, 8).submitted_at(NOW)])
    decisions = schedule(snap, now=NOW + 10)
    (eviction,) = decisions.evictions
    assert eviction.job == "acme/elastic"
    assert eviction.ranks == (7, 6)
    assert eviction.reason is Reason.RECLAIMED
    assert eviction.beneficiary == "helix/train"
    assert eviction.message.startswith("2 replicas above its minimum: ")
    assert reasons(decisions) == {"helix/train": "WaitingForReclaim"}
    # the freed nodes are the beneficiary's: the elastic job does not grow back into them
    after = apply(snap, decisions, now=NOW + 10)
    following = schedule(after, now=NOW + 20)
    assert [(b.job, b.ranks) for b in following.binds] == [("helix/train", ())]
    assert following.evictions == ()
    settled = schedule(apply(after, following, now=NOW + 20), now=NOW + 30)
    assert settled.binds == ()
    assert settled.evictions == ()


def test_reclaim_that_needs_more_than_the_growth_takes_the_whole_gang_never_part_of_it() -> None:
    queues = [a_root(), a_queue("acme"), a_queue("helix").with_share(64)]
    snap = snapshot(leaves(), queues, [a_job("acme/elastic").of(6, 8).elastic(4)])
    snap = apply(snap, schedule(snap, now=NOW), now=NOW)
    # helix needs all 8 nodes: the 2 free and the 2 growth replicas are not enough, so the gang goes too,
    # whole, with what it grew (one eviction), never cut below its 4
    snap = snapshot(leaves(), queues, [*snap.jobs, a_job("helix/big").of(8, 8)])
    decisions = schedule(snap, now=NOW + 10)
    assert [(e.job, e.ranks, e.beneficiary) for e in decisions.evictions] == [("acme/elastic", (), "helix/big")]


def test_a_gang_and_its_growth_are_reclaimed_only_as_far_as_its_queue_stays_at_its_fair_share() -> None:
    snap = snapshot(leaves(), tenants(), [a_job("acme/elastic").of(6, 8).elastic(4)])
    snap = apply(snap, schedule(snap, now=NOW), now=NOW)
    # acme's fair share is 32 (its gang), it holds 48: taking the gang with its growth would leave it 0
    snap = snapshot(leaves(), tenants(), [*snap.jobs, a_job("helix/big").of(6, 8)])
    decisions = schedule(snap, now=NOW + 10)
    assert decisions.evictions == ()
    assert reasons(decisions) == {"helix/big": "InsufficientCapacity"}


def test_growth_takes_what_a_waiting_tenant_cannot_use_now_and_gives_it_back_when_it_can() -> None:
    nodes = nodes_in_leaf("su-1", 4)
    queues = [a_root(), a_queue("acme").with_share(16), a_queue("helix").with_share(16)]
    serve = a_job("acme/serve").of(2, 8).with_priority(Priority.BUILD).running_on("su-1-n1", "su-1-n2", since=0)
    jobs = [
        serve,
        a_job("acme/elastic").of(2, 8).elastic(1).running_on("su-1-n3", None, since=0),
        a_job("helix/wide").of(3, 8),  # within helix's share, but 3 nodes never free up here: it cannot use n4
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert [(b.job, b.ranks, b.nodes) for b in decisions.binds] == [("acme/elastic", (1,), ("su-1-n4",))]
    assert reasons(decisions) == {"helix/wide": "InsufficientCapacity"}
    # helix's job needs one node now: growth would take the node it starts on, so it does not grow
    small = [serve, jobs[1], a_job("helix/one").of(1, 8)]
    assert bound(schedule(snapshot(nodes, queues, small), now=NOW)) == {"helix/one": ("su-1-n4",)}


def test_growth_stays_in_the_domain_its_gang_requires() -> None:
    nodes = leaves(4, 4)
    job = a_job("acme/elastic").of(8, 8).elastic(2).requiring("leaf").running_on("su-2-n1", "su-2-n2", since=0)
    job.placement += (None,) * 6
    decisions = schedule(snapshot(nodes, tenants(64), [job]), now=NOW)
    (bind,) = decisions.binds
    assert bind.ranks == (2, 3)
    assert set(bind.nodes) == {"su-2-n3", "su-2-n4"}


def test_growth_of_a_job_that_may_not_be_preempted_is_still_preemptible_and_within_its_limit() -> None:
    queues = [a_root(), a_queue("acme").with_share(16, limit=40), a_queue("helix").with_share(48)]
    job = a_job("acme/build").of(8, 8).elastic(2).with_priority(Priority.BUILD)
    snap = snapshot(leaves(), queues, [job])
    first = schedule(snap, now=NOW)
    assert first.binds[0].ranks == (0, 1, 2, 3, 4)  # 5 x 8 = its limit of 40
    snap = apply(snap, first, now=NOW)
    snap = snapshot(leaves(), queues, [*snap.jobs, a_job("helix/train").of(6, 8).submitted_at(NOW)])
    second = schedule(snap, now=NOW + 10)
    assert {e.job: e.ranks for e in second.evictions} == {"acme/build": (4, 3, 2)}  # growth only, never the gang


def test_a_queues_own_waiting_gang_comes_before_its_elastic_growth() -> None:
    queues = [a_root(), a_queue("acme").with_share(64)]
    snap = snapshot(leaves(), queues, [a_job("acme/elastic").of(8, 8).elastic(2)])
    snap = apply(snap, schedule(snap, now=NOW), now=NOW)
    snap = snapshot(leaves(), queues, [*snap.jobs, a_job("acme/next").of(3, 8).submitted_at(NOW)])
    decisions = schedule(snap, now=NOW + 10)
    assert {e.job: e.ranks for e in decisions.evictions} == {"acme/elastic": (7, 6, 5)}
    assert evicted(decisions) == {"acme/elastic": "Preempted"}


def test_growth_replicas_whose_gang_does_not_run_are_released() -> None:
    job = a_job("acme/elastic").of(4, 8).elastic(2).running_on(None, None, "su-1-n3", "su-1-n4", since=0)
    decisions = schedule(snapshot(leaves(), tenants(), [job]), now=NOW)
    # the gang binds (ranks 0 and 1) in the same cycle, so the growth replicas stay
    assert [(b.job, b.ranks) for b in decisions.binds] == [("acme/elastic", (0, 1))]
    assert decisions.releases == ()
    full = [a_job(f"helix/j{i}").of(1, 8).with_priority(Priority.BUILD).running_on(f"su-{1 + i // 4}-n{1 + i % 4}")
            for i in range(8) if i not in (2, 3)]  # fmt: skip
    stuck = schedule(snapshot(leaves(), [a_root(), a_queue("acme"), a_queue("helix").with_share(64)], [job, *full]),
                     now=NOW)  # fmt: skip
    assert [(r.job, r.ranks) for r in stuck.releases] == [("acme/elastic", (3, 2))]
