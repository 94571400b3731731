"""In-process ``Broker``: the embedded default (one server process, no Redis).

Every method body runs without awaiting, so each call is atomic with respect to
the event loop, which is what the Redis backend gets from Lua. Deliveries are
scheduled with ``call_soon`` so a publisher never re-enters its own handler.
Several ``MemoryBroker`` objects may share one ``MemoryHub`` to stand for
several nodes in one process (the contract and integration tests do this).

Idle rooms expire as on Redis (``base`` module docstring): each room has a
deadline that every use moves on; a room past it is gone for every call at once
(``MemoryHub.get``), and its memory is reclaimed by ``MemoryHub.sweep`` (one heap
entry per room, run on ``touch`` and on the listing calls). The hub's clock is
injectable so tests can move time.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from roomserver.bus.base import (
    DEFAULT_IDLE_TTL_MS,
    Broker,
    BusEvent,
    CommitResult,
    CommitStatus,
    Delivery,
    DeliveryHandler,
    Draft,
    GrabResult,
    GrabStatus,
    HistoryGone,
    HistoryLimits,
    HistoryPage,
    Idem,
    RoomRecord,
    StockResult,
    StockStatus,
    TallyResult,
    TallyStatus,
    TouchThrottle,
    check_idle_ttl,
    check_page,
    check_time,
)
from roomserver.bus.memory_streams import MemoryStreamsMixin, StreamStore
from roomserver.bus.memory_vmaps import MemoryVmapsMixin, VmapStore
from roomserver.protocol import with_seq
from roomserver.tenancy import app_of

# Per room: beyond this many live idempotency keys the oldest are forgotten early.
MAX_IDEM_KEYS = 200_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Tally:
    expires_ms: int
    closed: bool = False
    entries: dict[str, str] = field(default_factory=dict)  # member -> option
    counts: dict[str, int] = field(default_factory=dict)  # option -> entries


@dataclass
class _Stock:
    initial: int
    left: int
    opens_at: int
    closes_at: int
    expires_ms: int
    per_user: dict[str, int] = field(default_factory=dict)
    records: list[bytes] = field(default_factory=list)


@dataclass
class _Shares:
    amounts: deque[int]
    expires_ms: int
    grabs: dict[str, int] = field(default_factory=dict)  # insertion-ordered: grab order


@dataclass
class _Room:
    epoch: str = ""
    seq: int = 0
    version: int = 0
    doc: bytes | None = None
    # (ts_ms, event); trimmed to HistoryLimits on append.
    history: deque[tuple[int, BusEvent]] = field(default_factory=deque)
    # cid key -> (expires_ms, fingerprint, seqs)
    idem: dict[tuple[str, str], tuple[int, str, tuple[int | None, ...]]] = field(default_factory=dict)
    # (expires_ms, key) in insertion order: expiry is amortised O(1) per commit
    # (TTLs are equal per op, so insertion order is expiry order).
    idem_expiry: deque[tuple[int, tuple[str, str]]] = field(default_factory=deque)
    cap_second: int = 0
    cap_count: int = 0
    # name -> [total, pending, last_flush_ms]
    counters: dict[str, list[int]] = field(default_factory=dict)
    # name -> (last_value, last_ms)
    gates: dict[str, tuple[str, int]] = field(default_factory=dict)
    # node -> (count, expires_ms)
    presence: dict[str, tuple[int, int]] = field(default_factory=dict)
    tallies: dict[str, _Tally] = field(default_factory=dict)
    stocks: dict[str, _Stock] = field(default_factory=dict)
    # (user, cid) -> (fingerprint, record, stock key): room-wide, kept with the stock.
    stock_cids: dict[tuple[str, str], tuple[str, bytes, str]] = field(default_factory=dict)
    shares: dict[str, _Shares] = field(default_factory=dict)
    # Clock ms after which the room is forgotten (0 = never).
    deadline: int = 0
    # Names this room object in the expiry heap (0 = no entry yet): an entry left
    # by a room forgotten and created again is recognised and dropped.
    serial: int = 0


class MemoryHub:
    """The shared state behind one or more ``MemoryBroker`` nodes."""

    def __init__(
        self, limits: HistoryLimits | None = None, *, clock: Callable[[], int] | None = None
    ) -> None:
        self.limits = limits or HistoryLimits()
        # Wall-clock ms; every time the memory backend uses comes from here.
        self.now_ms: Callable[[], int] = clock or _now_ms
        self.rooms: dict[str, _Room] = {}
        self.subscribers: dict[str, set[MemoryBroker]] = {}
        # app -> sorted keys of its rooms that have a document
        self.index: dict[str, list[str]] = {}
        # app -> sorted (scheduled_at, room key); room key -> scheduled_at
        self.schedule: dict[str, list[tuple[int, str]]] = {}
        self.scheduled_at: dict[str, int] = {}
        self._expiry: list[tuple[int, int, str]] = []  # heap of (deadline, serial, room key)
        self._serials = 0
        self.streams = StreamStore(lambda: self.now_ms())  # bus/memory_streams.py
        self.vmaps = VmapStore()  # bus/memory_vmaps.py
        self.nodes: dict[str, tuple[bytes, int]] = {}  # node id -> (announcement, expires ms)
        # room -> publisher -> (origin info, expires ms)
        self.media_origins: dict[str, dict[str, tuple[bytes, int]]] = {}

    def get(self, room_id: str) -> _Room | None:
        """The room, or None if it has no state or expired (then it is forgotten now)."""
        room = self.rooms.get(room_id)
        if room is not None and room.deadline and room.deadline <= self.now_ms():
            self.forget(room_id)
            return None
        return room

    def room(self, room_id: str, idle_ttl_ms: int) -> _Room:
        room = self.get(room_id)
        if room is None:
            room = self.rooms[room_id] = _Room()
            self.hold(room_id, room, idle_ttl_ms)
        return room

    def hold(self, room_id: str, room: _Room, ttl_ms: int) -> None:
        """The room lives at least ``ttl_ms`` more (never less than it had)."""
        if ttl_ms <= 0:
            return
        room.deadline = max(room.deadline, self.now_ms() + ttl_ms)
        if not room.serial:
            self._serials += 1
            room.serial = self._serials
            heapq.heappush(self._expiry, (room.deadline, room.serial, room_id))

    def forget(self, room_id: str) -> None:
        self.rooms.pop(room_id, None)
        self.set_indexed(room_id, False)
        self.set_schedule(room_id, None)

    def sweep(self) -> None:
        """Reclaim expired rooms. An entry whose room's deadline moved meanwhile is
        pushed again with the new one: one entry per room that may expire."""
        now = self.now_ms()
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, serial, room_id = heapq.heappop(heap)
            room = self.rooms.get(room_id)
            if room is None or room.serial != serial:
                continue  # the entry of a room forgotten since
            if room.deadline <= now:
                self.forget(room_id)
            else:
                heapq.heappush(heap, (room.deadline, serial, room_id))

    def set_indexed(self, room_id: str, has_doc: bool) -> None:
        app = app_of(room_id)
        keys = self.index.get(app)
        if keys is None:
            if not has_doc:
                return
            keys = self.index[app] = []
        i = bisect.bisect_left(keys, room_id)
        present = i < len(keys) and keys[i] == room_id
        if has_doc and not present:
            keys.insert(i, room_id)
        elif present and not has_doc:
            del keys[i]
            if not keys:
                del self.index[app]

    def set_schedule(self, room_id: str, at_ms: int | None) -> None:
        app = app_of(room_id)
        old = self.scheduled_at.pop(room_id, None)
        if old is not None:
            entries = self.schedule[app]
            del entries[bisect.bisect_left(entries, (old, room_id))]
            if not entries:
                del self.schedule[app]
        if at_ms is not None:
            self.scheduled_at[room_id] = at_ms
            bisect.insort(self.schedule.setdefault(app, []), (at_ms, room_id))


class MemoryBroker(MemoryStreamsMixin, MemoryVmapsMixin, Broker):
    def __init__(
        self,
        hub: MemoryHub | None = None,
        node_id: str | None = None,
        *,
        idle_ttl_ms: int = DEFAULT_IDLE_TTL_MS,
    ) -> None:
        self.hub = hub or MemoryHub()
        self.limits = self.hub.limits
        self.stream_store = self.hub.streams
        self.vmap_store = self.hub.vmaps
        self.node_id = node_id or secrets.token_hex(4)
        self.idle_ttl_ms = check_idle_ttl(idle_ttl_ms)
        self._touches = TouchThrottle(idle_ttl_ms)
        self._presence_rooms: set[str] = set()
        self._handler: DeliveryHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def start(self, on_delivery: DeliveryHandler) -> None:
        self._handler = on_delivery
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self._closed = True
        for subs in self.hub.subscribers.values():
            subs.discard(self)

    async def healthy(self) -> bool:
        return not self._closed

    async def subscribe(self, room: str) -> None:
        self.hub.subscribers.setdefault(room, set()).add(self)

    async def unsubscribe(self, room: str) -> None:
        subs = self.hub.subscribers.get(room)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.hub.subscribers[room]

    async def load(self, room: str) -> RoomRecord:
        r = self.hub.get(room)
        if r is None:
            return RoomRecord(version=0, doc=None, seq=0, epoch="")
        return RoomRecord(version=r.version, doc=r.doc, seq=r.seq, epoch=r.epoch)

    async def commit(
        self,
        room: str,
        drafts: Sequence[Draft],
        *,
        expect_version: int | None = None,
        doc: bytes | None = None,
        idem: Idem | None = None,
        barrage_cap: int = 0,
    ) -> CommitResult:
        fresh = self.hub.get(room) is None
        r = self._room(room)
        now = self.hub.now_ms()
        if idem is not None:
            key = (idem.user, idem.cid)
            hit = r.idem.get(key)
            if hit is not None and hit[0] > now:
                if hit[1] != idem.fingerprint:
                    return CommitResult(CommitStatus.IDEM_CONFLICT, version=r.version, epoch=r.epoch)
                return CommitResult(CommitStatus.REPLAYED, hit[2], r.version, r.epoch)
        if expect_version is not None:
            if r.version != expect_version:
                return CommitResult(CommitStatus.VERSION_CONFLICT, version=r.version, epoch=r.epoch)
            r.version += 1
            r.doc = doc
            self.hub.set_indexed(room, doc is not None)
        if fresh or expect_version is not None:  # created, or its document written: used
            self.hub.hold(room, r, self.idle_ttl_ms)
        if not r.epoch:
            r.epoch = secrets.token_hex(8)
        second = now // 1000
        if second != r.cap_second:
            r.cap_second, r.cap_count = second, 0
        seqs: list[int | None] = []
        events: list[BusEvent] = []
        for d in drafts:
            if d.capped and barrage_cap > 0:
                if r.cap_count >= barrage_cap:
                    seqs.append(None)
                    continue
                r.cap_count += 1
            if d.durable:
                r.seq += 1
                ev = BusEvent(r.seq, with_seq(d.body, r.seq), d.coalesce, d.audience, d.close_code)
                r.history.append((now, ev))
                seqs.append(r.seq)
            else:
                ev = BusEvent(0, d.body, d.coalesce, d.audience, d.close_code)
                seqs.append(0)
            events.append(ev)
        self._trim(r, now)
        result = tuple(seqs)
        if idem is not None:
            key = (idem.user, idem.cid)
            r.idem[key] = (now + idem.ttl_ms, idem.fingerprint, result)
            r.idem_expiry.append((now + idem.ttl_ms, key))
            expiry = r.idem_expiry
            while expiry and (expiry[0][0] <= now or len(expiry) > MAX_IDEM_KEYS):
                expires, old = expiry.popleft()
                entry = r.idem.get(old)
                if entry is not None and entry[0] == expires:
                    del r.idem[old]
        if events or expect_version is not None:
            self._publish(Delivery(room, r.epoch, r.version, tuple(events)))
        return CommitResult(CommitStatus.OK, result, r.version, r.epoch)

    def _trim(self, r: _Room, now: int) -> None:
        h = r.history
        while len(h) > self.limits.max_events:
            h.popleft()
        oldest_ok = now - self.limits.max_age_ms
        while h and h[0][0] < oldest_ok:
            h.popleft()

    def _publish(self, delivery: Delivery) -> None:
        for node in tuple(self.hub.subscribers.get(delivery.room, ())):
            if node._handler is not None and node._loop is not None:
                node._loop.call_soon(node._handler, delivery)

    async def history(self, room: str, since: int, limit: int = 1000) -> HistoryPage:
        r = self.hub.get(room)
        if r is None or not r.epoch:
            if since == 0:
                return HistoryPage(epoch="", seq=0, events=[])
            raise HistoryGone(f"room {room} has no history")
        self._trim(r, self.hub.now_ms())
        if since > r.seq or since < 0:
            raise HistoryGone(f"seq {since} is not in this history (head {r.seq})")
        if since == r.seq:
            return HistoryPage(r.epoch, r.seq, [])
        oldest = r.history[0][1].seq if r.history else r.seq + 1
        if since + 1 < oldest:
            raise HistoryGone(f"events after seq {since} are no longer kept (oldest {oldest})")
        start = since + 1 - oldest
        events = [r.history[i][1] for i in range(start, min(len(r.history), start + limit))]
        return HistoryPage(r.epoch, r.seq, events)

    async def report_presence(self, counts: dict[str, int], ttl_ms: int) -> dict[str, int]:
        now = self.hub.now_ms()
        totals: dict[str, int] = {}
        for room_id in self._presence_rooms - counts.keys():
            r = self.hub.get(room_id)
            if r is not None:
                r.presence.pop(self.node_id, None)
        for room_id, count in counts.items():
            r = self._room(room_id)
            r.presence[self.node_id] = (count, now + ttl_ms)
            totals[room_id] = sum(c for c, exp in r.presence.values() if exp > now)
        self._presence_rooms = set(counts)
        return totals

    async def accumulate(self, room: str, name: str, delta: int, interval_ms: int) -> tuple[int, int | None]:
        r = self._room(room)
        now = self.hub.now_ms()
        if not r.counters:  # as on Redis: creating the counters hash is a use
            self.hub.hold(room, r, self.idle_ttl_ms)
        c = r.counters.setdefault(name, [0, 0, 0])
        c[0] += delta
        c[1] += delta
        if c[1] and now - c[2] >= interval_ms:
            flushed, c[1], c[2] = c[1], 0, now
            return c[0], flushed
        return c[0], None

    async def gate(self, room: str, name: str, interval_ms: int, value: str) -> bool:
        r = self._room(room)
        now = self.hub.now_ms()
        last = r.gates.get(name)
        if last is not None and (last[0] == value or now - last[1] < interval_ms):
            return False
        if not r.gates:  # as on Redis: creating the gates hash is a use
            self.hub.hold(room, r, self.idle_ttl_ms)
        r.gates[name] = (value, now)
        return True

    def _room(self, room: str) -> _Room:
        return self.hub.room(room, self.idle_ttl_ms)

    def _hold_for(self, room: str, ttl_ms: int) -> _Room:
        """A tally, stock or packet living ``ttl_ms`` is created in the room: the
        room lives at least that long (and at least ``idle_ttl_ms``), as on Redis."""
        r = self._room(room)
        if self.idle_ttl_ms > 0:
            self.hub.hold(room, r, max(ttl_ms, self.idle_ttl_ms))
        return r

    def _tally(self, room: str, key: str) -> _Tally | None:
        r = self.hub.get(room)
        t = r.tallies.get(key) if r else None
        if t is None or t.expires_ms <= self.hub.now_ms():
            return None
        return t

    async def tally(self, room: str, key: str, member: str, option: str, ttl_ms: int) -> TallyResult:
        t = self._tally(room, key)
        if t is None:
            t = self._hold_for(room, ttl_ms).tallies[key] = _Tally(self.hub.now_ms() + ttl_ms)
        if t.closed:
            return TallyResult(TallyStatus.CLOSED, dict(t.counts))
        if member in t.entries:
            return TallyResult(TallyStatus.EXISTS, dict(t.counts))
        t.entries[member] = option
        t.counts[option] = t.counts.get(option, 0) + 1
        return TallyResult(TallyStatus.ADDED, dict(t.counts))

    async def tally_close(self, room: str, key: str) -> list[str]:
        t = self._tally(room, key)
        if t is None:
            day = 24 * 3600 * 1000
            t = self._hold_for(room, day).tallies[key] = _Tally(self.hub.now_ms() + day)
        t.closed = True
        return list(t.entries)

    async def tally_remove(self, room: str, key: str, member: str) -> bool:
        t = self._tally(room, key)
        if t is None or t.closed or member not in t.entries:
            return False
        option = t.entries.pop(member)
        t.counts[option] -= 1
        if not t.counts[option]:
            del t.counts[option]
        return True

    async def tally_counts(self, room: str, key: str) -> dict[str, int]:
        t = self._tally(room, key)
        return dict(t.counts) if t else {}

    async def tally_members(self, room: str, key: str) -> list[str]:
        t = self._tally(room, key)
        return list(t.entries) if t else []

    def _live(self, room: str, table: str, key: str):  # -> _Stock | _Shares | None
        r = self.hub.get(room)
        item = getattr(r, table).get(key) if r else None
        if item is None or item.expires_ms <= self.hub.now_ms():
            return None
        return item

    async def stock_create(
        self, room: str, key: str, stock: int, *, opens_at: int = 0, closes_at: int = 0, ttl_ms: int
    ) -> bool:
        if self._live(room, "stocks", key) is not None:
            return False
        expires = self.hub.now_ms() + ttl_ms
        self._hold_for(room, ttl_ms).stocks[key] = _Stock(stock, stock, opens_at, closes_at, expires)
        return True

    async def stock_take(
        self,
        room: str,
        key: str,
        *,
        user: str,
        qty: int,
        per_user_limit: int,
        record: bytes,
        cid: str = "",
        fingerprint: str = "",
    ) -> StockResult:
        st: _Stock | None = self._live(room, "stocks", key)
        if st is None:
            return StockResult(StockStatus.NOT_FOUND)
        r = self._room(room)
        held = st.per_user.get(user, 0)
        if cid:
            hit = r.stock_cids.get((user, cid))
            if hit is not None and self._live(room, "stocks", hit[2]) is not None:
                status = (
                    StockStatus.REPLAYED if (hit[0], hit[2]) == (fingerprint, key) else StockStatus.CONFLICT
                )
                return StockResult(status, st.left, held, hit[1] if status == StockStatus.REPLAYED else None)
        now = self.hub.now_ms()
        if now < st.opens_at or (st.closes_at and now >= st.closes_at):
            return StockResult(StockStatus.NOT_OPEN, st.left, held)
        if st.left == 0:
            return StockResult(StockStatus.SOLD_OUT, st.left, held)
        if held + qty > per_user_limit:
            return StockResult(StockStatus.LIMIT_REACHED, st.left, held)
        if st.left < qty:
            return StockResult(StockStatus.SOLD_OUT, st.left, held)
        st.left -= qty
        st.per_user[user] = held + qty
        st.records.append(record)
        if cid:
            r.stock_cids[(user, cid)] = (fingerprint, record, key)
        return StockResult(StockStatus.OK, st.left, held + qty, record)

    async def stock_close(self, room: str, key: str, closes_at: int) -> None:
        st: _Stock | None = self._live(room, "stocks", key)
        if st is not None:
            st.closes_at = closes_at

    async def stock_state(self, room: str, key: str) -> tuple[int, int] | None:
        st: _Stock | None = self._live(room, "stocks", key)
        return None if st is None else (st.left, st.initial)

    async def stock_records(self, room: str, key: str) -> list[bytes]:
        st: _Stock | None = self._live(room, "stocks", key)
        return list(st.records) if st else []

    async def shares_create(self, room: str, key: str, amounts: list[int], *, ttl_ms: int) -> bool:
        if self._live(room, "shares", key) is not None:
            return False
        self._hold_for(room, ttl_ms).shares[key] = _Shares(deque(amounts), self.hub.now_ms() + ttl_ms)
        return True

    async def shares_grab(self, room: str, key: str, user: str) -> GrabResult:
        sh: _Shares | None = self._live(room, "shares", key)
        if sh is None:
            return GrabResult(GrabStatus.NOT_FOUND)
        if user in sh.grabs:
            return GrabResult(GrabStatus.REPLAYED, sh.grabs[user], len(sh.amounts))
        if not sh.amounts:
            return GrabResult(GrabStatus.SOLD_OUT)
        amount = sh.amounts.popleft()
        sh.grabs[user] = amount
        best = None
        if not sh.amounts:
            # Ties go to the earliest grab.
            best = max(sh.grabs.items(), key=lambda kv: kv[1])
        return GrabResult(GrabStatus.OK, amount, len(sh.amounts), best)

    async def shares_grabs(self, room: str, key: str) -> list[tuple[str, int]]:
        sh: _Shares | None = self._live(room, "shares", key)
        return list(sh.grabs.items()) if sh else []

    async def delete_room(self, room: str) -> None:
        self.hub.forget(room)

    # -- per-app indexes and idle expiry -------------------------------------------

    async def rooms(self, app: str, *, after: str = "", limit: int = 100) -> list[str]:
        check_page(limit)
        self.hub.sweep()
        keys = self.hub.index.get(app, [])
        i = bisect.bisect_right(keys, after)
        return keys[i : i + limit]

    async def announce_node(self, info: bytes, ttl_ms: int) -> None:
        if ttl_ms > 0:
            self.hub.nodes[self.node_id] = (bytes(info), self.hub.now_ms() + ttl_ms)
        else:
            self.hub.nodes.pop(self.node_id, None)

    async def nodes(self) -> dict[str, tuple[bytes, int]]:
        now = self.hub.now_ms()
        for node, (_, expires) in list(self.hub.nodes.items()):
            if expires <= now:
                del self.hub.nodes[node]
        return {node: (info, expires - now) for node, (info, expires) in self.hub.nodes.items()}

    async def set_media_origin(self, room: str, publisher: str, info: bytes, ttl_ms: int) -> None:
        entries = self.hub.media_origins.setdefault(room, {})
        if ttl_ms > 0:
            entries[publisher] = (bytes(info), self.hub.now_ms() + ttl_ms)
        elif entries.get(publisher, (None, 0))[0] == info:
            del entries[publisher]
        await self.media_origins(room)  # drops the expired ones (and an empty room)

    async def media_origins(self, room: str) -> dict[str, bytes]:
        now = self.hub.now_ms()
        entries = self.hub.media_origins.get(room, {})
        for publisher, (_, expires) in list(entries.items()):
            if expires <= now:
                del entries[publisher]
        if not entries:
            self.hub.media_origins.pop(room, None)
        return {publisher: info for publisher, (info, _) in entries.items()}

    async def room_count(self, app: str) -> int:
        self.hub.sweep()
        return len(self.hub.index.get(app, ()))

    async def set_schedule(self, room: str, at_ms: int | None) -> None:
        if at_ms is not None:
            check_time(at_ms)
            self._room(room)  # as on Redis: the entry goes when the room expires
        self.hub.set_schedule(room, at_ms)

    async def scheduled(
        self, app: str, *, after_ms: int, limit: int = 100, after_room: str = ""
    ) -> list[tuple[int, str]]:
        check_page(limit)
        self.hub.sweep()
        entries = self.hub.schedule.get(app, [])
        if after_room:
            i = bisect.bisect_right(entries, (after_ms, after_room))
        else:
            i = bisect.bisect_left(entries, (after_ms + 1, ""))
        return entries[i : i + limit]

    async def touch(self, rooms: list[str]) -> None:
        if self.idle_ttl_ms <= 0:
            return
        self.hub.sweep()
        due = self._touches.due(rooms)
        for room_id in due:
            r = self.hub.get(room_id)
            if r is not None:
                self.hub.hold(room_id, r, self.idle_ttl_ms)
        self._touches.done(due)
