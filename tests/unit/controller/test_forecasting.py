"""The forecaster plans estimates in a worker process (a real spawned process), only when asked to."""

import asyncio

from leitstand.controller.forecasting import Forecaster
from leitstand.core.model import JobKey, Policy
from tests.unit.core.builders import a_job, a_queue, a_root, nodes_in_leaf, snapshot

NOW = 100_000.0


async def test_estimates_are_planned_in_a_worker_and_kept_until_the_next_plan() -> None:
    snap = snapshot(
        nodes_in_leaf("su-1", 1),
        [a_root(), a_queue("team").with_share(8)],
        [
            a_job("team/running").of(1, 8).running_on("su-1-n1", since=NOW - 600).limited(3600),
            a_job("team/next").of(1, 8).submitted_at(NOW - 10).limited(3600),
        ],
    )
    forecaster = Forecaster(interval=3600)
    try:
        forecaster.after_cycle(snap, Policy(), NOW)
        await asyncio.wait_for(forecaster.wait(), timeout=60)
        assert forecaster.estimates[JobKey("team/next")].start == NOW + 3000  # when the running job's limit ends
        assert forecaster.seconds is not None
    finally:
        forecaster.close()


def test_an_interval_of_zero_never_plans() -> None:
    forecaster = Forecaster(interval=0)
    forecaster.after_cycle(snapshot([], [a_root()], []), Policy(), NOW)  # no event loop needed: it returns at once
    assert forecaster.estimates == {}
    forecaster.close()
