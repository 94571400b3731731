"""The fan-out as a pure state machine: bus deliveries in, frames and actions out.

No I/O, no clock, no event loop: the caller feeds deliveries, joins, replies and
clock values (``tick(now)``) and gets back the actions to perform, in order:
``Frame`` (one socket's own frame), ``Broadcast`` (one shared frame for many
sockets), ``Close`` (a socket to close, and why), ``ReadHistory`` (a range the
stream needs before it can go on) and ``EpochChanged``. ``roomserver.fanout``
is the asyncio shell that owns the transports, the timer and the history reads;
this module decides everything else (its values and actions are in
``fanout_values``), so it is tested by feeding values and asserting actions,
without sockets or sleeps.

What it decides (the "why" of each rule is in docs/architecture.md, "Fan-out"):

- Per room, durable events are released in ``seq`` order: duplicates are dropped,
  and after a gap later deliveries are held while the missing range is read from
  history (``ReadHistory`` → ``history_read``). A joiner starts after
  ``flushed_seq``; a resuming member is held ("syncing") until ``end_sync`` gives
  it history + what arrived meanwhile, deduplicated by ``seq``.
- Per flush and room, one JSON array in one WebSocket text frame, the same bytes
  for every member; a member with personal messages (replies, targeted events,
  replays) gets them first in a frame of its own.
- Three cadences (``due``): personal messages at most ``flush_ms`` after they were
  queued; room broadcasts every ``flush_ms`` stretched so that sockets × flushes/s
  stays within ``frame_budget``, a durable event waiting at most one stretched
  interval since the last durable flush, chatter alone two since any flush.
- A room of more than ``slice_size`` members is written in slices
  (``continue_writes`` once per loop turn), so one big room does not hold the loop.
- Slow consumers: past ``buffer_soft`` buffered bytes a socket gets durable events
  only; past ``buffer_limit`` it is closed with 4008 (and resumes from history).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from roomserver.bus.base import AUDIENCE_ALL, AUDIENCE_STAFF, BusEvent, Delivery
from roomserver.core.fanout_values import (
    RECENT_BARRAGE,
    Action,
    Broadcast,
    Close,
    Connection,
    EpochChanged,
    FanoutStats,
    Frame,
    Member,
    ReadHistory,
    RoomChannel,
    Transport,
    is_barrage,
    json_array,
    ws_text_frame,
)
from roomserver.protocol import CLOSE_SLOW_CONSUMER

__all__ = [
    "RECENT_BARRAGE",
    "Action",
    "Broadcast",
    "Close",
    "Connection",
    "EpochChanged",
    "FanoutStats",
    "FanoutStream",
    "Frame",
    "Member",
    "ReadHistory",
    "RoomChannel",
    "Transport",
    "coalesce",
    "is_barrage",
    "json_array",
    "ws_text_frame",
]

# History reads one gap repair may take before the held deliveries are released anyway.
MAX_REPAIR_READS = 20
# A room flush that is due this close after a reply flush goes with it: one frame, not two.
ROOM_SLACK_S = 0.002


class FanoutStream:
    """Every room channel and socket of one node, and when each flush is due.

    Methods that can produce work return the actions to perform, in order; the
    returned list belongs to the caller. Times are plain seconds from any
    monotonic clock the caller uses consistently."""

    def __init__(
        self,
        *,
        flush_ms: int = 50,
        frame_budget: int = 60_000,
        buffer_soft: int = 256 * 1024,
        buffer_limit: int = 2 * 1024 * 1024,
        batching: bool = True,
        slice_size: int = 500,
    ) -> None:
        self.flush_ms = flush_ms
        self.frame_budget = frame_budget
        self.buffer_soft = buffer_soft
        self.buffer_limit = buffer_limit
        self.batching = batching
        # Sockets written per slice of a big room's flush (``continue_writes`` for the rest).
        self.slice_size = slice_size
        # Off until the shell has a loop to run further slices on: then a flush writes all.
        self.slicing = False
        self.channels: dict[str, RoomChannel] = {}
        self.connections: set[Connection] = set()
        self.stats = FanoutStats()
        self.rooms_flushed = 0  # channels the last flush wrote (the shell's flush metric)
        self._out: list[Action] = []
        self._dirty_rooms: set[RoomChannel] = set()
        self._dirty_conns: set[Connection] = set()
        self._last_flush = 0.0  # time of the last room (full) flush
        self._last_durable = 0.0  # ... of the last room flush that carried a durable event
        self._durable_pending = False  # a dirty room holds a durable event
        self._last_personal = 0.0  # time of the last flush of personal messages
        # Big rooms' broadcasts still being written, a slice per ``continue_writes``.
        self._unfinished: dict[RoomChannel, _RoomWrite] = {}

    def _take(self) -> list[Action]:
        out = self._out
        if out:
            self._out = []
        return out

    # -- cadence ---------------------------------------------------------------

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

    def due(self) -> float | None:
        """Time of the next flush that has work, or None."""
        due = None
        if self._dirty_rooms:
            due = self._room_due()
        if self._dirty_conns:
            personal = self._last_personal + self.flush_ms / 1000.0
            due = personal if due is None else min(due, personal)
        return due

    def earliest_due(self) -> float:
        """No flush can be due before this (a cheap bound for the hot path): every
        cadence waits at least ``flush_ms`` after the last room flush."""
        return self._last_flush + self.flush_ms / 1000.0

    def tick(self, now: float) -> list[Action]:
        """The flush that is due at ``now``: rooms and replies if the rooms are due
        (the small slack lets both go together when their times nearly coincide),
        else the replies only."""
        if self._dirty_rooms and now + ROOM_SLACK_S >= self._room_due():
            self._flush(now, rooms=True)
        else:
            self._flush(now, rooms=False)
        return self._take()

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

    def set_ready(self, room: str, epoch: str, seq: int, history: Iterable[BusEvent] = ()) -> list[Action]:
        """The channel's starting point, read after subscribing (Broker.load), and the
        room's latest events up to ``seq`` if read (they seed ``recent``)."""
        ch = self.channel(room)
        if ch.last_seq >= 0:
            return self._take()
        ch.recent.extend(ev.body for ev in history if 0 < ev.seq <= seq and is_barrage(ev.body))
        ch.epoch, ch.last_seq, ch.flushed_seq = epoch, seq, seq
        self._release_held(ch)
        return self._take()

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
        by seq, queued as its personal messages. Returns that number."""
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
        if conn.personal:
            self._dirty_conns.add(conn)
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

    def send_personal(self, conn: Connection, message: bytes) -> list[Action]:
        """Queue a reply or a personal event for the next flush of this socket
        (written at once when batching is off)."""
        if conn.closed:
            return self._take()
        conn.personal.append(message)
        self._dirty_conns.add(conn)
        if not self.batching:
            self._flush_connection(conn)
        return self._take()

    def close(self, conn: Connection, code: int, reason: str) -> list[Action]:
        """Close ``conn`` (nothing more is written to it); no action if it is closed."""
        self._close(conn, code, reason)
        return self._take()

    def _close(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._out.append(Close(conn, code, reason))

    # -- ingest ----------------------------------------------------------------

    def ingest(self, d: Delivery) -> list[Action]:
        """A batch from the bus."""
        self._ingest(d)
        return self._take()

    def _ingest(self, d: Delivery) -> None:
        ch = self.channels.get(d.room)
        if ch is None:
            return
        if ch.last_seq < 0 or ch.repairing:
            ch.held.append(d)
            return
        if d.epoch != ch.epoch:
            if ch.epoch:
                # History was lost: the members' seq no longer means anything. They
                # resume (get history_gone and join again), never replay another stream.
                self._out.append(EpochChanged(ch, ch.epoch, d.epoch))
                for conn in list(ch.members):
                    self._close(conn, CLOSE_SLOW_CONSUMER, "room history was reset")
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
                ch.held.insert(0, Delivery(d.room, d.epoch, d.version, events[i:]))
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

    def _repair(self, ch: RoomChannel) -> None:
        ch.repairing = True
        ch.repair_reads = 0
        self._out.append(ReadHistory(ch, ch.last_seq))

    def history_read(self, ch: RoomChannel, events: list[BusEvent]) -> list[Action]:
        """The answer to ``ReadHistory(ch, …)``: release what continues the stream,
        then read on, or release the held deliveries (which may find the next gap)."""
        for ev in events:
            if ev.seq == ch.last_seq + 1:
                ch.last_seq = ev.seq
                self._enqueue(ch, ev)
        ch.repair_reads += 1
        held = ch.held
        caught_up = bool(held) and bool(held[0].events) and held[0].events[0].seq <= ch.last_seq + 1
        if events and not caught_up and ch.repair_reads < MAX_REPAIR_READS:
            self._out.append(ReadHistory(ch, ch.last_seq))
        else:
            self._end_repair(ch)
        return self._take()

    def history_failed(self, ch: RoomChannel) -> list[Action]:
        """``ReadHistory`` failed: the members cannot be given a gapless stream here,
        so they are closed to resume from history themselves."""
        for conn in list(ch.members):
            self._close(conn, CLOSE_SLOW_CONSUMER, "history repair failed")
        self._end_repair(ch)
        return self._take()

    def _end_repair(self, ch: RoomChannel) -> None:
        ch.repairing = False
        self._release_held(ch)

    def _release_held(self, ch: RoomChannel) -> None:
        held, ch.held = ch.held, []
        for d in held:
            self._ingest(d)

    # -- flush -----------------------------------------------------------------

    def flush(self, now: float) -> list[Action]:
        """Everything pending: room broadcasts, then personal messages."""
        self._flush(now, rooms=True)
        return self._take()

    def flush_personal(self, now: float) -> list[Action]:
        """The sockets' personal messages only (the reply cadence)."""
        self._flush(now, rooms=False)
        return self._take()

    def flush_connection(self, conn: Connection) -> list[Action]:
        """This socket's personal messages, now (before a close)."""
        self._flush_connection(conn)
        return self._take()

    def _flush(self, now: float, *, rooms: bool) -> None:
        self._last_personal = now
        self.rooms_flushed = 0
        if rooms:
            self._last_flush = now
            if self._durable_pending:
                self._last_durable = now
            self._durable_pending = False
            self._finish_writes()
            channels, self._dirty_rooms = self._dirty_rooms, set()
            self.rooms_flushed = len(channels)
            for ch in channels:
                self._flush_room(ch)
        conns, self._dirty_conns = self._dirty_conns, set()
        for conn in conns:
            self._flush_connection(conn)

    def _flush_connection(self, conn: Connection) -> None:
        if conn.personal and not conn.closed:
            self._frame(conn, ws_text_frame(json_array(conn.personal)), len(conn.personal))
        conn.personal = []

    def _flush_room(self, ch: RoomChannel) -> None:
        events, ch.pending = ch.pending, []
        if not events:
            return
        events = coalesce(events)
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
            self._flush_connection(conn)
            self._close(conn, code, "kicked")

    def _write_members(self, ch: RoomChannel, events: list[BusEvent]) -> None:
        """The room's broadcast events: one shared frame for every live member
        without personal messages; a durable-only frame for sockets past the soft
        buffer limit; a 4008 close past the hard limit.

        A room bigger than ``slice_size`` members is written ``slice_size`` sockets
        per ``continue_writes`` (the shell calls it once per loop turn, so replies,
        REST calls and pings are served in between: a 100,000-socket fan-out
        otherwise holds the loop for a second or more). Members syncing at the
        flush get the events in their held list at once; a later flush of the room
        first finishes this one (per-socket order)."""
        unfinished = self._unfinished.pop(ch, None)
        if unfinished is not None:
            self._plan(unfinished, None)
        write = _RoomWrite(ch, events)
        if not self.slicing or len(ch.members) <= self.slice_size:
            self._plan(write, None, ch.members.items())
            return
        for conn, member in ch.members.items():
            if member.held is not None:
                member.held.extend(events)
            else:
                write.pending.append((conn, member))
        if not self._plan(write, self.slice_size):
            self._unfinished[ch] = write

    @property
    def writing(self) -> bool:
        """A big room's flush is not finished: call ``continue_writes`` (next loop turn)."""
        return bool(self._unfinished)

    def continue_writes(self) -> list[Action]:
        """One more slice of every room write that is not finished."""
        for ch, write in list(self._unfinished.items()):
            if self._plan(write, self.slice_size):
                self._unfinished.pop(ch, None)
        return self._take()

    def _finish_writes(self) -> None:
        for write in self._unfinished.values():
            self._plan(write, None)
        self._unfinished.clear()

    def _audience(self, ch: RoomChannel, audience: str) -> list[Connection]:
        if audience == AUDIENCE_STAFF:
            return [c for c in ch.members if c.staff]
        if audience.startswith("user:"):
            return list(ch.by_user.get(audience[5:], ()))
        return []

    def _plan(
        self, write: _RoomWrite, limit: int | None, members: Iterable[tuple[Connection, Member]] | None = None
    ) -> bool:
        """Plan ``write``'s frames for ``members`` (default: its pending ones, at most
        ``limit`` of them); True when nothing is left."""
        if members is None:
            start = write.done
            write.done = len(write.pending) if limit is None else min(len(write.pending), start + limit)
            members = itertools.islice(write.pending, start, write.done)
            sliced = True
        else:
            sliced = False
        events, bodies, shared, shared_n = write.events, write.bodies, write.shared, write.shared_n
        soft, hard, dirty = self.buffer_soft, self.buffer_limit, self._dirty_conns
        current = write.ch.members
        to_all: list[Connection] = []
        add = to_all.append
        for conn, member in members:
            if conn.closed:
                continue  # closing: nothing more may follow the close frame
            if sliced and current.get(conn) is not member:
                continue  # left the room since the flush began
            if member.held is not None:
                member.held.extend(events)
                continue
            if conn.personal:
                personal = conn.personal
                self._frame(conn, ws_text_frame(json_array(personal + bodies)), len(personal) + shared_n)
                conn.personal = []
                dirty.discard(conn)
                continue
            if not shared:
                continue
            buffered = conn.transport.get_write_buffer_size()
            if buffered > soft:
                if buffered > hard:
                    self._slow(conn)
                    continue
                if write.reduced is None:
                    durable = [ev.body for ev in events if ev.seq]
                    write.durable_n = len(durable)
                    write.reduced = ws_text_frame(json_array(durable)) if durable else b""
                self.stats.shed_ephemeral += shared_n - write.durable_n
                if write.reduced:
                    self._frame(conn, write.reduced, write.durable_n)
                continue
            add(conn)
        if to_all:
            self._out.append(Broadcast(shared, shared_n, to_all))
        return write.done >= len(write.pending)

    def _frame(self, conn: Connection, data: bytes, messages: int) -> None:
        """One socket's own frame, unless it is closed or past the hard limit."""
        if conn.closed:
            return
        if conn.transport.get_write_buffer_size() > self.buffer_limit:
            self._slow(conn)
            return
        self._out.append(Frame(conn, data, messages))

    def _slow(self, conn: Connection) -> None:
        if conn.closed:
            return
        self.stats.slow_closes += 1
        self._close(conn, CLOSE_SLOW_CONSUMER, "slow consumer: resume from history")


class _RoomWrite:
    """One room flush's broadcast, planned for the members in one go or in slices
    (``FanoutStream._plan``)."""

    __slots__ = ("bodies", "ch", "done", "durable_n", "events", "pending", "reduced", "shared", "shared_n")

    def __init__(self, ch: RoomChannel, events: list[BusEvent]) -> None:
        self.ch = ch
        self.events = events
        self.bodies = [ev.body for ev in events]
        self.shared = ws_text_frame(json_array(self.bodies)) if self.bodies else b""
        self.shared_n = len(self.bodies)
        self.reduced: bytes | None = None  # durable-only frame, made when first needed
        self.durable_n = 0
        self.pending: list[tuple[Connection, Member]] = []  # sliced: the members to write
        self.done = 0  # ... of which planned


def coalesce(events: list[BusEvent]) -> list[BusEvent]:
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
