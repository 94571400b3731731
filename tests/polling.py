"""Bounded polling, for tests that wait on state with no event to await. The bound is
generous where the machine may be loaded (docs/testing.md); a condition is checked at
every step, never waited for by a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    """Whether ``predicate()`` holds within ``timeout`` s (checked every ``step`` s and
    once more at the bound): for ``assert await eventually(...)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


async def until(
    cond: Callable[[], object], timeout: float = 20.0, what: str = "condition", step: float = 0.02
) -> None:
    """Poll ``cond`` every ``step`` s until it holds; the test fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(step)


async def until_async(
    cond: Callable[[], Awaitable[object]], timeout: float, what: str = "condition", step: float = 0.02
) -> None:
    """``until`` for a condition that must be awaited (a broker call, a store read)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(step)
