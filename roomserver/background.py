"""One long-running asyncio task that a component owns: started once, cancelled and
awaited on stop.

The node's periodic parts (announcements, reminders, the behaviour recorder and
writer, the bus watch, the GC policy, the members batch) each run one loop; they
hold it here so that stopping is the same everywhere: cancel, wait until the
loop has really ended (a loop cancelled but not awaited may still be inside a
write when the component's own clean-up runs), swallow only the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BackgroundTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[Any] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, loop: Coroutine[Any, Any, Any]) -> None:
        """Run ``loop`` (a coroutine that runs until cancelled) on the running event loop."""
        if self._task is not None:
            loop.close()  # never awaited: close it so Python does not warn
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.get_running_loop().create_task(loop, name=self.name)

    async def stop(self) -> bool:
        """Cancel the loop and wait for its end; whether it was running."""
        task, self._task = self._task, None
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True
