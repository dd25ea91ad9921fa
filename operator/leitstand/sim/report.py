"""The simulator's report: numbers per scheduler (``summarise``) and the JSON document (``document``).

Per scheduler: GPU allocation over time and its time-weighted mean (all GPUs
held, and those held by complete gangs: a gang placed in part holds GPUs that
do no work); queueing
delay (submission to first start) and job completion time (submission to
finish), mean and p95; the unallocated GPUs at the first placement failure
(the fragmentation measure of "Beware of Fragmentation", ATC '23); evictions,
elastic jobs' resizes, and the GPU-hours both threw away (in all and per
tenant); and per tenant,
allocation against fair share over time, with the mean distance between the
two, now and remembered (both decayed with the run's usage half-life).
"""

import math
from collections.abc import Sequence
from typing import Any

from leitstand.core import fairshare
from leitstand.core.model import QueueName
from leitstand.sim.engine import Result, Sample

MAX_POINTS = 400  # per time series in report.json


LARGEST = 3  # the largest jobs, followed one by one
SLACK_SECONDS = 60.0  # a start within a cycle or so of the planned one is on time


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0-1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def time_weighted(samples: Sequence[Sample], value: Any, end: float) -> float | None:
    """The mean of ``value(sample)`` over time, each sample holding until the next (the last until ``end``)."""
    if not samples:
        return None
    total = weight = 0.0
    for current, following in zip(samples, [*samples[1:], None], strict=True):
        until = following.time if following is not None else max(end, current.time)
        span = until - current.time
        total += value(current) * span
        weight += span
    return total / weight if weight > 0 else float(value(samples[-1]))


def _idle(samples: Sequence[Sample], capacity: int, end: float) -> dict[str, float | None]:
    """Where the unallocated GPUs were, as shares of the capacity over time: while jobs waited (a scheduler's
    to fill), while nothing waited (only growth could), and of that what running elastic jobs could still have
    grown into."""
    if not capacity:
        return {"whileJobsWait": None, "whileNothingWaits": None, "growableWhileNothingWaits": None}

    def free(sample: Sample) -> float:
        return (capacity - sample.allocated) / capacity

    return {
        "whileJobsWait": time_weighted(samples, lambda s: free(s) if s.pending else 0.0, end),
        "whileNothingWaits": time_weighted(samples, lambda s: 0.0 if s.pending else free(s), end),
        "growableWhileNothingWaits": time_weighted(
            samples, lambda s: 0.0 if s.pending else min(free(s), s.growth_room / capacity), end
        ),
    }


def remembered_distance(result: Result, tenants: Sequence[QueueName]) -> float | None:
    """The time-weighted mean of sum |U - F| / sum F over tenants, where U and F are each tenant's allocation and
    fair share decayed with the run's half-life (the usage the core remembers, and what it would be had every
    tenant held its fair share all along). None without a half-life."""
    half_life = result.usage_half_life
    if half_life <= 0 or not result.samples:
        return None
    used: dict[QueueName, float] = {}
    fair: dict[QueueName, float] = {}
    distances: list[float] = []
    previous: Sample | None = None
    for sample in result.samples:
        if previous is not None:
            elapsed = sample.time - previous.time
            used = fairshare.remember(used, {t: previous.by_queue.get(t, 0) for t in tenants}, elapsed, half_life)
            fair = fairshare.remember(fair, {t: previous.fair_share.get(t, 0) for t in tenants}, elapsed, half_life)
        total = sum(fair.values())
        distances.append(sum(abs(used.get(t, 0.0) - fair.get(t, 0.0)) for t in tenants) / total if total > 0 else 0.0)
        previous = sample
    by_time = {id(sample): distance for sample, distance in zip(result.samples, distances, strict=True)}
    return time_weighted(result.samples, lambda s: by_time[id(s)], result.end)


def leaf_queues(result: Result) -> list[QueueName]:
    """Queues that ever held or were owed GPUs as tenants (leaves seen holding work)."""
    seen: set[QueueName] = set()
    for sample in result.samples:
        seen.update(sample.by_queue)
    return sorted(seen)


def series(result: Result, tenants: Sequence[QueueName]) -> dict[str, Any]:
    """Time series (downsampled to at most ``MAX_POINTS``): allocation, pending, per-tenant allocation and share."""
    samples = result.samples
    step = max(1, math.ceil(len(samples) / MAX_POINTS))
    picked = samples[::step]
    if samples and picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    return {
        "time": [s.time for s in picked],
        "allocated": [s.allocated for s in picked],
        "pending": [s.pending for s in picked],
        "reservations": [s.reservations for s in picked],
        "tenants": {
            t: {
                "allocated": [s.by_queue.get(t, 0) for s in picked],
                "fairShare": [s.fair_share.get(t, 0) for s in picked],
            }
            for t in tenants
        },
    }


