"""Redis-only properties of ``RedisBroker`` (the shared contract is in the other files)."""

from __future__ import annotations

import asyncio

import pytest
from redis.crc import key_slot

from roomserver.bus.base import BrokerUnavailable, CommitStatus, Draft, StockStatus, TallyStatus
from roomserver.bus.redis import INDEX_SWEEP, RedisBroker, _wall_ms, app_keys, decode_delivery, room_keys
from roomserver.bus.redis_client import NotExecuted, ScriptCall
from roomserver.tenancy import app_of
from tests.contract.test_broker_contract import ev, room_id, started
from tests.redis_servers import RedisCluster, RedisNode


@pytest.fixture(params=["single", "cluster"])
async def make(request, unique_prefix):
    made: list[RedisBroker] = []

    def factory(**kwargs) -> RedisBroker:
        if request.param == "single":
            node: RedisNode = request.getfixturevalue("redis_single")
            b = RedisBroker.from_url(node.url, prefix=unique_prefix, **kwargs)
        else:
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            b = RedisBroker.from_cluster(cluster.startup, prefix=unique_prefix, **kwargs)
        made.append(b)
        return b

    yield factory
    for b in made:
        await b.close()


async def test_concurrent_commits_are_coalesced(make):
    b = make()
    room = room_id()
    await started(b)
    results = await asyncio.gather(*(b.commit(room, [Draft(ev(room, str(i)))]) for i in range(200)))
    assert all(r.status == CommitStatus.OK for r in results)
    assert b.commits == 200
    # The first call goes alone; everything that queued meanwhile shares calls.
    assert b.script_calls < 20


async def test_concurrent_stock_takes_share_script_calls(make):
    b = make()
    room = room_id()
    await started(b)
    await b.stock_create(room, "sale", 50, ttl_ms=60_000)
    results = await asyncio.gather(
        *(
            b.stock_take(room, "sale", user=f"u{i}", qty=1, per_user_limit=1, record=b"r", cid="c")
            for i in range(200)
        )
    )
    assert [r.status for r in results].count(StockStatus.OK) == 50
    assert b.take_calls < 20


async def test_concurrent_tally_entries_share_script_calls(make):
    b = make()
    room = room_id()
    await started(b)
    results = await asyncio.gather(
        *(b.tally(room, "lottery:1", f"u{i % 150}", "1", 60_000) for i in range(300))
    )
    assert [r.status for r in results].count(TallyStatus.ADDED) == 150
    assert results[-1].counts == {"1": 150}
    assert b.tally_calls < 20


async def test_without_coalescing_every_commit_is_a_call(make):
    b = make(coalesce=False)
    room = room_id()
    await started(b)
    await asyncio.gather(*(b.commit(room, [Draft(ev(room, str(i)))]) for i in range(20)))
    assert (b.commits, b.script_calls) == (20, 20)


async def test_cas_commits_are_not_coalesced(make):
    b = make()
    room = room_id()
    await started(b)
    await b.commit(room, [], expect_version=0, doc=b"d")
    results = await asyncio.gather(
        *(b.commit(room, [Draft(ev(room, str(i)))], expect_version=1, doc=b"e") for i in range(5))
    )
    assert [r.status for r in results].count(CommitStatus.OK) == 1
    assert [r.status for r in results].count(CommitStatus.VERSION_CONFLICT) == 4
    assert b.script_calls == 6


def _durable_wait_ms(request) -> int:
    """Short where no replica can answer (single node), generous where one must: a replica's
    acknowledgement within 50 ms failed on a loaded box (two pytest workers on 2 cores)."""
    return 50 if "single" in request.node.callspec.id else 800  # under the 1 s op timeout


async def test_durable_wait_needs_a_replica(make, request):
    b = make(durable_wait_ms=_durable_wait_ms(request))
    room = room_id()
    await started(b)
    if "single" in request.node.callspec.id:
        with pytest.raises(BrokerUnavailable):
            await b.commit(room, [Draft(ev(room, "x"))])
    else:
        res = await b.commit(room, [Draft(ev(room, "x"))])
        assert res.seqs == (1,)


