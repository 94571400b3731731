"""Webhook delivery through the bus's durable streams, against real HTTP endpoints
(aiohttp servers) and real Redis: outages, slow endpoints, Retry-After, give-up,
filters, and a killed server process whose queue the next one delivers."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from roomserver.bus.base import Broker
from roomserver.bus.memory import MemoryBroker
from roomserver.bus.redis import RedisBroker
from roomserver.core.webhooks import Endpoint, RetryPolicy
from roomserver.metrics import Metrics
from roomserver.webhooks import Webhooks
from tests.polling import until
from tests.server_procs import APP, SECRET, ServerProcess, token
from tests.webhooks.receiver import Receiver

# Short retries for tests (the outage itself is real time).
FAST = RetryPolicy(base_s=0.2, max_s=2.0, give_up_s=3600)

MakeHooks = Callable[..., Webhooks]


@pytest.fixture
async def make_hooks(redis_single, unique_prefix) -> AsyncIterator[MakeHooks]:
    """``make(endpoints, bus="redis"|"memory", **options)``: a started ``Webhooks``
    (stopped, with its broker, at teardown)."""
    made: list[tuple[Webhooks, Broker]] = []

    def make(endpoints: list[Endpoint], bus: str = "redis", **options) -> Webhooks:
        broker: Broker = (
            RedisBroker.from_url(redis_single.url, prefix=unique_prefix, op_timeout=10.0)
            if bus == "redis"
            else MemoryBroker()
        )
        options.setdefault("policy", FAST)
        options.setdefault("poll_s", 0.2)
        hooks = Webhooks(broker, {APP: SECRET}, endpoints, node_id=options.pop("node_id", "n1"), **options)
        hooks.start()
        made.append((hooks, broker))
        return hooks

    yield make
    for hooks, broker in reversed(made):
        await hooks.stop(0.1)
        await broker.close()


def in_room_order(got: list[dict], room: str) -> list[int]:
    """The ``n`` of the deliveries of ``room`` (a room key or public id), in arrival order."""
    public = room.partition("/")[2] or room
    return [p["data"]["n"] for p in got if p["room"] == public]


@pytest.mark.slow
async def test_endpoint_down_30s_gets_every_delivery_once_in_order_per_room(make_hooks: MakeHooks) -> None:
    rx = Receiver(SECRET)  # not up: connections to its port are refused
    metrics = Metrics()
    hooks = make_hooks([Endpoint(APP, "ep", rx.url)], metrics=metrics)
    rooms = [f"{APP}/r{i}" for i in range(3)]
    sent = {r: 0 for r in rooms}

    def burst(k: int) -> None:
        for _ in range(k):
            for r in rooms:
                sent[r] += 1
                hooks.emit("room.started", r, {"n": sent[r]})

    burst(5)
    outage_end = time.monotonic() + 30.0
    while time.monotonic() < outage_end:  # events keep coming during the outage
        await asyncio.sleep(3.0)
        burst(2)
    retried = metrics.webhook_deliveries.labels(app=APP, endpoint="ep", result="retried")._value.get()
    assert retried >= 5, "the worker kept trying during the outage"
    await rx.up()
    total = sum(sent.values())
    await until(lambda: len(rx.got) >= total, 30, "every queued delivery")
    await asyncio.sleep(0.5)  # a duplicate would arrive right behind
    assert len(rx.got) == total and set(rx.ids.values()) == {1}, "each delivery exactly once"
    for r in rooms:
        assert in_room_order(rx.got, r) == list(range(1, sent[r] + 1)), f"{r} in order"
    assert rx.bad_signatures == 0
    await until(
        lambda: metrics.webhook_queue_depth.labels(app=APP, endpoint="ep")._value.get() == 0, 10, "depth 0"
    )
    await rx.down()


async def test_slow_endpoint_does_not_delay_another(make_hooks: MakeHooks) -> None:
    slow, fast = Receiver(SECRET), Receiver(SECRET)
    slow.gate = asyncio.Event()  # holds every answer until set
    await slow.up()
    await fast.up()
    hooks = make_hooks([Endpoint(APP, "slow", slow.url), Endpoint(APP, "fast", fast.url)], timeout_s=60.0)
    for n in range(1, 11):
        hooks.emit("order.created", f"{APP}/shop", {"n": n})
    await until(lambda: len(fast.got) == 10, 20, "the fast endpoint's deliveries")
    assert len(slow.arrivals) == 1 and slow.got == []  # still stuck on its first
    slow.gate.set()
    await until(lambda: len(slow.got) == 10, 20, "the slow endpoint's deliveries")
    assert in_room_order(slow.got, "shop") == list(range(1, 11))
    await slow.down()
    await fast.down()


async def test_retry_after_is_honoured(make_hooks: MakeHooks) -> None:
    rx = Receiver(SECRET)
    rx.script.extend([(503, {"Retry-After": "2"}), (429, {"Retry-After": "1"})])
    await rx.up()
    # Without Retry-After the next attempt would come within 10 ms.
    make_hooks([Endpoint(APP, "ep", rx.url)], bus="memory", policy=RetryPolicy(0.01, 0.02, 3600)).emit(
        "room.ended", f"{APP}/r", {"n": 1}
    )
    await until(lambda: len(rx.got) == 1, 20, "the delivery")
    first, second, third = rx.arrivals
    assert second - first >= 1.9 and third - second >= 0.9
    await rx.down()


async def test_refused_and_given_up_deliveries_are_failed_and_logged(make_hooks: MakeHooks) -> None:
    refusing = Receiver(SECRET)
    refusing.script.append((400, {}))
    await refusing.up()
    gone = Receiver(SECRET)  # never up
    hooks = make_hooks(
        [Endpoint(APP, "refusing", refusing.url), Endpoint(APP, "gone", gone.url)],
        policy=RetryPolicy(base_s=0.1, max_s=0.3, give_up_s=1.5),
    )
    hooks.emit("room.ended", f"{APP}/r", {"n": 1})

    async def log() -> list[dict]:
        return (await hooks.deliveries(APP))[0]

    records: list[dict] = []
    end = time.monotonic() + 20
    while len(records) < 2:
        assert time.monotonic() < end, records
        records = await log()
        await asyncio.sleep(0.05)
    by_endpoint = {r["endpoint"]: r for r in records}
    refused, gave_up = by_endpoint["refusing"], by_endpoint["gone"]
    assert (refused["status"], refused["attempts"], refused["code"]) == ("failed", 1, 400)
    assert "not retried" in refused["error"]
    assert gave_up["status"] == "failed" and gave_up["attempts"] >= 3 and "gave up" in gave_up["error"]
    assert gave_up["finished"] - gave_up["created"] >= 1500
    await refusing.down()


async def test_filters_pick_each_endpoints_events(make_hooks: MakeHooks) -> None:
    orders, rooms, everything = Receiver(SECRET), Receiver(SECRET), Receiver(SECRET)
    for rx in (orders, rooms, everything):
        await rx.up()
    hooks = make_hooks(
        [
            Endpoint(APP, "orders", orders.url, ("order.created",)),
            Endpoint(APP, "rooms", rooms.url, ("room.*",)),
            Endpoint(APP, "all", everything.url),
            Endpoint("other-app", "all", everything.url),
        ],
        bus="memory",
    )
    for i, ev in enumerate(("room.started", "order.created", "lottery.drawn", "room.ended")):
        hooks.emit(ev, f"{APP}/r", {"n": i})
    await until(lambda: len(everything.got) == 4, 20, "every event at the catch-all endpoint")
    await until(lambda: len(rooms.got) == 2 and len(orders.got) == 1, 20, "filtered deliveries")
    assert [p["event"] for p in rooms.got] == ["room.started", "room.ended"]
    assert [p["event"] for p in orders.got] == ["order.created"]
    assert {p["app"] for p in everything.got} == {APP}  # another app's endpoint got nothing
    for rx in (orders, rooms, everything):
        await rx.down()


async def test_killed_server_process_queue_is_delivered_by_the_next(
    redis_single, unique_prefix: str, tmp_path: Path
) -> None:
    """Webhooks queued on Redis survive a SIGKILLed server: the next process (a new
    node) takes the endpoint's lease when the dead one's expires and delivers them."""
    rx = Receiver(SECRET)  # down while the first process runs
    common = [
        "--redis-url", redis_single.url, "--redis-prefix", unique_prefix,
        "--webhook", f"{APP}:ep:room.scheduled:{rx.url}",
        "--webhook-backoff-s", "0.2", "--webhook-backoff-max-s", "1",
    ]  # fmt: skip
    first = await asyncio.to_thread(ServerProcess(*common, log_dir=tmp_path).start)
    rooms = [f"r-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]
    async with aiohttp.ClientSession() as http:
        for i, room in enumerate(rooms):
            body = {"id": room, "scheduled_at": int(time.time() * 1000) + 3_600_000 + i}
            async with http.post(
                f"{first.url}/v1/rooms", json=body, headers={"Authorization": f"Bearer {token('a', 'admin')}"}
            ) as r:
                assert r.status == 201, await r.text()
    assert first.proc is not None
    await asyncio.sleep(1.0)  # let the first process try (and fail) a delivery: it holds the lease
    first.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.proc.wait, 10)
    await rx.up()
    second = await asyncio.to_thread(ServerProcess(*common, log_dir=tmp_path).start)
    try:
        # The dead node's lease (10 s) runs out first; then everything arrives once.
        await until(lambda: len(rx.got) >= len(rooms), 60, "the killed process's webhooks")
        await asyncio.sleep(0.5)
        assert [p["room"] for p in rx.got] == rooms and set(rx.ids.values()) == {1}
    finally:
        await asyncio.to_thread(second.stop)
        await rx.down()
