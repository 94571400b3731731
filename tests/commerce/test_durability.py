"""The durability policy (``--redis-durable-wait-ms``): which writes wait for a
replica, what a replica that does not answer does to them, and the defaults.

A replica is made to "not answer" by stopping it (SIGSTOP) for well under the
cluster's node timeout, so the cluster never declares it failed; it is
continued (SIGCONT) in a ``finally`` and the cluster checked healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from roomserver.bus.base import BrokerUnavailable, Draft, StockStatus
from roomserver.bus.redis import RedisBroker, room_keys
from roomserver.bus.redis_client import NotExecuted, PrimaryMoved
from roomserver.cli import config_from_args, main
from roomserver.config import DEFAULT_CLUSTER_DURABLE_WAIT_MS, Config
from roomserver.protocol import encode_event
from roomserver.server import make_broker
from tests.redis_servers import RedisCluster, RedisNode

pytestmark = pytest.mark.redis

WAIT_MS = 100
HOUR_MS = 3_600_000


def room_id() -> str:
    return "d-" + uuid.uuid4().hex[:10]


def replica_of(cluster: RedisCluster, primary: RedisNode) -> RedisNode:
    info = primary.command("INFO", "replication")
    ports = [int(v["port"]) for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return next(n for n in cluster.nodes if n.port in ports and n.alive)


@contextlib.contextmanager
def replica_stopped(cluster: RedisCluster, key: str) -> Iterator[RedisNode]:
    """The replica of ``key``'s primary takes nothing in (SIGSTOP) while inside."""
    replica = replica_of(cluster, cluster.primary_of(key))
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        yield replica
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)


async def take(broker: RedisBroker, room: str, user: str, cid: str) -> object:
    try:
        return await broker.stock_take(
            room,
            "sale:1",
            user=user,
            qty=1,
            per_user_limit=5,
            record=f"{user}/{cid}".encode(),
            cid=cid,
            fingerprint="f",
        )
    except BrokerUnavailable as exc:
        return exc


async def test_a_replay_acknowledges_only_what_a_replica_has(redis_cluster: RedisCluster, unique_prefix: str):
    """A take whose WAIT failed is replayed through another connection while the
    replica still lags: the replay must not be acknowledged either. (Where WAIT
    covers only the connection's own last write, the marker a replay writes is
    what makes this hold; Redis 7.0, used here, covers everything the primary
    wrote before the connection's last command.)"""
    room = room_id()
    first = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, durable_wait_ms=WAIT_MS)
    other = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, durable_wait_ms=WAIT_MS)
    await first.start(lambda d: None)
    await other.start(lambda d: None)
    try:
        assert await first.stock_create(room, "sale:1", 10, ttl_ms=HOUR_MS)
        ok = await take(first, room, "u1", "c1")
        assert getattr(ok, "status", None) == StockStatus.OK
        # ``other`` writes too, so its (pooled, reused) connection has an old
        # replication offset that a replica acknowledged long ago.
        ok = await take(other, room, "u0", "c0")
        assert getattr(ok, "status", None) == StockStatus.OK
        key = room_keys(unique_prefix, room).room
        with replica_stopped(redis_cluster, key):
            lagging = await take(first, room, "u2", "c2")
            # The script ran, no replica confirmed it: unknown outcome, not NotExecuted.
            assert type(lagging) is BrokerUnavailable, lagging
            # Another process retries the same cid on its own connection: the order
            # is there on the primary, but still on no replica.
            replay = await take(other, room, "u2", "c2")
            assert type(replay) is BrokerUnavailable, replay
            # The first broker now refuses without sending anything (no WAIT piles up).
            refused = await take(first, room, "u3", "c3")
            assert isinstance(refused, NotExecuted) and refused.executed is False
        # The replica catches up: the replay is acknowledged, with the first record.
        deadline = time.monotonic() + 5
        while not hasattr(replay := await take(other, room, "u2", "c2"), "status"):
            assert time.monotonic() < deadline, replay
            await asyncio.sleep(0.1)
        assert (replay.status, replay.record) == (StockStatus.REPLAYED, b"u2/c2")
        # u3's refused take never ran.
        assert await other.stock_records(room, "sale:1") == [b"u1/c1", b"u0/c0", b"u2/c2"]
    finally:
        await first.close()
        await other.close()
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)


