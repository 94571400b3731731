"""The durable stream contract (bus/streams.py): the same assertions on memory,
one Redis node and Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from roomserver.bus.streams import id_key


def stream_name() -> str:
    # A "/" like room keys, to check names with one work as keys and hash tags.
    return f"t/s-{uuid.uuid4().hex[:10]}"


async def test_append_assigns_increasing_ids_and_range_pages(broker_factory) -> None:
    b = broker_factory()
    s = stream_name()
    ids = [await b.stream_append(s, b"e%d" % i, maxlen=1000) for i in range(25)]
    assert [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)
    assert len(set(ids)) == 25
    page1 = await b.stream_range(s, limit=10)
    page2 = await b.stream_range(s, after=page1[-1].id, limit=10)
    page3 = await b.stream_range(s, after=page2[-1].id, limit=10)
    got = [e.data for e in page1 + page2 + page3]
    assert got == [b"e%d" % i for i in range(25)]
    assert page1[0].id == ids[0] and page3[-1].id == ids[-1]
    assert page1[0].ms > 1_700_000_000_000  # a wall-clock ms
    assert await b.stream_range(s, after=ids[-1], limit=10) == []


async def test_group_hands_each_entry_to_one_consumer_until_acked(broker_factory) -> None:
    n1, n2 = broker_factory("n1"), broker_factory("n2")
    s = stream_name()
    for i in range(6):
        await n1.stream_append(s, b"%d" % i, maxlen=1000)
    a = await n1.stream_read(s, "g", "c1", count=4)
    b = await n2.stream_read(s, "g", "c2", count=4)
    assert [e.data for e in a] == [b"0", b"1", b"2", b"3"]
    assert [e.data for e in b] == [b"4", b"5"]
    assert await n2.stream_read(s, "g", "c2", count=4) == []
    # Another group reads the whole stream independently.
    assert len(await n2.stream_read(s, "other", "c1", count=100)) == 6
    info = await n1.stream_info(s, "g")
    assert (info.length, info.pending) == (6, 6)
    assert await n1.stream_ack(s, "g", [e.id for e in a]) == 4
    assert await n1.stream_ack(s, "g", [e.id for e in a]) == 0  # idempotent
    info = await n1.stream_info(s, "g")
    assert (info.length, info.pending) == (6, 2)
    assert await n1.stream_ack(s, "g", [e.id for e in b], delete=True) == 2
    info = await n1.stream_info(s, "g")
    assert (info.length, info.pending) == (4, 0)
    # Entries appended after the group exists are read too.
    await n2.stream_append(s, b"6", maxlen=1000)
    assert [e.data for e in await n1.stream_read(s, "g", "c1", count=10)] == [b"6"]


async def test_claim_moves_pending_of_a_dead_consumer_oldest_first(broker_factory) -> None:
    n1, n2 = broker_factory("n1"), broker_factory("n2")
    s = stream_name()
    for i in range(5):
        await n1.stream_append(s, b"%d" % i, maxlen=1000)
    read = await n1.stream_read(s, "g", "dead", count=5)
    assert len(read) == 5
    # Not idle long enough: nothing moves.
    none = await n2.stream_claim(s, "g", "alive", min_idle_ms=3_600_000, count=10)
    assert none.entries == []
    claim = await n2.stream_claim(s, "g", "alive", min_idle_ms=0, count=3)
    assert [e.data for e in claim.entries] == [b"0", b"1", b"2"]
    assert claim.next == read[3].id
    rest = await n2.stream_claim(s, "g", "alive", min_idle_ms=0, count=3, start=claim.next)
    assert [e.data for e in rest.entries] == [b"3", b"4"]
    assert rest.next == "0-0"
    # An entry deleted while pending is dropped from the pending list by a claim.
    await n1.stream_trim(s, min_id=read[1].id)
    again = await n2.stream_claim(s, "g", "alive", min_idle_ms=0, count=10)
    assert [e.data for e in again.entries] == [b"1", b"2", b"3", b"4"]
    assert (await n1.stream_info(s, "g")).pending == 4
    with pytest.raises(ValueError):
        await n1.stream_claim(s, "nogroup", "c", min_idle_ms=0, count=1)


async def test_maxlen_and_trim_bound_the_stream(broker_factory) -> None:
    b = broker_factory()
    s = stream_name()
    ids = [await b.stream_append(s, b"%d" % i, maxlen=10) for i in range(400)]
    info = await b.stream_info(s, "g")
    # About maxlen: at least 10 kept (Redis trims whole nodes of ~100 entries).
    assert 10 <= info.length < 400
    tail = await b.stream_range(s, after=ids[-11], limit=100)
    assert [e.data for e in tail] == [b"%d" % i for i in range(390, 400)]
    assert await b.stream_trim(s, maxlen=5) == info.length - 5
    assert [e.data for e in await b.stream_range(s, limit=100)] == [b"%d" % i for i in range(395, 400)]
    assert await b.stream_trim(s, min_id=ids[398]) == 3
    assert [e.id for e in await b.stream_range(s, limit=100)] == ids[398:]


async def test_lease_has_one_holder_until_it_expires_or_is_released(broker_factory) -> None:
    n1, n2 = broker_factory("n1"), broker_factory("n2")
    s = stream_name()
    assert await n1.stream_lease(s, "n1", 60_000)
    assert await n1.stream_lease(s, "n1", 60_000)  # renewed
    assert not await n2.stream_lease(s, "n2", 60_000)
    await n2.stream_release(s, "n2")  # not its lease: no effect
    assert not await n2.stream_lease(s, "n2", 60_000)
    await n1.stream_release(s, "n1")
    assert await n2.stream_lease(s, "n2", 1)
    # A 1 ms lease is over once a ms passed (time itself is what we wait for).
    for _ in range(500):
        if await n1.stream_lease(s, "n1", 60_000):
            break
        await asyncio.sleep(0.002)
    else:
        pytest.fail("an expired lease was never taken over")


async def test_bad_names_and_arguments_are_refused(broker_factory) -> None:
    b = broker_factory()
    s = stream_name()
    for bad in ("", "a{b}", "x" * 201, "sp ace"):
        with pytest.raises(ValueError):
            await b.stream_append(bad, b"x", maxlen=10)
    with pytest.raises(ValueError):
        await b.stream_append(s, b"x", maxlen=0)
    with pytest.raises(ValueError):
        await b.stream_read(s, "g", "c", count=0)
    with pytest.raises(ValueError):
        await b.stream_range(s, after="nope", limit=10)
    with pytest.raises(ValueError):
        await b.stream_ack(s, "g", ["1-x"])
    assert await b.stream_range(s, limit=10) == []


async def test_append_many_keeps_order_in_one_call(broker_factory) -> None:
    b = broker_factory()
    s = stream_name()
    first = await b.stream_append(s, b"a", maxlen=1000)
    ids = await b.stream_append_many(s, [b"b", b"c", b"d"], maxlen=1000)
    assert await b.stream_append_many(s, [], maxlen=1000) == []
    assert [id_key(i) for i in [first, *ids]] == sorted(id_key(i) for i in [first, *ids])
    assert [e.data for e in await b.stream_range(s, limit=10)] == [b"a", b"b", b"c", b"d"]
