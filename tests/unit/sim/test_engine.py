"""The simulator on small clusters: time, gangs, fragmentation, head-of-line blocking, reclaim, elastic jobs."""

import math
from dataclasses import replace
from pathlib import Path

import pytest

from leitstand.core.model import (
    Bind,
    Decisions,
    Eviction,
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
    Release,
    Share,
    Snapshot,
)
from leitstand.sim import baselines, engine, plots, report
from leitstand.sim.traces import TraceJob

B200 = GPUType("b200")
POLICY = Policy(topology_levels=("node",), default_preferred_level=None)


def nodes(count: int, gpus: int = 8) -> tuple[Node, ...]:
    return tuple(Node(NodeName(f"n{i}"), B200, gpus, 100_000, 2**40, (f"n{i}",)) for i in range(count))


def job(
    name: str, submit: float, gpus: int, duration: float = 100.0, *, replicas: int = 1, tenant: str = "a"
) -> TraceJob:
    return TraceJob(f"{tenant}/{name}", tenant, submit, replicas, gpus, duration)


QUEUES = (Queue(QueueName("root")), Queue(QueueName("a"), QueueName("root"), ("a",)))


def two_tenants(guaranteed: int) -> tuple[Queue, ...]:
    """Tenants a and b under root, each guaranteed ``guaranteed`` B200 GPUs."""
    root = QueueName("root")
    return (Queue(root), *(Queue(QueueName(t), root, (t,), {B200: Share(guaranteed=guaranteed)}) for t in "ab"))


ALL = [baselines.Leitstand(POLICY), baselines.KubeSchedulerLike(), baselines.FifoGang(), baselines.BestFit()]


def run(
    scheduler: engine.Scheduler, trace: list[TraceJob], cluster: tuple[Node, ...], **options: object
) -> engine.Result:
    return engine.Simulation(scheduler, cluster, QUEUES, trace, engine.Options(**options)).run()  # type: ignore[arg-type]


def test_a_job_starts_on_arrival_and_finishes_after_its_duration() -> None:
    for scheduler in ALL:
        result = run(scheduler, [job("x", 5, 8, 100)], nodes(1), interval=0)
        record = result.records["a/x"]  # type: ignore[index]
        assert (record.first_start, record.finish) == (5, 105), scheduler.name
        summary = report.summarise(result)
        assert summary["queueingDelaySeconds"]["mean"] == 0
        assert summary["completionTimeSeconds"]["mean"] == 100


def test_jobs_ask_for_a_multiple_of_their_duration_and_end_at_their_own_limit() -> None:
    over = replace(job("over", 0, 8, 500), runtime_limit=200.0)  # asked for less than it needs: ended at 200
    result = run(baselines.Leitstand(POLICY), [job("x", 0, 8, 100), over], nodes(2), interval=0, runtime_limit_factor=2)
    assert result.records["a/x"].finish == 100  # type: ignore[index]
    assert result.records["a/over"].finish == 200  # type: ignore[index]


def test_with_limits_a_hero_gang_reserves_and_a_short_job_backfills_without_delaying_it() -> None:
    # n0 busy until 100; the 2-node gang waits for it; a short job (limit 2 x 30 = 60) fits before then
    trace = [job("busy", 0, 8, 100), job("hero", 1, 8, 100, replicas=2), job("short", 2, 8, 30)]
    policy = Policy(topology_levels=("node",), default_preferred_level=None, starvation_seconds=0)
    backfill = run(baselines.Leitstand(policy), trace, nodes(2), interval=0, runtime_limit_factor=2)
    assert backfill.records["a/short"].first_start == 2  # type: ignore[index]
    assert backfill.records["a/hero"].first_start == 100  # type: ignore[index]  # not delayed


def test_cycles_are_debounced_by_the_interval() -> None:
    result = run(baselines.Leitstand(POLICY), [job("x", 0, 8), job("y", 3, 8)], nodes(2), interval=10)
    assert result.records["a/y"].first_start == 10  # type: ignore[index]


