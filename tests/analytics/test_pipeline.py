"""The behaviour log end to end: ops → recorder → bus stream → writer → store.

A scripted show makes a record of every kind (tests/analytics/show_script.py);
on the memory bus with the embedded store and on the Redis Cluster with
PostgreSQL, the store ends up with exactly those records, each with its show
time. Then the delivery edges: a batch appended twice and a batch whose
consumer died are each stored once; a full recorder drops and counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roomserver.appkeys import STORE_KEY
from roomserver.behaviour_log import BehaviourRecorder, partition_of
from roomserver.behaviour_writer import GROUP, BehaviourWriter, wait_show_stored
from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.core.room import RoomDoc
from roomserver.metrics import Metrics
from roomserver.protocol import now_ms
from roomserver.store.store import AnalyticsStore
from roomserver.tenancy import room_key
from tests.analytics.show_script import check_records, scripted_show
from tests.server_fixtures import APP, Server, new_room_id, start_server


async def _show_stored(server: Server, room: str) -> None:
    show = await scripted_show(server, room)
    store = server.app[STORE_KEY]
    info = await wait_show_stored(store, server.node.broker, APP, room, show["show"], timeout=20)
    assert (info.started_at, info.title, info.host) == (show["started_at"], "Spring tea", "h1")
    events = await store.events.show_events(APP, room, show["show"])
    check_records(events, show, APP, room, await store.events.show_events(APP, room, 0))
    # The share link's join reached the report through the real recorder and writer.
    sharers = (await store.reports.get(info)).report.shares
    assert [(s.user, s.viewers, s.orders, s.gmv) for s in sharers] == [("ann", 1, 1, 2000)]
    metrics = server.node.metrics
    recorded = metrics.behaviour_recorded._value.get()
    assert metrics.behaviour_ingested._value.get() == recorded
    assert metrics.behaviour_dropped._value.get() == 0


async def test_every_kind_stored_on_the_memory_bus_and_embedded_store() -> None:
    server = await start_server()
    try:
        await _show_stored(server, new_room_id())
    finally:
        await server.close()


async def test_every_kind_stored_through_redis_cluster_into_postgresql(
    redis_cluster: Any, unique_prefix: str, postgres_url: str
) -> None:
    server = await start_server(
        redis_cluster=redis_cluster.startup, redis_prefix=unique_prefix, database_url=postgres_url
    )
    try:
        await _show_stored(server, new_room_id())
    finally:
        await server.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    s = await AnalyticsStore.open(data_dir=tmp_path)
    yield s
    await s.close()


def _recorder(broker: MemoryBroker, metrics: Metrics, **kw: Any) -> BehaviourRecorder:
    async def load_doc(room: str) -> RoomDoc:
        return RoomDoc(id="r1", show=1, started_at=1_000)

    return BehaviourRecorder(
        broker, metrics, node_id="n1", cached_doc=lambda r: None, load_doc=load_doc, **kw
    )


async def test_a_batch_appended_twice_or_claimed_from_a_dead_consumer_is_stored_once(
    store: AnalyticsStore,
) -> None:
    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    recorder = _recorder(broker, metrics)
    room = room_key(APP, "r1")
    for n in range(10):
        recorder.record(room, f"u{n}", "like", {"count": 1})
    assert await recorder.flush() == 10
    stream = partition_of(room)
    (entry,) = await broker.stream_range(stream, limit=10)
    # The append's answer was lost and it was sent again: the same batch twice.
    await broker.stream_append(stream, entry.data, maxlen=100)
    # A consumer read the first copy and died before acknowledging it.
    assert [e.id for e in await broker.stream_read(stream, GROUP, "dead", count=1)] == [entry.id]
    writer = BehaviourWriter(broker, store, metrics, node_id="n2", retention_days=365, claim_idle_ms=0)
    assert await writer.drain_once()  # the second copy
    assert not await writer.drain_once()
    assert await writer.claim_once()  # the dead consumer's copy
    stored = await store.events.show_events(APP, "r1", 1)
    assert sorted(e.user for e in stored) == [f"u{n}" for n in range(10)]
    assert {e.show_ms for e in stored} == {e.ts - 1_000 for e in stored}
    assert metrics.behaviour_ingested._value.get() == 10
    info = await broker.stream_info(stream, GROUP)
    assert (info.length, info.pending) == (0, 0)  # acknowledged and deleted


async def test_a_round_stores_every_partitions_entries_in_one_transaction_acked_only_after_it(
    store: AnalyticsStore,
) -> None:
    """The writer stores one read of all partitions in one ingest; when that ingest
    fails, no partition's entries are acknowledged, and they are stored once later."""
    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    recorder = _recorder(broker, metrics)
    rooms = [f"r{k}" for k in range(12)]
    streams = {partition_of(room_key(APP, r)) for r in rooms}
    assert len(streams) >= 3  # the rooms spread over several partitions
    for r in rooms:
        for n in range(5):
            recorder.record(room_key(APP, r), f"u{n}", "like", {"count": 1})
    assert await recorder.flush() == 60
    writer = BehaviourWriter(broker, store, metrics, node_id="n2", retention_days=365, claim_idle_ms=0)
    real_ingest, calls = store.events.ingest, []

    async def failing_ingest(events: Any) -> Any:
        calls.append(len(events))
        raise OSError("disk gone")

    store.events.ingest = failing_ingest  # type: ignore[method-assign]
    assert await writer.drain_once()
    assert calls == [60] * 3  # one ingest of all partitions' records, tried 3 times
    for stream in streams:
        info = await broker.stream_info(stream, GROUP)
        assert info.length == info.pending > 0  # nothing acknowledged: still pending
    assert metrics.behaviour_ingested._value.get() == 0

    async def counting_ingest(events: Any) -> Any:
        calls.append(len(events))
        return await real_ingest(events)

    calls.clear()
    store.events.ingest = counting_ingest  # type: ignore[method-assign]
    writer._backoff = 0.0
    assert await writer.claim_once()  # the pending entries, every partition's, at once
    assert calls == [60]
    assert not await writer.claim_once() and not await writer.drain_once()
    for stream in streams:
        assert (await broker.stream_info(stream, GROUP)).length == 0
    for r in rooms:
        assert sorted(e.user for e in await store.events.show_events(APP, r, 1)) == [
            f"u{n}" for n in range(5)
        ]
    assert metrics.behaviour_ingested._value.get() == 60


