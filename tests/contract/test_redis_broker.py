"""Redis-only properties of ``RedisBroker`` (the shared contract is in the other files)."""

from __future__ import annotations

import asyncio

import pytest

from roomserver.bus.base import BrokerUnavailable, CommitStatus, Draft
from roomserver.bus.redis import RedisBroker, decode_delivery, room_keys
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
    assert [r.status for r in results].count("ok") == 50
    assert b.take_calls < 20


async def test_concurrent_tally_entries_share_script_calls(make):
    b = make()
    room = room_id()
    await started(b)
    results = await asyncio.gather(
        *(b.tally(room, "lottery:1", f"u{i % 150}", "1", 60_000) for i in range(300))
    )
    assert [r.status for r in results].count("added") == 150
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
    assert sorted(r.status for r in results) == [CommitStatus.OK] + [CommitStatus.VERSION_CONFLICT] * 4
    assert b.script_calls == 6


async def test_durable_wait_needs_a_replica(make, request):
    b = make(durable_wait_ms=50)
    room = room_id()
    await started(b)
    if "single" in request.node.callspec.id:
        with pytest.raises(BrokerUnavailable):
            await b.commit(room, [Draft(ev(room, "x"))])
    else:
        res = await b.commit(room, [Draft(ev(room, "x"))])
        assert res.seqs == (1,)


async def test_a_durable_commit_is_published_only_after_a_replica_has_it(make, request):
    """WAIT decides publication: without a replica (single node) the event is written
    but no subscriber sees it; with one (cluster) it is delivered."""
    b = make(durable_wait_ms=50)
    room = room_id()
    c = await started(b, [room])
    if "single" in request.node.callspec.id:
        with pytest.raises(BrokerUnavailable):
            await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
        await asyncio.sleep(0.3)
        assert c.deliveries == []
        assert [e.seq for e in (await b.history(room, 0)).events] == [1]  # written, not announced
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
    from redis.crc import key_slot

    k = room_keys("rs:", "room-7")
    names = [k.room, k.hist, k.channel, k.counters, k.gates, k.presence, k.dynamic, k.idem("u", "c")]
    names += [*k.tally("p"), *k.stock("s"), *k.shares("x"), k.stock_cids]
    assert {key_slot(n.encode()) for n in names} == {k.slot}
    with pytest.raises(ValueError):
        RedisBroker.from_url("redis://127.0.0.1:1/0", prefix="a{b}:")