async def test_money_waits_for_a_replica_barrage_does_not(redis_cluster: RedisCluster, unique_prefix: str):
    """The server's policy (``durable_events=False``): counters and document
    commits wait for a replica, event-only commits do not."""
    room = room_id()
    broker = RedisBroker.from_cluster(
        redis_cluster.startup, prefix=unique_prefix, durable_wait_ms=WAIT_MS, durable_events=False
    )
    await broker.start(lambda d: None)
    body = encode_event("barrage", room, {"text": "hi"})
    try:
        await broker.commit(room, [], expect_version=0, doc=b"v1")
        assert await broker.stock_create(room, "sale:1", 10, ttl_ms=HOUR_MS)
        assert await broker.shares_create(room, "packet:1", [5, 5], ttl_ms=HOUR_MS)
        with replica_stopped(redis_cluster, room_keys(unique_prefix, room).room):
            # A barrage commit is acknowledged, replica or not (a WAIT could only
            # have timed out, and the commit would have failed).
            res = await broker.commit(room, [Draft(body, capped=True)], barrage_cap=100)
            assert res.seqs == (1,)
            # A document commit waits and is refused.
            with pytest.raises(BrokerUnavailable):
                await broker.commit(room, [Draft(body)], expect_version=1, doc=b"v2")
            # Counters: refused unsent now (the document commit found no replica).
            for call in (
                broker.stock_take(room, "sale:1", user="u", qty=1, per_user_limit=1, record=b"o", cid="c"),
                broker.shares_grab(room, "packet:1", "u"),
                broker.tally(room, "lottery:1", "u", "1", HOUR_MS),
            ):
                with pytest.raises(NotExecuted):
                    await call
            res = await broker.commit(room, [Draft(body, capped=True)], barrage_cap=100)
            assert res.seqs == (3,)  # the refused document commit ran on the primary (seq 2)
        assert await broker.stock_state(room, "sale:1") == (10, 10)
        assert await broker.shares_grabs(room, "packet:1") == []
        assert await broker.tally_members(room, "lottery:1") == []
    finally:
        await broker.close()
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)


async def test_a_durable_call_runs_only_on_the_primary_it_checked(
    redis_cluster: RedisCluster, unique_prefix: str
):
    """The replica check and the send name the same node. A CI run of the failover
    test saw takes drain a sale on a newly promoted primary without a replica: the
    check had looked at the slot's old primary, and the send followed the refreshed
    map (or a MOVED) to the new one. Here the map is made stale by hand, pointing
    at another primary that has a replica, while the room's own primary has none."""
    room = room_id()
    keys = room_keys(unique_prefix, room)
    broker = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, durable_wait_ms=WAIT_MS)
    await broker.start(lambda d: None)
    router = broker._router  # the fault is injected into its slot map
    try:
        assert await broker.stock_create(room, "sale:1", 10, ttl_ms=HOUR_MS)
        primary = router.addr_for_slot(keys.slot)
        other = next(a for a in router.primaries() if a != primary)
        elsewhere = next(
            r
            for r in (room_id() for _ in range(1000))
            if router.addr_for_slot(room_keys(unique_prefix, r).slot) == other
        )
        assert await broker.stock_create(elsewhere, "sale:1", 10, ttl_ms=HOUR_MS)  # `other` has a replica
        with replica_stopped(redis_cluster, keys.room):
            redis_cluster.primary_of(keys.room).command("CLIENT", "KILL", "TYPE", "replica")
            lost = await take(broker, room, "u1", "c1")
            assert type(lost) is BrokerUnavailable, lost  # ran; no replica confirmed it
            router._slots[keys.slot] = other  # stale, as after a failover
            refused = await take(broker, room, "u2", "c2")
            # Checked `other`, sent there, redirected to the room's primary: not followed.
            assert isinstance(refused, NotExecuted), refused
            assert router.addr_for_slot(keys.slot) == primary  # the redirect corrected the map
            # A pinned call on a slot served by another node is not sent at all. (The map
            # is refreshed first: the redirect marked it stale, and a refresh on a loaded box
            # can outlast the op timeout, which is a NotExecuted of its own.)
            await router.refresh()
            with pytest.raises(PrimaryMoved):
                await router.call(keys.slot, [("SET", keys.room + ":probe", "x")], safe=False, pinned=other)
        assert await broker.stock_records(room, "sale:1") == [b"u1/c1"]  # u2's take never ran
        assert not await broker._router.call_one(keys.slot, ("EXISTS", keys.room + ":probe"), safe=True)
    finally:
        await broker.close()
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)


