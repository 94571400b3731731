"""Coalesce concurrent calls on one key into one round trip.

While a call for a key (a room, a room's stock) is in flight, later calls for
that key queue and go together in the next call: no timer, the batch is
whatever arrived meanwhile, so a lone call goes at once (from the caller's own
task, no extra hop) and a burst costs one round trip per in-flight window
instead of one per caller, and one pooled connection instead of many. Each
caller still gets its own result, or the batch's exception.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from roomserver.bus.base import BrokerUnavailable

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[K, T, R]):
    def __init__(
        self,
        send: Callable[[K, list[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int = 256,
        weigh: Callable[[T], tuple[int, int]] | None = None,
        max_weight: tuple[int, int] = (0, 0),
        name: str = "coalesce",
    ) -> None:
        """``send(key, items)`` makes the round trip and returns one result per item,
        in order. A batch holds at most ``max_items`` items and, with ``weigh``, at
        most ``max_weight`` summed per component (e.g. events and bytes)."""
        self._send = send
        self.max_items = max_items
        self._weigh = weigh
        self.max_weight = max_weight
        self.name = name
        self._queues: dict[K, deque[tuple[T, asyncio.Future[R]]]] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self.calls = 0  # round trips made (for tests and benchmarks)

    async def submit(self, key: K, item: T) -> R:
        queue = self._queues.get(key)
        if queue is None:
            # Nothing in flight for this key: go now; callers arriving meanwhile queue.
            queue = self._queues[key] = deque()
            try:
                self.calls += 1
                return (await self._send(key, [item]))[0]
            finally:
                if queue:
                    task = asyncio.create_task(self._drain(key, queue), name=f"{self.name}-{key}")
                    self._drains.add(task)
                    task.add_done_callback(self._drains.discard)
                else:
                    del self._queues[key]
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue.append((item, fut))
        return await fut

    async def _drain(self, key: K, queue: deque[tuple[T, asyncio.Future[R]]]) -> None:
        """Send the key's queued items, one call at a time, until the queue is empty."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while batch := self._take(queue):
                self.calls += 1
                try:
                    results = await self._send(key, [item for item, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            # Normally both are empty; after a cancellation (close) nobody may hang.
            for _, fut in (*batch, *queue):
                if not fut.done():
                    fut.set_exception(BrokerUnavailable("broker closed"))
            if self._queues.get(key) is queue:
                del self._queues[key]

    def _take(self, queue: deque[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        a = b = 0
        while queue:
            item, fut = queue[0]
            if fut.done():  # the caller gave up before we sent it
                queue.popleft()
                continue
            wa, wb = self._weigh(item) if self._weigh else (0, 0)
            if batch and (
                len(batch) >= self.max_items
                or (self._weigh and (a + wa > self.max_weight[0] or b + wb > self.max_weight[1]))
            ):
                break
            queue.popleft()
            batch.append((item, fut))
            a += wa
            b += wb
        return batch

    async def close(self) -> None:
        """Cancel the drains; every queued caller gets BrokerUnavailable."""
        for task in list(self._drains):
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)
        for queue in self._queues.values():
            for _, fut in queue:
                if not fut.done():
                    fut.set_exception(BrokerUnavailable("broker closed"))
        self._queues.clear()
