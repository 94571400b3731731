import asyncio
import sys
import tempfile
import time
from pathlib import Path

from loadtest.behaviour_bench import synthetic
from roomserver.store.store import AnalyticsStore


async def main(n, tx, url, loyalty=True):
    events = synthetic(0, n)
    store = await AnalyticsStore.open(url=url, data_dir=Path(tempfile.mkdtemp()))
    if url:
        for t in (
            "behaviour_events",
            "shows",
            "loyalty_profiles",
            "loyalty_user_shows",
            "loyalty_points_daily",
        ):
            await store.db.execute(f"TRUNCATE {t}")
    import os

    if os.environ.get("PRAGMA"):
        for p in os.environ["PRAGMA"].split(";"):
            await store.db._on_writer(lambda: store.db._writer_conn.execute(p).fetchall())  # noqa: B023
    if not loyalty:
        store.events.on_ingest.remove(store.loyalty.step)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(0, n, tx):
        await store.events.ingest(events[i : i + tx])
    dt = time.perf_counter() - t0
    print(f"n={n} tx={tx} {n / dt:.0f}/s wall {dt:.2f}s cpu {time.process_time() - c0:.2f}", file=sys.stderr)
    await store.close()


url = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
asyncio.run(
    main(int(sys.argv[1]), int(sys.argv[2]), url, not (len(sys.argv) > 4 and sys.argv[4] == "noloyalty"))
)
