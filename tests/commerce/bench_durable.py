"""What the durability policy costs: ``RedisBroker`` with and without ``durable_wait_ms``.

    .venv/bin/python -m tests.commerce.bench_durable [--seconds 3] [--callers 1,200]

Starts its own 3+3 cluster (``tests/redis_servers.py``) and kills it at the end.
For each case, ``callers`` tasks loop for ``--seconds``; prints ops/s and
latency percentiles. Cases: ``stock_take`` (a buy: one user per call, so every
call takes stock), a barrage commit (event only: no WAIT unless
``durable_events``) and a document commit (CAS on the room document, as
``sale.create`` or ``lottery.draw`` do). Not a test: numbers depend on the
machine and on what else runs on it.

Measured (3+3 cluster on loopback, 2 cores shared with other work, load 4–8,
so ±30 % between runs; three runs):

    stock_take   1 caller     off: p50 0.15–0.21 ms       durable 200 ms: p50 0.20–0.25 ms
                 200 callers  off: 11–16k/s, p50 10–17 ms  durable: 6.6–15k/s, p50 11–26 ms
    document     1 caller     off: p50 0.20–0.26 ms       durable: p50 0.27–0.36 ms
    barrage      200 callers  ≈ 24–38k/s either way: the default policy does not WAIT
                 after event-only commits (and with ``durable_events`` one WAIT
                 covers a whole coalesced batch)

One buy costs about +0.05–0.1 ms of latency; under a crowd each ``stock_take``
holds its pooled connection until a replica acknowledges, so a process's
buy throughput drops by 10–40 %. Settling a micro-batch of buys per script call
(one WAIT per batch, as commits do) would win that back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from roomserver.bus.base import CommitStatus, Draft
from roomserver.bus.redis import RedisBroker
from roomserver.protocol import encode_event
from tests.redis_servers import RedisServers

Op = Callable[[int], Awaitable[object]]


async def measure(op: Op, seconds: float, callers: int) -> dict[str, float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    counter = itertools.count()

    async def caller() -> None:
        while (t0 := time.perf_counter()) < stop_at:
            await op(next(counter))
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"ops/s": len(latencies) / elapsed, "p50 ms": q[49] * 1000, "p99 ms": q[98] * 1000}


async def bench(startup: str, wait_ms: int, events: bool, seconds: float, callers: int) -> dict[str, dict]:
    broker = RedisBroker.from_cluster(
        startup, prefix=f"bench-{uuid.uuid4().hex[:6]}:", durable_wait_ms=wait_ms, durable_events=events
    )
    await broker.start(lambda d: None)
    room = "bench-" + uuid.uuid4().hex[:8]
    await broker.stock_create(room, "sale:1", 10_000_000, ttl_ms=3_600_000)
    body = encode_event("barrage", room, {"user": {"id": "u1", "name": "Ann"}, "text": "x" * 40})
    record = b'{"id":"o_0123456789abcdef01234567","sale":"s-1","user":"u","qty":1}'
    await broker.commit(room, [], expect_version=0, doc=b"{}")
    version = [1]

    async def buy(i: int) -> object:
        return await broker.stock_take(
            room, "sale:1", user=f"u{i}", qty=1, per_user_limit=1, record=record, cid=f"c{i}", fingerprint="f"
        )

    async def barrage(i: int) -> object:
        return await broker.commit(room, [Draft(body, capped=True)], barrage_cap=1_000_000)

    async def document(i: int) -> object:
        res = await broker.commit(room, [Draft(body)], expect_version=version[0], doc=b"{}")
        if res.status == CommitStatus.OK:
            version[0] = res.version
        return res

    out = {}
    try:
        for name, op in (("stock_take", buy), ("barrage commit", barrage), ("document commit", document)):
            out[name] = await measure(op, seconds, callers)
    finally:
        await broker.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--callers", default="1,200")
    args = ap.parse_args()
    servers = RedisServers()
    try:
        cluster = servers.start_cluster()
        for callers in (int(c) for c in args.callers.split(",")):
            for label, wait_ms, events in (
                ("off", 0, False),
                ("durable_wait_ms=200 (server default)", 200, False),
                ("durable_wait_ms=200 + durable_events", 200, True),
            ):
                results = await bench(cluster.startup, wait_ms, events, args.seconds, callers)
                for name, r in results.items():
                    print(
                        f"{callers:>4} callers  {label:<40} {name:<16} "
                        f"{r['ops/s']:>8.0f} ops/s  p50 {r['p50 ms']:6.2f} ms  p99 {r['p99 ms']:6.2f} ms",
                        flush=True,
                    )
    finally:
        servers.stop()


if __name__ == "__main__":
    asyncio.run(main())
