"""Preemption that respects work (victims by GPU-hours since their last checkpoint) and fairness that
remembers (decayed over-quota usage lowers a queue's over-quota weight, never its guarantee)."""

import pytest

from leitstand.core import fairshare
from leitstand.core.model import GPUType, QueueName, stop_time, work_at_risk
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import QueueBuilder, a_job, a_node, a_queue, a_root, evicted, nodes_in_leaf, snapshot

NOW = 100_000.0
HOUR = 3600.0
DAY = 24 * HOUR
B200 = GPUType("b200")


@pytest.mark.parametrize(
    ("ran", "every", "last", "at_risk"),
    [
        (5 * HOUR, None, None, 5 * HOUR),  # no checkpoints: the whole run
        (5.5 * HOUR, HOUR, None, 0.5 * HOUR),  # a run that saves hourly: the last half hour
        (5 * HOUR, None, NOW - 60, 60.0),  # reported a minute ago
        (5 * HOUR, HOUR, NOW - 60, 60.0),  # a report wins over the interval
        (5.5 * HOUR, HOUR, NOW - 6 * HOUR, 0.5 * HOUR),  # a report from before the start says nothing of this run
    ],
)
def test_work_at_risk_is_gpus_times_the_time_since_the_last_checkpoint(
    ran: float, every: float | None, last: float | None, at_risk: float
) -> None:
    job = a_job("a/j").of(2, 8).running_on("n1", "n2", since=NOW - ran).checkpointing(every=every, last=last)
    assert work_at_risk(job.build(), NOW) == 16 * at_risk


@pytest.mark.parametrize(
    ("every", "last", "notice", "stops_after", "at_risk"),
    [
        (HOUR, None, 0.0, 0.0, 50 * 60.0),  # no notice: at once
        (None, None, 600.0, 600.0, 5 * HOUR + 60 * 60.0),  # no interval: at the end of the notice, all of it lost
        (HOUR, None, 600.0, 600.0, 0.0),  # 50 min since its save at 5 h: the notice ends as it saves again
        (HOUR, None, 300.0, 300.0, 55 * 60.0),  # the next save comes after the notice
        (HOUR, NOW - 55 * 60, 600.0, 360.0, 60.0),  # reported 55 min ago: it saves in 5 min, and stops a minute later
    ],
)
def test_a_notice_ends_a_minute_after_the_next_checkpoint_when_that_comes_sooner(
    every: float | None, last: float | None, notice: float, stops_after: float, at_risk: float
) -> None:
    job = a_job("a/j").of(1, 8).running_on("n1", since=NOW - 5 * HOUR - 50 * 60).checkpointing(every=every, last=last)
    built = job.build()
    assert stop_time(built, NOW, notice) == NOW + stops_after
    assert work_at_risk(built, NOW + stops_after) == 8 * at_risk


@pytest.mark.parametrize("started", [0.1, 1_700_000_000.3, 639_792.7])
def test_a_save_just_made_risks_nothing_whatever_the_rounding(started: float) -> None:
    job = a_job("a/j").of(4, 8).running_on("n1", since=started).checkpointing(every=1800.0).build()
    for saves in (1, 7, 49):
        assert work_at_risk(job, started + saves * 1800.0) == 0.0


def test_a_waiting_job_risks_nothing() -> None:
    assert work_at_risk(a_job("a/j").of(1, 8).build(), NOW) == 0.0


def test_of_two_equal_victims_the_one_checkpointed_a_minute_ago_goes() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8), a_queue("b").with_share(8)]
    for first, second in (("a/saved", "a/unsaved"), ("a/unsaved", "a/saved")):  # either order of names
        jobs = [
            a_job(first).of(1, 8).running_on("su-1-n1", since=NOW - 5 * HOUR),
            a_job(second).of(1, 8).running_on("su-1-n2", since=NOW - 5 * HOUR),
            a_job("b/wants").of(1, 8).submitted_at(NOW - 10),
        ]
        saved = next(i for i, job in enumerate(jobs) if job.key == "a/saved")
        jobs[saved] = jobs[saved].checkpointing(last=NOW - 60)
        assert evicted(schedule(snapshot(nodes, queues, jobs), now=NOW)) == {"a/saved": "Reclaimed"}


def test_a_younger_job_goes_before_one_that_saved_its_work_more_recently_only_when_it_risks_less() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8), a_queue("b").with_share(8)]
    jobs = [
        a_job("a/young").of(1, 8).running_on("su-1-n1", since=NOW - 20 * 60),  # 20 min, never saved
        a_job("a/old").of(1, 8).running_on("su-1-n2", since=NOW - DAY).checkpointing(every=HOUR),  # 0 min at risk
        a_job("b/wants").of(1, 8).submitted_at(NOW - 10),
    ]
    assert evicted(schedule(snapshot(nodes, queues, jobs), now=NOW)) == {"a/old": "Reclaimed"}


@pytest.mark.parametrize(("notice", "victim"), [(0.0, "a/y"), (600.0, "a/x")])
def test_with_a_notice_the_victim_is_the_one_that_saves_its_work_before_its_pods_stop(
    notice: float, victim: str
) -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("a").with_share(8).noticing(notice), a_queue("b").with_share(8)]
    jobs = [  # both save hourly; x is 50 min past its last save (10 min before the next), y 20 min
        a_job("a/x").of(1, 8).running_on("su-1-n1", since=NOW - 5 * HOUR - 50 * 60).checkpointing(every=HOUR),
        a_job("a/y").of(1, 8).running_on("su-1-n2", since=NOW - 5 * HOUR - 20 * 60).checkpointing(every=HOUR),
        a_job("b/wants").of(1, 8).submitted_at(NOW - 10),
    ]
    assert evicted(schedule(snapshot(nodes, queues, jobs), now=NOW)) == {victim: "Reclaimed"}