def summarise(result: Result) -> dict[str, Any]:
    """The numbers of one run, as a JSON-ready mapping."""
    records = list(result.records.values())
    started = [r for r in records if r.first_start is not None]
    finished = [r for r in records if r.finish is not None]
    delays = [r.first_start - r.trace.submit for r in started if r.first_start is not None]
    completions = [r.finish - r.trace.submit for r in finished if r.finish is not None]
    tenants = leaf_queues(result)
    end = result.end
    capacity = result.capacity
    per_tenant = {}
    for tenant in tenants:
        per_tenant[tenant] = {
            "meanAllocated": time_weighted(result.samples, lambda s, t=tenant: s.by_queue.get(t, 0), end),
            "meanFairShare": time_weighted(result.samples, lambda s, t=tenant: s.fair_share.get(t, 0), end),
            "meanDistanceFromFairShare": time_weighted(
                result.samples, lambda s, t=tenant: abs(s.by_queue.get(t, 0) - s.fair_share.get(t, 0)), end
            ),
        }
    unfair = time_weighted(
        result.samples,
        lambda s: sum(abs(s.by_queue.get(t, 0) - s.fair_share.get(t, 0)) for t in tenants) / max(capacity, 1),
        end,
    )
    failure = result.first_failure
    mean_allocated = time_weighted(result.samples, lambda s: s.allocated, end)
    mean_working = time_weighted(result.samples, lambda s: s.working, end)
    return {
        "scheduler": result.scheduler,
        "capacityGPUs": capacity,
        "jobs": {
            "submitted": sum(1 for r in records if r.trace.submit <= end),
            "started": len(started),
            "finished": len(finished),
            "neverStarted": sum(1 for r in records if r.first_start is None and r.trace.submit <= end),
        },
        "queueingDelaySeconds": {"mean": mean(delays), "p95": percentile(delays, 0.95)},
        "completionTimeSeconds": {"mean": mean(completions), "p95": percentile(completions, 0.95)},
        "meanAllocatedGPUs": mean_allocated,
        "meanAllocation": mean_allocated / capacity if mean_allocated is not None and capacity else None,
        "meanWorkingAllocation": mean_working / capacity if mean_working is not None and capacity else None,
        "idle": _idle(result.samples, capacity, end),
        "firstFailure": None
        if failure is None
        else {
            "time": failure.time,
            "job": failure.job,
            "jobGPUs": failure.job_gpus,
            "unallocatedGPUs": failure.unallocated,
        },
        "evictions": sum(r.preemptions for r in records),
        "resizes": sum(r.resizes for r in records),  # elastic jobs grown or shrunk while running
        "moves": sum(r.moves for r in records),  # jobs moved so that a gang found a whole domain (consolidation)
        "movedGPUHours": sum(r.moved_gpu_seconds for r in records) / 3600,  # the work those moves threw away
        "lostGPUHours": sum(r.lost_gpu_seconds for r in records) / 3600,
        "lostGPUHoursByTenant": {
            tenant: sum(r.lost_gpu_seconds for r in records if r.trace.tenant == tenant) / 3600
            for tenant in sorted({r.trace.tenant for r in records})
        },
        "rememberedDistanceFromFairShare": remembered_distance(result, tenants),
        "meanDistanceFromFairShare": unfair,
        "tenants": per_tenant,
        "cycles": result.cycles,
        "simulatedSeconds": end,
        "stoppedEarly": result.stopped_early,
        "series": series(result, tenants),
        "heroJobs": hero_jobs(result),
    }


