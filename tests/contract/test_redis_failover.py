"""The Redis backend when Redis fails: a cluster primary dies (failover), the
single server goes away and comes back, a server hangs.

These run against real servers: the session cluster (a killed primary is
restarted and the cluster healed before the test ends) and dedicated
standalone servers that the tests may kill freely.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from roomserver.bus.base import BrokerUnavailable, CommitStatus, Draft
from roomserver.bus.redis import RedisBroker, room_keys
from roomserver.bus.redis_client import NotExecuted
from tests.contract.test_broker_contract import Collector, ev, room_id
from tests.redis_servers import RedisCluster, RedisNode, start_standalone

# The bound we promise: op_timeout plus scheduling slack on a busy 2-core box.
OP_TIMEOUT = 0.5
BOUND = OP_TIMEOUT + 1.0


T = TypeVar("T")


def text(body: bytes) -> str:
    return msgspec.json.decode(body)["data"]["text"]


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[RedisNode]:
    node = start_standalone(tmp_path / "redis")
    yield node
    if node.proc is not None and node.proc.poll() is None:
        os.kill(node.proc.pid, signal.SIGCONT)  # in case a test left it stopped
    node.kill()


async def timed(coro) -> tuple[object, float]:
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(coro, 5 * BOUND), time.monotonic() - t0
    except BrokerUnavailable as exc:
        return exc, time.monotonic() - t0


async def surely(make: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Set-up and recovery steps, outside the failure under test: with the tests'
    short op timeout a loaded machine can miss the deadline before anything was sent
    (``NotExecuted``: certainly not run, so a retry cannot duplicate it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make()
        except NotExecuted:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def until_delivered(writer: RedisBroker, c: Collector, room: str, timeout: float) -> int:
    """Commit probes until one reaches the subscriber (re-subscription is
    asynchronous, and pub/sub drops what is published before it). Returns its seq."""
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        i += 1
        try:
            res = await writer.commit(room, [Draft(ev(room, f"probe{i}"))])
        except BrokerUnavailable:
            await asyncio.sleep(0.1)
            continue
        seq = res.seqs[0]
        for _ in range(20):
            if any(e.seq == seq for d in c.deliveries for e in d.events):
                return seq
            await asyncio.sleep(0.01)
    raise AssertionError(f"no delivery to the subscriber within {timeout}s")


async def test_cluster_failover(redis_cluster: RedisCluster, unique_prefix: str):
    """Kill the primary of a room's slot while commits go on: calls fail fast
    with BrokerUnavailable during the window, succeed after the failover, every
    acknowledged durable-wait commit keeps its seq, and subscribers resume."""
    room = room_id()
    durable = RedisBroker.from_cluster(
        redis_cluster.startup, prefix=unique_prefix, op_timeout=OP_TIMEOUT, durable_wait_ms=200
    )
    plain = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, op_timeout=OP_TIMEOUT)
    watcher = RedisBroker.from_cluster(redis_cluster.startup, prefix=unique_prefix, op_timeout=OP_TIMEOUT)
    c = Collector()
    await durable.start(lambda d: None)
    await plain.start(lambda d: None)
    await watcher.start(c)
    await watcher.subscribe(room)
    acked: dict[int, str] = {}
    for i in range(20):
        res = await surely(lambda i=i: durable.commit(room, [Draft(ev(room, f"before{i}"))]))
        acked[res.seqs[0]] = f"before{i}"
    await c.wait_events(20)

    key = room_keys(unique_prefix, room).room
    old = redis_cluster.primary_of(key)
    stop = asyncio.Event()
    refused: list[float] = []

    async def keep_committing(broker: RedisBroker, tag: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            label = f"{tag}{i}"
            result, took = await timed(broker.commit(room, [Draft(ev(room, label))]))
            if isinstance(result, BrokerUnavailable):
                refused.append(took)
                await asyncio.sleep(0.05)
            else:
                assert result.status == CommitStatus.OK
                acked[result.seqs[0]] = label
                await asyncio.sleep(0.005)

    committer = asyncio.create_task(keep_committing(durable, "during"))
    restarted = False
    await asyncio.sleep(0.2)
    redis_cluster.kill_primary_of(key)
    killed_at = time.monotonic()
    try:
        # While the slot has no primary, calls are refused within the bound.
        result, took = await timed(plain.load(room))
        assert isinstance(result, BrokerUnavailable) and took < BOUND
        assert not await watcher.healthy()

        new = await asyncio.to_thread(redis_cluster.wait_for_failover, key, old, 20.0)
        failover_s = time.monotonic() - killed_at
        stop.set()
        await committer
        assert refused and max(refused) < BOUND

        # The promoted replica has no replica of its own: durable commits are
        # refused (WAIT finds nobody) while plain ones go through.
        result, took = await timed(durable.commit(room, [Draft(ev(room, "unreplicated"))]))
        assert isinstance(result, BrokerUnavailable) and took < BOUND
        res = await plain.commit(room, [Draft(ev(room, "plain-after"))])
        acked[res.seqs[0]] = "plain-after"

        # The subscriber re-subscribed on the new primary by itself.
        first = await until_delivered(plain, c, room, timeout=10)
        delivered = sum(len(d.events) for d in c.deliveries)
        for i in range(10):
            await plain.commit(room, [Draft(ev(room, f"after{i}"))])
        events = await c.wait_events(delivered + 10)
        assert [e.seq for e in events if e.seq >= first] == list(range(first, first + 11))
        assert await watcher.healthy()

        # The old primary comes back as a replica of the new one: durable again.
        redis_cluster.restart(old)  # main thread: see RedisNode.start
        restarted = True
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)
        assert redis_cluster.primary_of(key) is new
        # (the new replica may need a moment before it answers WAIT)
        deadline = time.monotonic() + 5
        while True:
            try:
                res = await durable.commit(room, [Draft(ev(room, "durable-again"))])
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "durable commits did not come back"
                await asyncio.sleep(0.1)
        acked[res.seqs[0]] = "durable-again"

        # Every acknowledged commit survived with its own seq; seqs are contiguous.
        page = await plain.history(room, 0, limit=100_000)
        seen = {e.seq: text(e.body) for e in page.events}
        assert [e.seq for e in page.events] == list(range(1, page.seq + 1))
        for seq, label in acked.items():
            assert seen[seq] == label, f"acknowledged seq {seq} lost or replaced"
        print(
            f"failover {failover_s:.1f}s; {len(refused)} commits refused, slowest refusal {max(refused):.2f}s"
        )
    finally:
        stop.set()
        committer.cancel()
        for b in (durable, plain, watcher):
            await b.close()
        if not restarted:
            redis_cluster.restart(old)  # main thread: see RedisNode.start
        await asyncio.to_thread(redis_cluster.wait_healthy, 30.0)


async def test_redis_down_and_back(standalone: RedisNode, unique_prefix: str):
    room, later = room_id(), room_id()
    b = RedisBroker.from_url(standalone.url, prefix=unique_prefix, op_timeout=OP_TIMEOUT)
    c = Collector()
    await b.start(c)
    try:
        await b.subscribe(room)
        first = await surely(lambda: b.commit(room, [Draft(ev(room, "x"))]))
        await c.wait_events(1)
        assert await b.healthy()

        standalone.kill()
        assert not await b.healthy()
        for call in (
            b.commit(room, [Draft(ev(room, "y"))]),
            b.load(room),
            b.history(room, 0),
            b.report_presence({room: 1}, 5000),
            b.subscribe(later),
        ):
            result, took = await timed(call)
            assert isinstance(result, BrokerUnavailable) and took < BOUND

        standalone.start()  # empty: no persistence
        deadline = time.monotonic() + 10
        while not await b.healthy():
            assert time.monotonic() < deadline, "broker did not recover"
            await asyncio.sleep(0.05)
        res = await surely(lambda: b.commit(room, [Draft(ev(room, "z"))]))
        assert res.seqs == (1,) and res.epoch != first.epoch  # the history was lost: new epoch
        # The room subscribed before the outage is re-subscribed in the background;
        # the one whose subscribe failed is not subscribed until asked again.
        await until_delivered(b, c, room, timeout=10)
        await surely(lambda: b.commit(later, [Draft(ev(later, "unheard"))]))
        await b.subscribe(later)
        await until_delivered(b, c, later, timeout=10)
        assert "unheard" not in [text(e.body) for d in c.deliveries for e in d.events]
    finally:
        await b.close()


async def test_a_hung_server_is_bounded_and_commits_are_not_resent(standalone: RedisNode, unique_prefix: str):
    """SIGSTOP: the server takes the bytes but does not answer. The caller gets
    BrokerUnavailable within the bound; the commit runs when the server wakes
    up, and it runs once (it is never re-sent after an unknown outcome)."""
    room = room_id()
    b = RedisBroker.from_url(standalone.url, prefix=unique_prefix, op_timeout=OP_TIMEOUT)
    await b.start(lambda d: None)
    assert standalone.proc is not None
    try:
        await surely(lambda: b.commit(room, [Draft(ev(room, "before"))]))
        os.kill(standalone.proc.pid, signal.SIGSTOP)
        try:
            result, took = await timed(b.commit(room, [Draft(ev(room, "maybe"))]))
            assert isinstance(result, BrokerUnavailable) and took < BOUND
            assert not await b.healthy()
        finally:
            os.kill(standalone.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while not await b.healthy():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        after = await surely(lambda: b.commit(room, [Draft(ev(room, "after"))]))
        page = await b.history(room, 0)
        texts = [text(e.body) for e in page.events]
        assert texts.count("maybe") <= 1
        assert texts[0] == "before" and texts[-1] == "after" and after.seqs[0] == len(texts)
    finally:
        await b.close()
