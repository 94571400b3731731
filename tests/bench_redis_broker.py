"""Commit throughput of ``RedisBroker``: with and without coalescing, with and
without ``durable_wait_ms``, on a single node and on the cluster.

    .venv/bin/python -m tests.bench_redis_broker [--seconds 3] [--callers 200] [--rooms 1]

Starts its own servers (``tests/redis_servers.py``) and kills them at the end.
Each caller commits one barrage-sized durable event at a time, in a loop, for
``--seconds``; prints commits/s, script calls/s and latency percentiles.
Not a test: numbers depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from roomserver.bus.base import Draft
from roomserver.bus.redis import RedisBroker
from roomserver.protocol import encode_event
from tests.redis_servers import RedisServers


async def run(broker: RedisBroker, seconds: float, callers: int, rooms: int) -> dict[str, float]:
    await broker.start(lambda d: None)
    room_ids = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(rooms)]
    body = encode_event("barrage", room_ids[0], {"user": {"id": "u1", "name": "Ann"}, "text": "x" * 40})
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        room = room_ids[i % rooms]
        while (t0 := time.perf_counter()) < stop_at:
            await broker.commit(room, [Draft(body)])
            latencies.append(time.perf_counter() - t0)

    calls_before = broker.script_calls
    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - t0
    await broker.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "commits/s": len(latencies) / elapsed,
        "calls/s": (broker.script_calls - calls_before) / elapsed,
        "p50 ms": q[49] * 1000,
        "p99 ms": q[98] * 1000,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--callers", type=int, default=200)
    ap.add_argument("--rooms", type=int, default=1)
    args = ap.parse_args()
    servers = RedisServers()
    try:
        cluster = servers.start_cluster()
        single = servers.start_single()
        cases = [
            ("single", "coalesce", lambda: RedisBroker.from_url(single.url, prefix="bench:")),
            (
                "single",
                "one call per commit",
                lambda: RedisBroker.from_url(single.url, prefix="bench:", coalesce=False),
            ),
            ("cluster", "coalesce", lambda: RedisBroker.from_cluster(cluster.startup, prefix="bench:")),
            (
                "cluster",
                "one call per commit",
                lambda: RedisBroker.from_cluster(cluster.startup, prefix="bench:", coalesce=False),
            ),
            (
                "cluster",
                "coalesce + durable_wait_ms=100",
                lambda: RedisBroker.from_cluster(cluster.startup, prefix="bench:", durable_wait_ms=100),
            ),
            (
                "cluster",
                "one call per commit + durable_wait_ms=100",
                lambda: RedisBroker.from_cluster(
                    cluster.startup, prefix="bench:", coalesce=False, durable_wait_ms=100
                ),
            ),
        ]
        print(f"{args.callers} callers, {args.rooms} room(s), {args.seconds:.0f}s each")
        for where, how, make in cases:
            r = await run(make(), args.seconds, args.callers, args.rooms)
            print(
                f"{where:8} {how:42} {r['commits/s']:8.0f} commits/s {r['calls/s']:7.0f} calls/s"
                f"  p50 {r['p50 ms']:6.1f} ms  p99 {r['p99 ms']:6.1f} ms"
            )
    finally:
        servers.stop()


if __name__ == "__main__":
    asyncio.run(main())
