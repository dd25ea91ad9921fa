"""Reservations with backfill: a large gang gets nodes from a planned start; others fill in around it."""

import math
import random
from dataclasses import replace

from leitstand.core.model import Decisions, Job, JobKey, Policy, Snapshot
from leitstand.core.scheduling import schedule
from tests.unit.core.builders import a_job, a_queue, a_root, apply, bound, messages, nodes_in_leaf, reasons, snapshot

NOW = 100_000.0
HOUR = 3600.0
POLICY = Policy(starvation_seconds=0, preemption=False)


def hero_site() -> tuple[list, list]:
    """Two leaves of four 8-GPU nodes; a 4-node gang needs a whole leaf."""
    nodes = nodes_in_leaf("su-1", 4) + nodes_in_leaf("su-2", 4)
    queues = [a_root(), a_queue("hero").with_share(32), a_queue("small").with_share(32)]
    return nodes, queues


def test_a_gang_that_cannot_start_gets_the_leaf_that_frees_first_and_short_jobs_backfill_it() -> None:
    nodes, queues = hero_site()
    jobs = [
        a_job("small/a").of(1, 8).running_on("su-1-n1", since=NOW - HOUR).limited(2 * HOUR),  # ends in 1 h
        a_job("small/b").of(1, 8).running_on("su-2-n1", since=NOW - HOUR).limited(5 * HOUR),  # ends in 4 h
        a_job("hero/big").of(4, 8).requiring("leaf").submitted_at(NOW - 60),
        a_job("small/short").of(1, 8).submitted_at(NOW - 30).limited(30 * 60),  # ends before su-1 frees
        a_job("small/long").of(1, 8).submitted_at(NOW - 20).limited(3 * HOUR),
        a_job("small/open").of(1, 8).submitted_at(NOW - 10),  # no limit at all
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), POLICY, now=NOW)
    reserved = decisions.reserved[JobKey("hero/big")]
    assert (reserved.start, reserved.domain) == (NOW + HOUR, "su-1")
    assert set(reserved.nodes) == {"su-1-n1", "su-1-n2", "su-1-n3", "su-1-n4"}
    assert (
        "reserved 4 nodes in leaf su-1 from 1970-01-02 04:46 UTC; jobs that end by then"
        in messages(decisions)["hero/big"]
    )
    placed = bound(decisions)
    assert placed["small/short"][0].startswith("su-1-")  # backfilled: it ends before the reservation starts
    assert placed["small/long"][0].startswith("su-2-")
    assert placed["small/open"][0].startswith("su-2-")
    assert decisions.backfilled == ("small/long", "small/open", "small/short")


def test_a_job_that_would_start_now_but_for_a_reservation_is_told_what_limit_would_let_it_in() -> None:
    nodes = nodes_in_leaf("su-1", 4)
    queues = [a_root(), a_queue("hero").with_share(32), a_queue("small")]
    jobs = [
        a_job("small/a").of(1, 8).running_on("su-1-n1", since=NOW).limited(2 * HOUR),
        a_job("hero/big").of(4, 8).submitted_at(NOW - 60),
        a_job("small/long").of(1, 8).submitted_at(NOW - 20).limited(3 * HOUR),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), POLICY, now=NOW)
    assert bound(decisions) == {}
    assert reasons(decisions)["small/long"] == "WaitingForOlderJob"
    assert messages(decisions)["small/long"].startswith(
        "the nodes it could use now are reserved for hero/big from 1970-01-02 05:46 UTC; "
        "with a runtimeLimit that ends by then it could start now (it has 3h)"
    )


