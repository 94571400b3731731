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
    return " ".join(sql.split()[:4])[:60]


for name in ("execute", "fetch", "copy", "executemany"):
    orig = getattr(dbm._PgTx, name)

    def mk(orig):
        async def f(self, sql, *a):
            t = time.perf_counter()
            r = await orig(self, sql, *a)
            T[key(sql)] += time.perf_counter() - t
            N[key(sql)] += 1
            return r

        return f

    setattr(dbm._PgTx, name, mk(orig))
import contextlib  # noqa: E402

_orig_tx = dbm.PostgresDatabase.transaction


@contextlib.asynccontextmanager
async def _tx(self):
    t = time.perf_counter()
    async with self._pool.acquire() as conn:
        T["acquire"] += time.perf_counter() - t
        tr = conn.transaction()
        t = time.perf_counter()
        await tr.start()
        T["BEGIN"] += time.perf_counter() - t
        try:
            yield dbm._PgTx(conn)
        except BaseException:
            await tr.rollback()
            raise
        t = time.perf_counter()
        await tr.commit()
        T["COMMIT"] += time.perf_counter() - t


dbm.PostgresDatabase.transaction = _tx


async def main(n, tx, url):
    events = synthetic(0, n)
    store = await AnalyticsStore.open(url=url, data_dir=Path(tempfile.mkdtemp()))
    for t in ("behaviour_events", "shows", "loyalty_profiles", "loyalty_user_shows", "loyalty_points_daily"):
        await store.db.execute(f"TRUNCATE {t}")
    T.clear()
    N.clear()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(0, n, tx):
        await store.events.ingest(events[i : i + tx])
    dt = time.perf_counter() - t0
    print(f"n={n} tx={tx} {n / dt:.0f}/s wall {dt:.2f}s cpu {time.process_time() - c0:.2f}")
    for k, v in T.most_common():
        print(f"{v:7.3f}s {N[k]:5d} {k}")
    await store.close()


asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
