"""Fan-out: bus deliveries -> WebSocket frames on this node's sockets (the asyncio shell).

The hot path. What to write, to whom and when is decided by the pure
``roomserver.core.fanout.FanoutStream`` (ordering by ``seq``, dedupe, gap
detection, joiners and resumers, the recent barrage, the three cadences and the
frame budget, slow-consumer decisions); read its docstring and
docs/architecture.md "Fan-out" for the rules. This shell owns what the stream
must not: the transports (``transport.write`` of the frames it returns: the
same bytes object to every member of a room, ≈8 µs each, no per-socket
encoding, task or await), the loop timer that calls ``tick`` when a flush is
due, one more slice of a big room per loop turn, the history reads of gap
repair, and the bounded closes.

Bounded memory per socket: what a socket has not yet accepted sits in its
transport's write buffer. Past ``socket_buffer_soft`` (256 KiB default) the
socket stops getting ephemeral events; past ``socket_buffer_limit`` (2 MiB
default) it is closed with 4008 so the client resumes from history. The close
frame queues behind the unread bytes, so a peer that still reads nothing
``close_timeout`` (2 s) later is cut: the transport is aborted and the socket
reset, freeing the buffer (a closing handshake would wait for the peer as long
as it stays silent). Worst case per socket is therefore ≈ limit + one frame, for
at most ``close_timeout`` past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable

from roomserver.bus.base import BusEvent, Delivery
from roomserver.core.fanout import (
    RECENT_BARRAGE,
    Action,
    Broadcast,
    Close,
    Connection,
    EpochChanged,
    FanoutStats,
    FanoutStream,
    Frame,
    ReadHistory,
    RoomChannel,
    Transport,
    is_barrage,
    json_array,
    ws_text_frame,
)

__all__ = [
    "RECENT_BARRAGE",
    "Connection",
    "Fanout",
    "FanoutStats",
    "RoomChannel",
    "cut",
    "is_barrage",
    "json_array",
    "ws_text_frame",
]

log = logging.getLogger(__name__)

HistoryReader = Callable[[str, int], Awaitable[list[BusEvent]]]


def cut(transport: Transport) -> None:
    """Drop a connection now: the unsent bytes are discarded, and the socket is reset
    (SO_LINGER 0) rather than closed, so the kernel does not keep its send queue
    either, retrying a peer that does not read."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Fanout:
    """The stream driven on an asyncio loop: performs its actions, runs its timer."""

    def __init__(
        self,
        *,
        flush_ms: int = 50,
        frame_budget: int = 60_000,
        buffer_soft: int = 256 * 1024,
        buffer_limit: int = 2 * 1024 * 1024,
        close_timeout: float = 2.0,
        batching: bool = True,
        slice_size: int = 500,
        history_reader: HistoryReader | None = None,
        on_epoch_change: Callable[[RoomChannel], None] | None = None,
        on_flush: Callable[[float, int], None] | None = None,
    ) -> None:
        # Sockets written per loop turn in a big room's flush: a REST call or reply needs
        # two or three loop turns; with 2,000-socket slices on a saturated box (100,000
        # sockets over 6 processes on 2 cores) the lottery audit GET waited 0.7 s behind
        # the draw's fan-out.
        self.stream = FanoutStream(
            flush_ms=flush_ms,
            frame_budget=frame_budget,
            buffer_soft=buffer_soft,
            buffer_limit=buffer_limit,
            batching=batching,
            slice_size=slice_size,
        )
        self.close_timeout = close_timeout
        self.history_reader = history_reader
        self.on_epoch_change = on_epoch_change
        self.on_flush = on_flush
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Future[None]] = set()
        self._continuing = False

    # -- the stream's state, read by the node, handlers, metrics and tests -------

    @property
    def channels(self) -> dict[str, RoomChannel]:
        return self.stream.channels

    @property
    def connections(self) -> set[Connection]:
        return self.stream.connections

    @property
    def stats(self) -> FanoutStats:
        return self.stream.stats

    @property
    def buffer_soft(self) -> int:
        return self.stream.buffer_soft

    @buffer_soft.setter
    def buffer_soft(self, value: int) -> None:
        self.stream.buffer_soft = value

    @property
    def buffer_limit(self) -> int:
        return self.stream.buffer_limit

    @buffer_limit.setter
    def buffer_limit(self, value: int) -> None:
        self.stream.buffer_limit = value

    def background_tasks(self) -> set[asyncio.Future[None]]:
        """Closes and history reads under way (a copy)."""
        return set(self._tasks)

    def interval(self) -> float:
        """Seconds between room flushes with durable events (see ``FanoutStream.interval``)."""
        return self.stream.interval()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.stream.slicing = True
        self._mark()

    async def stop(self) -> None:
        """Flush what is pending, then stop flushing."""
        self.flush()
        self._loop = None
        self.stream.slicing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks):
            t.cancel()

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _mark(self) -> None:
        """Something was queued: make sure a timer fires when it is due."""
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None and self._timer_at <= self.stream.earliest_due():
            return  # nothing can be due earlier than the timer already set (hot path)
        due = self.stream.due()
        if due is None:
            return
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        self._perform_flush(lambda: self.stream.tick(loop.time()))
        self._mark()

    # -- membership (the stream's, plus the timer) -------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.stream.add_connection(conn)

    def remove_connection(self, conn: Connection) -> list[str]:
        """Forget a socket; returns the rooms whose channel became empty."""
        return self.stream.remove_connection(conn)

    def channel(self, room: str) -> RoomChannel:
        return self.stream.channel(room)

    def set_ready(self, room: str, epoch: str, seq: int, history: Iterable[BusEvent] = ()) -> None:
        """The channel's starting point, read after subscribing (Broker.load), and the
        room's latest events up to ``seq`` if read (they seed ``recent``)."""
        self._perform(self.stream.set_ready(room, epoch, seq, history))
        self._mark()

    def join(self, conn: Connection, room: str) -> int:
        """Add a live member; returns the seq it starts after (its snapshot seq)."""
        return self.stream.join(conn, room)

    def begin_sync(self, conn: Connection, room: str) -> None:
        """Add (or turn) a member into a syncing one: hold its room events."""
        self.stream.begin_sync(conn, room)

    def end_sync(
        self, conn: Connection, room: str, history: list[BusEvent], make_reply: Callable[[int], bytes] | None
    ) -> int:
        """Release a syncing member (see ``FanoutStream.end_sync``); returns the
        number of durable events replayed."""
        replayed = self.stream.end_sync(conn, room, history, make_reply)
        self._mark()
        return replayed

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove a member; True if the channel is now empty (and was dropped)."""
        return self.stream.leave(conn, room)

    def local_counts(self) -> dict[str, int]:
        return self.stream.local_counts()

    def send_personal(self, conn: Connection, message: bytes) -> None:
        """Queue a reply or a personal event for the next flush of this socket."""
        self._perform(self.stream.send_personal(conn, message))
        self._mark()

    # -- ingest, flush ----------------------------------------------------------

    def ingest(self, d: Delivery) -> None:
        """A batch from the bus (synchronous: called from the broker's loop)."""
        self._perform(self.stream.ingest(d))
        self._mark()

    def flush(self) -> None:
        """Write everything pending: room broadcasts, then personal messages."""
        self._perform_flush(lambda: self.stream.flush(self._now()))

    def flush_personal(self) -> None:
        """Write the sockets' personal messages only (the reply cadence)."""
        self._perform_flush(lambda: self.stream.flush_personal(self._now()))

    def flush_connection(self, conn: Connection) -> None:
        self._perform(self.stream.flush_connection(conn))

    def _perform_flush(self, flush: Callable[[], list[Action]]) -> None:
        started = time.monotonic()
        frames_before = self.stats.frames
        self._perform(flush())
        if self.on_flush is not None and self.stream.rooms_flushed:  # replies alone are small
            self.on_flush(time.monotonic() - started, self.stats.frames - frames_before)

    def _continue_writes(self) -> None:
        """One more slice of every big room's write (once per loop turn)."""
        self._continuing = False
        self._perform(self.stream.continue_writes())

    # -- performing the stream's actions ------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        stats = self.stream.stats
        for action in actions:
            if type(action) is Broadcast:
                # Planned just now: no socket can have closed since (the stream
                # closes sockets itself, after their last frame).
                data = action.data
                for conn in action.conns:
                    conn.transport.write(data)
                stats.frames += len(action.conns)
                stats.deliveries += len(action.conns) * action.messages
            elif type(action) is Frame:
                action.conn.transport.write(action.data)
                stats.frames += 1
                stats.deliveries += action.messages
            elif type(action) is Close:
                self._spawn(self._close_or_cut(action.conn, action.code, action.reason))
            elif type(action) is ReadHistory:
                self._read_history(action)
            elif type(action) is EpochChanged:
                log.warning("room %s: epoch changed %s -> %s", action.channel.room, action.old, action.new)
                if self.on_epoch_change is not None:
                    self.on_epoch_change(action.channel)
        if self.stream.writing and not self._continuing and self._loop is not None:
            self._continuing = True
            self._loop.call_soon(self._continue_writes)

    def _read_history(self, action: ReadHistory) -> None:
        reader = self.history_reader
        if reader is None:
            return  # no history to repair from (unit tests): the later deliveries stay held
        ch = action.channel

        async def read() -> None:
            try:
                events = await reader(ch.room, action.after)
            except Exception:
                log.exception("room %s: history repair failed; members must resume", ch.room)
                self._perform(self.stream.history_failed(ch))
            else:
                self._perform(self.stream.history_read(ch, events))
            self._mark()

        self._spawn(read())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- closes ----------------------------------------------------------------

    def close_soon(self, conn: Connection, code: int, reason: str) -> None:
        """Close ``conn`` in the background (bounded by ``close_timeout``)."""
        self._perform(self.stream.close(conn, code, reason))

    async def close(self, conn: Connection, code: int, reason: str) -> None:
        """Close ``conn`` now (the gateway's token expiry and drain): bounded like
        every close of the fan-out, so a peer that does not read cannot hold it."""
        for action in self.stream.close(conn, code, reason):
            if type(action) is Close:
                await self._close_or_cut(action.conn, action.code, action.reason)

    async def _close_or_cut(self, conn: Connection, code: int, reason: str) -> None:
        """The closing handshake, for at most ``close_timeout`` seconds. A peer that
        does not read never gets the close frame (it sits behind the unread buffer)
        and never answers it: the WebSocket close would wait for it forever, keeping
        the socket and its megabytes. Then the connection is cut instead."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await conn.closer(code, reason)
        except TimeoutError:
            self.stream.stats.cut_connections += 1
            cut(conn.transport)