def hero_jobs(result: Result) -> dict[str, Any]:
    """Reservations and estimates: allocation while gangs hold reservations, reserved jobs' starts against
    their first reservation, backfilled jobs, and the error of start estimates (at submission and at the
    last estimate before the start), as ``|actual - estimated| / actual wait``."""
    records = list(result.records.values())
    capacity = max(result.capacity, 1)
    reserved_samples = [s for s in result.samples if s.reservations]
    reserved = [r for r in records if r.first_reserved is not None and r.first_start is not None]
    late = [r for r in reserved if r.first_start is not None and r.first_reserved is not None
            and r.first_start > r.first_reserved + SLACK_SECONDS]  # fmt: skip

    def ratios_of(pick: str) -> list[float]:
        ratios = []
        for record in records:
            estimated = getattr(record, pick)
            if record.first_start is None or estimated is None:
                continue
            waited = record.first_start - record.trace.submit
            if waited > 0:
                ratios.append(abs(record.first_start - estimated) / waited)
        return sorted(ratios)

    def errors(ratios: list[float]) -> dict[str, float | int | None]:
        return {"jobs": len(ratios), "median": percentile(ratios, 0.5), "p90": percentile(ratios, 0.9)}

    at_submission, at_last = ratios_of("first_estimate"), ratios_of("last_estimate")

    largest = sorted(records, key=lambda r: (-r.trace.gpus, r.trace.submit))[:LARGEST]
    return {
        "largestJobs": [_largest(result, record) for record in largest],
        "reservedJobs": len(reserved),
        "startedAfterFirstReservation": len(late),
        "meanStartMinusFirstReservationSeconds": mean(
            [r.first_start - r.first_reserved for r in reserved if r.first_start is not None and r.first_reserved]
        ),
        "backfilledJobs": sum(1 for r in records if r.backfilled),
        "minAllocationWhileReserved": min((s.allocated / capacity for s in reserved_samples), default=None),
        "meanAllocationWhileReserved": mean([s.allocated / capacity for s in reserved_samples]),
        "estimateErrorAtSubmission": errors(at_submission),
        "estimateErrorAtLastEstimate": errors(at_last),
        "estimateErrorRatios": {
            "atSubmission": [round(r, 3) for r in at_submission],
            "atLastEstimate": [round(r, 3) for r in at_last],
        },
    }


def document(summaries: Sequence[dict[str, Any]], setup: dict[str, Any]) -> dict[str, Any]:
    """report.json: the setup, each scheduler's numbers, and Leitstand against each baseline."""
    by_name = {summary["scheduler"]: summary for summary in summaries}
    comparison: dict[str, Any] = {}
    ours = by_name.get("leitstand")
    if ours is not None:
        for name, other in by_name.items():
            if name == "leitstand":
                continue
            comparison[name] = {
                "unallocatedAtFirstFailure": _ratio(ours, other, ("firstFailure", "unallocatedGPUs")),
                "meanQueueingDelay": _ratio(ours, other, ("queueingDelaySeconds", "mean")),
                "p95QueueingDelay": _ratio(ours, other, ("queueingDelaySeconds", "p95")),
                "meanCompletionTime": _ratio(ours, other, ("completionTimeSeconds", "mean")),
                "meanAllocation": _ratio(ours, other, ("meanAllocation",)),
                "meanWorkingAllocation": _ratio(ours, other, ("meanWorkingAllocation",)),
            }
    return {"setup": setup, "schedulers": list(summaries), "leitstandVersus": comparison}


def _ratio(ours: dict[str, Any], other: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """Leitstand's value divided by the baseline's (below 1: Leitstand's is smaller)."""
    a: Any = ours
    b: Any = other
    for key in path:
        a = a.get(key) if isinstance(a, dict) else None
        b = b.get(key) if isinstance(b, dict) else None
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def _largest(result: Result, record: Any) -> dict[str, Any]:
    """One large job: when it came, was first estimated and reserved for, and started, and the allocation of
    everything else while it waited."""
    submit, start = record.trace.submit, record.first_start
    until = start if start is not None else result.end
    waiting = [s for s in result.samples if submit <= s.time < until]
    capacity = max(result.capacity, 1)
    # the moments other jobs waited too: then a scheduler could have given the others more
    contended = [s for s in waiting if s.pending > record.trace.gpus]
    return {
        "job": record.trace.name,
        "gpus": record.trace.gpus,
        "submit": submit,
        "firstEstimate": record.first_estimate,
        "firstReserved": record.first_reserved,
        "start": start,
        "minAllocationWhileWaiting": min((s.allocated / capacity for s in waiting), default=None),
        "meanAllocationWhileWaiting": mean([s.allocated / capacity for s in waiting]),
        "minAllocationWhileOthersWaited": min((s.allocated / capacity for s in contended), default=None),
        "samplesWhileWaiting": len(waiting),
        "samplesWhileOthersWaited": len(contended),
        # of the GPUs not kept idle for a reservation: what backfill could have used
        "minAllocationOutsideReservationsWhileWaiting": min(
            (s.allocated / max(capacity - s.reserved_idle, 1) for s in waiting), default=None
        ),
        "meanAllocationOutsideReservationsWhileWaiting": mean(
            [s.allocated / max(capacity - s.reserved_idle, 1) for s in waiting]
        ),
    }
