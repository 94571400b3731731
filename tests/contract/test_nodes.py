"""Node announcements on every backend: announce, list, refresh, expire, withdraw."""

from __future__ import annotations

from tests.contract.test_broker_contract import started
from tests.polling import until_async


async def test_nodes_announce_list_refresh_expire_and_withdraw(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    await started(a)
    await started(b)
    assert await a.nodes() == {}
    await a.announce_node(b'{"sockets":1}', ttl_ms=30_000)
    await b.announce_node(b"\x00binary\xff", ttl_ms=300)
    seen = await b.nodes()
    assert set(seen) == {"a", "b"}
    assert seen["a"][0] == b'{"sockets":1}' and 0 < seen["a"][1] <= 30_000
    assert seen["b"][0] == b"\x00binary\xff"
    # A refresh replaces the info and moves the expiry.
    await a.announce_node(b'{"sockets":2}', ttl_ms=60_000)
    assert (await b.nodes())["a"][0] == b'{"sockets":2}' and (await b.nodes())["a"][1] > 30_000

    # b stops announcing (a crash): it is gone once its TTL has passed, a stays.
    async def b_gone() -> bool:
        return set(await a.nodes()) == {"a"}

    await until_async(b_gone, 10.0, "b's announcement to expire")
    # Withdrawn at once (a clean stop).
    await a.announce_node(b"", ttl_ms=0)
    assert await b.nodes() == {}


async def test_nodes_are_per_bus_not_per_broker_instance(broker_factory):
    """A second broker with the same node id (a restarted process) replaces the entry."""
    first = broker_factory("n")
    await started(first)
    await first.announce_node(b"old", ttl_ms=30_000)
    again = broker_factory("n")
    await started(again)
    await again.announce_node(b"new", ttl_ms=30_000)
    assert {k: v[0] for k, v in (await first.nodes()).items()} == {"n": b"new"}
    await again.announce_node(b"", ttl_ms=0)
