"""Behaviour log ingest benchmarks (issue 12; figures in docs/benchmarks.md, "Behaviour log").

    python -m loadtest.behaviour_bench ingest --engine sqlite --procs 1 --events 300000
    python -m loadtest.behaviour_bench ingest --engine pg --procs 2 --events 300000 [--database-url URL]
    python -m loadtest.behaviour_bench pipeline --events 300000

``ingest``: ``--procs`` processes each store ``--events`` synthetic records (a
show's mix of kinds, ``data`` as the recorder writes it) with
``EventLog.ingest`` in transactions of ``--tx-events`` records (the writer
stores one round over all partitions per transaction: a few records when it
keeps up, up to ~100,000 when backlogged), all starting together; events/s = all records ÷ the wall time from
the common start to the last process's end. Without ``--database-url`` the pg
engine starts a private PostgreSQL (tests/pg_server.py: fsync off,
synchronous_commit off, as in the tests).

``pipeline``: one process, the whole path on the memory bus: ``record()`` on
the op's path (its cost per call is timed), the recorder's batches into the
stream, the writer reading, storing (embedded SQLite) and acknowledging, until
every record is stored (events/s: from the first record to the last stored;
the writer starts after the recording, so it finds a backlog, as after a burst).

JSON on stdout, parameters included. Bounded: ``--events`` per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from roomserver.core.behaviour import BehaviourEvent

KIND_MIX: list[tuple[str, int]] = [
    ("like", 40),
    ("barrage", 25),
    ("track", 15),
    ("join", 6),
    ("leave", 6),
    ("gift", 3),
    ("order", 2),
    ("vote", 2),
    ("lottery.enter", 1),
]


def _data(kind: str, worker: int, i: int, start: int) -> dict[str, Any]:
    """``data`` as the recorder writes it for ``kind``."""
    if kind == "like":
        return {"count": 1}
    if kind == "barrage":
        return {"seq": i}
    if kind == "track":
        return {"action": "product.click", "product": "p-1"}
    if kind == "leave":
        return {"joined_at": start}
    if kind == "gift":
        return {"gift": {"id": "rose", "name": "Rose", "value": 100}, "count": 1, "value": 100}
    if kind == "order":
        return {"order": f"o-{worker}-{i}", "sale": "s-1", "product": "p-1", "qty": 1, "amount": 9900}
    if kind == "vote":
        return {"poll": "q-1", "option": 1}
    if kind == "lottery.enter":
        return {"lottery": "l-1"}
    return {}


def synthetic(worker: int, n: int, *, rooms: int = 10, users: int = 10_000) -> list[BehaviourEvent]:
    rng = random.Random(worker)
    kinds = [k for k, w in KIND_MIX for _ in range(w)]
    start = 1_700_000_000_000
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        ts = start + i * 2
        out.append(
            BehaviourEvent(
                f"bench{worker}-{i:010x}",  # as the recorder makes them
                "bench",
                f"room-{rng.randrange(rooms)}",
                1,
                f"u{rng.randrange(users)}",
                kind,  # type: ignore[arg-type]
                ts,
                ts - start,
                _data(kind, worker, i, start),
            )
        )
    return out


async def _ingest(
    url: str | None, data_dir: str, events: list[BehaviourEvent], tx_events: int
) -> tuple[float, float]:
    """(wall s, this process's CPU s: the event loop and SQLite's thread)."""
    from roomserver.store.store import AnalyticsStore

    store = await AnalyticsStore.open(url=url, data_dir=Path(data_dir))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(events), tx_events):
            await store.events.ingest(events[i : i + tx_events])
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await store.close()


def _worker(
    worker: int, url: str | None, data_dir: str, n: int, tx_events: int, barrier: Any, out: Any
) -> None:
    events = synthetic(worker, n)
    barrier.wait()
    start = time.time()
    seconds, cpu = asyncio.run(_ingest(url, data_dir, events, tx_events))
    out.put({"worker": worker, "start": start, "end": time.time(), "seconds": seconds, "cpu_s": cpu})


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its reaped children (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    pg = None
    url = args.database_url
    data_dir = tempfile.mkdtemp(prefix="behaviour-bench-")
    if args.engine == "pg" and url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.pg_server import PostgresServer

        pg = PostgresServer().start()
        url = pg.database()
    if args.engine == "sqlite":
        url = None
    # Migrate once before the workers start (concurrent first migrations would race).
    asyncio.run(_ingest(url, data_dir, [], 1))
    pg_cpu0 = _tree_cpu_s(pg.proc.pid) if pg is not None and pg.proc is not None else 0.0
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(args.procs), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(w, url, data_dir, args.events, args.tx_events, barrier, out))
        for w in range(args.procs)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.timeout) for _ in procs]
    for p in procs:
        p.join()
    server_cpu = None
    if pg is not None and pg.proc is not None:
        time.sleep(0.5)  # the workers' backends exit and are reaped (their CPU joins the postmaster's)
        server_cpu = _tree_cpu_s(pg.proc.pid) - pg_cpu0
        pg.stop()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = args.events * args.procs
    return {
        "bench": "behaviour.ingest",
        "params": {
            "engine": args.engine,
            "procs": args.procs,
            "events_per_proc": args.events,
            "tx_events": args.tx_events,
            "database": "private PostgreSQL (fsync off)" if pg else ("given URL" if url else "SQLite WAL"),
        },
        "events": total,
        "wall_s": round(wall, 3),
        "events_per_s": round(total / wall),
        "load_avg_1m_at_end": os.getloadavg()[0],
        # PostgreSQL's own CPU (backends, reaped): the database's cost per event.
        "pg_server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "events_per_pg_cpu_s": None if not server_cpu else round(total / server_cpu),
        "per_proc": [
            {
                "worker": r["worker"],
                "seconds": round(r["seconds"], 3),
                "events_per_s": round(args.events / r["seconds"]),
                "cpu_s": round(r["cpu_s"], 3),
                "events_per_cpu_s": round(args.events / r["cpu_s"]),
            }
            for r in sorted(results, key=lambda r: r["worker"])
        ],
    }


async def _pipeline(n: int) -> dict[str, Any]:
    from roomserver.behaviour_log import BehaviourRecorder
    from roomserver.behaviour_writer import GROUP, BehaviourWriter
    from roomserver.bus.memory import MemoryBroker, MemoryHub
    from roomserver.core.room import RoomDoc
    from roomserver.metrics import Metrics
    from roomserver.store.store import AnalyticsStore

    broker, metrics = MemoryBroker(MemoryHub()), Metrics()
    doc = RoomDoc(id="r", show=1, started_at=1_700_000_000_000)
    store = await AnalyticsStore.open(data_dir=Path(tempfile.mkdtemp(prefix="behaviour-bench-")))

    async def load_doc(room: str) -> RoomDoc:
        return doc

    recorder = BehaviourRecorder(
        broker, metrics, node_id="bench", cached_doc=lambda room: doc, load_doc=load_doc, pending_max=n + 1
    )
    writer = BehaviourWriter(broker, store, metrics, node_id="bench", retention_days=365)
    rooms = [f"bench/room-{k}" for k in range(10)]
    # record() timed in chunks of one flush's worth, flushed (untimed) in between, as
    # a node does every 200 ms: a 300,000-long list would time the GC, not record().
    record_s = 0.0
    users = [f"u{k}" for k in range(10_000)]
    t1 = time.perf_counter()
    for start in range(0, n, 2000):
        t0 = time.perf_counter()
        for i in range(start, min(n, start + 2000)):
            recorder.record(rooms[i % 10], users[i % 10_000], "like", {"count": 1})
        record_s += time.perf_counter() - t0
        await recorder.flush()
    c1 = time.process_time()
    recorder.start()
    writer.start()
    while metrics.behaviour_ingested._value.get() < n:
        await asyncio.sleep(0.01)
    stored_s = time.perf_counter() - t1
    store_cpu_s = time.process_time() - c1
    await recorder.stop()
    await writer.stop()
    left = sum([(await broker.stream_info(s, GROUP)).length for s in writer.streams])
    await store.close()
    return {
        "bench": "behaviour.pipeline",
        "params": {"events": n, "bus": "memory", "store": "SQLite WAL", "rooms": 10},
        "record_us_per_call": round(record_s / n * 1e6, 3),
        "record_to_store_s": round(stored_s, 3),
        "events_per_s": round(n / stored_s),
        # The process's CPU (event loop + SQLite's threads) from the writer's start to the
        # last record stored: the store's cost per record, less sensitive to a busy box.
        "store_cpu_s": round(store_cpu_s, 3),
        "events_per_store_cpu_s": round(n / store_cpu_s),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "entries_left_on_bus": left,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.behaviour_bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ing = sub.add_parser("ingest")
    ing.add_argument("--engine", choices=["sqlite", "pg"], default="sqlite")
    ing.add_argument("--procs", type=int, default=1)
    ing.add_argument("--events", type=int, default=300_000, help="records per process (bounded run)")
    ing.add_argument("--tx-events", type=int, default=2000, help="records per ingest transaction")
    ing.add_argument("--database-url", default=None)
    ing.add_argument("--timeout", type=float, default=600.0)
    pipe = sub.add_parser("pipeline")
    pipe.add_argument("--events", type=int, default=300_000)
    args = p.parse_args(argv)
    result = run_ingest(args) if args.cmd == "ingest" else asyncio.run(_pipeline(args.events))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