def test_a_leaf_requiring_gang_takes_all_its_victims_in_one_leaf_the_one_with_least_at_risk() -> None:
    nodes = nodes_in_leaf("su-1", 2) + nodes_in_leaf("su-2", 2)
    queues = [a_root(), a_queue("a").with_share(0), a_queue("b").with_share(16)]
    # su-1's jobs saved a minute ago; su-2's an hour ago; one from each leaf would risk less than su-2's pair
    jobs = [
        a_job("a/x1").of(1, 8).running_on("su-1-n1", since=NOW - DAY).checkpointing(last=NOW - 60),
        a_job("a/x2").of(1, 8).running_on("su-1-n2", since=NOW - DAY).checkpointing(last=NOW - 2 * HOUR),
        a_job("a/y1").of(1, 8).running_on("su-2-n1", since=NOW - DAY).checkpointing(last=NOW - 120),
        a_job("a/y2").of(1, 8).running_on("su-2-n2", since=NOW - DAY).checkpointing(last=NOW - HOUR),
        a_job("b/gang").of(2, 8).requiring("leaf").submitted_at(NOW - 10),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), now=NOW)
    assert evicted(decisions) == {"a/y1": "Reclaimed", "a/y2": "Reclaimed"}  # 1 h 2 min at risk, not 2 h 1 min
    assert set(decisions.nominations["b/gang"]) == {"su-2-n1", "su-2-n2"}


def test_usage_halves_after_one_half_life_and_grows_by_what_was_held() -> None:
    week = 7 * DAY
    assert fairshare.remember({QueueName("a"): 1000.0}, {}, week, week)[QueueName("a")] == pytest.approx(500.0)
    held = fairshare.remember({}, {QueueName("a"): 8}, 60.0, week)[QueueName("a")]
    assert held == pytest.approx(8 * 60.0, rel=1e-4)  # a minute is nothing next to a week: all of it counts
    assert fairshare.remember({QueueName("a"): 1000.0}, {QueueName("a"): 8}, 60.0, 0.0) == {QueueName("a"): 0.0}


def test_a_queue_that_over_used_last_week_yields_over_quota_capacity_and_never_its_guarantee() -> None:
    queues = [a_root(), a_queue("busy").with_share(16), a_queue("idle").with_share(16)]
    demand = {QueueName("busy"): {B200: 64}, QueueName("idle"): {B200: 64}}
    capacity = {B200: 64}
    alike = fairshare.fair_shares([q.build() for q in queues], capacity, demand)
    assert (alike[QueueName("busy")][B200], alike[QueueName("idle")][B200]) == (32, 32)
    queues[1].having_used(3 * 32 * 7 * DAY)  # three times the other's over-quota GPU-seconds last week
    queues[2].having_used(32 * 7 * DAY)
    remembering = fairshare.fair_shares([q.build() for q in queues], capacity, demand)
    # weights 1 · min(1, ½ / ¾) = ⅔ and 1: the 32 GPUs beyond the guarantees split 2 : 3
    assert (remembering[QueueName("busy")][B200], remembering[QueueName("idle")][B200]) == (29, 35)
    queues[1].having_used(1e15)  # however much it used: its guarantee stays
    assert fairshare.fair_shares([q.build() for q in queues], capacity, demand)[QueueName("busy")][B200] >= 16


def test_the_queue_that_used_more_is_reclaimed_from_and_without_memory_both_would_be() -> None:
    nodes = [a_node(f"n{i}").in_leaf("su-1").build() for i in range(1, 7)]  # 48 GPUs
    jobs = [a_job(f"zeal/r{i}").of(1, 8).running_on(f"n{i}", since=NOW - HOUR) for i in (1, 2, 3)]
    jobs += [a_job(f"calm/r{i}").of(1, 8).running_on(f"n{i}", since=NOW - HOUR) for i in (4, 5, 6)]
    jobs += [a_job(f"{q}/w{i}").of(1, 8).submitted_at(NOW - 60) for q in ("zeal", "calm", "late") for i in range(3)]

    def queues(zeal: float, calm: float) -> list[QueueBuilder]:
        return [
            a_root(),
            a_queue("zeal").with_share(8).having_used(zeal),
            a_queue("calm").with_share(8).having_used(calm),
            a_queue("late").with_share(8),
        ]

    forgetting = schedule(snapshot(nodes, queues(0, 0), jobs), now=NOW)
    assert {q: forgetting.queues[q]["b200"].fair_share for q in ("zeal", "calm", "late")} == {
        "zeal": 16, "calm": 16, "late": 16,
    }  # fmt: skip
    assert evicted(forgetting) == {"calm/r4": "Reclaimed", "zeal/r1": "Reclaimed"}
    remembering = schedule(snapshot(nodes, queues(10 * DAY * 8, DAY * 8), jobs), now=NOW)
    # weights 1 · min(1, ⅓ / (10/11)) = 11/30, 1 and 1: the 24 GPUs beyond the guarantees split 3.7 : 10.1 : 10.1
    assert {q: remembering.queues[q]["b200"].fair_share for q in ("zeal", "calm", "late")} == {
        "zeal": 12, "calm": 18, "late": 18,
    }  # fmt: skip
    # zeal holds 12 over its share, calm 6 (less than a job): only zeal gives, and only one job (a second
    # would push it below 12)
    assert evicted(remembering) == {"zeal/r1": "Reclaimed"}