async def test_a_malformed_entry_is_dropped_and_counted_not_retried(store: AnalyticsStore) -> None:
    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    stream = partition_of(room_key(APP, "r1"))
    await broker.stream_append(stream, b'[["not", "a record"]]', maxlen=100)
    writer = BehaviourWriter(broker, store, metrics, node_id="n2", retention_days=365)
    assert await writer.drain_once()
    assert metrics.behaviour_write_errors.labels(step="decode")._value.get() == 1
    assert (await broker.stream_info(stream, GROUP)).length == 0


async def test_a_full_recorder_drops_and_counts() -> None:
    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    recorder = _recorder(broker, metrics, pending_max=5)
    for n in range(8):
        recorder.record(room_key(APP, "r1"), f"u{n}", "like", {"count": 1})
    assert metrics.behaviour_dropped._value.get() == 3
    assert await recorder.flush() == 5
    assert metrics.behaviour_recorded._value.get() == 5
    recorder.record(room_key(APP, "r1"), "u9", "like", {"count": 1})  # room again once sent
    assert await recorder.flush() == 1
    assert metrics.behaviour_recorded._value.get() == 6 and metrics.behaviour_dropped._value.get() == 3


async def test_retention_purges_older_records(store: AnalyticsStore) -> None:
    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    recorder = _recorder(broker, metrics)
    room = room_key(APP, "r1")
    day = 24 * 3600 * 1000
    now = now_ms()
    recorder.record(room, "old", "like", {"count": 1}, ts=now - 31 * day)
    recorder.record(room, "new", "like", {"count": 1}, ts=now - 29 * day)
    await recorder.flush()
    writer = BehaviourWriter(broker, store, metrics, node_id="n2", retention_days=30)
    await writer.drain_once()
    assert await writer.purge() == 1
    assert [e.user for e in await store.events.show_events(APP, "r1", 1)] == ["new"]
    assert await writer.purge() == 0


async def test_a_server_stopping_stores_the_sessions_it_closes(tmp_path: Path) -> None:
    """Shutdown: the drain closes the sockets, their leaves are recorded, flushed and
    stored before the embedded store closes (the memory bus dies with the process)."""
    server = await start_server(data_dir=str(tmp_path))
    room = new_room_id()
    for user in ("ann", "bob"):
        await (await server.client(user, reconnect=False)).join(room)
    await server.app.shutdown()  # what SIGTERM runs: the gateway's drain
    await server.close()
    store = await AnalyticsStore.open(data_dir=tmp_path)
    try:
        events = await store.events.show_events(APP, room, 0)
        assert sorted((e.user, e.kind) for e in events) == [
            ("ann", "join"),
            ("ann", "leave"),
            ("bob", "join"),
            ("bob", "leave"),
        ]
    finally:
        await store.close()