async def test_a_durable_commit_is_published_only_after_a_replica_has_it(make, request):
    """A durable commit goes only to a primary with a replica, and is published once one
    has it: on a single node (no replica) it is refused before anything is written
    (``NotExecuted``, asked by ROLE first); with one (cluster) it is delivered."""
    b = make(durable_wait_ms=_durable_wait_ms(request))
    room = room_id()
    c = await started(b, [room])
    if "single" in request.node.callspec.id:
        with pytest.raises(NotExecuted):
            await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
        await asyncio.sleep(0.3)
        assert c.deliveries == []
        assert (await b.history(room, 0)).events == []  # nothing written, nothing announced
    else:
        res = await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
        assert res.seqs == (1,)
        assert [e.seq for e in await c.wait_events(1)] == [1]


async def test_one_message_per_script_call(make):
    """A coalesced batch reaches subscribers as one Delivery."""
    b = make()
    room = room_id()
    c = await started(b, [room])
    await asyncio.gather(*(b.commit(room, [Draft(ev(room, str(i)))]) for i in range(100)))
    await c.wait_events(100)
    assert len(c.deliveries) == b.script_calls


def test_payload_decoding_of_an_ephemeral_only_batch():
    payload = b"abc|7|2\n0|4003|1|6|2\nkuser:1{}0|0|0|0|3\n{ }"
    d = decode_delivery("r", payload)
    assert (d.epoch, d.version) == ("abc", 7)
    assert [(e.seq, e.close_code, e.coalesce, e.audience, e.body) for e in d.events] == [
        (0, 4003, "k", "user:1", b"{}"),
        (0, 0, "", "", b"{ }"),
    ]


def test_every_room_key_shares_the_room_slot():
    k = room_keys("rs:", "room-7")
    names = [k.room, k.hist, k.channel, k.counters, k.gates, k.presence, k.dynamic, k.idem("u", "c")]
    names += [*k.tally("p"), *k.stock("s"), *k.shares("x"), k.stock_cids]
    assert {key_slot(n.encode()) for n in names} == {k.slot}
    a = app_keys("rs:", "shop")
    assert {key_slot(n.encode()) for n in (a.rooms, a.seen, a.schedule)} == {a.slot}
    with pytest.raises(ValueError):
        RedisBroker.from_url("redis://127.0.0.1:1/0", prefix="a{b}:")


# -- idle lifetime and indexes (the shared contract is in test_room_lifecycle.py) ------


async def pttl(b: RedisBroker, slot: int, key: str) -> int:
    return await b._call(slot, ("PTTL", key))


async def test_event_commits_leave_ttls_alone_and_document_writes_renew_them(make):
    """The hot path (event-only commits) runs no PEXPIRE; creating the room and
    writing its document hold every life key for the idle TTL."""
    idle = 3_600_000
    b = make(idle_ttl_ms=idle)
    await started(b)
    room = room_id()
    k = room_keys(b.prefix, room)
    await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
    await b.accumulate(room, "likes", 1, 0)
    assert await b.gate(room, "online", 0, "1")
    await b.tally(room, "poll", "u1", "a", 60_000)
    for key in k.life:
        assert idle - 60_000 < await pttl(b, k.slot, key) <= idle, key
    for key in k.life:
        await b._call(k.slot, ("PEXPIRE", key, 100_000))
    await asyncio.gather(*(b.commit(room, [Draft(ev(room, str(i)))]) for i in range(50)))
    await b.accumulate(room, "likes", 1, 0)
    assert await b.gate(room, "online", 0, "2")
    for key in k.life:
        assert 0 < await pttl(b, k.slot, key) <= 100_000, key
    await b.commit(room, [], expect_version=1, doc=b"e")
    for key in k.life:
        assert await pttl(b, k.slot, key) > 100_000, key


