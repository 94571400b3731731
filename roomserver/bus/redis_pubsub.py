"""Sharded pub/sub for ``RedisBroker``: SSUBSCRIBE on the primary that owns
each room channel's slot, one connection per such primary, re-subscribed by
itself after failovers, slot moves and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from redis.asyncio.connection import Connection
from redis.exceptions import MovedError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomserver.bus.base import BrokerUnavailable
from roomserver.bus.redis_client import IO_ERRORS, NotSent, SlotRouter, sleep_until

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, bytes], None]


class _ShardReader:
    """One pub/sub connection to one primary, read by its own task.

    Replies to our (S)SUBSCRIBE/PING commands arrive in command order between
    pushed messages; ``_expect`` matches them up. A ``sunsubscribe`` nobody
    asked for is the server dropping a channel whose slot moved away."""

    def __init__(self, subscriber: ShardSubscriber, addr: str, conn: Connection) -> None:
        self.addr = addr
        self.conn = conn
        self.channels: set[bytes] = set()
        self._sub = subscriber
        # (reply kind, channel, future of a waiting caller or None)
        self._expect: deque[tuple[bytes, bytes | None, asyncio.Future[None] | None]] = deque()
        self.alive = True
        self._closing: asyncio.Future[None] | None = None
        self.task = asyncio.create_task(self._run(), name=f"redis-pubsub-{addr}")

    async def send(self, kind: bytes, *args: bytes, wait: bool = False) -> asyncio.Future[None] | None:
        """Send a command; with ``wait`` returns a future for its reply."""
        if not self.alive or not self.conn.is_connected:
            raise NotSent(f"{self.addr}: pub/sub connection closed")
        fut = asyncio.get_running_loop().create_future() if wait else None
        channel = args[0] if args else None
        self._expect.append((kind, channel, fut))
        try:
            await self.conn.send_packed_command(
                self.conn.pack_command(kind.upper(), *args), check_health=False
            )
        except IO_ERRORS as exc:
            self._lost(exc)
            raise NotSent(f"{self.addr}: {exc}") from exc
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ping = self._sub.timeouts.pubsub_ping
        last_rx = loop.time()
        try:
            while True:
                try:
                    msg = await self.conn.read_response(timeout=ping)
                except ResponseError as exc:
                    last_rx = loop.time()
                    self._answer(None, None, exc)
                    continue
                now = loop.time()
                if msg is None:
                    if now - last_rx > 3 * ping:
                        raise RedisTimeoutError(f"{self.addr}: pub/sub connection silent")
                    await self.send(b"ping")
                    continue
                last_rx = now
                if isinstance(msg, list) and len(msg) >= 3 and msg[0] == b"smessage":
                    self._sub.dispatch(msg[1], msg[2])
                elif isinstance(msg, list) and msg and msg[0] in (b"ssubscribe", b"sunsubscribe"):
                    self._answer(msg[0], msg[1], None)
                else:  # PONG: [b"pong", b""] while subscribed, b"PONG" otherwise
                    self._answer(b"ping", None, None)
        except asyncio.CancelledError:
            self._lost(None)
            raise
        except (*IO_ERRORS, NotSent) as exc:
            self._lost(exc)
        except Exception as exc:  # a bug must not leave rooms silently unsubscribed
            log.exception("pub/sub reader %s failed", self.addr)
            self._lost(exc)

    def _answer(self, kind: bytes | None, channel: bytes | None, error: Exception | None) -> None:
        if self._expect:
            want_kind, want_channel, fut = self._expect[0]
            if error is not None or (want_kind == kind and (want_channel is None or want_channel == channel)):
                self._expect.popleft()
                if fut is not None and not fut.done():
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(None)
                return
        if kind == b"sunsubscribe" and channel is not None:
            self._sub.server_dropped(self, channel)

    def _lost(self, exc: BaseException | None) -> None:
        if not self.alive:
            return
        self.alive = False
        while self._expect:
            fut = self._expect.popleft()[2]
            if fut is not None and not fut.done():
                fut.set_exception(NotSent(f"{self.addr}: pub/sub connection lost"))
        # Also wakes the reader task if another task noticed the loss first.
        self._closing = asyncio.ensure_future(self.conn.disconnect(nowait=True))
        self._sub.reader_lost(self, exc)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.conn.disconnect(nowait=True)


class ShardSubscriber:
    """Sharded pub/sub over a ``SlotRouter``: one connection per primary that
    owns subscribed channels (SSUBSCRIBE must go to the slot's owner).

    ``subscribe`` returns once the server confirmed the subscription, so a
    publish that follows it is delivered. When a connection dies or the server
    drops channels (failover, slot migration), the channels that are still
    wanted are re-subscribed in the background on the slot's new primary,
    with backoff, until that works: the broker heals without a restart.
    Messages published in between are lost (pub/sub is at most once)."""

    def __init__(
        self,
        router: SlotRouter,
        on_message: MessageHandler,
        on_repaired: Callable[[bytes], None] | None = None,
    ) -> None:
        self.router = router
        self.timeouts = router.timeouts
        self._on_message = on_message
        # Called for each channel re-subscribed after a loss: what was published
        # in between is gone from pub/sub, so the owner checks the history head.
        self._on_repaired = on_repaired
        self._wanted: dict[bytes, int] = {}  # channel -> slot
        self._where: dict[bytes, _ShardReader] = {}
        self._readers: dict[str, _ShardReader] = {}
        self._connecting: dict[str, asyncio.Future[_ShardReader]] = {}
        self._repair: set[bytes] = set()
        self._repair_wake = asyncio.Event()
        self._repair_task: asyncio.Task[None] | None = None
        self._closed = False

    def dispatch(self, channel: bytes, payload: bytes) -> None:
        if channel in self._wanted:
            self._on_message(channel, payload)

    async def subscribe(self, channel: bytes, slot: int) -> None:
        """Subscribe, or raise ``BrokerUnavailable`` and leave nothing behind
        (a failed first subscribe is not retried in the background: the
        caller failed its join and will subscribe again when it retries)."""
        new = channel not in self._wanted
        self._wanted[channel] = slot
        try:
            await self._ensure(channel, asyncio.get_running_loop().time() + self.timeouts.op)
        except BaseException:
            if new:
                await self.unsubscribe(channel)
            raise

    async def unsubscribe(self, channel: bytes) -> None:
        self._wanted.pop(channel, None)
        self._repair.discard(channel)
        reader = self._where.pop(channel, None)
        if reader is not None:
            reader.channels.discard(channel)
            with contextlib.suppress(NotSent):
                await reader.send(b"sunsubscribe", channel)  # the reply is matched, nobody waits

    @property
    def pending(self) -> set[bytes]:
        """Wanted channels not subscribed right now (being repaired)."""
        return {c for c in self._wanted if c not in self._where}

    async def _ensure(self, channel: bytes, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.02
        last = "no attempt"
        while channel in self._wanted and channel not in self._where:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BrokerUnavailable(f"redis: cannot subscribe: {last}")
            slot = self._wanted[channel]
            try:
                async with asyncio.timeout(remaining):
                    await self.router.ensure_topology()
                    addr = self.router.addr_for_slot(slot)
                    if addr is None:
                        raise NotSent(f"slot {slot} has no primary")
                    reader = await self._reader(addr)
                    confirmed = await reader.send(b"ssubscribe", channel, wait=True)
                    assert confirmed is not None
                    await confirmed
            except TimeoutError:
                raise BrokerUnavailable(
                    f"redis: cannot subscribe within {self.timeouts.op}s: {last}"
                ) from None
            except MovedError as exc:
                self.router.moved(exc)
                last = f"MOVED {exc.host}:{exc.port}"
                continue
            except (NotSent, ResponseError) as exc:
                last = str(exc)
                self.router.mark_stale()
                await sleep_until(backoff, deadline)
                backoff = min(backoff * 2, 0.2)
                continue
            if channel not in self._wanted:  # unsubscribed meanwhile
                with contextlib.suppress(NotSent):
                    await reader.send(b"sunsubscribe", channel)
                return
            old = self._where.get(channel)
            if old is not None and old is not reader:
                old.channels.discard(channel)
                with contextlib.suppress(NotSent):
                    await old.send(b"sunsubscribe", channel)
            self._where[channel] = reader
            reader.channels.add(channel)

    async def _reader(self, addr: str) -> _ShardReader:
        reader = self._readers.get(addr)
        if reader is not None and reader.alive:
            return reader
        pending = self._connecting.get(addr)
        if pending is None:
            pending = self._connecting[addr] = asyncio.ensure_future(self._connect(addr))
            pending.add_done_callback(lambda _: self._connecting.pop(addr, None))
        return await asyncio.shield(pending)

    async def _connect(self, addr: str) -> _ShardReader:
        conn = await self.router.pool(addr).connect(socket_timeout=self.timeouts.op)
        if self._closed:
            await conn.disconnect(nowait=True)
            raise NotSent("closed")
        reader = self._readers[addr] = _ShardReader(self, addr, conn)
        return reader

    def reader_lost(self, reader: _ShardReader, exc: BaseException | None) -> None:
        if self._readers.get(reader.addr) is reader:
            del self._readers[reader.addr]
        for channel in reader.channels:
            if self._where.get(channel) is reader:
                del self._where[channel]
                self._schedule_repair(channel)
        reader.channels.clear()
        if exc is not None and not self._closed:
            log.warning("redis pub/sub connection to %s lost: %s", reader.addr, exc)
            self.router.mark_stale()

    def server_dropped(self, reader: _ShardReader, channel: bytes) -> None:
        reader.channels.discard(channel)
        if self._where.get(channel) is reader:
            del self._where[channel]
            self.router.mark_stale()
            self._schedule_repair(channel)

    def _schedule_repair(self, channel: bytes) -> None:
        if self._closed or channel not in self._wanted:
            return
        self._repair.add(channel)
        self._repair_wake.set()
        if self._repair_task is None or self._repair_task.done():
            self._repair_task = asyncio.create_task(self._repair_loop(), name="redis-pubsub-repair")

    async def _repair_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._closed:
            await self._repair_wake.wait()
            self._repair_wake.clear()
            todo = [c for c in self._repair if c in self._wanted]
            self._repair.clear()
            if not todo:
                continue
            deadline = loop.time() + self.timeouts.op
            results = await asyncio.gather(*(self._ensure(c, deadline) for c in todo), return_exceptions=True)
            failed = [c for c, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
            if self._on_repaired is not None:
                for c in todo:
                    if c not in failed and c in self._where:
                        self._on_repaired(c)
            if failed:
                self._repair.update(failed)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                self._repair_wake.set()
            else:
                backoff = 0.05

    async def close(self) -> None:
        self._closed = True
        if self._repair_task is not None:
            self._repair_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repair_task
        for pending in list(self._connecting.values()):
            pending.cancel()
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
        self._where.clear()
