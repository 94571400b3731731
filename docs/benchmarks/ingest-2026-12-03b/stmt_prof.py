"""Per-statement time of EventLog.ingest on SQLite (issue 12): 1M likes shaped like the
pipeline's (user i % 10,000, room i % 10), N records per transaction.

    PYTHONPATH=<tree> python stmt_prof.py 1000000 40000

Times each call on the store's writer thread under the statement's first words; COMMIT and
BEGIN separately. Wall seconds on that thread (CPU-starved on a busy box), plus the process's CPU.
"""

import asyncio
import collections
import json
import os
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

from roomserver.core.behaviour import BehaviourEvent
from roomserver.store import db as dbm
from roomserver.store.store import AnalyticsStore

N, TX = int(sys.argv[1]), int(sys.argv[2])
acc: dict[str, float] = collections.defaultdict(float)
cnt: collections.Counter[str] = collections.Counter()
cur = ["?"]
_on_writer = dbm.SqliteDatabase._on_writer
_transaction = dbm.SqliteDatabase.transaction


async def timed(self, fn):
    def run():
        t0 = time.perf_counter()
        r = fn()
        acc[cur[0]] += time.perf_counter() - t0
        cnt[cur[0]] += 1
        return r

    return await _on_writer(self, run)


def labelled(method):
    async def f(self, sql, *args):
        cur[0] = " ".join(sql.split()[:4])[:60]
        return await method(self, sql, *args)

    return f


@asynccontextmanager
async def transaction(self):
    cur[0] = "BEGIN"
    async with _transaction(self) as tx:
        yield tx
        cur[0] = "COMMIT"


dbm.SqliteDatabase._on_writer = timed
dbm.SqliteDatabase.transaction = transaction
for name in ("execute", "executemany", "fetch"):
    setattr(dbm._SqliteTx, name, labelled(getattr(dbm._SqliteTx, name)))


async def main():
    store = await AnalyticsStore.open(data_dir=Path(tempfile.mkdtemp(prefix="sp-")))
    t0 = 1_700_000_000_000
    events = [
        BehaviourEvent(
            f"bench-1-{i:010x}",
            "bench",
            f"room-{i % 10}",
            1,
            f"u{i % 10000}",
            "like",
            t0 + i // 50,
            i // 50,
            {"count": 1},
        )
        for i in range(N)
    ]
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, N, TX):
        await store.events.ingest(events[i : i + TX])
    w, c = time.perf_counter() - w0, time.process_time() - c0
    await store.close()
    stmts = {k: [round(v, 2), cnt[k]] for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}
    out = {"n": N, "tx": TX, "wall": round(w, 2), "rate": round(N / w), "cpu": round(c, 2)}
    print(json.dumps({**out, "load": os.getloadavg()[0], "stmts": stmts}, indent=1))


asyncio.run(main())