def test_an_unbounded_running_job_makes_the_plan_say_which_job_must_end_first() -> None:
    nodes = nodes_in_leaf("su-1", 2)
    queues = [a_root(), a_queue("hero").with_share(16), a_queue("small")]
    jobs = [
        a_job("small/forever").of(1, 8).running_on("su-1-n1", since=NOW - HOUR),
        a_job("hero/big").of(2, 8).submitted_at(NOW - 60),
        a_job("small/open").of(1, 8).submitted_at(NOW - 10),
        a_job("small/limited").of(1, 8).submitted_at(NOW - 5).limited(HOUR),
    ]
    decisions = schedule(snapshot(nodes, queues, jobs), POLICY, now=NOW)
    reserved = decisions.reserved[JobKey("hero/big")]
    assert reserved.start == math.inf
    assert reserved.blockers == ("small/forever",)
    assert "reserved 2 nodes once small/forever ends (no limit)" in messages(decisions)["hero/big"]
    assert bound(decisions) == {"small/limited": ("su-1-n2",)}  # a limited job may use it until then
    assert reasons(decisions)["small/open"] == "WaitingForOlderJob"


def test_a_reservation_keeps_its_nodes_across_cycles_unless_a_better_start_appears() -> None:
    nodes = nodes_in_leaf("su-1", 2) + nodes_in_leaf("su-2", 2)
    queues = [a_root(), a_queue("hero").with_share(16), a_queue("small").with_share(16)]
    jobs: list = [
        a_job("small/a").of(1, 8).running_on("su-1-n1", since=NOW).limited(2 * HOUR),
        a_job("small/b").of(1, 8).running_on("su-2-n1", since=NOW).limited(2 * HOUR),  # both leaves free together
        a_job("small/c").of(1, 8).running_on("su-1-n2", since=NOW).limited(2 * HOUR),
        a_job("small/d").of(1, 8).running_on("su-2-n2", since=NOW).limited(2 * HOUR),
        a_job("hero/big").of(2, 8).requiring("leaf").submitted_at(NOW - 60),
    ]
    snap = snapshot(nodes, queues, jobs)
    first = schedule(snap, POLICY, now=NOW)
    chosen = first.reserved[JobKey("hero/big")]
    assert chosen.start == NOW + 2 * HOUR
    other = "su-2" if chosen.domain == "su-1" else "su-1"
    moved = tuple(f"{other}-n{i}" for i in (1, 2))
    # told it had the other leaf last cycle: with the same start, it keeps what it had
    kept = schedule(_reserved(snap, "hero/big", moved), POLICY, now=NOW + 60)
    assert kept.reserved[JobKey("hero/big")].nodes == moved
    for step in range(1, 5):  # cycle after cycle on its own output, nothing changes
        snap = apply(snap, first, now=NOW + step * 60)
        first = schedule(snap, POLICY, now=NOW + step * 60)
        assert first.reserved[JobKey("hero/big")] == chosen
    # the reserved leaf's jobs get a longer life (a new incarnation): the other leaf frees first, and it moves
    longer = [
        replace(job, runtime_limit=6 * HOUR) if job.placement and job.placement[0] in chosen.nodes else job
        for job in snap.jobs
    ]
    later = schedule(replace(snap, jobs=tuple(longer)), POLICY, now=NOW + 300)
    assert later.reserved[JobKey("hero/big")].domain == other


def test_gangs_that_reserved_one_node_in_turn_keep_their_turns_when_it_frees_early() -> None:
    nodes = nodes_in_leaf("su-1", 1)
    queues = [a_root(), a_queue("team").with_share(8)]
    # b is ahead in the queue, but the last cycle gave a the node first (1 h, from 2 h) and b after it (from 3 h)
    b = a_job("team/b").of(1, 8).submitted_at(NOW - 60).limited(10 * HOUR).build()
    a = a_job("team/a").of(1, 8).submitted_at(NOW - 30).limited(HOUR).build()
    carried = [
        replace(a, reserved=("su-1-n1",), reserved_start=NOW + 2 * HOUR),
        replace(b, reserved=("su-1-n1",), reserved_start=NOW + 3 * HOUR),
    ]
    decisions = schedule(snapshot(nodes, queues, carried), POLICY, now=NOW)  # the running job ended early
    assert bound(decisions) == {"team/a": ("su-1-n1",)}  # not b, which would hold the node for 10 h
    assert decisions.reserved[JobKey("team/b")].start == NOW + HOUR  # after a, still before its 3 h


