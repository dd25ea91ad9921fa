"""Bounded polling for e2e tests: every wait has a deadline and says what it waited for."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    within: float = 30.0,
    interval: float = 0.2,
) -> T:
    """Awaits ``probe`` until it returns something other than None; fails after ``timeout`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await probe()
        if result is not None:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
