"""The post-live report benchmark: a long show written straight into the store,
then the time from its end to its report being computed and kept.

    python -m loadtest.report_bench --data-dir /tmp/rb            # embedded SQLite
    python -m loadtest.report_bench --database-url postgresql://…  # PostgreSQL

A 2-hour show of 10,000 viewers makes about 1 M records (the default): each
viewer joins 1–3 times (each join with its leave, some open at the end),
sends barrage, likes in batches, clicks, adds to cart, buys, gifts, votes,
shares, enters lotteries; the host pins 20 products in turn and marks sales,
lotteries, polls and red packets. Seeded: the same show every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from roomserver.core.behaviour import BehaviourEvent, Kind
from roomserver.store.store import AnalyticsStore

APP, ROOM, SHOW = "bench", "report-bench", 1
BATCH = 20_000


def generate(
    viewers: int, hours: float, *, seed: int = 12, start: int = 1_700_000_000_000
) -> list[BehaviourEvent]:
    """The show's records in time order (ids unique, ``show_ms`` from ``start``)."""
    rnd = random.Random(seed)
    duration = int(hours * 3_600_000)
    out: list[tuple[int, str, Kind, dict[str, Any]]] = [
        (0, "host", "show.start", {"title": "bench", "host": "host"}),
        (duration, "host", "show.end", {}),
    ]
    products = [f"p{i}" for i in range(20)]
    slot = duration // len(products)
    for i, product in enumerate(products):  # each product pinned for a slot, a sale in each
        at = i * slot
        out.append((at, "host", "mark", {"what": "pin", "product": product}))
        out.append((at + 60_000, "host", "mark", {"what": "sale", "id": f"s{i}", "product": product}))
        if i % 4 == 0:
            out.append((at + 120_000, "host", "mark", {"what": "lottery", "id": f"l{i}"}))
            out.append((at + 180_000, "host", "mark", {"what": "poll", "id": f"q{i}"}))
            out.append((at + 240_000, "host", "mark", {"what": "redpacket", "id": f"rp{i}"}))
    for v in range(viewers):
        user = f"v{v}"
        t = rnd.randrange(0, duration // 2)
        for _ in range(rnd.randint(1, 3)):
            if t >= duration:
                break
            joined = t
            data: dict[str, Any] = {"ref": f"v{rnd.randrange(viewers)}"} if rnd.random() < 0.05 else {}
            out.append((joined, user, "join", data))
            stay = rnd.randrange(60_000, duration // 2)
            left = joined + stay
            span_end = min(left, duration)
            n = max(1, (span_end - joined) // 60_000)  # about 30 actions per hour online
            for _ in range(int(n * 1.05)):
                out.append((rnd.randrange(joined, span_end), user, "barrage", {"seq": 0}))
            for _ in range(int(n * 0.6)):
                out.append((rnd.randrange(joined, span_end), user, "like", {"count": rnd.randint(1, 20)}))
            for _ in range(int(n * 0.15)):
                at = rnd.randrange(joined, span_end)
                product = products[min(at // slot, len(products) - 1)]
                out.append((at, user, "track", {"action": "product.click", "product": product}))
                if rnd.random() < 0.3:
                    out.append((at + 5_000, user, "track", {"action": "cart.add", "product": product}))
                    if rnd.random() < 0.5:
                        qty = rnd.randint(1, 3)
                        order = {
                            "order": f"o{v}-{at}",
                            "sale": "s",
                            "product": product,
                            "qty": qty,
                            "amount": qty * 9900,
                        }
                        out.append((at + 20_000, user, "order", order))
            if rnd.random() < 0.1:
                out.append(
                    (
                        rnd.randrange(joined, span_end),
                        user,
                        "gift",
                        {"gift": "rose", "count": 1, "value": 100},
                    )
                )
            if rnd.random() < 0.2:
                out.append(
                    (
                        rnd.randrange(joined, span_end),
                        user,
                        "vote",
                        {"poll": "q0", "option": rnd.randint(0, 3)},
                    )
                )
                out.append((rnd.randrange(joined, span_end), user, "lottery.enter", {"lottery": "l0"}))
            if rnd.random() < 0.05:
                out.append((rnd.randrange(joined, span_end), user, "track", {"action": "share"}))
            if left < duration and rnd.random() < 0.9:  # the rest stay until the end
                out.append((left, user, "leave", {"joined_at": start + joined}))
            t = left + rnd.randrange(10_000, 600_000)
    # A cart add or an order a few seconds after a click near the end would fall after
    # the show: not part of it. The end record comes last.
    out = [r for r in out if r[0] < duration or r[2] == "show.end"]
    out.sort(key=lambda r: (r[0], r[2] == "show.end"))
    return [
        BehaviourEvent(f"b-{i}", APP, ROOM, SHOW, user, kind, start + at, at, data)
        for i, (at, user, kind, data) in enumerate(out)
    ]


def backend_cpu_s(database: str) -> float:
    """CPU seconds of the PostgreSQL backends serving ``database`` (on this machine:
    their command line names it), from /proc; 0 where /proc is not readable."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f" {database} ".encode() not in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


async def run(
    url: str | None, data_dir: Path | None, viewers: int, hours: float, repeat: int, *, reuse: bool = False
) -> dict[str, Any]:
    store = await AnalyticsStore.open(url=url, data_dir=data_dir)
    try:
        t0 = time.perf_counter()
        events = generate(viewers, hours)
        generated_s = time.perf_counter() - t0
        end = [e for e in events if e.kind == "show.end"]
        body = [e for e in events if e.kind != "show.end"]
        t0 = time.perf_counter()
        if not (reuse and await store.events.show(APP, ROOM, SHOW) is not None):
            for i in range(0, len(body), BATCH):
                await store.events.ingest(body[i : i + BATCH])
        ingest_s = time.perf_counter() - t0
        ready, cpu, server_cpu = [], [], []
        database = url.rsplit("/", 1)[1] if url else None
        for _ in range(repeat):
            # From the show's end record being stored to the report kept: what the
            # server does after room.ended once the writer has the show.end record.
            t0, c0 = time.perf_counter(), time.process_time()
            s0 = backend_cpu_s(database) if database else 0.0
            await store.events.ingest(end)
            info = await store.events.show(APP, ROOM, SHOW)
            assert info is not None
            bundle = await store.reports.build(info)
            ready.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # this process only
            server_cpu.append(backend_cpu_s(database) - s0 if database else 0.0)
            await store.db.execute("DELETE FROM behaviour_events WHERE id = $1", end[0].id)
        t0 = time.perf_counter()
        info = await store.events.show(APP, ROOM, SHOW)
        assert info is not None
        cached = await store.reports.get(info)
        read_s = time.perf_counter() - t0
        return {
            "engine": store.db.dialect,
            "records": len(events),
            "viewers": bundle.report.audience.unique_viewers,
            "peak_concurrent": bundle.report.audience.peak_concurrent,
            "orders": bundle.report.sales.orders,
            "generate_s": round(generated_s, 2),
            "ingest_s": round(ingest_s, 2),
            "ready_s": [round(x, 2) for x in ready],
            "ready_cpu_s": [round(x, 2) for x in cpu],
            "postgres_cpu_s": [round(x, 2) for x in server_cpu],
            "load_avg": os.getloadavg()[0],
            "cached_read_s": round(read_s, 3),
            "cached": cached.cached,
        }
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="PostgreSQL (a database of its own: the bench writes into it)")
    parser.add_argument("--data-dir", type=Path, help="embedded SQLite store directory (a fresh one)")
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3, help="report builds to time")
    parser.add_argument(
        "--reuse", action="store_true", help="the store holds the show already: time the builds only"
    )
    args = parser.parse_args()
    if not args.database_url and not args.data_dir:
        parser.error("give --data-dir or --database-url")
    result = asyncio.run(
        run(args.database_url, args.data_dir, args.viewers, args.hours, args.repeat, reuse=args.reuse)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
