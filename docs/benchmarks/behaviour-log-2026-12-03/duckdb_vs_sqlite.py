"""SQLite vs DuckDB for the embedded store's workload (docs/analytics.md): small ingest
transactions with a primary-key check, and a second process opening the file to write.
Run with a Python that has duckdb (not a project dependency):
    python duckdb_vs_sqlite.py [ROWS]"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time

import duckdb

SCHEMA = """CREATE TABLE behaviour_events (id TEXT PRIMARY KEY, app TEXT NOT NULL, room TEXT NOT NULL,
 "show" BIGINT NOT NULL, user_id TEXT NOT NULL, kind TEXT NOT NULL, ts BIGINT NOT NULL, show_ms BIGINT NOT NULL,
 data TEXT NOT NULL)"""
INDEXES = [
    'CREATE INDEX behaviour_events_show ON behaviour_events (app, room, "show", ts)',
    "CREATE INDEX behaviour_events_user ON behaviour_events (app, user_id, ts)",
]
INSERT = "INSERT INTO behaviour_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"


def rows(n: int) -> list[tuple]:
    return [
        (f"bench0-{i:010x}", "bench", f"room-{i % 10}", 1, f"u{(i * 7919) % 10000}", "like",
         1_700_000_000_000 + i, i, '{"count":1}')
        for i in range(n)
    ]  # fmt: skip


def timed(fn, data: list[tuple], tx: int) -> dict:
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(data), tx):
        fn(data[i : i + tx])
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"rows": len(data), "tx_rows": tx, "rows_per_s": round(len(data) / wall), "rows_per_cpu_s": round(len(data) / cpu)}


def sqlite_run(data: list[tuple], tx: int) -> dict:
    c = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "a.sqlite3"), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA cache_size=-65536")
    for s in [SCHEMA, *INDEXES]:
        c.execute(s)

    def batch(b: list[tuple]) -> None:
        c.execute("BEGIN IMMEDIATE")
        c.executemany(INSERT, b)
        c.execute("COMMIT")

    return timed(batch, data, tx)


def duck_run(data: list[tuple], tx: int, indexes: bool) -> dict:
    c = duckdb.connect(os.path.join(tempfile.mkdtemp(), "a.duckdb"))
    for s in [SCHEMA, *(INDEXES if indexes else [])]:
        c.execute(s)

    def batch(b: list[tuple]) -> None:
        c.execute("BEGIN")
        c.executemany(INSERT, b)
        c.execute("COMMIT")

    return timed(batch, data, tx)


def duck_bulk_run(data: list[tuple], tx: int) -> dict:
    """DuckDB's better path for a batch: one multi-row INSERT (executemany is row by row)."""
    c = duckdb.connect(os.path.join(tempfile.mkdtemp(), "a.duckdb"))
    for s in [SCHEMA, *INDEXES]:
        c.execute(s)

    def batch(b: list[tuple]) -> None:
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(b))
        c.execute(
            f"INSERT INTO behaviour_events VALUES {values} ON CONFLICT (id) DO NOTHING", [x for r in b for x in r]
        )

    return timed(batch, data, tx)


def _open_for_write(path: str, q) -> None:  # in a second process
    try:
        duckdb.connect(path).execute("INSERT INTO t VALUES (2)")
        q.put("opened")
    except Exception as exc:  # duckdb.IOException: Could not set lock on file
        q.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")


def two_processes() -> dict:
    path = os.path.join(tempfile.mkdtemp(), "two.duckdb")
    first = duckdb.connect(path)
    first.execute("CREATE TABLE t (x INT)")
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_open_for_write, args=(path, q))
    p.start()
    duck = q.get(timeout=60)
    p.join()
    first.close()
    spath = os.path.join(tempfile.mkdtemp(), "two.sqlite3")
    a = sqlite3.connect(spath)
    a.execute("CREATE TABLE t (x INT)")
    a.commit()
    b = sqlite3.connect(spath)
    b.execute("INSERT INTO t VALUES (2)")
    b.commit()
    return {"duckdb_second_writer": duck, "sqlite_second_writer": "opened (one writer at a time)"}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    data = rows(n)
    out = {
        "duckdb_version": duckdb.__version__,
        "sqlite_version": sqlite3.sqlite_version,
        "load_avg_1m": os.getloadavg()[0],
        "sqlite_tx2000": sqlite_run(data, 2000),
        "duckdb_tx2000_indexes": duck_run(data, 2000, True),
        "duckdb_tx2000_pk_only": duck_run(data, 2000, False),
        "duckdb_tx2000_one_multirow_insert": duck_bulk_run(data, 2000),
        "two_processes": two_processes(),
    }
    print(json.dumps(out, indent=2))