def test_without_gangs_two_big_jobs_deadlock_where_gang_schedulers_run_them_in_turn() -> None:
    trace = [job("g1", 0, 8, 100, replicas=3), job("g2", 0, 8, 100, replicas=3)]
    # kube-scheduler-like: g1 and g2 alternate pod by pod on 4 nodes, then both wait forever with half a gang each
    stuck = run(baselines.KubeSchedulerLike(), trace, nodes(4), interval=0)
    assert all(record.first_start is None for record in stuck.records.values())
    assert stuck.samples[-1].allocated == 32  # held, and doing nothing
    assert stuck.samples[-1].working == 0
    assert report.summarise(stuck)["meanWorkingAllocation"] == 0
    for scheduler in ALL[:1] + ALL[2:]:
        result = run(scheduler, trace, nodes(4), interval=0)
        starts = sorted(-1 if r.first_start is None else r.first_start for r in result.records.values())
        assert starts == [0, 100], scheduler.name


def test_spreading_fragments_where_packing_does_not() -> None:
    trace = [job("small1", 0, 1), job("small2", 1, 1), job("big", 2, 8)]
    spread = run(baselines.KubeSchedulerLike(), trace, nodes(2), interval=0, fill=True)
    assert spread.first_failure is not None
    assert spread.first_failure.job == "a/big"
    assert spread.first_failure.unallocated == 14
    for scheduler in (baselines.Leitstand(POLICY), baselines.BestFit()):
        packed = run(scheduler, trace, nodes(2), interval=0, fill=True)
        assert packed.first_failure is None, scheduler.name
        assert packed.samples[-1].allocated == 10


def test_fifo_blocks_behind_its_head_where_others_backfill() -> None:
    trace = [job("running", 0, 8, 1000), job("wide", 1, 8, 100, replicas=2), job("small", 2, 8, 100)]
    fifo = run(baselines.FifoGang(), trace, nodes(2), interval=0)
    assert fifo.records["a/small"].first_start == 1100  # type: ignore[index]
    for scheduler in (baselines.BestFit(), baselines.Leitstand(POLICY)):
        result = run(scheduler, trace, nodes(2), interval=0)
        assert result.records["a/small"].first_start == 2, scheduler.name  # type: ignore[index]


def test_leitstand_reclaims_a_late_tenants_guarantee_and_counts_the_work_lost() -> None:
    queues = two_tenants(16)
    trace = [job(f"a{i}", 0, 8, 10_000) for i in range(4)] + [job(f"b{i}", 500, 8, 100, tenant="b") for i in range(2)]
    simulation = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), queues, trace, engine.Options(interval=0))
    result = simulation.run()
    b_starts = [result.records[f"b/b{i}"].first_start for i in range(2)]  # type: ignore[index]
    assert b_starts == [500, 500]
    summary = report.summarise(result)
    assert summary["evictions"] == 2
    assert summary["lostGPUHours"] == 2 * 8 * 500 / 3600
    assert all(record.finish is not None for record in result.records.values())  # the evicted run again
    assert summary["tenants"]["b"]["meanFairShare"] > 0
    # FIFO never gives b its guarantee back: b waits for a's 10,000-second jobs
    fifo = engine.Simulation(baselines.FifoGang(), nodes(4), queues, trace, engine.Options(interval=0)).run()
    assert fifo.records["b/b0"].first_start == 10_000  # type: ignore[index]


def test_an_evicted_job_resumes_from_its_last_checkpoint_after_its_notice_and_grace() -> None:
    queues = two_tenants(16)
    # a's four jobs save every 200 s; b arrives at 500 and reclaims two of them: with a 50 s notice they
    # stop at 550 (150 s past the save at 400), their pods take 30 s more, and they resume with 400 s done
    trace = [job(f"a{i}", 0, 8, 1_000) for i in range(4)] + [job(f"b{i}", 500, 8, 100, tenant="b") for i in range(2)]
    options = engine.Options(interval=0, checkpoint_interval=200, grace_seconds=30, preemption_notice=50)
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), queues, trace, options).run()
    assert [result.records[f"b/b{i}"].first_start for i in range(2)] == [580, 580]  # type: ignore[index]
    evicted = [r for r in result.records.values() if r.preemptions]
    assert len(evicted) == 2
    assert all(r.lost_gpu_seconds == 8 * 150 for r in evicted)
    assert sorted(r.finish for r in evicted) == [680 + 600, 680 + 600]  # restarted when b ended: 600 s left
    summary = report.summarise(result)
    assert summary["lostGPUHoursByTenant"] == {"a": 2 * 8 * 150 / 3600, "b": 0.0}