async def test_a_dynamic_key_holds_the_room_at_least_as_long(make):
    b = make(idle_ttl_ms=60_000)
    await started(b)
    room = room_id()
    k = room_keys(b.prefix, room)
    await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
    assert await b.stock_create(room, "sale", 1, ttl_ms=3_600_000)
    for key in (k.dynamic, k.room, k.hist):
        # read before the stock's: the room's keys must not expire first
        assert await pttl(b, k.slot, key) >= await pttl(b, k.slot, k.stock("sale")[0]), key
    stock_ttl = await pttl(b, k.slot, k.stock("sale")[0])
    # touch never shortens them back to the idle TTL
    await b.touch([room])
    assert await pttl(b, k.slot, k.room) >= stock_ttl - 1000


async def test_touch_forgets_names_of_expired_dynamic_keys(make):
    b = make(idle_ttl_ms=60_000)
    await started(b)
    room = room_id()
    k = room_keys(b.prefix, room)
    await b.commit(room, [], expect_version=0, doc=b"d")
    for i in range(5):
        assert await b.stock_create(room, f"sale:{i}", 1, ttl_ms=60_000)
    await b._call(k.slot, ("DEL", *k.stock("sale:0"), *k.stock("sale:1")))  # as if expired
    await b.touch([room])
    names = {m.decode() for m in await b._call(k.slot, ("SMEMBERS", k.dynamic))}
    # (the records lists were never written: those names go too)
    assert names == {k.stock(f"sale:{i}")[0] for i in range(2, 5)}


async def test_rooms_skip_indexed_rooms_without_document_and_still_fill_the_page(make):
    """A crash between indexing a room and the commit that creates its document
    leaves an entry: ``rooms`` never returns it and still returns full pages."""
    b = make()
    await started(b)
    app = app_of(room_id())
    rooms = sorted(room_id(app) for _ in range(6))
    for i, r in enumerate(rooms):
        if i % 2:
            await b.commit(r, [], expect_version=0, doc=b"d")
        else:
            await b._register(r)  # indexed, the creating commit never ran
    assert await b.rooms(app, limit=2) == [rooms[1], rooms[3]]
    assert await b.rooms(app, after=rooms[1], limit=2) == [rooms[3], rooms[5]]


async def test_the_sweep_keeps_a_room_registered_again_meanwhile(make):
    """``index_sweep.lua`` removes an entry found gone only if nobody registered the
    room since the lookup (its check time moved past now)."""
    b = make(idle_ttl_ms=60_000)
    await started(b)
    room = room_id()
    a = app_keys(b.prefix, app_of(room))
    await b._register(room)  # a room re-created since the sweep looked it up
    now = _wall_ms()
    await b._call(a.slot, ScriptCall(INDEX_SWEEP, [a.rooms, a.seen, a.schedule], [now, 1, room]))
    assert await b._call(a.slot, ("ZSCORE", a.rooms, room)) is not None
    await b._call(a.slot, ("ZADD", a.seen, now - 1, room))  # its check time passed
    await b._call(a.slot, ScriptCall(INDEX_SWEEP, [a.rooms, a.seen, a.schedule], [now, 1, room]))
    assert await b._call(a.slot, ("ZSCORE", a.rooms, room)) is None


async def test_rooms_of_the_old_global_set_move_to_their_app_index(make):
    old = make(idle_ttl_ms=0)
    await started(old)
    app = app_of(room_id())
    rooms = sorted(room_id(app) for _ in range(3))
    for r in rooms[:2]:
        await old.commit(r, [Draft(ev(r, "x"))], expect_version=0, doc=b"d")
    legacy = f"{old.prefix}rooms"
    slot = key_slot(legacy.encode())
    await old._call(slot, ("SADD", legacy, *rooms))  # rooms[2] never got its document
    await old._router.call(
        app_keys(old.prefix, app).slot, [("DEL", app_keys(old.prefix, app).rooms)], safe=True
    )
    k = room_keys(old.prefix, rooms[0])
    assert await pttl(old, k.slot, k.room) == -1

    b = make(idle_ttl_ms=3_600_000)
    await started(b)  # start() moves them in the background
    deadline = asyncio.get_running_loop().time() + 10
    while await b._call(slot, ("EXISTS", legacy)):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert await b.rooms(app) == rooms[:2]
    assert 0 < await pttl(b, k.slot, k.room) <= 3_600_000
