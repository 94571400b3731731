"""BackgroundTask: a component's loop, stopped only once it has really ended."""

from __future__ import annotations

import asyncio

import pytest

from roomserver.background import BackgroundTask


async def test_stop_waits_until_the_loop_has_run_its_cleanup() -> None:
    events: list[str] = []

    async def loop() -> None:
        try:
            while True:
                await asyncio.sleep(1)
        finally:
            await asyncio.sleep(0.01)  # a loop may need a moment to end what it was doing
            events.append("loop ended")

    task = BackgroundTask("t")
    assert await task.stop() is False  # never started: nothing to do
    task.start(loop())
    await asyncio.sleep(0)
    assert task.running
    assert await task.stop() is True
    events.append("stopped")
    assert events == ["loop ended", "stopped"] and not task.running
    task.start(loop())  # may run again after a stop
    assert await task.stop() is True


async def test_a_second_start_is_refused_without_leaking_the_coroutine() -> None:
    async def loop() -> None:
        await asyncio.sleep(3600)

    task = BackgroundTask("t")
    task.start(loop())
    second = loop()
    with pytest.raises(RuntimeError, match="already running"):
        task.start(second)
    assert second.cr_frame is None  # closed, so never "was never awaited"
    await task.stop()


async def test_an_error_in_the_loop_is_not_swallowed_by_stop() -> None:
    async def loop() -> None:
        raise ValueError("boom")

    task = BackgroundTask("t")
    task.start(loop())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await task.stop()
