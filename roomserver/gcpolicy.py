"""Keep Python's full garbage collections out of the fan-out path.

A full (generation 2) collection walks every object the collector tracks and stops the
whole process while it does. With 10,000 sockets that stalled every room on the node for
0.35-0.5 s, several times a minute while the heap grew (measured: docs/benchmarks.md,
"Current figures: after the GC policy"). Young collections (generations 0 and 1)
are cheap and catch the short-lived cycles (exception tracebacks, finished tasks), so
they stay as Python runs them.

Every ``freeze_s`` the policy runs a young collection, so young garbage is not kept, and
then ``gc.freeze()``s the survivors: an automatic full collection afterwards walks only
what was made since. Reference counting still frees frozen objects; only cyclic garbage
among them waits for the reclaim: ``gc.unfreeze()`` and one full collection, every
``small_reclaim_s`` while the frozen heap is small enough for a short pause (``small_heap``
objects), otherwise every ``reclaim_s``.

Young collections are cheap each, but Python starts one every 700 net container
allocations, and each walks everything young that is still alive: under load that is the
in-flight work (a busy node's futures, coroutines, pending replies, tens of thousands of
objects), walked again by every collection while it lasts. Measured on a 19,000-socket
node taking 5,000 lottery entries/s: 64-107 ms of automatic young collections per second.
``young_threshold`` starts one every that many allocations instead (10,000 by default):
the in-flight set is walked 14x less often (server CPU per lottery entry 109 -> 90 us at
19,000 sockets per node, docs/benchmarks.md, session 4).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field

from roomserver.background import BackgroundTask

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcPolicy:
    freeze_s: float = 1.0
    reclaim_s: float = 3600.0
    # Net container allocations between automatic young collections (Python: 700).
    young_threshold: int = 10_000
    # A full collection over this many objects is short (tens of ms at most): worth
    # doing every small_reclaim_s, not on every tick.
    small_heap: int = 200_000
    small_reclaim_s: float = 60.0
    _last_reclaim: float = 0.0
    # When the frozen heap's size is next looked at (the small-heap reclaim):
    # gc.get_freeze_count() walks the whole frozen list (tens of ms at 10,000
    # sockets), so at most once per small_reclaim_s, not on every tick.
    _next_size_check: float = 0.0
    _saved_threshold: tuple[int, ...] | None = None
    _loop: BackgroundTask = field(default_factory=lambda: BackgroundTask("gc-policy"))

    def start(self) -> None:
        if self.freeze_s <= 0 or self._loop.running:
            return
        self._last_reclaim = time.monotonic()
        if self.young_threshold > 0:
            self._saved_threshold = gc.get_threshold()
            gc.set_threshold(self.young_threshold, *self._saved_threshold[1:])
        self._loop.start(self._run())

    async def stop(self) -> None:
        if not await self._loop.stop():
            return
        # Hand the heap back to the collector as it was (tests run several servers).
        gc.unfreeze()
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.freeze_s)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """One round: reclaim if due, then freeze what survives a young collection."""
        since = now - self._last_reclaim
        if since >= self.reclaim_s or self._small_heap_due(now, since):
            started = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            self._last_reclaim = now
            log.info(
                "gc reclaim: %d collected, %.0f ms",
                collected,
                (time.perf_counter() - started) * 1000,
            )
        gc.collect(1)
        # After a young collection every survivor is in generation 2: that is what freezes.
        gc.freeze()

    def _small_heap_due(self, now: float, since: float) -> bool:
        """``small_reclaim_s`` has passed and the frozen heap is small enough for a short
        full collection. Never counted with ``len(gc.get_objects())``: that list holds
        every object it names while other threads run, and a tuple another thread is
        still building (``tuple(generator)`` resizes it, which needs the only reference)
        then fails with ``SystemError: Objects/tupleobject.c: bad argument to internal
        function`` — seen in a test process whose server ran in a thread."""
        if since < self.small_reclaim_s or now < self._next_size_check:
            return False
        self._next_size_check = now + self.small_reclaim_s
        return gc.get_freeze_count() <= self.small_heap