def test_a_notice_ends_at_the_victims_next_checkpoint_when_the_scheduler_knows_it() -> None:
    queues = two_tenants(8)
    trace = [job("a0", 0, 8, 1_000), job("a1", 0, 8, 1_000), job("b0", 500, 8, 100, tenant="b")]
    # told, it stops a minute after its save at 600 (of a 200 s notice); blind, at the notice's end, 100 s unsaved
    for known, start, lost in ((True, 660 + 30, 8 * 60.0), (False, 700 + 30, 8 * 100.0)):
        options = engine.Options(interval=0, checkpoint_interval=200, checkpoints_known=known, grace_seconds=30,
                                 preemption_notice=200)  # fmt: skip
        result = engine.Simulation(baselines.Leitstand(POLICY), nodes(2), queues, trace, options).run()
        assert result.records["b/b0"].first_start == start  # type: ignore[index]
        assert [r.lost_gpu_seconds for r in result.records.values() if r.preemptions] == [lost]


def test_a_job_that_ends_during_its_notice_just_ends() -> None:
    queues = two_tenants(8)
    trace = [job("a0", 0, 8, 560), job("a1", 0, 8, 1_000), job("b0", 500, 8, 100, tenant="b")]
    options = engine.Options(interval=0, grace_seconds=30, preemption_notice=100)
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(2), queues, trace, options).run()
    a0 = result.records["a/a0"]  # type: ignore[index]
    assert (a0.finish, a0.preemptions, a0.lost_gpu_seconds) == (560, 0, 0.0)  # evicted at 500, ended at 560
    assert result.records["b/b0"].first_start == 560  # type: ignore[index]


def test_without_checkpoints_an_evicted_job_starts_over_and_with_them_the_scheduler_may_be_blind() -> None:
    queues = two_tenants(8)
    # a0 ran 500 s, a1 450 s; with saves every 300 s a0 risks 200 s and a1 150 s
    trace = [job("a0", 0, 8, 1_000), job("a1", 50, 8, 1_000), job("b0", 500, 8, 100, tenant="b")]

    def victim(**options: object) -> tuple[str, float]:
        simulation = engine.Simulation(baselines.Leitstand(POLICY), nodes(2), queues, trace,
                                       engine.Options(interval=0, **options))  # type: ignore[arg-type]  # fmt: skip
        (record,) = [r for r in simulation.run().records.values() if r.preemptions]
        return record.trace.name, record.lost_gpu_seconds

    assert victim() == ("a/a1", 8 * 450)  # the least run, all of it lost
    assert victim(checkpoint_interval=300, checkpoints_known=False) == ("a/a1", 8 * 150)
    assert victim(checkpoint_interval=300) == ("a/a1", 8 * 150)
    # a0 ran 310 s (10 s since its save at 300), a1 290 s (never saved): blind, the least run goes; told, a0
    trace[:2] = [job("a0", 190, 8, 1_000), job("a1", 210, 8, 1_000)]
    assert victim(checkpoint_interval=300, checkpoints_known=False) == ("a/a1", 8 * 290)
    assert victim(checkpoint_interval=300) == ("a/a0", 8 * 10)


def test_priorities_reach_the_core() -> None:
    trace = [job("train", 0, 8, 1000), TraceJob("a/serve", "a", 1, 1, 8, 100, priority=Priority.INFERENCE)]
    queues = (Queue(QueueName("root")), Queue(QueueName("a"), QueueName("root"), ("a",), {B200: Share(guaranteed=8)}))
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(1), queues, trace, engine.Options(interval=0)).run()
    assert result.records["a/serve"].first_start == 1  # type: ignore[index]
    assert result.records["a/train"].preemptions == 1  # type: ignore[index]


def test_the_report_compares_leitstand_with_each_baseline() -> None:
    trace = [job("small1", 0, 1), job("small2", 1, 1), job("big", 2, 8)]
    summaries = [report.summarise(run(s, trace, nodes(2), interval=0, fill=True)) for s in ALL]
    document = report.document(summaries, {"cluster": "test"})
    assert [s["scheduler"] for s in document["schedulers"]] == [s.name for s in ALL]
    assert document["leitstandVersus"]["kube-scheduler-like"]["unallocatedAtFirstFailure"] is None  # no failure
    assert document["schedulers"][1]["firstFailure"]["unallocatedGPUs"] == 14


