"""Every waiting job's expected start, planned in a worker process so the scheduling cycle never waits for it.

After a cycle, ``Forecaster.after_cycle`` hands the cycle's snapshot to one
worker process (``plan``: the same cycle again, then ``forecast.estimate``),
at most every ``estimateIntervalSeconds`` and never twice at once. The
estimates it returns are kept until the next ones land; the TrainingJob
statuses show them. A reserved gang's start comes from each cycle itself and
needs no worker.
"""

import asyncio
import concurrent.futures
import logging
import math
import multiprocessing
import time
from collections.abc import Mapping

from leitstand.core import model
from leitstand.core.scheduling import schedule

logger = logging.getLogger("leitstand.controller")


def plan(snapshot: model.Snapshot, policy: model.Policy, now: float) -> tuple[dict[model.JobKey, model.Planned], float]:
    """In the worker: the estimates for ``snapshot`` and the seconds planning took (the cycle included)."""
    started = time.perf_counter()
    estimates = dict(schedule(snapshot, policy, now=now, estimate=True).estimates)
    return estimates, time.perf_counter() - started


class Forecaster:
    """Runs ``plan`` in one worker process, at most every ``interval`` seconds (0: never)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.estimates: Mapping[model.JobKey, model.Planned] = {}
        self.seconds: float | None = None  # how long the last plan took, in the worker
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._running: asyncio.Future[tuple[dict[model.JobKey, model.Planned], float]] | None = None
        self._last = -math.inf

    def after_cycle(self, snapshot: model.Snapshot, policy: model.Policy, now: float) -> None:
        """Starts a plan of ``snapshot`` when the last one is done and old enough."""
        if self.interval <= 0 or (self._running is not None and not self._running.done()):
            return
        if time.monotonic() - self._last < self.interval:
            return
        self._last = time.monotonic()
        if self._pool is None:  # spawned, not forked: the operator's threads and sockets stay out of it
            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._running = asyncio.get_running_loop().run_in_executor(self._pool, plan, snapshot, policy, now)
        self._running.add_done_callback(self._landed)

    def _landed(self, future: "asyncio.Future[tuple[dict[model.JobKey, model.Planned], float]]") -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            logger.warning("planning start estimates failed (%s); the next plan tries again", error)
            return
        self.estimates, self.seconds = future.result()

    async def wait(self) -> None:
        """Returns once the plan in flight, if any, has landed (or failed)."""
        if self._running is not None:
            await asyncio.wait([self._running])

    def close(self) -> None:
        """Stops the worker; a plan in flight is dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
