"""The ``Broker`` interface: everything rooms share across server processes.

One interface, two backends (``memory.MemoryBroker``, ``redis.RedisBroker``),
one contract suite (``tests/contract``), the way Centrifuge keeps
``broker_memory.go`` and ``broker_redis.go`` behind one interface.

The central primitive is ``commit``: in ONE atomic step per room it

1. optionally checks-and-sets the room document (optimistic concurrency on
   ``version``), so rules computed by ``core/`` from a loaded document are
   applied only if nobody changed the room meanwhile;
2. honours an idempotency key (``Idem``): a retry returns the first result and
   publishes nothing;
3. drops ``capped`` events beyond the room's barrage cap for the current second
   (priority shedding decided once, room-wide, so every node agrees);
4. assigns each durable event the room's next ``seq``, appends it to the
   capped history, and publishes the whole batch to every subscribed node.

Doing 1–4 in one step is what keeps ``seq`` identical on every node and the
delivery order equal to ``seq`` order (Centrifuge's broker contract says the
same). On Redis it is one Lua script call; in memory it is one synchronous
function.

Events travel as pre-encoded JSON bytes (``protocol.encode_event``); the
broker never decodes them.

Rooms are named by their room key ``"<app>/<room>"`` (``roomserver/tenancy.py``).
Listing is per app and paged (``rooms``, ``scheduled``): no call loads every
room. A room nobody used for ``idle_ttl_ms`` (a constructor option of both
backends, 7 days by default, 0 = never) is forgotten with all its keys and
index entries. "Used" means: created, its document written, a tally, stock or
red packet created in it (it then lives at least as long as that), or
``touch``ed; plain event commits do not refresh it (they are the hot path), so a
node touches the rooms it has sockets in (``Node``'s presence loop).
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from roomserver.bus.streams import StreamClaim, StreamEntry, StreamInfo
from roomserver.bus.vmaps import Vmap, VmapWrite

# Audience of an event: everyone in the room (""), one user ("user:<id>"), or
# the room's staff: hosts and moderators ("staff").
AUDIENCE_ALL: Final = ""
AUDIENCE_STAFF: Final = "staff"


def audience_user(user_id: str) -> str:
    return "user:" + user_id


@dataclass(slots=True, frozen=True)
class Draft:
    """An event to publish. ``body`` is ``protocol.encode_event(...)`` output."""

    body: bytes
    durable: bool = True
    # Counts against the room's barrage cap; beyond it the event is shed (never
    # published) and its result is ``None``.
    capped: bool = False
    # Ephemeral events with the same non-empty key may be coalesced (only the
    # latest in a flush survives), e.g. "likes", "online", "sale.stock:<id>".
    coalesce: str = ""
    audience: str = AUDIENCE_ALL
    # After delivering this event to its audience, close their sockets with this
    # WebSocket close code (0 = don't). Used by kicks (4003).
    close_code: int = 0


@dataclass(slots=True, frozen=True)
class BusEvent:
    """An event as delivered to subscribers and read back from history."""

    seq: int  # 0 for ephemeral events
    body: bytes  # final JSON, including "seq" when durable
    coalesce: str = ""
    audience: str = AUDIENCE_ALL
    close_code: int = 0


@dataclass(slots=True, frozen=True)
class Delivery:
    """One published batch as seen by a subscribed node, in ``seq`` order."""

    room: str
    epoch: str
    # The room document version after the commit that produced this batch; a
    # node whose cached document is older reloads it (``Broker.load``).
    version: int
    events: tuple[BusEvent, ...]
    # The room's last seq when known without events: sent after a subscription
    # was repaired (failover), so a quiet room still notices what it missed.
    head: int = 0


@dataclass(slots=True, frozen=True)
class Idem:
    """Idempotency key for ops with a ``cid`` (PROTOCOL §2, 5 minutes per user)."""

    user: str
    cid: str
    # A digest of the op's parameters: the same cid with other params is a conflict.
    fingerprint: str
    ttl_ms: int = 300_000


@dataclass(slots=True, frozen=True)
class RoomRecord:
    """What ``load`` returns: the room document and the head of its history."""

    version: int  # 0 = the room has no document yet
    doc: bytes | None
    seq: int  # last assigned seq (0 = none yet)
    epoch: str  # "" until the room's history exists


# Results of the atomic steps are enums, never bare strings, on both backends: the
# values are what the Lua scripts answer, and the Redis backend maps each answer to
# its member (an unknown one is an error, not a new status).


class CommitStatus(enum.Enum):
    OK = "ok"
    # ``expect_version`` did not match: reload and re-apply the rule.
    VERSION_CONFLICT = "version_conflict"
    # The idempotency key was used before with the same fingerprint: ``seqs``
    # are the first commit's results and nothing was published now.
    REPLAYED = "replayed"
    # The idempotency key was used before with a different fingerprint.
    IDEM_CONFLICT = "idem_conflict"


@dataclass(slots=True, frozen=True)
class CommitResult:
    status: CommitStatus
    # One entry per draft: the assigned seq for published durable events, 0 for
    # published ephemeral events, None for shed events.
    seqs: tuple[int | None, ...] = ()
    version: int = 0
    epoch: str = ""


@dataclass(slots=True, frozen=True)
class HistoryPage:
    epoch: str
    seq: int  # head of the room's history when read
    events: list[BusEvent] = field(default_factory=list)


class TallyStatus(enum.Enum):
    ADDED = "added"
    EXISTS = "exists"  # the member has an entry already: nothing changed
    CLOSED = "closed"  # the tally was closed (a lottery drawn): nothing changed


@dataclass(slots=True, frozen=True)
class TallyResult:
    status: TallyStatus
    counts: dict[str, int]


class StockStatus(enum.Enum):
    OK = "ok"
    REPLAYED = "replayed"  # the cid was used before with the same params
    CONFLICT = "conflict"  # the cid was used before with other params
    SOLD_OUT = "sold_out"  # fewer than qty left
    LIMIT_REACHED = "limit_reached"  # the user would exceed per_user_limit
    NOT_OPEN = "not_open"  # outside [opens_at, closes_at) by the backend's clock
    NOT_FOUND = "not_found"  # no such stock key


@dataclass(slots=True, frozen=True)
class StockResult:
    status: StockStatus
    left: int = 0  # stock left after this call
    user_total: int = 0  # what this user holds after this call
    # The record stored with the take (an order, a claim): the caller's for OK,
    # the first one's for REPLAYED.
    record: bytes | None = None


class GrabStatus(enum.Enum):
    OK = "ok"
    REPLAYED = "replayed"  # this user grabbed before: their share again
    SOLD_OUT = "sold_out"  # no share left
    NOT_FOUND = "not_found"  # no such packet


@dataclass(slots=True, frozen=True)
class GrabResult:
    status: GrabStatus
    amount: int = 0  # this user's share (ok and replayed)
    left: int = 0  # shares left
    # Set on the call that took the last share: (user, amount) of the best grab.
    finished_best: tuple[str, int] | None = None


class HistoryGone(Exception):
    """The requested range is no longer kept (or the epoch changed)."""


class BrokerUnavailable(Exception):
    """The backend (e.g. Redis) cannot be reached; callers answer ``unavailable``.

    ``executed`` says whether a write may have happened: None = unknown (the
    connection broke after sending), False = certainly not (never sent, or
    refused unrun), so the caller may simply try again."""

    executed: bool | None = None


DeliveryHandler = Callable[[Delivery], None]

DEFAULT_IDLE_TTL_MS: Final = 7 * 24 * 3600 * 1000
# A room is refreshed by ``touch`` at most this often per broker (and at least
# four times per idle TTL, for tiny TTLs in tests).
TOUCH_EVERY_MS: Final = 60_000
MAX_PAGE: Final = 1000
# Scores and times are exact in Redis (a double) and in JavaScript up to here.
MAX_TIME_MS: Final = 2**53 - 1


def check_page(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}, got {limit}")


def check_idle_ttl(idle_ttl_ms: int) -> int:
    if not 0 <= idle_ttl_ms <= MAX_TIME_MS:
        raise ValueError(f"idle_ttl_ms must be 0 (never) or a positive number of ms, got {idle_ttl_ms}")
    return idle_ttl_ms


def check_time(at_ms: int) -> None:
    if not 0 <= at_ms <= MAX_TIME_MS:
        raise ValueError(f"time out of range: {at_ms}")


class TouchThrottle:
    """Which rooms a ``touch`` must refresh now: each at most once per
    ``min(TOUCH_EVERY_MS, idle_ttl / 4)`` per broker, so calling ``touch`` every
    second for every room with sockets costs one write per room per minute."""

    def __init__(self, idle_ttl_ms: int) -> None:
        self.every_s = min(TOUCH_EVERY_MS, idle_ttl_ms // 4) / 1000
        self._last: dict[str, float] = {}

    def due(self, rooms: Iterable[str]) -> list[str]:
        now = time.monotonic()
        last = self._last
        if len(last) > 1024:  # forget rooms not touched lately (bounded memory)
            self._last = last = {r: t for r, t in last.items() if now - t < self.every_s}
        return [r for r in dict.fromkeys(rooms) if now - last.get(r, -1e18) >= self.every_s]

    def done(self, rooms: Iterable[str]) -> None:
        """Mark ``rooms`` refreshed (only after the refresh succeeded)."""
        now = time.monotonic()
        for r in rooms:
            self._last[r] = now


@dataclass(slots=True, frozen=True)
class HistoryLimits:
    max_events: int = 2000
    max_age_ms: int = 30 * 60 * 1000


class Broker(abc.ABC):
    """Shared room state, history, pub/sub, presence and counters.

    Every method may raise ``BrokerUnavailable``. Subscribed nodes receive
    ``Delivery`` objects through the handler passed to ``start``, per room in
    ``seq`` order; a backend whose transport may drop messages (Redis pub/sub)
    leaves gap repair to the caller, who sees a jump in ``seq`` and reads
    ``history``.
    """

    node_id: str
    limits: HistoryLimits

    @abc.abstractmethod
    async def start(self, on_delivery: DeliveryHandler) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """True if the backend answers now (``/readyz``)."""

    # -- pub/sub -------------------------------------------------------------

    @abc.abstractmethod
    async def subscribe(self, room: str) -> None: ...

    @abc.abstractmethod
    async def unsubscribe(self, room: str) -> None: ...

    # -- the atomic step -----------------------------------------------------

    @abc.abstractmethod
    async def load(self, room: str) -> RoomRecord: ...

    @abc.abstractmethod
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
        """Atomically: CAS the document (if ``expect_version`` is given, write
        ``doc`` and bump the version), check ``idem``, shed ``capped`` drafts
        beyond ``barrage_cap`` per second (0 = no cap), assign seqs, append to
        history and publish. Order of checks: idem, then version, then cap."""

    @abc.abstractmethod
    async def history(self, room: str, since: int, limit: int = 1000) -> HistoryPage:
        """Durable events with ``seq > since`` in order (at most ``limit``).
        Raises ``HistoryGone`` if any event after ``since`` is no longer kept
        or ``since`` is beyond the head."""

    # -- presence and counters ----------------------------------------------

    @abc.abstractmethod
    async def report_presence(self, counts: dict[str, int], ttl_ms: int) -> dict[str, int]:
        """Record this node's socket count per room (valid for ``ttl_ms``;
        a room absent from ``counts`` is 0 for this node) and return the
        room-wide totals across live nodes for those rooms."""

    @abc.abstractmethod
    async def accumulate(self, room: str, name: str, delta: int, interval_ms: int) -> tuple[int, int | None]:
        """Add ``delta`` to the room counter ``name``; returns ``(total, flushed)``
        where ``flushed`` is the sum of deltas since the last flush if at least
        ``interval_ms`` passed since then (room-wide), else None. Used to emit
        aggregated ephemeral events (``likes {total, delta}``) at most once per
        interval across all nodes."""

    @abc.abstractmethod
    async def gate(self, room: str, name: str, interval_ms: int, value: str) -> bool:
        """Room-wide throttle: True (and remember ``value``) if ``value`` differs
        from the last passed value and ``interval_ms`` has passed since then."""

    # -- tallies: one entry per member, counted per option ---------------------------
    # Poll votes and lottery entries: thousands of users within seconds must not
    # serialise on the room document, so they get their own atomic counters.

    @abc.abstractmethod
    async def tally(self, room: str, key: str, member: str, option: str, ttl_ms: int) -> TallyResult:
        """Atomically record ``member``'s single entry for ``option`` under ``key``
        (created on first use, expiring after ``ttl_ms``). Nothing changes if the
        member already has an entry (``exists``) or the tally is closed. ``counts``
        include this entry and may include concurrent ones (Redis batches them)."""

    @abc.abstractmethod
    async def tally_close(self, room: str, key: str) -> list[str]:
        """Close the tally (later entries answer ``closed``) and return its members:
        a lottery draw sees exactly the entries that were accepted."""

    @abc.abstractmethod
    async def tally_remove(self, room: str, key: str, member: str) -> bool:
        """Take ``member``'s entry out of an open tally (an unfollow), atomically with
        its option's count. False if it had none or the tally is closed (nothing changes)."""

    @abc.abstractmethod
    async def tally_counts(self, room: str, key: str) -> dict[str, int]: ...

    @abc.abstractmethod
    async def tally_members(self, room: str, key: str) -> list[str]:
        """Every member with an entry under ``key`` (unordered)."""

    # -- stock: flash sales and coupons ------------------------------------------------
    # One code path for "take qty from a shared stock, at most N per user,
    # idempotent per cid": sale.buy and coupon.claim. Never oversells: the
    # check and the decrement are one atomic step in the backend.

    @abc.abstractmethod
    async def stock_create(
        self, room: str, key: str, stock: int, *, opens_at: int = 0, closes_at: int = 0, ttl_ms: int
    ) -> bool:
        """Create a stock (False if ``key`` exists). ``closes_at`` 0 = no end."""

    @abc.abstractmethod
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
        """Atomically, the first failing check decides (``core.flashsale.decide_buy``):
        a known ``(user, cid)`` in this ROOM replays the stored record if the
        fingerprint matches, else ``conflict`` (cid records live as long as the
        stock); ``not_open`` outside the window; ``sold_out`` if nothing is left;
        ``limit_reached`` if the user would pass ``per_user_limit``; ``sold_out``
        if fewer than ``qty`` are left (no partial fills); else take ``qty``,
        append ``record`` to the stock's records, remember it under the cid, OK."""

    @abc.abstractmethod
    async def stock_close(self, room: str, key: str, closes_at: int) -> None:
        """Move the window's end (e.g. to now, to end a sale early)."""

    @abc.abstractmethod
    async def stock_state(self, room: str, key: str) -> tuple[int, int] | None:
        """(left, initial stock), or None if there is no such stock."""

    @abc.abstractmethod
    async def stock_records(self, room: str, key: str) -> list[bytes]:
        """Every record taken, in the order taken (for reconciliation)."""

    # -- shares: red packets -------------------------------------------------------------
    # The split is computed by the pure rule (core/redpacket.py) when the packet
    # is sent; grabbing pops the next share, at most one per user, atomically.

    @abc.abstractmethod
    async def shares_create(self, room: str, key: str, amounts: list[int], *, ttl_ms: int) -> bool: ...

    @abc.abstractmethod
    async def shares_grab(self, room: str, key: str, user: str) -> GrabResult: ...

    @abc.abstractmethod
    async def shares_grabs(self, room: str, key: str) -> list[tuple[str, int]]:
        """(user, amount) of every grab, in grab order."""

    @abc.abstractmethod
    async def delete_room(self, room: str) -> None:
        """Forget the room's document, history, counters, dynamic keys and index
        entries (a new epoch follows)."""

    # -- per-app indexes and idle expiry ------------------------------------------

    @abc.abstractmethod
    async def rooms(self, app: str, *, after: str = "", limit: int = 100) -> list[str]:
        """Room keys of ``app`` that have a document, in key order, greater than
        ``after`` (a room key), at most ``limit`` (1..1000). Page on with
        ``after`` = the last key returned; fewer than ``limit`` = the end."""

    @abc.abstractmethod
    async def room_count(self, app: str) -> int:
        """How many rooms ``app`` has (for the rooms-per-app limit). On Redis it
        may count, for a while, a room whose creating commit failed after it was
        indexed (``rooms`` never returns those; idle expiry removes them)."""

    @abc.abstractmethod
    async def set_schedule(self, room: str, at_ms: int | None) -> None:
        """Index the room's ``scheduled_at`` (ms, 0..2^53-1) for ``scheduled``;
        None removes it. Forgotten with the room (idle expiry, ``delete_room``)."""

    @abc.abstractmethod
    async def scheduled(
        self, app: str, *, after_ms: int, limit: int = 100, after_room: str = ""
    ) -> list[tuple[int, str]]:
        """``(scheduled_at, room key)`` of ``app``'s scheduled rooms, ascending,
        with ``scheduled_at > after_ms``, at most ``limit`` (1..1000). Rooms
        scheduled at the same ms come in key order; to page on without losing
        them pass the last pair as ``after_ms=at, after_room=room`` (then rooms
        at exactly ``after_ms`` with a key greater than ``after_room`` come too)."""

    @abc.abstractmethod
    async def touch(self, rooms: list[str]) -> None:
        """The rooms are in use: each lives at least ``idle_ttl_ms`` more, with all
        its keys. Call it as often as convenient (the node does every second for
        the rooms it has sockets in): the broker itself refreshes a room at most
        once a minute (``TouchThrottle``), and does nothing when rooms never
        expire (``idle_ttl_ms`` 0)."""

    # -- durable streams (bus/streams.py: webhook queues, logs) ----------------------

    @abc.abstractmethod
    async def stream_append(self, stream: str, data: bytes, *, maxlen: int) -> str:
        """Append ``data``; keep about the last ``maxlen`` entries. Returns the id.
        Not retried once sent: ``BrokerUnavailable`` = the outcome is unknown."""

    @abc.abstractmethod
    async def stream_append_many(self, stream: str, items: Sequence[bytes], *, maxlen: int) -> list[str]:
        """Append ``items`` in order in one round trip (not atomically: after
        ``BrokerUnavailable`` any prefix of them may have been appended)."""

    @abc.abstractmethod
    async def stream_read(self, stream: str, group: str, consumer: str, *, count: int) -> list[StreamEntry]:
        """Up to ``count`` entries no consumer of ``group`` got yet, oldest first,
        now pending for ``consumer`` (the group starts at the stream's start)."""

    @abc.abstractmethod
    async def stream_ack(self, stream: str, group: str, ids: Sequence[str], *, delete: bool = False) -> int:
        """End the pending state of ``ids`` (and delete them if ``delete``);
        returns how many were pending."""

    @abc.abstractmethod
    async def stream_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int, start: str = "0-0"
    ) -> StreamClaim:
        """Give ``consumer`` up to ``count`` pending entries idle at least
        ``min_idle_ms`` (from id ``start`` on, oldest first); entries deleted
        meanwhile are dropped from the pending list."""

    @abc.abstractmethod
    async def stream_range(self, stream: str, *, after: str = "", limit: int) -> list[StreamEntry]:
        """Up to ``limit`` entries with an id greater than ``after``, in id order."""

    @abc.abstractmethod
    async def stream_trim(self, stream: str, *, maxlen: int | None = None, min_id: str | None = None) -> int:
        """Drop entries beyond the last ``maxlen`` / with an id below ``min_id``."""

    @abc.abstractmethod
    async def stream_info(self, stream: str, group: str) -> StreamInfo: ...

    @abc.abstractmethod
    async def stream_lease(self, stream: str, holder: str, ttl_ms: int) -> bool:
        """True if ``holder`` holds the stream's lease for ``ttl_ms`` from now
        (taken if free or expired, renewed if already its own)."""

    @abc.abstractmethod
    async def stream_release(self, stream: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""

    # -- versioned maps (bus/vmaps.py: an app's catalogue, shared by every node) ---------

    @abc.abstractmethod
    async def vmap_put(
        self, name: str, key: str, data: bytes | None, *, expect: int | None = None, max_fields: int = 0
    ) -> VmapWrite:
        """Atomically write (``data``) or delete (None) the entry ``key`` of map ``name``:
        refused if ``expect`` is not its version (0 = absent), a delete of an absent
        entry, or a new entry beyond ``max_fields`` (0 = no limit); else the entry's
        version and the map's version go up by one. Not retried once sent."""

    @abc.abstractmethod
    async def vmap_read(self, name: str) -> Vmap:
        """Every entry and the map version (``Vmap(0)`` for a map never written)."""

    @abc.abstractmethod
    async def vmap_version(self, name: str) -> int:
        """The map's version (0 = never written): one cheap read for a cache's check."""

    # -- nodes ----------------------------------------------------------------------

    @abc.abstractmethod
    async def announce_node(self, info: bytes, ttl_ms: int) -> None:
        """This node's announcement (under its node id), live for ``ttl_ms`` from now by the
        bus's clock; announcing again refreshes it, ``ttl_ms`` 0 withdraws it."""

    @abc.abstractmethod
    async def nodes(self) -> dict[str, tuple[bytes, int]]:
        """Every live announcement: node id -> (info, ms until it expires)."""

    # -- media origins (issue 13: where a room's publishers send their media) -----------

    @abc.abstractmethod
    async def set_media_origin(self, room: str, publisher: str, info: bytes, ttl_ms: int) -> None:
        """Record that ``publisher`` of ``room`` sends its media to the node ``info`` names,
        live for ``ttl_ms`` from now by the bus's clock (writing again refreshes it);
        ``ttl_ms`` 0 removes the entry if it is still ``info`` (a newer one elsewhere stays)."""

    @abc.abstractmethod
    async def media_origins(self, room: str) -> dict[str, bytes]:
        """The room's live origin entries: publisher -> info."""