async def test_a_stream_append_is_acknowledged_once_a_replica_has_it(
    redis_cluster: RedisCluster, unique_prefix: str
):
    """Streams are queues of things owed (an order's webhook, the behaviour log): an
    append a dying primary acknowledged but never replicated would be lost unseen. A CI
    run of the failover sale lost an ``order.created`` webhook that way (its queue's
    primary was the one killed). Durable brokers wait for a replica, as for a take."""
    stream = "wh:app:" + uuid.uuid4().hex[:8]
    durable = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, durable_wait_ms=WAIT_MS)
    fast = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix)
    await durable.start(lambda d: None)
    await fast.start(lambda d: None)
    try:
        await durable.stream_append(stream, b"before", maxlen=100)
        _, key = durable._stream_key(stream)
        with replica_stopped(redis_cluster, key):
            with pytest.raises(BrokerUnavailable) as lagging:
                await durable.stream_append(stream, b"unconfirmed", maxlen=100)
            assert not isinstance(lagging.value, NotExecuted)  # it ran: outcome unknown
            with pytest.raises(NotExecuted):  # now refused unsent, one at a time or many
                await durable.stream_append_many(stream, [b"refused-1", b"refused-2"], maxlen=100)
            # Without the durability policy the primary's acknowledgement is enough.
            await fast.stream_append(stream, b"fast", maxlen=100)
        deadline = time.monotonic() + 5
        while True:
            try:
                await durable.stream_append_many(stream, [b"after-1", b"after-2"], maxlen=100)
                break
            except NotExecuted:  # refused until the replica is seen again
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        data = [e.data for e in await fast.stream_range(stream, limit=100)]
        assert data == [b"before", b"unconfirmed", b"fast", b"after-1", b"after-2"]
    finally:
        await durable.close()
        await fast.close()
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)


def test_the_default_policy_waits_on_a_cluster_only(monkeypatch: pytest.MonkeyPatch):
    assert Config(redis_cluster="127.0.0.1:7000").durable_wait_ms == DEFAULT_CLUSTER_DURABLE_WAIT_MS == 200
    assert Config(redis_url="redis://127.0.0.1:7000/0").durable_wait_ms == 0
    assert Config().durable_wait_ms == 0
    assert Config(redis_cluster="127.0.0.1:7000", redis_durable_wait_ms=0).durable_wait_ms == 0
    assert Config(redis_url="redis://x:1/0", redis_durable_wait_ms=50).durable_wait_ms == 50

    cluster = make_broker(Config(redis_cluster="127.0.0.1:7000"))
    single = make_broker(Config(redis_url="redis://127.0.0.1:7000/0"))
    assert isinstance(cluster, RedisBroker) and isinstance(single, RedisBroker)
    assert (cluster.durable_wait_ms, cluster.durable_events) == (200, False)
    assert (single.durable_wait_ms, single.durable_events) == (0, False)


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch):
    import argparse

    parsed: list[argparse.Namespace] = []
    monkeypatch.setattr("roomserver.cli.serve", lambda args: parsed.append(args) or 0)
    main(["serve", "--redis-cluster", "h:1", "--redis-durable-wait-ms", "75", "--redis-durable-events"])
    monkeypatch.setenv("ROOMSERVER_REDIS_DURABLE_WAIT_MS", "0")
    main(["serve", "--redis-cluster", "h:1"])
    monkeypatch.delenv("ROOMSERVER_REDIS_DURABLE_WAIT_MS")
    main(["serve", "--redis-cluster", "h:1"])
    configs = [config_from_args(a) for a in parsed]
    assert [(c.durable_wait_ms, c.redis_durable_events) for c in configs] == [
        (75, True),
        (0, False),
        (200, False),
    ]


async def test_single_node_without_replicas_keeps_working(redis_single: RedisNode, unique_prefix: str):
    """``--redis-url`` defaults to no WAIT: a lone node (no replica) serves sales."""
    broker = make_broker(Config(redis_url=redis_single.url, redis_prefix=unique_prefix))
    assert isinstance(broker, RedisBroker)
    await broker.start(lambda d: None)
    room = room_id()
    try:
        assert await broker.stock_create(room, "sale:1", 1, ttl_ms=HOUR_MS)
        res = await broker.stock_take(room, "sale:1", user="u", qty=1, per_user_limit=1, record=b"o", cid="c")
        assert (res.status, res.left) == (StockStatus.OK, 0)
    finally:
        await broker.close()
    # Asking for durability there refuses every money write: why it is off by default.
    durable = make_broker(
        Config(redis_url=redis_single.url, redis_prefix=unique_prefix, redis_durable_wait_ms=20)
    )
    await durable.start(lambda d: None)
    try:
        with pytest.raises(BrokerUnavailable):
            await durable.stock_create(room, "sale:2", 1, ttl_ms=HOUR_MS)
    finally:
        await durable.close()