def test_percentiles_and_time_weighting() -> None:
    assert report.percentile([5, 1, 3, 2, 4], 0.95) == 5
    assert report.percentile([], 0.5) is None
    samples = [engine.Sample(0, 10, 0, {}, {}), engine.Sample(30, 40, 0, {}, {})]
    assert report.time_weighted(samples, lambda s: s.allocated, 40) == (10 * 30 + 40 * 10) / 40


def test_samples_count_the_gpus_kept_idle_for_a_reservation_and_snapshots_carry_finished_jobs() -> None:
    # n0 busy until 100; the 2-node gang reserves both nodes from 100; n1 idles for it until a job backfills
    trace = [job("busy", 0, 8, 100), job("hero", 1, 8, 100, replicas=2), job("short", 50, 8, 20)]
    policy = Policy(topology_levels=("node",), default_preferred_level=None, starvation_seconds=0)
    seen: list[tuple[float, int]] = []
    leitstand = baselines.Leitstand(policy)

    def scheduler(snapshot, now):  # type: ignore[no-untyped-def]
        seen.append((now, len(snapshot.finished)))
        return leitstand(snapshot, now)

    scheduler.name = "leitstand"  # type: ignore[attr-defined]
    result = run(scheduler, trace, nodes(2), interval=0, runtime_limit_factor=2)  # type: ignore[arg-type]
    idle = {sample.time: sample.reserved_idle for sample in result.samples}
    assert idle[1] == 8  # n1 free and kept for the gang
    assert idle[50] == 0  # short (limit 40) ends before 100: it backfills n1
    hero = report.hero_jobs(result)["largestJobs"][0]
    assert hero["job"] == "a/hero"
    assert hero["minAllocationWhileWaiting"] == 0.5
    assert hero["minAllocationOutsideReservationsWhileWaiting"] == 1.0  # all that was not kept for it was in use
    finished = dict(seen)  # what each cycle's snapshot knows has finished: short at 70, busy at 100
    assert (finished[50], finished[70], finished[100]) == (0, 1, 2)


def test_the_allocation_while_a_big_job_waits_is_also_read_where_others_wait_with_it() -> None:
    # as above, and "long" comes at 60: its limit (160) would end after the gang's planned start (busy's limit,
    # 200), so it may not backfill n1 when short leaves it at 70; it waits, and the gang starts when busy ends
    trace = [
        job("busy", 0, 8, 100),
        job("hero", 1, 8, 100, replicas=2),
        job("short", 50, 8, 20),
        job("long", 60, 8, 80),
    ]
    policy = Policy(topology_levels=("node",), default_preferred_level=None, starvation_seconds=0)
    result = run(baselines.Leitstand(policy), trace, nodes(2), interval=0, runtime_limit_factor=2)
    hero = report.hero_jobs(result)["largestJobs"][0]
    assert hero["start"] == 100
    assert 0 < hero["samplesWhileOthersWaited"] < hero["samplesWhileWaiting"]  # nothing else waited before 60
    assert hero["minAllocationWhileOthersWaited"] == 0.5  # n1 kept idle for the gang while "long" waited


def test_each_cycle_sees_the_over_quota_usage_so_far_and_the_report_remembers_fairness() -> None:
    seen: list[tuple[float, float]] = []
    leitstand = baselines.Leitstand(POLICY)

    class Watching:
        name = "watching"

        def __call__(self, snapshot: Snapshot, now: float) -> engine.Step:
            seen.append((now, {q.name: q.usage for q in snapshot.queues}[QueueName("a")]))
            return leitstand(snapshot, now)

    queues = (Queue(QueueName("root")), Queue(QueueName("a"), QueueName("root"), ("a",), {B200: Share(guaranteed=8)}))
    trace = [job("x", 0, 8, 1_000, replicas=2), job("y", 500, 8, 10)]  # 8 GPUs over the guarantee from 0 on
    options = engine.Options(interval=0, usage_half_life=3600)
    result = engine.Simulation(Watching(), nodes(2), queues, trace, options).run()
    at = dict(seen)
    assert at[0] == 0.0
    assert at[500] == pytest.approx(8 * 3600 / math.log(2) * (1 - 0.5 ** (500 / 3600)))
    assert report.summarise(result)["rememberedDistanceFromFairShare"] == pytest.approx(0.0)
    forgetting = engine.Simulation(Watching(), nodes(2), queues, trace, engine.Options(interval=0, usage_half_life=0))
    seen.clear()
    assert report.summarise(forgetting.run())["rememberedDistanceFromFairShare"] is None
    assert {usage for _now, usage in seen} == {0.0}


