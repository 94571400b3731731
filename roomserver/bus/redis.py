"""Redis ``Broker``: rooms sharded over Redis Cluster (or one Redis 7 node).

Construct with ``RedisBroker.from_url("redis://127.0.0.1:7001/0", ...)`` for a
single node or ``RedisBroker.from_cluster("127.0.0.1:7001,127.0.0.1:7002", ...)``
for a cluster. Both run the same code: a single node is a cluster whose one
node owns every slot (``redis_client.SlotRouter``), and Redis 7 serves
SSUBSCRIBE/SPUBLISH on a single node too.

Keys
----
Every key of a room carries the ``{room}`` hash tag, so the room lives in one
slot and one Lua script can touch all of it (prefix ``rs:`` by default; ``r1``
stands for a room key ``<app>/<room>``, see ``roomserver/tenancy.py``)::

    rs:{r1}:room        hash: epoch, seq, ver, doc, cs/cn (barrage cap: second, count)
    rs:{r1}:hist        list of "<ts ms>|<record>", oldest first, seqs contiguous
    rs:{r1}:ch          shard channel (SPUBLISH / SSUBSCRIBE)
    rs:{r1}:idem:<n>:<user><cid>   hash e/f/s: epoch, fingerprint, seqs; PEXPIRE ttl
    rs:{r1}:ctr         hash: accumulate counters     rs:{r1}:gate   hash: gates
    rs:{r1}:pres        hash: node -> "<count>:<expires ms>"
    rs:{r1}:tm|tc|tz:<key>      tally: members, counts per option, closed marker
    rs:{r1}:st|sr:<key>         stock: hash (left, window, per-user), records list
    rs:{r1}:scid                stock cids of the room -> stock, fingerprint, record
    rs:{r1}:sh|sq|sg:<key>      red packet: meta + grabs, shares left, grab log
    rs:{r1}:dyn         set: the per-key names above, for delete_room
    rs:apps:{a}:rooms   sorted set, score 0: keys of app a's rooms that (may) have a document
    rs:apps:{a}:seen    sorted set: room key -> ms after which the sweep checks it still exists
    rs:apps:{a}:sched   sorted set: room key -> scheduled_at ms

Tallies, stocks and packets expire with their ``ttl_ms`` (PEXPIRE[AT]).
Idempotency entries are not deleted with the room: they record the epoch they
belong to and an entry of another epoch is ignored, so ``delete_room`` is one
script that deletes the fixed keys and those listed in ``dyn``.

Indexes and idle rooms
----------------------
An app's indexes live in the app's slot (hash tag ``{a}``), not the room's, so
a room is added to ``rooms`` *before* the commit that creates its document
(``expect_version=0``) and ``rooms()`` checks each entry still has one: a crash
between the two steps leaves at worst an entry that ``rooms()`` skips (and
``room_count`` counts until the sweep removes it). ``rooms()`` pages with
ZRANGEBYLEX, ``scheduled()`` with ZRANGEBYSCORE: nothing reads a whole index.

A room nobody used for ``idle_ttl_ms`` (default 7 days, 0 = never) expires
with its keys. Its *life keys* (``dyn``, ``room``, ``hist``, ``ctr``,
``gate``) always carry a TTL of at least ``idle_ttl_ms`` from the room's last
use and at least as long as its longest-lived tally, stock or packet, so those
never outlive the room (and ``dyn`` still names them for ``delete_room``):

* ``hold`` (``lua/_hold.lua``) extends TTLs, never shortens them; it runs in
  the commit that creates the room or writes its document, in ``accumulate`` /
  ``gate`` when they create their hash, in the scripts that create a dynamic
  key, and in ``touch``. An ordinary event commit runs none of it: the 30k/s
  barrage path stays as it was.
* ``touch(rooms)`` (the node calls it every second for the rooms it has sockets
  in) runs ``lua/touch.lua`` at most once a minute per room per node, which also
  drops the names of expired dynamic keys from ``dyn``. ``pres`` has its own
  short TTL; idempotency entries expire after their own TTL (5 minutes).
* The index entry of an expired room goes lazily: ``seen`` says when to look
  again; ``rooms``, ``room_count`` and ``scheduled`` first sweep (bounded) the
  entries whose time passed: each room's ``PTTL`` is read in its own slot, and
  ``lua/index_sweep.lua`` removes the gone ones from all three indexes unless
  the room was registered again meanwhile (``seen`` moved past now).

Older versions kept every room in one set, ``rs:rooms``; ``start`` moves its
rooms to their app's index and gives their keys a lifetime, then drops it.

Time is Redis time (``TIME`` inside the scripts), so nodes with skewed clocks
agree on barrage seconds, idempotency windows, throttles and history age.

Records and payload
-------------------
An event travels as a *record*: ``<seq>|<close>|<len coalesce>|<len
audience>|<len body>\\n`` followed by the three byte strings (lengths in
bytes). Bodies are never parsed and may contain any byte. A published
message is ``<epoch>|<version>|<count>\\n`` followed by ``count`` records: one
SPUBLISH per script call, whatever the number of events. ``seq`` is spliced
into durable bodies in Lua exactly like ``protocol.with_seq``.

The commit script
-----------------
``lua/commit.lua`` takes a batch of sub-commits and applies each in order with
its own idempotency check, version CAS and barrage cap, assigns seqs, appends
the history (capped by count, then by age), creates the epoch if absent (from
a random candidate the caller passes: Lua has no good randomness) and
publishes everything once. Concurrent ``commit`` calls for one room without
``expect_version`` are coalesced: while one script call for the room is in
flight, later calls queue and go together in the next call (no timer: the
batch is whatever arrived meanwhile). Each caller still gets its own result.
A lone commit goes out at once from the caller's task (no extra hop).

Measured with ``python -m tests.bench_redis_broker`` (2 shared cores, loopback,
3+3 cluster, 200 callers committing one ~110 B event each in a loop):

    1 room,   one call per commit   ≈ 8–9k commits/s, p50 ≈ 20–25 ms
    1 room,   coalesced             ≈ 30–40k commits/s in ≈ 150–350 calls/s, p50 ≈ 5 ms
    50 rooms, one call per commit   ≈ 8–9k commits/s
    50 rooms, coalesced             ≈ 20–23k commits/s (≈ 4 commits per call)
    1 caller                        ≈ 4–6k commits/s either way, p50 ≈ 0.1–0.2 ms

Delivery guarantees
-------------------
Pub/sub is at most once. ``subscribe`` returns after the server confirmed the
subscription; while a connection is down or a slot is failing over, messages
are lost. The broker re-subscribes by itself (new topology, new connection,
backoff) and deliveries resume, but **gap repair is the caller's job**: the
node's fanout layer sees the jump in ``seq`` and reads ``history``.

Failures and failover
---------------------
Every call is bounded by ``op_timeout`` (default 1 s); a Redis that cannot be
reached, a slot without a primary, a timeout, ``CLUSTERDOWN``/``TRYAGAIN``/
``LOADING`` past that bound raise ``BrokerUnavailable``. Commands that were
certainly not executed (no connection, a redirect, cluster down) are retried
within the bound, after refreshing the slot map; idempotent ones also after a
connection broke mid-command. ``commit``, ``accumulate`` and ``gate`` are not
retried once sent: if the reply is lost the caller gets ``BrokerUnavailable``
and the outcome is unknown (a retry with the same ``Idem`` is safe); when the
command certainly did not run the exception is ``redis_client.NotExecuted``
(a ``BrokerUnavailable`` with ``executed = False``), which callers may retry
freely. When Redis comes back, the next calls reconnect; nothing needs a restart.

During a failover window (a primary died, its replica not yet promoted: about
2–3 s with ``cluster-node-timeout 1000``) the dead primary's rooms answer
``BrokerUnavailable``; with Redis' default ``cluster-require-full-coverage
yes`` *every* slot refuses writes between the failure being agreed and the
promotion (about 1 s), so production clusters should set it to ``no``.

Replication is asynchronous: by default a write is acknowledged once the
primary ran it, and if the primary dies before its replica received the
write, the promoted replica does not have it. The history then lacks that
tail and the room's ``seq`` continues from the replica's head, so the same
``seq`` can be assigned again to a different event (the epoch does not
change: the replica cannot know what it never saw). Subscribers may have
received the lost events.

Durability: ``durable_wait_ms``
-------------------------------
With ``durable_wait_ms=N`` (the server's ``--redis-durable-wait-ms``: 200 by
default with ``--redis-cluster``, off with ``--redis-url``) a write is
acknowledged only once a replica has it: the script is followed, on the same
connection, by ``WAIT 1 N``; if no replica acknowledged within N ms the call
raises ``BrokerUnavailable`` and its outcome is unknown (the write may survive
or not: retry with the same cid / ``Idem``). It applies to

* every counter script: ``stock_create/take/close`` (orders, coupon claims),
  ``shares_create/grab`` (red packets), ``tally``/``tally_close``/``tally_remove`` (lottery
  entries and draws, poll votes, follows and unfollows);
* every commit that writes the room document (sale, lottery, coupon and packet
  definitions, draws, closes, room start/end, moderation);
* every stream append (``XADD``: webhook queues, the behaviour log, the
  assistant's board; see ``bus/redis_streams.py``);
* event-only commits (barrage, gifts, likes, ``redpacket.finished``,
  ``order.created``) only with ``durable_events=True``
  (``--redis-durable-events``); otherwise they cost what they cost without it.

A commit that waits is also *published* only after its WAIT succeeded: the
commit script returns the message instead of publishing it and
``_publish_late`` sends the ``SPUBLISH`` (one more round trip), so subscribers
never see an event a failover could still take back. A publish whose outcome is
unknown is sent again within ``op_timeout`` (subscribers drop a repeated seq). If
WAIT fails, or the publish still does, the event is in history but unannounced;
subscribers find it by gap repair when the room's next event arrives.

A ``stock_take`` that replays a cid first writes a marker (``replays`` in the
stock hash). Depending on the Redis version, WAIT waits for the replication
offset of the connection's last *write* only, and then, without the marker, a
replay on a connection that wrote nothing lately could acknowledge an order
taken by a call whose own WAIT failed and that no replica has yet. (Redis 7.0,
Debian's, moves that offset after every command: there a replay is covered
either way.)

What a client can rely on when the primary of its room's slot dies (one
replica per primary; ``tests/commerce/test_failover_sale.py`` checks 1–4 with
two server processes and a crowd of buyers):

1. Every order, claim, grab, entry and room change acknowledged to a client is
   on the promoted replica: it exists after the failover with the same id and
   record, and a retry with the same cid returns that same order.
2. No oversell, nobody over the limit, and the order list reconciles with the
   stock: records, counters and cids are written by one script and replicated
   as one transaction, so the promoted replica holds a consistent prefix of the
   takes. A take whose answer was ``unavailable`` may or may not have survived:
   a retry with the same cid returns its order if it did and decides afresh if
   it did not (so it may then be ``sold_out``).
3. From the crash until the promotion (node timeout + election: 2–3 s with
   ``cluster-node-timeout 1000``) calls on that slot raise ``BrokerUnavailable``
   within ``op_timeout``: ops answer ``unavailable`` with ``retry_after_ms``,
   never hang and never answer ``internal``. With Redis' default
   ``cluster-require-full-coverage yes`` *every* slot refuses writes between the
   failure being agreed and the promotion (about 1 s): production clusters
   should set it to ``no``.
4. After the promotion, until the promoted primary has a replica again (the old
   primary restarted as its replica, or a second replica per primary), durable
   calls on that shard answer ``unavailable`` (WAIT finds nobody): the sale
   pauses rather than take orders that a second failure could lose, and goes on
   once a replica is attached. Barrage and other event-only commits go on as
   soon as the replica is promoted. A durable call is sent only to a primary
   known to have a replica: the first durable call to a primary this process has
   not seen replicated (a newly promoted one) asks ``ROLE`` first, and after a
   WAIT found no replica the primary is refused unsent (``NotExecuted``) and
   asked again by ``ROLE`` every 0.5 s; the call then goes to that primary only
   (``pinned``: if the slot moved meanwhile, the new primary is checked first). So
   takes that no replica could acknowledge do not run at all (a buyer's retry
   decides afresh) instead of draining stock that a second failure would lose,
   and blocked WAITs cannot starve the primary's connection pool. Run two replicas per primary to keep
   selling through a single failure.
5. Not covered: event-only commits acknowledged just before the crash may be
   lost and their seq reused (above); ephemeral events (``order.created``,
   ``sale.stock``) are at most once and those published during the window are
   lost. Webhooks are queued in Redis Streams (``redis_streams.py``), written
   without WAIT: the last ones appended before the crash may be lost with the
   primary (announcing an order once after an unknown outcome is
   ``handlers/commerce.py``'s job).

Do not set it on a single node without replicas: every durable write would
fail (``WAIT`` answers 0). Cost (``python -m tests.commerce.bench_durable``,
3+3 cluster, loopback, shared 2-core box; details there): a buy +0.05–0.1 ms
at p50 for one caller; with 200 concurrent buyers per process 10–40 % fewer
``stock_take``/s (each holds its connection until a replica acknowledges; a
micro-batched take would share one WAIT); barrage commits unchanged (no WAIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError

from roomserver.bus.base import (
    DEFAULT_IDLE_TTL_MS,
    Broker,
    BrokerUnavailable,
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
from roomserver.bus.coalesce import Coalescer
from roomserver.bus.redis_client import (
    NotExecuted,
    NotSent,
    PrimaryMoved,
    Script,
    ScriptCall,
    SlotRouter,
    Timeouts,
    parse_target,
)
from roomserver.bus.redis_pubsub import ShardSubscriber
from roomserver.bus.redis_streams import RedisStreamsMixin
from roomserver.bus.redis_vmaps import RedisVmapsMixin
from roomserver.tenancy import SEP, app_of

log = logging.getLogger(__name__)

# commit.lua answers a status index: the order of this tuple.
_STATUS = (CommitStatus.OK, CommitStatus.VERSION_CONFLICT, CommitStatus.REPLAYED, CommitStatus.IDEM_CONFLICT)

# One script call settles at most this much; Redis runs nothing else meanwhile.
MAX_BATCH_COMMITS = 256
MAX_BATCH_DRAFTS = 2048
MAX_BATCH_BYTES = 512 * 1024
MAX_BATCH_TAKES = 512  # stock takes or tally entries per script call (bounds one script's run)
# After a WAIT (or ROLE) found no replica, durable calls to that primary are refused
# unsent for this long, then ROLE is asked again.
UNREPLICATED_RETRY_S = 0.5
# A durable call whose primary changed between its replica check and its send checks
# the new one; after this many moves in one call it answers unavailable (a reshard).
PRIMARY_MOVED_TRIES = 3
# Index entries checked for expiry per batch, and batches per listing call.
SWEEP_BATCH = 500
SWEEP_BATCHES = 4


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _lua(name: str) -> str:
    return resources.files("roomserver.bus").joinpath("lua", f"{name}.lua").read_text()


def _load_script(name: str, *, hold: bool = False) -> Script:
    """``hold``: the script uses ``hold``/``hold_room_for`` (lua/_hold.lua), the
    room-lifetime helpers shared by the scripts that create or refresh room keys."""
    return Script(name, (_lua("_hold") + "\n" if hold else "") + _lua(name))


COMMIT = _load_script("commit", hold=True)
HISTORY = _load_script("history")
PRESENCE = _load_script("presence")
ACCUMULATE = _load_script("accumulate", hold=True)
GATE = _load_script("gate", hold=True)
TALLY = _load_script("tally", hold=True)
TALLY_CLOSE = _load_script("tally_close", hold=True)
TALLY_REMOVE = _load_script("tally_remove")
STOCK_CREATE = _load_script("stock_create", hold=True)
STOCK_TAKE = _load_script("stock_take", hold=True)
STOCK_CLOSE = _load_script("stock_close")
SHARES_CREATE = _load_script("shares_create", hold=True)
SHARES_GRAB = _load_script("shares_grab")
DELETE_ROOM = _load_script("delete_room")
TOUCH = _load_script("touch", hold=True)
INDEX_SWEEP = _load_script("index_sweep")
NODE_ANNOUNCE = _load_script("node_announce")
NODES = _load_script("nodes")
MEDIA_ORIGIN_SET = _load_script("media_origin_set")
MEDIA_ORIGINS = _load_script("media_origins")


# -- records and payloads (the wire format of commit.lua) --------------------


def _decode_records(buf: bytes, pos: int, count: int, *, with_ts: bool = False) -> tuple[list[BusEvent], int]:
    events: list[BusEvent] = []
    for _ in range(count):
        nl = buf.index(b"\n", pos)
        head = buf[pos:nl].split(b"|")
        if with_ts:
            head = head[1:]
        seq, close, lc, la, lb = (int(x) for x in head)
        p = nl + 1
        coalesce = buf[p : p + lc].decode() if lc else ""
        p += lc
        audience = buf[p : p + la].decode() if la else ""
        p += la
        events.append(BusEvent(seq, buf[p : p + lb], coalesce, audience, close))
        pos = p + lb
    return events, pos


def decode_delivery(room: str, payload: bytes) -> Delivery:
    nl = payload.index(b"\n")
    epoch, version, count = payload[:nl].split(b"|")
    events, _ = _decode_records(payload, nl + 1, int(count))
    return Delivery(room, epoch.decode(), int(version), tuple(events))


def decode_history_entry(entry: bytes) -> BusEvent:
    return _decode_records(entry, 0, 1, with_ts=True)[0][0]


# -- keys ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomKeys:
    slot: int
    room: str
    hist: str
    channel: str
    counters: str
    gates: str
    presence: str
    dynamic: str  # set of the keys below, for delete_room
    tag: str

    def idem(self, user: str, cid: str) -> str:
        # The user's length keeps ("ab", "c") and ("a", "bc") apart.
        return f"{self.tag}:idem:{len(user)}:{user}{cid}"

    def tally(self, key: str) -> tuple[str, str, str]:
        """members, counts, closed marker"""
        return f"{self.tag}:tm:{key}", f"{self.tag}:tc:{key}", f"{self.tag}:tz:{key}"

    @property
    def media_origins(self) -> str:
        """hash: publisher -> "<expires_ms>:<origin info>" (expires on its own)"""
        return f"{self.tag}:media"

    @property
    def stock_cids(self) -> str:
        return f"{self.tag}:scid"

    def stock(self, key: str) -> tuple[str, str]:
        return f"{self.tag}:st:{key}", f"{self.tag}:sr:{key}"

    def shares(self, key: str) -> tuple[str, str, str]:
        return f"{self.tag}:sh:{key}", f"{self.tag}:sq:{key}", f"{self.tag}:sg:{key}"

    @property
    def life(self) -> tuple[str, str, str, str, str]:
        """The keys that carry the room's idle lifetime, in the order the scripts
        expect them (lua/_hold.lua): dynamic keys set first."""
        return self.dynamic, self.room, self.hist, self.counters, self.gates


@lru_cache(maxsize=65536)
def room_keys(prefix: str, room: str) -> RoomKeys:
    tag = f"{prefix}{{{room}}}"
    return RoomKeys(
        slot=key_slot(f"{tag}:room".encode()),
        room=f"{tag}:room",
        hist=f"{tag}:hist",
        channel=f"{tag}:ch",
        counters=f"{tag}:ctr",
        gates=f"{tag}:gate",
        presence=f"{tag}:pres",
        dynamic=f"{tag}:dyn",
        tag=tag,
    )


@dataclass(frozen=True, slots=True)
class AppKeys:
    """An app's indexes, in the app's own slot (``{app}`` is the hash tag)."""

    slot: int
    rooms: str  # sorted set, score 0: room keys with a document (ZRANGEBYLEX pages)
    seen: str  # sorted set: room key -> ms after which to check it still exists
    schedule: str  # sorted set: room key -> scheduled_at ms


@lru_cache(maxsize=4096)
def app_keys(prefix: str, app: str) -> AppKeys:
    tag = f"{prefix}apps:{{{app}}}"
    return AppKeys(
        slot=key_slot(f"{tag}:rooms".encode()),
        rooms=f"{tag}:rooms",
        seen=f"{tag}:seen",
        schedule=f"{tag}:sched",
    )


# -- commits -------------------------------------------------------------------


@dataclass(slots=True)
class _SubCommit:
    drafts: Sequence[Draft]
    expect_version: int | None
    doc: bytes | None
    idem: Idem | None
    barrage_cap: int

    @property
    def size(self) -> int:
        return sum(len(d.body) for d in self.drafts)


@dataclass(frozen=True, slots=True)
class _Take:
    user: str
    qty: int
    per_user_limit: int
    record: bytes
    cid: str
    fingerprint: str


def _commit_call(
    keys: RoomKeys,
    subs: Sequence[_SubCommit],
    limits: HistoryLimits,
    *,
    defer_publish: bool,
    idle_ttl_ms: int,
) -> ScriptCall:
    key_list: list[str] = [keys.room, keys.hist, keys.channel, keys.counters, keys.gates, keys.dynamic]
    args: list[Any] = [secrets.token_hex(8), limits.max_events, limits.max_age_ms, len(subs)]
    args += ["1" if defer_publish else "0", idle_ttl_ms]
    for sub in subs:
        idem_index = 0
        if sub.idem is not None:
            key_list.append(keys.idem(sub.idem.user, sub.idem.cid))
            idem_index = len(key_list)
        args += [
            "" if sub.expect_version is None else sub.expect_version,
            "0" if sub.doc is None else "1",
            b"" if sub.doc is None else sub.doc,
            idem_index,
            sub.idem.fingerprint if sub.idem else "",
            sub.idem.ttl_ms if sub.idem else 0,
            max(0, sub.barrage_cap),
            len(sub.drafts),
        ]
        for d in sub.drafts:
            args += [
                (1 if d.durable else 0) + (2 if d.capped else 0),
                d.close_code,
                d.coalesce,
                d.audience,
                d.body,
            ]
    return ScriptCall(COMMIT, key_list, args)


def _commit_results(reply: list[Any]) -> tuple[list[CommitResult], bool, bytes | None]:
    """(one result per sub-commit, whether a document was created, the message the
    script left for the caller to publish)."""
    out = []
    for r in reply[4:]:
        status = _STATUS[int(r[0])]
        seqs = tuple(None if s < 0 else s for s in r[3:])
        out.append(CommitResult(status, seqs, int(r[1]), r[2].decode()))
    return out, bool(reply[2]), reply[3]


class RedisBroker(RedisStreamsMixin, RedisVmapsMixin, Broker):
    """Rooms on Redis (Cluster); see the module docstring for the design."""

    def __init__(
        self,
        router: SlotRouter,
        *,
        node_id: str | None = None,
        limits: HistoryLimits | None = None,
        prefix: str = "rs:",
        coalesce: bool = True,
        durable_wait_ms: int = 0,
        durable_events: bool = True,
        idle_ttl_ms: int = DEFAULT_IDLE_TTL_MS,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain a hash tag")
        if durable_wait_ms < 0 or durable_wait_ms >= router.timeouts.op * 1000:
            raise ValueError(
                f"durable_wait_ms must be 0 (off) or below the op timeout ({router.timeouts.op}s)"
            )
        self.node_id = node_id or secrets.token_hex(4)
        self.limits = limits or HistoryLimits()
        self.prefix = prefix
        self.coalesce = coalesce
        self.durable_wait_ms = durable_wait_ms
        # False: event-only commits (barrage, gifts, likes) skip the WAIT; counter
        # scripts and commits that write the room document always wait.
        self.durable_events = durable_events
        self.idle_ttl_ms = check_idle_ttl(idle_ttl_ms)
        self._touches = TouchThrottle(idle_ttl_ms)
        # Primary address -> loop time until which durable calls to it are refused
        # unsent, after a WAIT or ROLE found no replica; primaries seen with a replica
        # (forgotten when the primaries change); ROLE probes in flight. See
        # ``_require_replica``.
        self._unreplicated: dict[str, float] = {}
        self._replicated: set[str] = set()
        self._replicated_epoch = 0
        self._replica_probes: dict[str, asyncio.Future[bool]] = {}
        self._router = router
        # Before per-app indexes every room was in this one set: ``start`` moves
        # its rooms to their app's index and gives their keys a lifetime.
        self._legacy_registry = f"{prefix}rooms"
        self._handler: DeliveryHandler | None = None
        self._channel_rooms: dict[bytes, str] = {}
        self._subscriber = ShardSubscriber(router, self._on_message, self._on_repaired)
        self._commits: Coalescer[str, _SubCommit, CommitResult] = Coalescer(
            self._commit_batch,
            max_items=MAX_BATCH_COMMITS,
            weigh=lambda sub: (len(sub.drafts), sub.size),
            max_weight=(MAX_BATCH_DRAFTS, MAX_BATCH_BYTES),
            name="redis-commit",
        )
        self._takes: Coalescer[tuple[str, str], _Take, StockResult] = Coalescer(
            self._take_batch, max_items=MAX_BATCH_TAKES, name="redis-take"
        )
        self._tallies: Coalescer[tuple[str, str, int], tuple[str, str], TallyResult] = Coalescer(
            self._tally_batch, max_items=MAX_BATCH_TAKES, name="redis-tally"
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._presence_rooms: set[str] = set()
        self._closed = False
        # Counters for metrics and tests: commits / script_calls = coalescing ratio.
        self.commits = 0
        self.script_calls = 0

    @property
    def take_calls(self) -> int:
        """Script calls made for stock takes (takes / take_calls = coalescing ratio)."""
        return self._takes.calls

    @property
    def tally_calls(self) -> int:
        """Script calls made for tally entries."""
        return self._tallies.calls

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        op_timeout: float = 1.0,
        pool_size: int = 32,
        ca_file: str | None = None,
        **kwargs: Any,
    ) -> RedisBroker:
        """One Redis node: ``redis[s]://[[user]:password@]host:port[/db]`` (rediss: TLS)."""
        seeds, db, credentials = parse_target(url, ca_file)
        if "://" not in url or len(seeds) != 1:
            raise ValueError("a Redis URL names one server: redis[s]://[user:password@]host:port[/db]")
        router = SlotRouter(
            seeds,
            cluster=False,
            db=db,
            credentials=credentials,
            timeouts=Timeouts(op=op_timeout),
            pool_size=pool_size,
        )
        return cls(router, **kwargs)

    @classmethod
    def from_cluster(
        cls,
        nodes: str | Sequence[str],
        *,
        op_timeout: float = 1.0,
        pool_size: int = 32,
        ca_file: str | None = None,
        **kwargs: Any,
    ) -> RedisBroker:
        """Redis Cluster from seed nodes ``"host:port,host:port"`` or, with a login or TLS,
        ``"redis[s]://[user:password@]host:port,host:port"``."""
        seeds, _, credentials = parse_target(nodes if isinstance(nodes, str) else ",".join(nodes), ca_file)
        if not seeds:
            raise ValueError("no cluster nodes given")
        router = SlotRouter(
            seeds,
            cluster=True,
            credentials=credentials,
            timeouts=Timeouts(op=op_timeout),
            pool_size=pool_size,
        )
        return cls(router, **kwargs)

    # -- lifecycle ------------------------------------------------------------

    async def start(self, on_delivery: DeliveryHandler) -> None:
        self._handler = on_delivery
        # Learn the topology now if we can; if Redis is down the first call retries.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._router.refresh(), self._router.timeouts.op)
        self._spawn(self._migrate_legacy_registry())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self._commits.close()
        await self._takes.close()
        await self._tallies.close()
        await self._subscriber.close()
        await self._router.close()

    async def healthy(self) -> bool:
        return not self._closed and await self._router.ping_all()

    # -- pub/sub --------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        keys = room_keys(self.prefix, room)
        channel = keys.channel.encode()
        self._channel_rooms[channel] = room
        await self._subscriber.subscribe(channel, keys.slot)

    async def unsubscribe(self, room: str) -> None:
        channel = room_keys(self.prefix, room).channel.encode()
        self._channel_rooms.pop(channel, None)
        await self._subscriber.unsubscribe(channel)

    def _on_message(self, channel: bytes, payload: bytes) -> None:
        room = self._channel_rooms.get(channel)
        if room is None or self._handler is None:
            return
        try:
            delivery = decode_delivery(room, payload)
        except (ValueError, UnicodeDecodeError):
            log.error("undecodable message on %r (%d bytes)", channel, len(payload))
            return
        try:
            self._handler(delivery)
        except Exception:
            log.exception("delivery handler failed for room %s", room)

    def _on_repaired(self, channel: bytes) -> None:
        room = self._channel_rooms.get(channel)
        if room is not None and self._handler is not None:
            self._spawn(self._announce_head(room))

    async def _announce_head(self, room: str) -> None:
        """After a re-subscription: tell the node the history head (an empty
        Delivery with ``head``) so it repairs a gap even if the room stays quiet."""
        try:
            rec = await self.load(room)
        except BrokerUnavailable:
            return  # the next event's seq jump triggers the repair instead
        if rec.epoch and self._handler is not None and room in self._channel_rooms.values():
            self._handler(Delivery(room, rec.epoch, rec.version, (), head=rec.seq))

    # -- the atomic step --------------------------------------------------------

    async def load(self, room: str) -> RoomRecord:
        keys = room_keys(self.prefix, room)
        ver, doc, seq, epoch = await self._call(keys.slot, ("HMGET", keys.room, "ver", "doc", "seq", "epoch"))
        return RoomRecord(
            version=int(ver or 0), doc=doc, seq=int(seq or 0), epoch=epoch.decode() if epoch else ""
        )

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
        if self._closed:
            raise BrokerUnavailable("broker closed")
        sub = _SubCommit(tuple(drafts), expect_version, doc, idem, barrage_cap)
        if expect_version is not None or not self.coalesce:
            if expect_version == 0 and doc is not None:
                await self._register(room)
            return (await self._commit_batch(room, [sub]))[0]
        return await self._commits.submit(room, sub)

    async def _commit_batch(self, room: str, subs: Sequence[_SubCommit]) -> list[CommitResult]:
        keys = room_keys(self.prefix, room)
        durable = self.durable_wait_ms > 0 and (
            self.durable_events or any(s.doc is not None or s.expect_version is not None for s in subs)
        )
        # A durable batch is published only after WAIT: a subscriber must not see an
        # event that the primary's crash could still take back (and its seq reuse).
        commands: list[Any] = [
            _commit_call(keys, subs, self.limits, defer_publish=durable, idle_ttl_ms=self.idle_ttl_ms)
        ]
        self.script_calls += 1
        self.commits += len(subs)
        if durable:
            replies, primary = await self._call_replicated(keys.slot, commands, safe=False)
        else:
            replies = await self._router.call(keys.slot, commands, safe=False)
        reply = _raise_reply(replies[0])
        results, doc_created, message = _commit_results(reply)
        if doc_created and not any(s.expect_version == 0 for s in subs):
            await self._register(room)  # a document re-created at version > 0: rare
        if durable:
            self._check_replicated(primary, replies[1], "commit")
        if message is not None:
            await self._publish_late(keys, message)
        return results

    async def _publish_late(self, keys: RoomKeys, message: bytes) -> None:
        """Publish a durable batch after its WAIT. The write stands whatever happens
        here: if the publish fails, subscribers repair from history on the room's next
        event (its seq shows the gap), so this logs instead of failing the commit."""
        try:
            # safe: a repeated SPUBLISH after an ambiguous failure is harmless, every
            # subscriber drops a seq it already has; a lost one costs a gap repair.
            await self._call(keys.slot, ("SPUBLISH", keys.channel, message), safe=True)
        except Exception as exc:  # BrokerUnavailable, a Redis error reply
            log.warning(
                "room channel %s: publish after WAIT failed (%s); history has the events", keys.channel, exc
            )

    # -- durability (see "Failures and failover" in the module docstring) --------

    def _wait_command(self) -> tuple[Any, ...]:
        # WAIT counts replicas that acknowledged this connection's last write, so
        # it must follow the script on the same connection (one pipeline).
        return ("WAIT", 1, self.durable_wait_ms)

    async def _call_replicated(self, slot: int, commands: list[Any], *, safe: bool) -> tuple[list[Any], str]:
        """``commands`` plus a WAIT, run on the slot's primary only once it is known to
        have a replica; returns the replies and that primary. The call is pinned to the
        primary that was checked: a failover between the check and the send must not
        route the write to a promoted primary nobody checked (the router would follow a
        refreshed map or a MOVED; tests/commerce/test_durability.py makes the map stale)."""
        for tries_left in reversed(range(PRIMARY_MOVED_TRIES)):
            primary = await self._require_replica(slot)
            try:
                replies = await self._router.call(
                    slot, [*commands, self._wait_command()], safe=safe, pinned=primary
                )
            except PrimaryMoved:
                if not tries_left:
                    raise
                continue
            return replies, primary
        raise AssertionError("unreachable")

    async def _require_replica(self, slot: int) -> str:
        """The slot's primary, if it is known to have a replica; otherwise refuse the
        durable call before anything is written (``NotExecuted``: the client's retry
        decides afresh). A write that no replica can acknowledge would still change
        the primary (a take drains stock) although a second failure loses it, and
        its WAIT would hold a pooled connection for ``durable_wait_ms``."""
        addr = self._router.addr_for_slot(slot)
        if addr is None:  # no slot map yet, or the slot is between primaries
            try:
                async with asyncio.timeout(self._router.timeouts.op):
                    await self._router.refresh()
            except (TimeoutError, NotSent) as exc:
                raise NotExecuted(f"redis: no primary known for slot {slot} ({exc}); not sent") from None
            addr = self._router.addr_for_slot(slot)
            if addr is None:
                raise NotExecuted(f"redis: no primary known for slot {slot}; not sent")
        if self._replicated_epoch != self._router.primaries_epoch:
            self._replicated.clear()  # a failover: a promoted primary starts unknown
            self._replicated_epoch = self._router.primaries_epoch
        if addr in self._replicated:
            return addr
        until = self._unreplicated.get(addr)
        if until is not None and asyncio.get_running_loop().time() < until:
            raise NotExecuted(f"redis: {addr} has no replica to acknowledge writes; not sent")
        probe = self._replica_probes.get(addr)
        if probe is None:
            probe = self._replica_probes[addr] = asyncio.ensure_future(self._probe_replica(slot, addr))
            probe.add_done_callback(lambda _f: self._replica_probes.pop(addr, None))
        try:
            has_replica = await asyncio.shield(probe)
        except BrokerUnavailable as exc:
            raise NotExecuted(f"redis: could not ask {addr} for its replicas ({exc}); not sent") from exc
        if not has_replica:
            raise NotExecuted(f"redis: {addr} has no replica to acknowledge writes; not sent")
        return addr

    async def _probe_replica(self, slot: int, addr: str) -> bool:
        # Pinned: the answer must be about ``addr``, not whichever node the slot
        # moved to meanwhile.
        role = await self._router.call_one(slot, ("ROLE",), safe=True, pinned=addr)
        # A primary answers [b"master", offset, [[ip, port, offset], ...]] listing
        # its connected replicas.
        primary = bool(role) and role[0] in (b"master", "master")
        if not primary:
            # The slot map names a node that is no longer a primary (it came back as a
            # replica): nothing durable is sent to it, so no MOVED would correct the map.
            self._router.mark_stale()
        has_replica = primary and bool(role[2])
        if has_replica:
            self._replicated.add(addr)
            self._unreplicated.pop(addr, None)
        else:
            self._unreplicated[addr] = asyncio.get_running_loop().time() + UNREPLICATED_RETRY_S
        return has_replica

    def _check_replicated(self, addr: str, wait_reply: Any, what: str) -> None:
        if _raise_reply(wait_reply) >= 1:
            self._replicated.add(addr)
            return
        self._replicated.discard(addr)
        self._unreplicated[addr] = asyncio.get_running_loop().time() + UNREPLICATED_RETRY_S
        raise BrokerUnavailable(
            f"redis: {what} not acknowledged by a replica within {self.durable_wait_ms} ms (outcome unknown)"
        )

    async def _durable_call(self, slot: int, call: ScriptCall, *, safe: bool = False) -> Any:
        """Run a counter script (stock, shares, tally: they decide money and
        entries) and, with ``durable_wait_ms``, return only once a replica has it."""
        if self.durable_wait_ms <= 0:
            return await self._call(slot, call, safe=safe)
        if self._closed:
            raise BrokerUnavailable("broker closed")
        replies, primary = await self._call_replicated(slot, [call], safe=safe)
        reply = _raise_reply(replies[0])
        self._check_replicated(primary, replies[1], call.script.name)
        return reply

    async def _register(self, room: str) -> None:
        """Index the room in its app before the commit that creates its document
        (the index is in another slot: see "Indexes and idle rooms")."""
        a = app_keys(self.prefix, app_of(room))
        commands: list[Any] = [("ZADD", a.rooms, 0, room)]
        if self.idle_ttl_ms:
            # GT: a room re-created while a sweep looks at it keeps its entry.
            commands.append(("ZADD", a.seen, "GT", _wall_ms() + self.idle_ttl_ms, room))
        for reply in await self._router.call(a.slot, commands, safe=True):
            _raise_reply(reply)

    # -- history ----------------------------------------------------------------

    async def history(self, room: str, since: int, limit: int = 1000) -> HistoryPage:
        if since < 0:
            raise HistoryGone(f"seq {since} is not in this history")
        keys = room_keys(self.prefix, room)
        reply = await self._call(
            keys.slot, ScriptCall(HISTORY, [keys.room, keys.hist], [since, limit, self.limits.max_age_ms])
        )
        if reply[0] != 0:
            raise HistoryGone(reply[1].decode())
        return HistoryPage(
            epoch=reply[1].decode(), seq=int(reply[2]), events=[decode_history_entry(e) for e in reply[3:]]
        )

    # -- presence and counters -------------------------------------------------

    async def report_presence(self, counts: dict[str, int], ttl_ms: int) -> dict[str, int]:
        rooms = list(counts)
        gone = [r for r in self._presence_rooms if r not in counts]
        items: list[tuple[int, Any]] = []
        for r in rooms:
            k = room_keys(self.prefix, r)
            items.append((k.slot, ScriptCall(PRESENCE, [k.presence], [self.node_id, int(counts[r]), ttl_ms])))
        for r in gone:
            k = room_keys(self.prefix, r)
            items.append((k.slot, ("HDEL", k.presence, self.node_id)))
        replies = await self._router.call_many(items)
        for reply in replies:
            _raise_reply(reply)
        # Only now: if this failed, the next report removes ``gone`` again.
        self._presence_rooms = set(rooms)
        return {r: int(replies[i]) for i, r in enumerate(rooms)}

    async def accumulate(self, room: str, name: str, delta: int, interval_ms: int) -> tuple[int, int | None]:
        keys = room_keys(self.prefix, room)
        total, flushed, amount = await self._call(
            keys.slot,
            ScriptCall(ACCUMULATE, keys.life, [name, delta, interval_ms, self.idle_ttl_ms]),
            safe=False,
        )
        return int(total), (int(amount) if flushed else None)

    async def gate(self, room: str, name: str, interval_ms: int, value: str) -> bool:
        keys = room_keys(self.prefix, room)
        passed = await self._call(
            keys.slot, ScriptCall(GATE, keys.life, [name, interval_ms, value, self.idle_ttl_ms]), safe=False
        )
        return bool(passed)

    # -- tallies, stock, shares ---------------------------------------------------

    async def tally(self, room: str, key: str, member: str, option: str, ttl_ms: int) -> TallyResult:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        return await self._tallies.submit((room, key, ttl_ms), (member, option))

    async def _tally_batch(
        self, room_key: tuple[str, str, int], entries: list[tuple[str, str]]
    ) -> list[TallyResult]:
        """One script call (and one WAIT) for concurrent entries of one tally. Each
        caller gets its own status and the counts after the whole batch."""
        room, key, ttl_ms = room_key
        keys = room_keys(self.prefix, room)
        args: list[Any] = [ttl_ms, len(entries)]
        for member, option in entries:
            args += [member, option]
        args.append(self.idle_ttl_ms)
        reply = await self._durable_call(keys.slot, ScriptCall(TALLY, [*keys.tally(key), *keys.life], args))
        n = len(entries)
        counts = _counts(reply[n:])
        return [TallyResult(TallyStatus(status.decode()), counts) for status in reply[:n]]

    async def tally_close(self, room: str, key: str) -> list[str]:
        keys = room_keys(self.prefix, room)
        call = ScriptCall(TALLY_CLOSE, [*keys.tally(key), *keys.life], [self.idle_ttl_ms])
        members = await self._durable_call(keys.slot, call, safe=True)
        return [m.decode() for m in members]

    async def tally_remove(self, room: str, key: str, member: str) -> bool:
        keys = room_keys(self.prefix, room)
        call = ScriptCall(TALLY_REMOVE, [*keys.tally(key)], [member])
        # Safe to send again: a second removal finds no entry and changes nothing.
        return bool(await self._durable_call(keys.slot, call, safe=True))

    async def tally_counts(self, room: str, key: str) -> dict[str, int]:
        keys = room_keys(self.prefix, room)
        return _counts(await self._call(keys.slot, ("HGETALL", keys.tally(key)[1])))

    async def tally_members(self, room: str, key: str) -> list[str]:
        keys = room_keys(self.prefix, room)
        return [m.decode() for m in await self._call(keys.slot, ("HKEYS", keys.tally(key)[0]))]

    async def stock_create(
        self, room: str, key: str, stock: int, *, opens_at: int = 0, closes_at: int = 0, ttl_ms: int
    ) -> bool:
        keys = room_keys(self.prefix, room)
        call = ScriptCall(
            STOCK_CREATE,
            [*keys.stock(key), *keys.life],
            [stock, opens_at, closes_at, ttl_ms, self.idle_ttl_ms],
        )
        return bool(await self._durable_call(keys.slot, call))

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
        if self._closed:
            raise BrokerUnavailable("broker closed")
        take = _Take(user, qty, per_user_limit, record, cid, fingerprint)
        return await self._takes.submit((room, key), take)

    async def _take_batch(self, room_key: tuple[str, str], takes: list[_Take]) -> list[StockResult]:
        """One script call (and one WAIT) for concurrent takes of one stock."""
        room, key = room_key
        keys = room_keys(self.prefix, room)
        args: list[Any] = [key, len(takes)]
        for t in takes:
            args += [t.user, t.qty, t.per_user_limit, t.record, t.cid, t.fingerprint]
        args.append(self.idle_ttl_ms)
        call = ScriptCall(STOCK_TAKE, [*keys.stock(key), keys.stock_cids, *keys.life], args)
        replies = await self._durable_call(keys.slot, call)
        return [
            StockResult(StockStatus(status.decode()), int(left), int(held), rec)
            for status, left, held, rec in replies
        ]

    async def stock_close(self, room: str, key: str, closes_at: int) -> None:
        keys = room_keys(self.prefix, room)
        await self._durable_call(
            keys.slot, ScriptCall(STOCK_CLOSE, keys.stock(key)[:1], [closes_at]), safe=True
        )

    async def stock_state(self, room: str, key: str) -> tuple[int, int] | None:
        keys = room_keys(self.prefix, room)
        left, initial = await self._call(keys.slot, ("HMGET", keys.stock(key)[0], "left", "initial"))
        return None if left is None else (int(left), int(initial))

    async def stock_records(self, room: str, key: str) -> list[bytes]:
        keys = room_keys(self.prefix, room)
        return list(await self._call(keys.slot, ("LRANGE", keys.stock(key)[1], 0, -1)))

    async def shares_create(self, room: str, key: str, amounts: list[int], *, ttl_ms: int) -> bool:
        keys = room_keys(self.prefix, room)
        call = ScriptCall(
            SHARES_CREATE, [*keys.shares(key), *keys.life], [ttl_ms, self.idle_ttl_ms, *amounts]
        )
        return bool(await self._durable_call(keys.slot, call))

    async def shares_grab(self, room: str, key: str, user: str) -> GrabResult:
        keys = room_keys(self.prefix, room)
        status, amount, left, best_user, best = await self._durable_call(
            keys.slot, ScriptCall(SHARES_GRAB, keys.shares(key), [user])
        )
        finished = (best_user.decode(), int(best)) if best_user else None
        return GrabResult(GrabStatus(status.decode()), int(amount), int(left), finished)

    async def shares_grabs(self, room: str, key: str) -> list[tuple[str, int]]:
        keys = room_keys(self.prefix, room)
        out = []
        for g in await self._call(keys.slot, ("LRANGE", keys.shares(key)[2], 0, -1)):
            amount, _, user = g.partition(b":")
            out.append((user.decode(), int(amount)))
        return out

    async def delete_room(self, room: str) -> None:
        keys = room_keys(self.prefix, room)
        fixed = [keys.room, keys.hist, keys.counters, keys.gates, keys.presence, keys.dynamic]
        await self._call(keys.slot, ScriptCall(DELETE_ROOM, fixed, []))
        a = app_keys(self.prefix, app_of(room))
        commands = [("ZREM", k, room) for k in (a.rooms, a.seen, a.schedule)]
        for reply in await self._router.call(a.slot, commands, safe=True):
            _raise_reply(reply)

    # -- per-app indexes and idle expiry (see "Indexes and idle rooms") ------------

    async def rooms(self, app: str, *, after: str = "", limit: int = 100) -> list[str]:
        check_page(limit)
        await self._sweep(app)
        a = app_keys(self.prefix, app)
        out: list[str] = []
        # Entries whose document is gone (a failed creating commit, a room expiring
        # right now) are skipped; the page is filled from further entries.
        while len(out) < limit:
            want = limit - len(out)
            lo = "(" + after if after else "-"
            batch = await self._call(a.slot, ("ZRANGEBYLEX", a.rooms, lo, "+", "LIMIT", 0, want))
            if not batch:
                break
            names = [b.decode() for b in batch]
            exists = await self._router.call_many(
                [(k.slot, ("HEXISTS", k.room, "doc")) for k in (room_keys(self.prefix, n) for n in names)]
            )
            out += [n for n, e in zip(names, exists, strict=True) if _raise_reply(e) == 1]
            if len(batch) < want:
                break
            after = names[-1]
        return out

    async def room_count(self, app: str) -> int:
        await self._sweep(app)
        a = app_keys(self.prefix, app)
        return int(await self._call(a.slot, ("ZCARD", a.rooms)))

    async def set_schedule(self, room: str, at_ms: int | None) -> None:
        a = app_keys(self.prefix, app_of(room))
        if at_ms is None:
            await self._call(a.slot, ("ZREM", a.schedule, room))
            return
        check_time(at_ms)
        commands: list[Any] = [("ZADD", a.schedule, at_ms, room)]
        if self.idle_ttl_ms:  # so the sweep finds the entry if the room expires
            commands.append(("ZADD", a.seen, "NX", _wall_ms() + self.idle_ttl_ms, room))
        for reply in await self._router.call(a.slot, commands, safe=True):
            _raise_reply(reply)

    async def scheduled(
        self, app: str, *, after_ms: int, limit: int = 100, after_room: str = ""
    ) -> list[tuple[int, str]]:
        check_page(limit)
        await self._sweep(app)
        a = app_keys(self.prefix, app)
        commands: list[Any] = []
        if after_room:  # rooms at exactly after_ms: member order, after after_room
            commands.append(("ZRANGEBYSCORE", a.schedule, after_ms, after_ms))
        commands.append(
            ("ZRANGEBYSCORE", a.schedule, f"({after_ms}", "+inf", "WITHSCORES", "LIMIT", 0, limit)
        )
        replies = [_raise_reply(r) for r in await self._router.call(a.slot, commands, safe=True)]
        out: list[tuple[int, str]] = []
        if after_room:
            out += [(after_ms, n) for n in (m.decode() for m in replies[0]) if n > after_room]
        flat = replies[-1]
        out += [(int(float(flat[i + 1])), flat[i].decode()) for i in range(0, len(flat), 2)]
        return out[:limit]

    async def touch(self, rooms: list[str]) -> None:
        if self.idle_ttl_ms <= 0 or self._closed:
            return
        due = self._touches.due(rooms)
        if not due:
            return
        await self._touch(due)
        self._touches.done(due)

    async def _touch(self, rooms: Sequence[str]) -> list[bool]:
        """Hold each room's keys ``idle_ttl_ms`` more and move its index check past
        that; returns whether each room still exists."""
        items: list[tuple[int, Any]] = []
        for r in rooms:
            k = room_keys(self.prefix, r)
            items.append((k.slot, ScriptCall(TOUCH, k.life, [self.idle_ttl_ms])))
        by_app: dict[str, list[Any]] = {}
        check = _wall_ms() + self.idle_ttl_ms
        for r in rooms:
            by_app.setdefault(app_of(r), []).extend((check, r))
        for app, pairs in by_app.items():
            a = app_keys(self.prefix, app)
            items.append((a.slot, ("ZADD", a.seen, "XX", "GT", *pairs)))  # XX: never indexes a room
        replies = [_raise_reply(r) for r in await self._router.call_many(items)]
        return [bool(r) for r in replies[: len(rooms)]]

    async def _sweep(self, app: str) -> None:
        """Forget index entries of ``app``'s rooms that expired: those whose check
        time passed are looked up in their own slots; gone ones are removed (by
        ``index_sweep.lua``, which keeps an entry re-registered meanwhile), live
        ones are checked again when their keys would expire. Bounded per call."""
        if self.idle_ttl_ms <= 0:
            return
        a = app_keys(self.prefix, app)
        for _ in range(SWEEP_BATCHES):
            now = _wall_ms()
            due = await self._call(a.slot, ("ZRANGEBYSCORE", a.seen, "-inf", now, "LIMIT", 0, SWEEP_BATCH))
            if not due:
                return
            names = [d.decode() for d in due]
            ttls = await self._router.call_many(
                [(k.slot, ("PTTL", k.room)) for k in (room_keys(self.prefix, n) for n in names)]
            )
            gone: list[str] = []
            later: list[Any] = []
            for name, ttl in zip(names, ttls, strict=True):
                ttl = _raise_reply(ttl)
                if ttl == -2:
                    gone.append(name)
                else:  # -1: no TTL (written with idle expiry off): look again later
                    later += [now + (ttl if ttl > 0 else self.idle_ttl_ms), name]
            call = ScriptCall(INDEX_SWEEP, [a.rooms, a.seen, a.schedule], [now, len(gone), *gone, *later])
            await self._call(a.slot, call)
            if len(due) < SWEEP_BATCH:
                return

    async def _migrate_legacy_registry(self) -> None:
        """Rooms of the global ``<prefix>rooms`` set (before per-app indexes): index
        those named by a room key in their app, give every room's keys the idle
        lifetime, then drop them from the set. Runs at start, in the background;
        if it fails, the next start goes on where it stopped."""
        try:
            while not self._closed:
                slot = key_slot(self._legacy_registry.encode())
                members = await self._call(slot, ("SRANDMEMBER", self._legacy_registry, SWEEP_BATCH))
                if not members:
                    return
                names = [m.decode() for m in members]
                exists = await self._router.call_many(
                    [(k.slot, ("HEXISTS", k.room, "doc")) for k in (room_keys(self.prefix, n) for n in names)]
                )
                for name, e in zip(names, exists, strict=True):
                    if _raise_reply(e) == 1 and SEP in name:
                        await self._register(name)
                if self.idle_ttl_ms:
                    await self._touch(names)
                await self._call(slot, ("SREM", self._legacy_registry, *members))
                log.info("moved %d rooms from %s to per-app indexes", len(names), self._legacy_registry)
        except Exception as exc:  # BrokerUnavailable, a Redis error: next start
            log.warning("moving rooms from %s stopped: %s", self._legacy_registry, exc)

    # -- helpers ------------------------------------------------------------

    # -- nodes ----------------------------------------------------------------------

    @property
    def _nodes_key(self) -> tuple[int, str]:
        key = f"{self.prefix}nodes"
        return key_slot(key.encode()), key

    async def announce_node(self, info: bytes, ttl_ms: int) -> None:
        slot, key = self._nodes_key
        # Safe to repeat: the same announcement again only moves its expiry.
        await self._call(slot, ScriptCall(NODE_ANNOUNCE, [key], [self.node_id, info, max(0, ttl_ms)]))

    async def nodes(self) -> dict[str, tuple[bytes, int]]:
        slot, key = self._nodes_key
        flat = await self._call(slot, ScriptCall(NODES, [key], []))
        return {flat[i].decode(): (bytes(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)}

    # -- media origins ----------------------------------------------------------------

    async def set_media_origin(self, room: str, publisher: str, info: bytes, ttl_ms: int) -> None:
        keys = room_keys(self.prefix, room)
        # Safe to repeat: the same entry again only moves its expiry (or removes it again).
        await self._call(
            keys.slot, ScriptCall(MEDIA_ORIGIN_SET, [keys.media_origins], [publisher, info, max(0, ttl_ms)])
        )

    async def media_origins(self, room: str) -> dict[str, bytes]:
        keys = room_keys(self.prefix, room)
        flat = await self._call(keys.slot, ScriptCall(MEDIA_ORIGINS, [keys.media_origins], []))
        return {flat[i].decode(): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def _call(self, slot: int, command: Any, *, safe: bool = True) -> Any:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        return _raise_reply((await self._router.call(slot, [command], safe=safe))[0])


def _counts(flat: Sequence[bytes]) -> dict[str, int]:
    return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _raise_reply(reply: Any) -> Any:
    if isinstance(reply, RedisError):
        # Only unexpected errors get here (scripts failing = bugs); redirects,
        # cluster-down and connection errors became BrokerUnavailable earlier.
        raise reply
    return reply
