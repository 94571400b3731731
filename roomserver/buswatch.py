"""Logs whether the bus (Redis) answers: at start, while it is down, and when it is back.

Without it an operator sees a Redis outage only as ``unavailable`` replies and a
failing ``/readyz``. The watch asks the broker's ``healthy()`` every ``period_s``
and logs a change at once, and an ongoing outage again every ``repeat_s``, so a
long outage is a line every few seconds, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time

from roomserver.background import BackgroundTask
from roomserver.bus.base import Broker

log = logging.getLogger(__name__)


class BusWatch:
    def __init__(self, broker: Broker, name: str, *, period_s: float = 1.0, repeat_s: float = 10.0) -> None:
        self.broker = broker
        self.name = name  # what the operator configured, e.g. "Redis redis://10.0.0.5:6379/0"
        self.period_s = period_s
        self.repeat_s = repeat_s
        self.up: bool | None = None  # None until the first check
        self._down_since = 0.0
        self._last_report = 0.0
        self._loop = BackgroundTask("buswatch")

    def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.period_s)

    async def check(self) -> bool:
        try:
            # healthy() is bounded by the broker's op timeout; this bound is a backstop.
            up = await asyncio.wait_for(self.broker.healthy(), max(self.period_s, 5.0))
        except Exception:  # a check that fails is an answer: not healthy
            up = False
        self._report(up, time.monotonic())
        return up

    def _report(self, up: bool, now: float) -> None:
        was = self.up
        self.up = up
        if up:
            if was is None:
                log.info("%s is reachable", self.name)
            elif not was:
                log.warning("%s is reachable again after %.0f s", self.name, now - self._down_since)
            return
        if was is None or was:
            self._down_since = self._last_report = now
            log.error(
                "%s is unreachable: rooms answer `unavailable` until it is back (retrying every %g s)",
                self.name,
                self.period_s,
            )
        elif now - self._last_report >= self.repeat_s:
            self._last_report = now
            log.error("%s is still unreachable (for %.0f s)", self.name, now - self._down_since)
