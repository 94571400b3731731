"""A bus answer lost after the bus acted (what a Redis timeout or a failed WAIT
looks like to the server): the buyer is told `unavailable`, retries with the
same cid and gets the order; the order is still announced exactly once, and a
sale (or red packet) emptied by that lost call still closes (finishes).

The embedded bus is wrapped to drop chosen answers; everything else is the
real server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from roomserver.bus.base import BrokerUnavailable
from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.bus.redis_client import NotExecuted
from roomserver.config import Config
from roomserver.server import create_app
from tests.commerce.conftest import WebhookSink
from tests.server_fixtures import APP, SECRET, Recorder, Server

PRODUCT = {"id": "p-1", "title": "Tea set", "price_cents": 900}


class LossyBroker(MemoryBroker):
    """Loses the answers of the next ``lose[method]`` calls: after running them
    (``executed=True``: outcome unknown to the caller) or instead of running them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lose: dict[str, int] = {}
        self.executed = True

    async def _maybe_lose(self, name: str, call: Any) -> Any:
        if not self.lose.get(name):
            return await call
        self.lose[name] -= 1
        if not self.executed:
            call.close()
            raise NotExecuted(f"{name}: not sent (test)")
        await call
        raise BrokerUnavailable(f"{name}: answer lost (test)")

    async def stock_take(self, *args: Any, **kwargs: Any) -> Any:
        return await self._maybe_lose("stock_take", super().stock_take(*args, **kwargs))

    async def shares_grab(self, *args: Any, **kwargs: Any) -> Any:
        return await self._maybe_lose("shares_grab", super().shares_grab(*args, **kwargs))


@pytest.fixture
async def lossy(embedded_sink: WebhookSink) -> AsyncIterator[tuple[Server, LossyBroker]]:
    import aiohttp

    config = Config(apps={APP: SECRET}, flush_ms=10, webhook_url=embedded_sink.url)
    broker = LossyBroker(MemoryHub(), node_id=config.node_id)
    app = create_app(config, broker)
    ts = TestServer(app, host="127.0.0.1")
    await ts.start_server()
    server = Server(config, app, ts, aiohttp.ClientSession())
    yield server, broker
    await server.close()


async def buy(client: Any, room: str, sale: str, cid: str) -> dict:
    """One raw try (the SDK would retry by itself and hide the `unavailable`)."""
    return await client.request("sale.buy", room, sale=sale, qty=1, cid=cid)


@pytest.mark.parametrize("executed", [True, False], ids=["ran-answer-lost", "never-ran"])
async def test_the_last_unit_sold_by_a_lost_call_still_closes_the_sale_and_is_announced_once(
    lossy: tuple[Server, LossyBroker], room: str, embedded_sink: WebhookSink, executed: bool
):
    server, broker = lossy
    broker.executed = executed
    host = await server.client("host-1", "host")
    await host.join(room)
    staff = Recorder(host)
    sale = (await host.sale_create(room, product=PRODUCT, price_cents=900, stock=2, limit_per_user=1))["sale"]
    ann = await server.client("ann")
    bob = await server.client("bob")
    await ann.join(room)
    await bob.join(room)
    first = (await buy(ann, room, sale["id"], "a1"))["order"]

    broker.lose["stock_take"] = 1
    with pytest.raises(Exception) as lost:
        await buy(bob, room, sale["id"], "b1")
    assert getattr(lost.value, "code", None) == "unavailable"
    # The retry (same cid) gets the order: taken by the lost call, or now.
    second = (await buy(bob, room, sale["id"], "b1"))["order"]
    assert second["user"] == "bob" and (await buy(bob, room, sale["id"], "b1"))["order"] == second

    closed = await staff.wait("sale.closed")
    assert closed[0]["data"] == {"id": sale["id"], "sold": 2, "reason": "sold_out"}
    orders = {first["id"], second["id"]}
    await staff.wait("order.created", count=2)
    for _ in range(50):
        if len(embedded_sink.named("order.created", room)) >= 2:
            break
        await asyncio.sleep(0.02)
    await staff.quiet(0.3)
    assert Counter(e["data"]["order"]["id"] for e in staff.named("order.created")) == Counter(orders)
    assert Counter(h["data"]["order"]["id"] for h in embedded_sink.named("order.created", room)) == Counter(
        orders
    )
    assert len(staff.named("sale.closed")) == 1
    status, listing = await server.admin("GET", f"/v1/rooms/{room}/sales/{sale['id']}/orders")
    assert status == 200 and listing["problems"] == [] and {o["id"] for o in listing["orders"]} == orders
    assert listing["sale"]["state"] == "closed" and listing["sale"]["reason"] == "sold_out"


async def test_a_sale_emptied_by_a_lost_call_closes_even_if_nobody_asks_again(
    lossy: tuple[Server, LossyBroker], room: str
):
    """The buyer of the last unit never retries, nobody else comes: the server's
    deadline loop sees the empty stock and closes the sale anyway."""
    server, broker = lossy
    host = await server.client("host-1", "host")
    await host.join(room)
    staff = Recorder(host)
    sale = (await host.sale_create(room, product=PRODUCT, price_cents=900, stock=1, limit_per_user=1))["sale"]
    bob = await server.client("bob")
    await bob.join(room)
    broker.lose["stock_take"] = 1
    with pytest.raises(Exception) as lost:
        await buy(bob, room, sale["id"], "b1")
    assert getattr(lost.value, "code", None) == "unavailable"
    closed = await staff.wait("sale.closed")
    assert closed[0]["data"] == {"id": sale["id"], "sold": 1, "reason": "sold_out"}
    await staff.quiet(0.5)
    assert len(staff.named("sale.closed")) == 1


async def test_the_last_share_grabbed_by_a_lost_call_still_finishes_the_packet(
    lossy: tuple[Server, LossyBroker], room: str
):
    server, broker = lossy
    host = await server.client("host-1", "host")
    await host.join(room)
    rec = Recorder(host)
    packet = (await host.redpacket_send(room, total_cents=300, count=2))["packet"]
    ann = await server.client("ann")
    bob = await server.client("bob")
    await ann.join(room)
    await bob.join(room)
    got = (await ann.redpacket_grab(room, packet["id"]))["amount_cents"]

    broker.lose["shares_grab"] = 1
    with pytest.raises(Exception) as lost:
        await bob.redpacket_grab(room, packet["id"])
    assert getattr(lost.value, "code", None) == "unavailable"
    with pytest.raises(Exception) as again:
        await bob.redpacket_grab(room, packet["id"])
    # The lost call took the last share: the retry says so, amount included.
    assert (again.value.code, again.value.message) == (
        "conflict",
        f"you already grabbed {300 - got} cents from this red packet",
    )
    finished = await rec.wait("redpacket.finished")
    await rec.quiet(0.3)
    assert len(rec.named("redpacket.finished")) == 1
    best_user = "ann" if got >= 300 - got else "bob"  # ties go to the earliest grab
    assert finished[0]["data"] == {
        "id": packet["id"],
        "best": {"user": best_user, "amount_cents": max(got, 300 - got)},
    }