def test_the_preemption_plot_is_drawn(tmp_path: Path) -> None:
    lines = [
        {"variant": variant, "lostGPUHoursByTenant": {"a": lost, "b": lost / 2}, "meanQueueingDelayHours": 40.0,
         "distanceFromFairShare": 0.36}
        for variant, lost in (("today", 3800.0), ("checkpoints-known", 110.0))
    ]  # fmt: skip
    path = plots.preemption(lines, tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- elastic jobs ---------------------------------------------------------------------------------


def elastic(name: str, submit: float, replicas: int, minimum: int, duration: float, *, tenant: str = "a") -> TraceJob:
    """An elastic job of 8-GPU replicas: ``replicas`` x ``duration`` replica-seconds of work on ``minimum`` and up."""
    return TraceJob(f"{tenant}/{name}", tenant, submit, replicas, 8, duration, min_replicas=minimum)


def last_samples(result: engine.Result) -> dict[float, engine.Sample]:
    """The sample after the last cycle at each instant."""
    return {sample.time: sample for sample in result.samples}


def test_an_elastic_job_alone_starts_at_its_maximum_and_finishes_after_its_duration() -> None:
    for scheduler in ALL:  # the baselines see it as a rigid gang of all its replicas
        result = run(scheduler, [elastic("e", 5, 4, 2, 100)], nodes(4), interval=0)
        record = result.records["a/e"]  # type: ignore[index]
        assert (record.first_start, record.finish, record.resizes, record.lost_gpu_seconds) == (5, 105, 0, 0.0)
        assert last_samples(result)[5].working == 32, scheduler.name


def test_an_elastic_job_starts_at_its_gang_grows_as_nodes_free_up_and_ends_before_its_gang_alone_would() -> None:
    # b holds two nodes until 300; the elastic job starts on the other two at 1 and grows to four at 300: its
    # workers restart from their save at 201 (they save every 100 s), so 99 s of two replicas are lost
    trace = [job("b0", 0, 8, 300, tenant="b"), job("b1", 0, 8, 300, tenant="b"), elastic("e", 1, 4, 2, 1_000)]
    options = engine.Options(interval=0, checkpoint_interval=100)
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace, options).run()
    record = result.records["a/e"]  # type: ignore[index]
    assert record.first_start == 1
    samples = last_samples(result)
    assert (samples[1].by_queue["a"], samples[300].by_queue["a"]) == (16, 32)  # type: ignore[index]
    saved = 2 * 200  # replica-seconds saved at 201, of 4 x 1,000
    assert record.finish == 300 + (4 * 1_000 - saved) / 4
    assert (record.resizes, record.preemptions, record.lost_gpu_seconds) == (1, 0, 2 * 8 * 99)
    summary = report.summarise(result)
    assert summary["resizes"] == 1
    assert summary["lostGPUHours"] == 2 * 8 * 99 / 3600
    # the same work as a rigid gang of its minimum: two replicas for 2,000 s
    rigid = [*trace[:2], TraceJob("a/e", "a", 1, 2, 8, 2_000)]
    alone = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), rigid, options).run()
    finish = alone.records["a/e"].finish  # type: ignore[index]
    assert finish == 2_001
    assert record.finish is not None
    assert record.finish < finish


def test_a_tenant_below_its_fair_share_shrinks_an_elastic_job_after_grace_and_its_end_moves_later() -> None:
    # the elastic job runs at four from 0 (due at 1,000); b arrives at 550 for its guaranteed 16 GPUs: ranks 3 and 2
    # stop at once (50 s since their save at 500 lost), their pods hold the nodes 30 s more, b starts at 580, and
    # the job goes on at two from its save: 4 x 500 done, 2,000 replica-seconds left at two a second
    trace = [elastic("e", 0, 4, 2, 1_000), job("b0", 550, 8, 10_000, replicas=2, tenant="b")]
    options = engine.Options(interval=0, checkpoint_interval=100, grace_seconds=30)
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace, options).run()
    record = result.records["a/e"]  # type: ignore[index]
    assert (record.first_start, record.finish) == (0, 550 + 2_000 / 2)
    assert record.finish > 1_000
    assert (record.resizes, record.preemptions, record.lost_gpu_seconds) == (1, 0, 4 * 8 * 50)
    samples = last_samples(result)
    assert (samples[550].allocated, samples[550].working, samples[550].pending) == (32, 16, 16)
    assert result.records["b/b0"].first_start == 580  # type: ignore[index]
    assert samples[580].working == 32
    # without grace, the nodes are free at once
    quick = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace,
                              replace(options, grace_seconds=0)).run()  # fmt: skip
    assert quick.records["b/b0"].first_start == 550  # type: ignore[index]
    assert quick.records["a/e"].finish == record.finish  # type: ignore[index]


