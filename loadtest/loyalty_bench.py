"""Profile reads with 100,000 users (issue 12; figures in docs/benchmarks.md).

``python -m loadtest.loyalty_bench [--users 100000 --reads 5000 --concurrency 1,8]
[--database-url postgresql://…]``

1. Fills a fresh store (embedded SQLite in a temporary ``--data-dir``, or the
   PostgreSQL of ``--database-url``) through ``EventLog.ingest`` — so the loyalty
   rollup step runs as in production — with ``--users`` users of 5–6 records each
   over 20 shows (join, leave with the session, barrage, like, and for a third of
   them an order, for a tenth a gift), in batches of 10,000; reports ingest rate.
2. Starts ``roomserver serve`` on that store and reads ``GET /v1/users/{user}/profile``
   of random users ``--reads`` times from each ``--concurrency`` count of HTTP clients (a separate
   process from the server): latency p50/p99/max (ms, client side, HTTP included),
   then one segment page and one 1,000-user CSV for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.procs import free_port, wait_http
from roomserver.auth import mint_token
from roomserver.core.behaviour import BehaviourEvent
from roomserver.store.store import AnalyticsStore

APP, SECRET = "bench", "bench-secret-0123456789abcdef0123"
BATCH = 10_000
T0 = 1_760_000_000_000


def _events(users: int) -> list[BehaviourEvent]:
    rnd = random.Random(12)
    out: list[BehaviourEvent] = []
    n = 0
    for u in range(users):
        user, show = f"u{u:06d}", 1 + u % 20
        t = T0 + show * 86_400_000 + rnd.randrange(3_600_000)

        def add(kind: str, ts: int, data: dict[str, Any], user: str = user, show: int = show) -> None:
            nonlocal n
            n += 1
            out.append(BehaviourEvent(f"b-{n}", APP, "room-1", show, user, kind, ts, 0, data))  # type: ignore[arg-type]

        add("join", t, {"ref": f"u{u - 1:06d}"} if u % 10 == 5 else {})
        add("barrage", t + 1_000, {"seq": n})
        add("like", t + 2_000, {"count": rnd.randrange(1, 50)})
        if u % 3 == 0:
            add("order", t + 3_000, {"order": f"o{u}", "qty": 1, "amount": rnd.randrange(100, 50_000)})
        if u % 10 == 0:
            add("gift", t + 4_000, {"gift": "rose", "count": 1, "value": 10})
        add("leave", t + rnd.randrange(60_000, 3_600_000), {"joined_at": t})
    out.sort(key=lambda e: e.ts)
    return out


async def fill(users: int, url: str | None, data_dir: Path) -> dict[str, Any]:
    store = await AnalyticsStore.open(url=url, data_dir=data_dir)
    events = _events(users)
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        await store.events.ingest(events[i : i + BATCH])
    took = time.perf_counter() - started
    await store.close()
    return {"events": len(events), "ingest_s": round(took, 1), "events_per_s": round(len(events) / took)}


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * p))], 2)


async def read(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "roomserver.cli", "serve", "--port", str(port), "--app", f"{APP}:{SECRET}"]
    cmd += ["--data-dir", str(data_dir), "--rest-rate-per-token", "0", "--rest-rate-per-ip", "0"]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": "Bearer " + mint_token(APP, SECRET, "admin", "admin")}
    try:
        async with aiohttp.ClientSession(headers=admin) as http:
            # A busy box takes a while to import the server.
            await asyncio.to_thread(wait_http, base + "/readyz", 120, proc)
            rnd = random.Random(7)

            async def reads(concurrency: int) -> dict[str, Any]:
                todo = [f"u{rnd.randrange(args.users):06d}" for _ in range(args.reads)]
                latencies: list[float] = []

                async def worker() -> None:
                    while todo:
                        user = todo.pop()
                        t = time.perf_counter()
                        async with http.get(f"{base}/v1/users/{user}/profile") as r:
                            assert r.status == 200, await r.text()
                            await r.read()
                        latencies.append((time.perf_counter() - t) * 1000)

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                wall = time.perf_counter() - t0
                return {
                    "concurrency": concurrency,
                    "reads": len(latencies),
                    "reads_per_s": round(len(latencies) / wall),
                    "p50_ms": _pct(latencies, 0.5),
                    "p99_ms": _pct(latencies, 0.99),
                    "max_ms": round(max(latencies), 2),
                }

            for _ in range(200):  # warm the connections and the server
                async with http.get(f"{base}/v1/users/u000001/profile") as r:
                    await r.read()
            runs = [await reads(int(c)) for c in args.concurrency.split(",")]
            t = time.perf_counter()
            async with http.get(f"{base}/v1/users?tag=buyer&min_tier=1&limit=100") as r:
                page = await r.json()
            segment_ms = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            async with http.get(f"{base}/v1/users?format=csv&tag=gifter") as r:
                text = await r.text()
            csv_ms = (time.perf_counter() - t) * 1000
            return {
                "runs": runs,
                "segment_page_ms": round(segment_ms, 1),
                "segment_page_users": len(page["users"]),
                "csv_ms": round(csv_ms, 1),
                "csv_rows": text.count("\n") - 1,
            }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    result: dict[str, Any] = {
        "engine": "postgresql" if args.database_url else "sqlite",
        "users": args.users,
        "fill": await fill(args.users, args.database_url, data_dir),
    }
    result["profile_read"] = await read(args, data_dir)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument(
        "--concurrency", default="1,8", help="HTTP clients reading at once, one run per value"
    )
    parser.add_argument("--database-url", default=None)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
