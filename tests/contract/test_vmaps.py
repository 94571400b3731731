"""The versioned map contract (bus/vmaps.py): the same assertions on memory, one
Redis node and Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from roomserver.bus.vmaps import Vmap, VmapStatus


def map_name() -> str:
    return f"t/m-{uuid.uuid4().hex[:10]}"


async def test_writes_version_entries_and_the_map_and_every_node_reads_them(broker_factory) -> None:
    a, b = broker_factory("a"), broker_factory("b")
    m = map_name()
    assert await b.vmap_read(m) == Vmap(0)
    assert await b.vmap_version(m) == 0
    w = await a.vmap_put(m, "p1", b"one")
    assert (w.status, w.version, w.map_version) == (VmapStatus.OK, 1, 1)
    w = await b.vmap_put(m, "p1", b"one|two")  # data may hold the separator
    assert (w.status, w.version, w.map_version) == (VmapStatus.OK, 2, 2)
    await a.vmap_put(m, "p2", b"\x00\xff")
    assert await b.vmap_version(m) == 3
    read = await b.vmap_read(m)
    assert read == Vmap(3, {"p1": (2, b"one|two"), "p2": (1, b"\x00\xff")})
    # A field name is any text (an app's product id).
    w = await a.vmap_put(m, "商品/f:v 1", b"x")
    assert w.status is VmapStatus.OK
    assert (await a.vmap_read(m)).entries["商品/f:v 1"] == (1, b"x")


async def test_expect_refuses_a_stale_write_and_changes_nothing(broker_factory) -> None:
    a, b = broker_factory("a"), broker_factory("b")
    m = map_name()
    assert (await a.vmap_put(m, "p", b"v1", expect=0)).status is VmapStatus.OK
    stale = await b.vmap_put(m, "p", b"other", expect=0)
    assert (stale.status, stale.version, stale.map_version) == (VmapStatus.CONFLICT, 1, 1)
    assert (await b.vmap_put(m, "p", b"v2", expect=1)).version == 2
    assert (await a.vmap_put(m, "p", b"v3", expect=1)).status is VmapStatus.CONFLICT
    assert await a.vmap_read(m) == Vmap(2, {"p": (2, b"v2")})


async def test_concurrent_writers_with_one_expected_version_one_wins(broker_factory) -> None:
    nodes = [broker_factory(f"n{i}") for i in range(4)]
    m = map_name()
    await nodes[0].vmap_put(m, "p", b"base")
    results = await asyncio.gather(*(n.vmap_put(m, "p", b"n%d" % i, expect=1) for i, n in enumerate(nodes)))
    assert sorted(r.status.value for r in results) == ["conflict", "conflict", "conflict", "ok"]
    winner = next(i for i, r in enumerate(results) if r.status is VmapStatus.OK)
    assert (await nodes[1].vmap_read(m)).entries == {"p": (2, b"n%d" % winner)}


async def test_delete_and_recreate_and_the_map_version_never_goes_back(broker_factory) -> None:
    b = broker_factory()
    m = map_name()
    await b.vmap_put(m, "p", b"x")
    await b.vmap_put(m, "p", b"y")
    gone = await b.vmap_put(m, "p", None)
    assert (gone.status, gone.version, gone.map_version) == (VmapStatus.OK, 0, 3)
    assert (await b.vmap_put(m, "p", None)).status is VmapStatus.NOT_FOUND
    assert await b.vmap_read(m) == Vmap(3, {})
    assert await b.vmap_version(m) == 3
    again = await b.vmap_put(m, "p", b"z", expect=0)
    assert (again.status, again.version, again.map_version) == (VmapStatus.OK, 1, 4)


async def test_max_fields_limits_new_entries_only(broker_factory) -> None:
    b = broker_factory()
    m = map_name()
    for i in range(3):
        assert (await b.vmap_put(m, f"p{i}", b"x", max_fields=3)).status is VmapStatus.OK
    over = await b.vmap_put(m, "p3", b"x", max_fields=3)
    assert (over.status, over.map_version) == (VmapStatus.LIMIT_REACHED, 3)
    assert (await b.vmap_put(m, "p0", b"replaced", max_fields=3)).status is VmapStatus.OK
    await b.vmap_put(m, "p1", None)
    assert (await b.vmap_put(m, "p3", b"x", max_fields=3)).status is VmapStatus.OK
    assert sorted((await b.vmap_read(m)).entries) == ["p0", "p2", "p3"]


async def test_bad_arguments_are_refused_before_anything_is_written(broker_factory) -> None:
    b = broker_factory()
    m = map_name()
    with pytest.raises(ValueError):
        await b.vmap_put("bad{name}", "p", b"x")
    with pytest.raises(ValueError):
        await b.vmap_put(m, "", b"x")
    with pytest.raises(ValueError):
        await b.vmap_put(m, "p", b"x", expect=-1)
    with pytest.raises(ValueError):
        await b.vmap_read("")
    assert await b.vmap_version(m) == 0
