"""Fan-out: bus deliveries -> WebSocket frames on this node's sockets.

The hot path. Per flush and per room, the pending events are joined into ONE
JSON array and wrapped into ONE unmasked WebSocket text frame; the same bytes
object is then written to every socket of the room with ``transport.write``
(≈8 µs each; no per-socket encoding, no per-socket task, no awaits). A socket
only gets its own frame when it also has personal messages (replies, targeted
events, a resume replay) in that flush.

Flushing runs on three cadences. Replies and personal events go out at most
``flush_ms`` after they were queued, whatever the node's size: their number is
set by the requests, and holding them back would only add latency. Room
broadcasts go out every ``flush_ms`` too, but that interval stretches with the
number of sockets on this node so that broadcast frames written per second stay
within ``frame_budget`` (viewers per core ≈ frames/s budget ÷ flushes/s): on a
20,000-socket node with a 10,000 frames/s budget a room flushes every 2 s,
while a buy still gets its answer within ``flush_ms``. Within that budget a
durable event (a barrage, ``lottery.drawn``, ``sale.opened``) goes at most one
interval after the previous durable flush, while flushes that would carry only
ephemeral chatter (``online``, ``member.joined``, likes) wait twice as long
since any flush: in a big room the chatter cannot hold a rare important event
back for a whole interval. When several are due, one flush writes them all,
personal messages first, in one frame per socket. After a slow flush the next
one starts at once instead of sleeping a full interval.

Bounded memory per socket: what a socket has not yet accepted sits in its
transport's write buffer. Past ``socket_buffer_soft`` (256 KiB default) the
socket stops getting ephemeral events (low priority shed first); past
``socket_buffer_limit`` (2 MiB default) it is a slow consumer and is closed
with 4008 so the client resumes from history. The close frame queues behind
the unread bytes, so a peer that still reads nothing ``close_timeout`` (2 s)
later is cut: the transport is aborted and the socket reset, freeing the buffer
(a closing handshake would wait for the peer as long as it stays silent). Worst
case per socket is therefore ≈ limit + one frame, for at most ``close_timeout``
past the limit; 5,000 stuck sockets cost ≤ ≈10 GiB only in the absurd case that
all stall at once.

Ordering and exactly-once: per room, durable events are ingested in ``seq``
order (gaps from an at-most-once transport are repaired from history before
anything later is released), duplicates are dropped, and every member of a room
gets the room's frames in the same order. A joining socket starts after
``flushed_seq``; a resuming socket is held ("syncing") while its history is read
and then gets history + whatever arrived meanwhile, deduplicated by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roomserver.bus.base import AUDIENCE_ALL, AUDIENCE_STAFF, BusEvent, Delivery
from roomserver.protocol import CLOSE_SLOW_CONSUMER

if TYPE_CHECKING:
    from asyncio import Transport

log = logging.getLogger(__name__)

# The join snapshot's ``recent``: the room's last barrage events, so a late joiner sees the chat.
RECENT_BARRAGE = 20
# Durable event bodies are spliced as {"seq":N,"ev":"barrage",...} (protocol.encode_event and
# with_seq): a bounded byte search tells a barrage without decoding every event.
_BARRAGE_MARK = b',"ev":"barrage",'


def is_barrage(body: bytes) -> bool:
    return body.find(_BARRAGE_MARK, 0, 40) > 0


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (server -> client, RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def cut(transport: Transport) -> None:
    """Drop a connection now: the unsent bytes are discarded, and the socket is reset
    (SO_LINGER 0) rather than closed, so the kernel does not keep its send queue
    either, retrying a peer that does not read."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def json_array(bodies: list[bytes]) -> bytes:
    return b"[" + b",".join(bodies) + b"]"


class Connection:
    """One client WebSocket on this node, as the fan-out sees it."""

    __slots__ = ("closed", "closer", "conn_id", "personal", "rooms", "staff", "transport", "user")

    def __init__(
        self,
        conn_id: int,
        user: str,
        staff: bool,
        transport: Transport,
        closer: Callable[[int, str], Awaitable[Any]],
    ) -> None:
        self.conn_id = conn_id
        self.user = user
        self.staff = staff
        self.transport = transport
        self.closer = closer
        self.personal: list[bytes] = []
        self.rooms: set[str] = set()
        self.closed = False

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def __hash__(self) -> int:
        return self.conn_id

    def __eq__(self, other: object) -> bool:
        return self is other


