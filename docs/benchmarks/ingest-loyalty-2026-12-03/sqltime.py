import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

from loadtest.behaviour_bench import synthetic
from roomserver.store import db as dbm
from roomserver.store.store import AnalyticsStore

T = collections.Counter()
N = collections.Counter()


def key(sql):
    s = " ".join(sql.split()[:4])[:70]
    return s


orig_exec, orig_many, orig_fetch = dbm._SqliteTx.execute, dbm._SqliteTx.executemany, dbm._SqliteTx.fetch


def wrap(kind):
    async def f(self, sql, *a):
        conn = self._db._writer_conn
        s = dbm.to_sqlite(sql)

        def run():
            t = time.perf_counter()
            if kind == "many":
                conn.executemany(s, a[0])
                out = None
            elif kind == "fetch":
                out = conn.execute(s, a).fetchall()
            else:
                out = conn.execute(s, a).rowcount
            T[key(sql)] += time.perf_counter() - t
            N[key(sql)] += 1
            return out

        return await self._db._on_writer(run)

    return f


dbm._SqliteTx.execute = wrap("exec")
dbm._SqliteTx.executemany = wrap("many")
dbm._SqliteTx.fetch = wrap("fetch")

import contextlib  # noqa: E402


@contextlib.asynccontextmanager
async def _tx(self):
    async with self._tx_lock:
        conn = self._writer_conn
        await self._on_writer(lambda: conn.execute("BEGIN IMMEDIATE"))
        yield dbm._SqliteTx(self)

        def c():
            t = time.perf_counter()
            conn.execute("COMMIT")
            T["COMMIT"] += time.perf_counter() - t

        await self._on_writer(c)


dbm.SqliteDatabase.transaction = _tx
import os  # noqa: E402


async def main(n, tx, url):
    events = synthetic(0, n)
    store = await AnalyticsStore.open(url=url, data_dir=Path(tempfile.mkdtemp()))
    if os.environ.get("PRAGMA"):
        for p in os.environ["PRAGMA"].split(";"):
            await store.db._on_writer(lambda: store.db._writer_conn.execute(p).fetchall())  # noqa: B023
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(0, n, tx):
        await store.events.ingest(events[i : i + tx])
    dt = time.perf_counter() - t0
    print(f"n={n} tx={tx} {n / dt:.0f}/s wall {dt:.2f}s cpu {time.process_time() - c0:.2f}")
    for k, v in T.most_common(7):
        print(f"{v:7.3f}s {N[k]:5d} {k}")
    await store.close()


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), None))