def _reserved(snap: Snapshot, key: str, nodes: tuple[str, ...]) -> Snapshot:
    jobs = tuple(replace(job, reserved=tuple(nodes)) if job.key == key else job for job in snap.jobs)  # type: ignore[arg-type]
    return replace(snap, jobs=jobs)


def test_a_backfilled_job_never_delays_a_reserved_one() -> None:
    """Random running sets and a stream of small jobs, every job running exactly its limit: each reserved
    gang starts no later than the first start its reservation planned."""
    reserved = 0
    for seed in range(150):
        rng = random.Random(seed)
        nodes = nodes_in_leaf("su-1", 4) + nodes_in_leaf("su-2", 4)
        queues = [a_root(), a_queue("hero").with_share(32), a_queue("small").with_share(32)]
        jobs: dict[str, Job] = {}
        for i, node in enumerate(nodes):
            if rng.random() < 0.8:
                size = rng.choice([2, 4, 8])
                limit = rng.randint(1, 12) * 600.0
                jobs[f"small/r{i}"] = (
                    a_job(f"small/r{i}").of(1, size).running_on(node.name, since=NOW - 60).limited(limit).build()
                )
        jobs["hero/big"] = a_job("hero/big").of(rng.choice([2, 3, 4]), 8).requiring("leaf").submitted_at(NOW).build()
        arrivals = {
            NOW + rng.randint(0, 60) * 60.0: a_job(f"small/s{i}").of(1, rng.choice([1, 2, 4, 8])) for i in range(20)
        }
        for at, builder in arrivals.items():
            builder.submitted_at(at).limited(rng.randint(1, 18) * 600.0)
        if _run_until_started(jobs, nodes, queues, arrivals, seed) is not None:
            reserved += 1
    assert reserved >= 100  # most seeds exercise a reservation (the others start the gang at once)


def _run_until_started(jobs: dict, nodes: list, queues: list, arrivals: dict, seed: int) -> float | None:
    """Runs the core over events (arrivals, ends at exactly the limits) until hero/big starts; asserts the
    start is no later than its first reservation's start, and returns that start (None: it never needed one)."""
    now, first = NOW, None
    pending = dict(sorted(arrivals.items()))
    decisions: Decisions | None = None
    for _ in range(200):
        for at in [t for t in pending if t <= now]:
            job = pending.pop(at).build()
            jobs[job.key] = job
        for key, job in list(jobs.items()):
            ends = job.started + job.runtime_limit if job.started is not None and job.runtime_limit else None
            if job.running and ends is not None and ends <= now:
                del jobs[key]
        snap = snapshot(nodes, queues, list(jobs.values()))
        if decisions is not None:
            snap = replace(
                snap,
                jobs=tuple(
                    replace(j, reserved=decisions.reserved[j.key].nodes) if j.key in decisions.reserved else j
                    for j in snap.jobs
                ),
            )
        decisions = schedule(snap, POLICY, now=now)
        if JobKey("hero/big") in bound(decisions):
            assert first is None or now <= first, f"seed {seed}: hero/big started at {now}, planned {first}"
            return first
        reserved = decisions.reserved.get(JobKey("hero/big"))
        if reserved is not None and first is None:
            first = reserved.start
        snap = apply(snap, decisions, now=now)
        jobs = {job.key: job for job in snap.jobs}
        ends = [j.started + j.runtime_limit for j in jobs.values() if j.running and j.started and j.runtime_limit]
        upcoming = [t for t in [*ends, *pending] if t > now]
        if not upcoming:
            break
        now = min(upcoming)
    raise AssertionError(f"seed {seed}: hero/big did not start (first estimate {first})")


def test_start_times_are_written_in_utc_to_the_minute_without_a_clock_module() -> None:
    import datetime

    from leitstand.core.model import utc_text

    rng = random.Random(5)
    moments = [0.0, 59.9, 951_782_400.0, 4_107_542_400.0, *(rng.uniform(-1e10, 1e10) for _ in range(2000))]
    for moment in moments:
        expected = datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        assert utc_text(moment) == expected, moment
