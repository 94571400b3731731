"""Per-app room and schedule indexes, and idle rooms expiring with all their keys:
the same assertions on every backend (``conftest.broker_factory``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from roomserver.bus.base import Broker, CommitStatus, Draft, GrabStatus, Idem, StockStatus
from roomserver.bus.memory import MemoryBroker
from roomserver.bus.redis import RedisBroker, app_keys, room_keys
from roomserver.tenancy import app_of
from tests.contract.test_broker_contract import ev, room_id, started
from tests.polling import until_async

# Idle TTL for the expiry tests: short to keep them quick, long enough that a
# loaded machine still touches in time (the throttle refreshes every TTL/4).
IDLE_MS = 1500


async def create(b: Broker, room: str, doc: bytes = b"d") -> None:
    res = await b.commit(room, [Draft(ev(room, "created"))], expect_version=0, doc=doc)
    assert res.status == CommitStatus.OK


async def all_rooms(b: Broker, app: str, limit: int) -> list[str]:
    out: list[str] = []
    while page := await b.rooms(app, after=out[-1] if out else "", limit=limit):
        assert len(page) <= limit
        out += page
    return out


async def leftovers(b: Broker, room: str) -> list[str]:
    """What the backend still holds of ``room`` (keys, index entries) and of its
    app's indexes (entries that name ``room`` contain it)."""
    app = app_of(room)
    if isinstance(b, MemoryBroker):
        hub = b.hub
        left = [f"room {room}"] if room in hub.rooms else []
        left += [f"indexed {room}"] if room in hub.index.get(app, ()) else []
        left += [f"scheduled {room}"] if room in hub.scheduled_at else []
        left += [f"index {app}"] if app in hub.index else []
        left += [f"schedule {app}"] if app in hub.schedule else []
        return left
    assert isinstance(b, RedisBroker)
    found: list[str] = []
    for pattern in (f"{b.prefix}{{{room}}}*", f"{b.prefix}apps:{{{app}}}*"):
        for addr in b._router.primaries():
            cursor = b"0"
            while True:
                cursor, keys = (
                    await b._router.pool(addr).execute([("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)])
                )[0]
                found += [k.decode() for k in keys]
                if cursor in (b"0", 0, "0"):
                    break
    a = app_keys(b.prefix, app)
    for key in (a.rooms, a.seen, a.schedule):
        if await b._call(a.slot, ("ZSCORE", key, room)) is not None:
            found.append(f"{key} has {room}")
    return found


# -- the room index ---------------------------------------------------------------


async def test_rooms_are_paged_in_key_order_per_app(broker_factory):
    b = broker_factory()
    await started(b)
    app = app_of(room_id())
    # An app whose key extends the first one's: prefixes must not leak either way.
    other = app + "x"
    mine = [room_id(app) for _ in range(120)]
    theirs = [room_id(other) for _ in range(15)]
    todo = mine + theirs
    for i in range(0, len(todo), 20):  # concurrent, but not all at once on a loaded machine
        await asyncio.gather(*(create(b, r) for r in todo[i : i + 20]))
    docless = room_id(app)
    await b.commit(docless, [Draft(ev(docless, "no document"))])

    for limit in (1, 7, 100, 1000):
        assert await all_rooms(b, app, limit) == sorted(mine)
    assert await all_rooms(b, other, 4) == sorted(theirs)
    assert await b.rooms(app, after=sorted(mine)[-1]) == []
    assert await b.rooms(app, after=sorted(mine)[9], limit=3) == sorted(mine)[10:13]
    assert await b.rooms("nobody") == []
    assert await b.room_count(app) == 120
    assert await b.room_count(other) == 15
    assert await b.room_count("nobody") == 0
    for bad in (0, 1001, -1):
        with pytest.raises(ValueError):
            await b.rooms(app, limit=bad)


async def test_index_follows_deletes_and_recreation(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    await started(a)
    await started(b)
    app = app_of(room_id())
    rooms = sorted(room_id(app) for _ in range(5))
    for r in rooms:
        await create(a, r)
    await a.delete_room(rooms[2])
    assert await b.rooms(app) == rooms[:2] + rooms[3:]
    assert await b.room_count(app) == 4
    await create(b, rooms[2])  # a new epoch of the same room
    assert await a.rooms(app) == rooms
    assert await a.room_count(app) == 5


# -- the schedule index -------------------------------------------------------------


async def test_schedule_is_ordered_paged_and_per_app(broker_factory):
    b = broker_factory()
    await started(b)
    app = app_of(room_id())
    r = sorted(room_id(app) for _ in range(6))
    elsewhere = room_id()
    at = 1_900_000_000_000
    # Three rooms at the same ms: ties come in key order and paging keeps them.
    plan = {r[0]: at + 50, r[1]: at, r[2]: at, r[3]: at, r[4]: at + 10}
    for room, when in plan.items():
        await b.set_schedule(room, when)
    await b.set_schedule(elsewhere, at + 1)
    expected = [(at, r[1]), (at, r[2]), (at, r[3]), (at + 10, r[4]), (at + 50, r[0])]
    assert await b.scheduled(app, after_ms=0) == expected
    assert await b.scheduled(app, after_ms=at) == expected[3:]
    assert await b.scheduled(app, after_ms=at - 1, limit=2) == expected[:2]

    paged: list[tuple[int, str]] = []
    after_ms, after_room = 0, ""
    while page := await b.scheduled(app, after_ms=after_ms, after_room=after_room, limit=2):
        paged += page
        after_ms, after_room = page[-1]
    assert paged == expected

    await b.set_schedule(r[2], None)  # removed
    await b.set_schedule(r[0], at + 5)  # moved
    await b.set_schedule(r[5], None)  # never scheduled: nothing happens
    assert await b.scheduled(app, after_ms=0) == [(at, r[1]), (at, r[3]), (at + 5, r[0]), (at + 10, r[4])]
    assert await b.scheduled(app_of(elsewhere), after_ms=0) == [(at + 1, elsewhere)]
    for bad in (-1, 2**53):
        with pytest.raises(ValueError):
            await b.set_schedule(r[5], bad)
    with pytest.raises(ValueError):
        await b.scheduled(app, after_ms=0, limit=0)


async def test_delete_room_forgets_its_schedule(broker_factory):
    b = broker_factory()
    await started(b)
    room = room_id()
    await create(b, room)
    await b.set_schedule(room, 1_900_000_000_000)
    await b.delete_room(room)
    assert await b.scheduled(app_of(room), after_ms=0) == []
    assert await b.rooms(app_of(room)) == []


# -- idle expiry --------------------------------------------------------------------


async def use_every_kind_of_key(b: Broker, room: str) -> None:
    """Document, history, idempotency entry, counters, gates, presence, tally and
    closed tally, stock with cid records, red packet, schedule: every key a room has."""
    await create(b, room)
    await b.commit(room, [Draft(ev(room, "hi"))], idem=Idem("u1", "c1", "f", ttl_ms=IDLE_MS))
    await b.accumulate(room, "likes", 3, 0)
    assert await b.gate(room, "online", 0, "5")
    await b.report_presence({room: 2}, IDLE_MS)
    await b.tally(room, "poll:1", "u1", "a", IDLE_MS)
    await b.tally_close(room, "poll:1")
    assert await b.stock_create(room, "sale:1", 5, ttl_ms=IDLE_MS)
    took = await b.stock_take(room, "sale:1", user="u1", qty=1, per_user_limit=1, record=b"o", cid="c2")
    assert took.status == StockStatus.OK
    assert await b.shares_create(room, "packet:1", [5, 5], ttl_ms=IDLE_MS)
    assert (await b.shares_grab(room, "packet:1", "u1")).status == GrabStatus.OK
    await b.set_schedule(room, 1_900_000_000_000)


async def gone(b: Broker, room: str) -> bool:
    """The room, its keys and its index entries are all gone (its app's indexes
    too, if it was the app's only room)."""
    app = app_of(room)
    if (await b.load(room)).doc is not None:
        return False
    # The listing calls sweep the indexes: after them nothing of the room may be left.
    listed = await b.rooms(app)
    assert room not in listed
    assert room not in [r for _, r in await b.scheduled(app, after_ms=0)]
    assert await b.room_count(app) == len(listed)
    left = await leftovers(b, room)
    return left == [] if not listed else not [k for k in left if room in k]


async def test_an_idle_room_expires_with_every_key_and_index_entry(broker_factory):
    b = broker_factory(idle_ttl_ms=IDLE_MS)
    await started(b)
    room = room_id()
    await use_every_kind_of_key(b, room)
    assert await leftovers(b, room)  # the check below can see keys
    assert await b.rooms(app_of(room)) == [room]
    await until_async(lambda: gone(b, room), 15.0, step=0.05)
    # A new incarnation starts clean.
    rec = await b.load(room)
    assert (rec.version, rec.seq, rec.epoch) == (0, 0, "")
    assert await b.stock_state(room, "sale:1") is None
    assert await b.accumulate(room, "likes", 0, 10**12) == (0, None)


async def test_a_room_made_by_traffic_alone_expires_too(broker_factory):
    """Joining, chatting and liking in a room nobody created (no document) leaves
    nothing behind once the room is idle."""
    b = broker_factory(idle_ttl_ms=IDLE_MS)
    await started(b)
    room = room_id()
    await b.report_presence({room: 1}, IDLE_MS)
    await b.commit(room, [Draft(ev(room, "hello")), Draft(ev(room, "like"), durable=False)])
    await b.accumulate(room, "likes", 1, 0)
    await b.gate(room, "online", 0, "1")
    await b.report_presence({}, IDLE_MS)
    assert await leftovers(b, room)
    assert await b.rooms(app_of(room)) == []
    await until_async(lambda: gone(b, room), 15.0, step=0.05)


async def test_touched_rooms_live_and_stop_living_when_no_longer_touched(broker_factory):
    b = broker_factory(idle_ttl_ms=IDLE_MS)
    await started(b)
    app = app_of(room_id())
    kept, dropped = room_id(app), room_id(app)
    for r in (kept, dropped):
        await use_every_kind_of_key(b, r)

    touching = True

    async def toucher() -> None:
        while touching:
            await b.touch([kept])  # as often as the node does, or more: the broker throttles
            await asyncio.sleep(0.1)

    task = asyncio.create_task(toucher())
    try:
        started_at = time.monotonic()
        await until_async(lambda: gone(b, dropped), 15.0, step=0.05)
        # Keep going until the kept room has outlived its TTL twice over.
        while time.monotonic() - started_at < 2 * IDLE_MS / 1000:
            await asyncio.sleep(0.1)
        rec = await b.load(kept)
        assert rec.doc == b"d" and rec.seq == 2
        assert [e.seq for e in (await b.history(kept, 0)).events] == [1, 2]
        assert await b.accumulate(kept, "likes", 0, 10**12) == (3, None)
        assert await b.rooms(app) == [kept] and await b.room_count(app) == 1
        assert await b.scheduled(app, after_ms=0) == [(1_900_000_000_000, kept)]
    finally:
        touching = False
        await task
    await until_async(lambda: gone(b, kept), 15.0, step=0.05)


async def test_a_room_lives_as_long_as_a_sale_in_it(broker_factory):
    """A dynamic key (here a stock) living longer than the idle TTL keeps its room:
    it never outlives the room, and the room goes with it."""
    b = broker_factory(idle_ttl_ms=IDLE_MS)
    await started(b)
    app = app_of(room_id())
    plain, selling = room_id(app), room_id(app)
    await create(b, plain)
    await create(b, selling)
    assert await b.stock_create(selling, "sale:1", 5, ttl_ms=4 * IDLE_MS)
    await until_async(lambda: _no_doc(b, plain), 15.0, step=0.05)
    assert (await b.load(selling)).doc == b"d"
    assert await b.stock_state(selling, "sale:1") == (5, 5)
    assert await b.rooms(app) == [selling]
    await until_async(lambda: gone(b, selling), 15.0, step=0.05)


async def _no_doc(b: Broker, room: str) -> bool:
    return (await b.load(room)).doc is None


async def test_rooms_never_expire_with_idle_ttl_zero(broker_factory):
    b = broker_factory(idle_ttl_ms=0)
    await started(b)
    room = room_id()
    await use_every_kind_of_key(b, room)
    await b.touch([room])
    if isinstance(b, RedisBroker):  # nothing of the room got a TTL
        k = room_keys(b.prefix, room)
        for key in (k.room, k.hist, k.counters, k.gates, k.dynamic):
            assert await b._call(k.slot, ("PTTL", key)) == -1, key
    else:
        assert b.hub.rooms[room].deadline == 0
    assert await b.rooms(app_of(room)) == [room]