def test_replicas_an_elastic_job_shrinks_by_run_through_the_notice_until_a_minute_after_its_next_save() -> None:
    # told it saves every 100 s, ranks 3 and 2 stop at the end of their 100 s notice, 650 (a minute after the
    # save at 600 would be later); the 50 s since that save are lost, and b starts after 30 s of grace
    trace = [elastic("e", 0, 4, 2, 1_000), job("b0", 550, 8, 10_000, replicas=2, tenant="b")]
    options = engine.Options(interval=0, checkpoint_interval=100, grace_seconds=30, preemption_notice=100)
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace, options).run()
    record = result.records["a/e"]  # type: ignore[index]
    assert (record.finish, record.resizes, record.lost_gpu_seconds) == (650 + (4_000 - 4 * 600) / 2, 1, 4 * 8 * 50)
    assert last_samples(result)[550].working == 32  # all four work on through the notice
    assert result.records["b/b0"].first_start == 680  # type: ignore[index]


def test_an_elastic_job_saves_every_elastic_checkpoint_interval_without_a_checkpoint_interval() -> None:
    trace = [elastic("e", 0, 4, 2, 1_000), job("b0", 550, 8, 10_000, replicas=2, tenant="b")]
    for interval, lost in ((None, 550), (200.0, 150)):
        options = engine.Options(interval=0, elastic_checkpoint_interval=interval)
        result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace, options).run()
        record = result.records["a/e"]  # type: ignore[index]
        assert record.lost_gpu_seconds == 4 * 8 * lost
        assert record.finish == 550 + (4_000 - 4 * (550 - lost)) / 2


def test_a_trace_without_elastic_jobs_runs_as_before() -> None:
    # b reclaims two of a's four jobs at 500: they start over when b ends at 600 and run their whole duration
    expected = {"a/a0": (0, 1_600, 1, 8 * 500.0, 0), "a/a1": (0, 1_600, 1, 8 * 500.0, 0),
                "a/a2": (0, 1_000, 0, 0.0, 0), "a/a3": (0, 1_000, 0, 0.0, 0), "b/b0": (500, 600, 0, 0.0, 0)}  # fmt: skip
    for a_minimum, b_minimum in ((None, None), (1, 2)):  # as many as its replicas: not elastic either
        trace = [replace(job(f"a{i}", 0, 8, 1_000), min_replicas=a_minimum) for i in range(4)]
        trace.append(replace(job("b0", 500, 8, 100, replicas=2, tenant="b"), min_replicas=b_minimum))
        result = engine.Simulation(baselines.Leitstand(POLICY), nodes(4), two_tenants(16), trace,
                                   engine.Options(interval=0)).run()  # fmt: skip
        records = {key: (r.first_start, r.finish, r.preemptions, r.lost_gpu_seconds, r.resizes)
                   for key, r in result.records.items()}  # fmt: skip
        assert records == expected, a_minimum
        assert report.summarise(result)["resizes"] == 0


def test_leitstand_binds_exact_ranks_shrinks_by_ranks_and_a_whole_eviction_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = [NodeName(f"n{i}") for i in range(9)]
    jobs = (
        Job(JobKey("a/grows"), "a", 4, 8, min_replicas=2, placement=(n[0], n[1], None, None), started=0),
        Job(JobKey("a/goes"), "a", 2, 8, min_replicas=1, placement=(n[2], n[3]), started=0),
        Job(JobKey("a/shrinks"), "a", 4, 8, min_replicas=1, placement=(n[4], n[5], n[6], n[7]), started=0),
    )
    decisions = Decisions(
        binds=(Bind(JobKey("a/grows"), (n[8],), (3,)),),
        evictions=(
            Eviction(JobKey("a/goes"), Reason.RECLAIMED, JobKey("b/x"), "whole", ()),
            Eviction(JobKey("a/goes"), Reason.RECLAIMED, JobKey("b/y"), "part", (1,)),
            Eviction(JobKey("a/shrinks"), Reason.RECLAIMED, JobKey("b/x"), "part", (3,)),
            Eviction(JobKey("a/shrinks"), Reason.PREEMPTED, JobKey("a/z"), "part", (2,)),
        ),
        releases=(Release(JobKey("a/shrinks"), "gang gone", (1,)),),
        pending=(),
        queues={},
        job_queues={},
    )
    monkeypatch.setattr(baselines, "schedule", lambda *_args, **_kwargs: decisions)
    step = baselines.Leitstand(POLICY)(Snapshot(nodes(9), QUEUES, jobs), 0.0)
    assert step.placements == {JobKey("a/grows"): (n[0], n[1], None, n[8])}
    assert step.evictions == (JobKey("a/goes"),)
    assert step.shrinks == {JobKey("a/shrinks"): (1, 2, 3)}


