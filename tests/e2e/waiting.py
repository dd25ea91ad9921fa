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
    context: Callable[[], Awaitable[str]] | None = None,
) -> T:
    """Awaits ``probe`` until it returns something other than None; fails after ``within`` s.

    ``context`` describes the state on failure, so a red CI run says what it saw.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await probe()
        if result is not None:
            return result
        await asyncio.sleep(interval)
    seen = f"\n{await context()}" if context is not None else ""
    raise AssertionError(f"timed out after {within:.0f} s waiting for {what}{seen}")