@dataclass(slots=True, eq=False)
class Member:
    conn: Connection
    # Not None while the member is syncing (resume): what arrives meanwhile.
    held: list[BusEvent] | None = None


@dataclass(slots=True, eq=False)
class RoomChannel:
    room: str
    members: dict[Connection, Member] = field(default_factory=dict)
    by_user: dict[str, set[Connection]] = field(default_factory=dict)
    epoch: str = ""
    last_seq: int = -1  # highest seq ingested; -1 = not ready (waiting for the first load)
    flushed_seq: int = 0  # highest seq handed to members
    pending: list[BusEvent] = field(default_factory=list)
    # Deliveries held while not ready or while a gap is being repaired.
    held: list[Delivery] = field(default_factory=list)
    repairing: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Bodies of the last barrage events handed to members (seq <= flushed_seq), oldest first.
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT_BARRAGE))


@dataclass(slots=True)
class FanoutStats:
    frames: int = 0
    deliveries: int = 0  # messages delivered (events x sockets)
    events_in: int = 0
    shed_ephemeral: int = 0
    slow_closes: int = 0
    cut_connections: int = 0  # closes that timed out: the transport was aborted


class Fanout:
    # Sockets written per loop turn in a big room's flush. A REST call or reply needs two
    # or three loop turns; with 2,000-socket slices on a saturated box (100,000 sockets over
    # 6 processes on 2 cores) the lottery audit GET waited 0.7 s behind the draw's fan-out.
    SLICE = 500

    def __init__(
        self,
        *,
        flush_ms: int = 50,
        frame_budget: int = 60_000,
        buffer_soft: int = 256 * 1024,
        buffer_limit: int = 2 * 1024 * 1024,
        close_timeout: float = 2.0,
        batching: bool = True,
        history_reader: Callable[[str, int], Awaitable[list[BusEvent]]] | None = None,
        on_epoch_change: Callable[[RoomChannel], None] | None = None,
        on_flush: Callable[[float, int], None] | None = None,
    ) -> None:
        self.flush_ms = flush_ms
        self.frame_budget = frame_budget
        self.buffer_soft = buffer_soft
        self.buffer_limit = buffer_limit
        self.close_timeout = close_timeout
        self.batching = batching
        self.history_reader = history_reader
        self.on_epoch_change = on_epoch_change
        self.on_flush = on_flush
        self.channels: dict[str, RoomChannel] = {}
        self.connections: set[Connection] = set()
        self.stats = FanoutStats()
        self._dirty_rooms: set[RoomChannel] = set()
        self._dirty_conns: set[Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last_flush = 0.0  # loop time of the last room (full) flush
        self._last_durable = 0.0  # ... of the last room flush that carried a durable event
        self._durable_pending = False  # a dirty room holds a durable event
        self._last_personal = 0.0  # loop time of the last flush of personal messages
        self._tasks: set[asyncio.Task] = set()
        # Big rooms' broadcasts still being written, a slice per loop turn.
        self._unfinished: dict[RoomChannel, _RoomWrite] = {}
        self._continuing = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._mark()

    async def stop(self) -> None:
        """Flush what is pending, then stop flushing."""
        self.flush()
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks):
            t.cancel()

    def interval(self) -> float:
        """Seconds between room flushes with durable events: flush_ms, stretched to
        keep frames/s in budget."""
        return max(self.flush_ms / 1000.0, self._stretched())

    def _stretched(self) -> float:
        """Seconds per room flush that keep this node's broadcast frames within budget."""
        return len(self.connections) / self.frame_budget

    def _room_due(self) -> float:
        flush_s = self.flush_ms / 1000.0
        stretched = self._stretched()
        if self._durable_pending:
            return max(self._last_durable + stretched, self._last_flush + flush_s)
        return self._last_flush + max(flush_s, 2 * stretched)

    def _due(self) -> float | None:
        """Loop time of the next flush that has work, or None."""
        due = None
        if self._dirty_rooms:
            due = self._room_due()
        if self._dirty_conns:
            personal = self._last_personal + self.flush_ms / 1000.0
            due = personal if due is None else min(due, personal)
        return due

    def _mark(self) -> None:
        """Something was queued: make sure a timer fires when it is due."""
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None and self._timer_at <= self._last_flush + self.flush_ms / 1000.0:
            return  # nothing can be due earlier than the timer already set (hot path)
        due = self._due()
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
        # A room flush also writes the personal messages (one frame per socket);
        # the small slack lets both go together when their times nearly coincide.
        if self._dirty_rooms and loop.time() + 0.002 >= self._room_due():
            self.flush()
        else:
            self.flush_personal()
        self._mark()

    # -- membership ------------------------------------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.connections.add(conn)

    def remove_connection(self, conn: Connection) -> list[str]:
        """Forget a socket; returns the rooms whose channel became empty."""
        conn.closed = True
        self.connections.discard(conn)
        self._dirty_conns.discard(conn)
        emptied = []
        for room in list(conn.rooms):
            if self.leave(conn, room):
                emptied.append(room)
        return emptied

    def channel(self, room: str) -> RoomChannel:
        ch = self.channels.get(room)
        if ch is None:
            ch = self.channels[room] = RoomChannel(room)
        return ch

    def set_ready(self, room: str, epoch: str, seq: int, history: Iterable[BusEvent] = ()) -> None:
        """The channel's starting point, read after subscribing (Broker.load), and the
        room's latest events up to ``seq`` if read (they seed ``recent``)."""
        ch = self.channel(room)
        if ch.last_seq >= 0:
            return
        ch.recent.extend(ev.body for ev in history if 0 < ev.seq <= seq and is_barrage(ev.body))
        ch.epoch, ch.last_seq, ch.flushed_seq = epoch, seq, seq
        ch.ready.set()
        held, ch.held = ch.held, []
        for d in held:
            self.ingest(d)

    def join(self, conn: Connection, room: str) -> int:
        """Add a live member; returns the seq it starts after (its snapshot seq)."""
        ch = self.channels[room]
        if conn not in ch.members:
            ch.members[conn] = Member(conn)
            ch.by_user.setdefault(conn.user, set()).add(conn)
            conn.rooms.add(room)
        return ch.flushed_seq

    def begin_sync(self, conn: Connection, room: str) -> None:
        """Add (or turn) a member into a syncing one: hold its room events."""
        ch = self.channels[room]
        member = ch.members.get(conn)
        if member is None:
            self.join(conn, room)
            member = ch.members[conn]
        member.held = []

    def end_sync(
        self, conn: Connection, room: str, history: list[BusEvent], make_reply: Callable[[int], bytes] | None
    ) -> int:
        """Release a syncing member: the reply (made from the number of durable
        events replayed), then history and the events held meanwhile, deduplicated
        by seq. Returns that number."""
        ch = self.channels[room]
        member = ch.members.get(conn)
        held = (member.held or []) if member else []
        if member:
            member.held = None
        out: list[bytes] = []
        seen = 0
        replayed = 0
        for ev in history:
            out.append(ev.body)
            seen = max(seen, ev.seq)
            replayed += 1
        for ev in held:
            if ev.seq == 0:
                out.append(ev.body)
            elif ev.seq > seen:
                out.append(ev.body)
                seen = ev.seq
                replayed += 1
        if make_reply is not None:
            conn.personal.append(make_reply(replayed))
        conn.personal.extend(out)
        if not conn.personal:
            return replayed
        self._dirty_conns.add(conn)
        self._mark()
        return replayed

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove a member; True if the channel is now empty (and was dropped)."""
        conn.rooms.discard(room)
        ch = self.channels.get(room)
        if ch is None:
            return False
        if ch.members.pop(conn, None) is not None:
            users = ch.by_user.get(conn.user)
            if users is not None:
                users.discard(conn)
                if not users:
                    del ch.by_user[conn.user]
        if not ch.members:
            del self.channels[room]
            self._dirty_rooms.discard(ch)
            return True
        return False

    def local_counts(self) -> dict[str, int]:
        return {room: len(ch.members) for room, ch in self.channels.items()}

    def send_personal(self, conn: Connection, message: bytes) -> None:
        """Queue a reply or a personal event for the next flush of this socket."""
        if conn.closed:
            return
        conn.personal.append(message)
        self._dirty_conns.add(conn)
        if not self.batching:
            self.flush_connection(conn)
            return
        self._mark()

    # -- ingest ----------------------------------------------------------------

    def ingest(self, d: Delivery) -> None:
        """A batch from the bus (synchronous: called from the broker's loop)."""
        ch = self.channels.get(d.room)
        if ch is None:
            return
        if ch.last_seq < 0 or ch.repairing:
            ch.held.append(d)
            return
        if d.epoch != ch.epoch:
            if ch.epoch:
                log.warning("room %s: epoch changed %s -> %s", d.room, ch.epoch, d.epoch)
                if self.on_epoch_change:
                    self.on_epoch_change(ch)
            ch.epoch, ch.last_seq = d.epoch, 0
            ch.recent.clear()
        events = d.events
        if not events and d.head > ch.last_seq:
            self._repair(ch)  # events were published while our subscription was down
            return
        for i, ev in enumerate(events):
            if ev.seq == 0:
                self._enqueue(ch, ev)
            elif ev.seq <= ch.last_seq:
                continue  # duplicate (e.g. already repaired from history)
            elif ev.seq == ch.last_seq + 1:
                ch.last_seq = ev.seq
                self._enqueue(ch, ev)
            else:
                # Gap: the transport lost a batch. Hold the rest and repair from history.
                rest = Delivery(d.room, d.epoch, d.version, events[i:])
                ch.held.insert(0, rest)
                self._repair(ch)
                return

    def _enqueue(self, ch: RoomChannel, ev: BusEvent) -> None:
        self.stats.events_in += 1
        ch.pending.append(ev)
        if ev.seq:
            self._durable_pending = True
        if not self.batching:
            self._flush_room(ch)
            return
        self._dirty_rooms.add(ch)
        self._mark()

    def _repair(self, ch: RoomChannel) -> None:
        read_history = self.history_reader
        if read_history is None:
            return
        ch.repairing = True

        async def repair() -> None:
            try:
                for _ in range(20):
                    events = await read_history(ch.room, ch.last_seq)
                    for ev in events:
                        if ev.seq == ch.last_seq + 1:
                            ch.last_seq = ev.seq
                            self._enqueue(ch, ev)
                    if not events:
                        break
                    if ch.held and ch.held[0].events and ch.held[0].events[0].seq <= ch.last_seq + 1:
                        break
            except Exception:
                log.exception("room %s: history repair failed; members must resume", ch.room)
                self._close_members(ch, CLOSE_SLOW_CONSUMER, "history repair failed")
            finally:
                ch.repairing = False
                held, ch.held = ch.held, []
                for d in held:
                    self.ingest(d)

        self._spawn(repair())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- flush -----------------------------------------------------------------

    def flush(self) -> None:
        """Write everything pending: room broadcasts, then personal messages."""
        self._flush(rooms=True)

    def flush_personal(self) -> None:
        """Write the sockets' personal messages only (the reply cadence)."""
        self._flush(rooms=False)

    def _flush(self, *, rooms: bool) -> None:
        started = time.monotonic()
        if self._loop is not None:
            self._last_personal = self._loop.time()
            if rooms:
                self._last_flush = self._last_personal
                if self._durable_pending:
                    self._last_durable = self._last_flush
        if rooms:
            self._durable_pending = False
        frames_before = self.stats.frames
        channels: set[RoomChannel] = set()
        if rooms:
            self._finish_writes()
            channels, self._dirty_rooms = self._dirty_rooms, set()
            for ch in channels:
                self._flush_room(ch)
        conns, self._dirty_conns = self._dirty_conns, set()
        for conn in conns:
            self.flush_connection(conn)
        if self.on_flush is not None and channels:  # room flushes: replies alone are small
            self.on_flush(time.monotonic() - started, self.stats.frames - frames_before)

    def flush_connection(self, conn: Connection) -> None:
        if conn.personal and not conn.closed:
            self._write(conn, ws_text_frame(json_array(conn.personal)), len(conn.personal))
        conn.personal = []

    def _flush_room(self, ch: RoomChannel) -> None:
        events, ch.pending = ch.pending, []
        if not events:
            return
        events = _coalesce(events)
        broadcast: list[BusEvent] = []
        closes: list[tuple[Connection, int]] = []
        for ev in events:
            if ev.seq:
                ch.flushed_seq = ev.seq
            if ev.audience == AUDIENCE_ALL:
                broadcast.append(ev)
                if ev.seq and is_barrage(ev.body):
                    ch.recent.append(ev.body)
                continue
            for conn in self._audience(ch, ev.audience):
                member = ch.members[conn]
                if member.held is not None:
                    member.held.append(ev)
                    continue
                conn.personal.append(ev.body)
                self._dirty_conns.add(conn)
                if ev.close_code:
                    closes.append((conn, ev.close_code))
        if self.batching:
            self._write_members(ch, broadcast)
        else:
            for ev in broadcast:
                self._write_members(ch, [ev])
        for conn, code in closes:
            self.flush_connection(conn)
            self.close_soon(conn, code, "kicked")

    def _write_members(self, ch: RoomChannel, events: list[BusEvent]) -> None:
        """Write the room's broadcast events: one shared frame for every live
        member without personal messages; a durable-only frame for sockets past
        the soft buffer limit; a 4008 close past the hard limit.

        A room bigger than ``SLICE`` members is written ``SLICE`` sockets per
        loop turn, so replies, REST calls and pings are served in between (a
        100,000-socket fan-out otherwise holds the loop for a second or more).
        Members syncing at the flush get the events in their held list at once;
        a later flush of the room first finishes this one (per-socket order)."""
        unfinished = self._unfinished.pop(ch, None)
        if unfinished is not None:
            unfinished.run(None)
        write = _RoomWrite(self, ch, events)
        if self._loop is None or len(ch.members) <= self.SLICE:
            write.run(None, ch.members.items())
            return
        write.pending = []
        for conn, member in ch.members.items():
            if member.held is not None:
                member.held.extend(events)
            else:
                write.pending.append((conn, member))
        if not write.run(self.SLICE):
            self._unfinished[ch] = write
            if not self._continuing:
                self._continuing = True
                self._loop.call_soon(self._continue_writes)

    def _continue_writes(self) -> None:
        """One more slice of every room write that is not finished."""
        self._continuing = False
        for ch, write in list(self._unfinished.items()):
            if write.run(self.SLICE):
                self._unfinished.pop(ch, None)
        if self._unfinished and self._loop is not None:
            self._continuing = True
            self._loop.call_soon(self._continue_writes)

    def _finish_writes(self) -> None:
        for write in self._unfinished.values():
            write.run(None)
        self._unfinished.clear()

    def _audience(self, ch: RoomChannel, audience: str) -> list[Connection]:
        if audience == AUDIENCE_STAFF:
            return [c for c in ch.members if c.staff]
        if audience.startswith("user:"):
            return list(ch.by_user.get(audience[5:], ()))
        return []

    def _write(self, conn: Connection, data: bytes, messages: int) -> None:
        if conn.closed:
            return
        if conn.transport.get_write_buffer_size() > self.buffer_limit:
            self._slow(conn)
            return
        conn.transport.write(data)
        self.stats.frames += 1
        self.stats.deliveries += messages

    def _slow(self, conn: Connection) -> None:
        if conn.closed:
            return
        self.stats.slow_closes += 1
        self.close_soon(conn, CLOSE_SLOW_CONSUMER, "slow consumer: resume from history")

    def close_soon(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._spawn(self._close_or_cut(conn, code, reason))

    async def close(self, conn: Connection, code: int, reason: str) -> None:
        """Close ``conn`` now (the gateway's token expiry and drain): bounded like
        every close of the fan-out, so a peer that does not read cannot hold it."""
        if conn.closed:
            return
        conn.closed = True
        await self._close_or_cut(conn, code, reason)

    async def _close_or_cut(self, conn: Connection, code: int, reason: str) -> None:
        """The closing handshake, for at most ``close_timeout`` seconds. A peer that
        does not read never gets the close frame (it sits behind the unread buffer)
        and never answers it: the WebSocket close would wait for it forever, keeping
        the socket and its megabytes. Then the connection is cut instead."""
        try:
            async with asyncio.timeout(self.close_timeout):
                await conn.closer(code, reason)
        except TimeoutError:
            self.stats.cut_connections += 1
            cut(conn.transport)

    def _close_members(self, ch: RoomChannel, code: int, reason: str) -> None:
        for conn in list(ch.members):
            self.close_soon(conn, code, reason)


class _RoomWrite:
    """One room flush's broadcast, written to the members in one go or in slices."""

    __slots__ = (
        "bodies",
        "ch",
        "done",
        "durable_n",
        "events",
        "fanout",
        "pending",
        "reduced",
        "shared",
        "shared_n",
    )

    def __init__(self, fanout: Fanout, ch: RoomChannel, events: list[BusEvent]) -> None:
        self.fanout = fanout
        self.ch = ch
        self.events = events
        self.bodies = [ev.body for ev in events]
        self.shared = ws_text_frame(json_array(self.bodies)) if self.bodies else b""
        self.shared_n = len(self.bodies)
        self.reduced: bytes | None = None  # durable-only frame, made when first needed
        self.durable_n = 0
        self.pending: list[tuple[Connection, Member]] = []  # sliced: the members to write
        self.done = 0  # ... of which written

    def run(self, limit: int | None, members: Iterable[tuple[Connection, Member]] | None = None) -> bool:
        """Write to ``members`` (default: the pending ones, at most ``limit`` of
        them); True when nothing is left."""
        if members is None:
            start = self.done
            self.done = len(self.pending) if limit is None else min(len(self.pending), start + limit)
            members = itertools.islice(self.pending, start, self.done)
            sliced = True
        else:
            sliced = False
        fanout, ch, events, bodies = self.fanout, self.ch, self.events, self.bodies
        shared, shared_n, soft, stats = self.shared, self.shared_n, fanout.buffer_soft, fanout.stats
        current = ch.members
        for conn, member in members:
            if conn.closed:
                continue  # closing: nothing more may follow the close frame
            if sliced and current.get(conn) is not member:
                continue  # left the room since the flush began
            if member.held is not None:
                member.held.extend(events)
                continue
            if conn.personal:
                fanout._write(
                    conn, ws_text_frame(json_array(conn.personal + bodies)), len(conn.personal) + shared_n
                )
                conn.personal = []
                fanout._dirty_conns.discard(conn)
                continue
            if not shared:
                continue
            buffered = conn.transport.get_write_buffer_size()
            if buffered > soft:
                if buffered > fanout.buffer_limit:
                    fanout._slow(conn)
                    continue
                if self.reduced is None:
                    durable = [ev.body for ev in events if ev.seq]
                    self.durable_n = len(durable)
                    self.reduced = ws_text_frame(json_array(durable)) if durable else b""
                stats.shed_ephemeral += shared_n - self.durable_n
                if self.reduced:
                    fanout._write(conn, self.reduced, self.durable_n)
                continue
            conn.transport.write(shared)
            stats.frames += 1
            stats.deliveries += shared_n
        return self.done >= len(self.pending)


def _coalesce(events: list[BusEvent]) -> list[BusEvent]:
    """Keep only the latest ephemeral event per coalesce key (low priority)."""
    keys = [ev.coalesce for ev in events if ev.coalesce]
    if len(keys) == len(set(keys)):
        return events
    seen: set[str] = set()
    out: list[BusEvent] = []
    for ev in reversed(events):
        if ev.coalesce:
            if ev.coalesce in seen:
                continue
            seen.add(ev.coalesce)
        out.append(ev)
    out.reverse()
    return out