def test_consolidation_moves_a_movable_job_so_a_gang_finds_a_whole_leaf_and_the_move_loses_nothing() -> None:
    leaves = tuple(
        Node(NodeName(f"{leaf}-n{i}"), B200, 8, 100_000, 2**40, (leaf, f"{leaf}-n{i}"))
        for leaf in ("l1", "l2")
        for i in range(2)
    )
    policy = Policy(topology_levels=("leaf", "node"), default_preferred_level=None, move_settle_seconds=60)
    small = [replace(job(f"s{i}", 0, 8, 10_000), movable=True) for i in range(2)]
    other = job("other", 0, 8, 200)  # ends at 200: until then each leaf has one node free, never two
    gang = replace(job("gang", 300, 8, 100, replicas=2), required_level="leaf")
    trace = [*small, other, gang]
    results = {}
    for moves in (0, 2):
        chosen = baselines.Leitstand(replace(policy, moves_per_cycle=moves))
        results[moves] = engine.Simulation(chosen, leaves, QUEUES, trace, engine.Options(interval=10)).run()
    still = results[0].records[JobKey("a/gang")]
    moved = results[2].records[JobKey("a/gang")]
    assert still.first_start is None or still.first_start >= 10_000  # without moves: until a small job ends
    assert moved.first_start is not None
    assert moved.first_start < 400
    small_records = [results[2].records[JobKey(f"a/s{i}")] for i in range(2)]
    assert sum(r.moves for r in small_records) == 1
    assert sum(r.moved_gpu_seconds for r in small_records) == 0.0  # movable: it saved when told to stop
    assert report.summarise(results[2])["moves"] == 1


def test_the_report_splits_idle_gpus_into_while_jobs_wait_and_while_nothing_waits() -> None:
    # x holds one of two nodes until 100; the gang g of two waits for it, leaving the other node idle meanwhile;
    # then g runs on both until 200, and nothing is idle
    result = run(baselines.Leitstand(POLICY), [job("x", 0, 8, 100), job("g", 1, 8, 100, replicas=2)], nodes(2),
                 interval=0)  # fmt: skip
    assert result.records["a/g"].first_start == 100  # type: ignore[index]
    idle = report.summarise(result)["idle"]
    assert idle["whileJobsWait"] == pytest.approx(99 / 200 / 2)  # half the GPUs from 1 to 100, of 200 s
    assert idle["whileNothingWaits"] == pytest.approx(1 / 200 / 2)  # the first second, before g came
    assert idle["growableWhileNothingWaits"] == 0


def test_room_an_elastic_job_could_still_grow_into_counts_only_while_nothing_waits() -> None:
    # e may grow to 3 replicas, but its queue's limit holds it at 2 of 3 nodes: the third node stays idle while
    # nothing waits, and it is room e could grow into (the measure is an upper bound: it ignores limits)
    root = QueueName("root")
    capped = (Queue(root), Queue(QueueName("a"), root, ("a",), {B200: Share(limit=16)}))
    trace = [replace(job("e", 0, 8, 100, replicas=3), min_replicas=1)]
    result = engine.Simulation(baselines.Leitstand(POLICY), nodes(3), capped, trace, engine.Options(interval=0)).run()
    assert result.samples[0].allocated == 16
    assert result.samples[0].growth_room == 8
    idle = report.summarise(result)["idle"]
    assert idle["whileJobsWait"] == 0
    assert idle["whileNothingWaits"] == pytest.approx(1 / 3)
    assert idle["growableWhileNothingWaits"] == pytest.approx(1 / 3)
