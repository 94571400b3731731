"""The records' table alone: 1M rows, variants of its indexes and page size (issue 12).

python idx.py VARIANT [TX]   # VARIANT: base, nots, nouser, noshow, noid, norowid, p8, p16, p32, p64, c256, mmap
"""

import os
import sqlite3
import sys
import tempfile
import time

COLS = (
    "id TEXT {pk}, app TEXT NOT NULL, room TEXT NOT NULL, show BIGINT NOT NULL, user_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, ts BIGINT NOT NULL, show_ms BIGINT NOT NULL, data TEXT NOT NULL"
)
variant = sys.argv[1]
TX = int(sys.argv[2]) if len(sys.argv) > 2 else 40000
N = 1_000_000
d = tempfile.mkdtemp(prefix="idx-")
c = sqlite3.connect(d + "/x.db", isolation_level=None)
for flag, pragma in (
    ("p8", "page_size=8192"),
    ("p16", "page_size=16384"),
    ("p32", "page_size=32768"),
    ("p64", "page_size=65536"),
    ("mmap", "mmap_size=1073741824"),
):
    if flag in variant:
        c.execute("PRAGMA " + pragma)
cache = "cache_size=-262144" if "c256" in variant else "cache_size=-65536"
for pragma in ("journal_mode=WAL", "synchronous=NORMAL", cache):
    c.execute("PRAGMA " + pragma)
if variant.startswith("norowid"):
    c.execute(f"CREATE TABLE e ({COLS.format(pk='PRIMARY KEY')}) WITHOUT ROWID")
elif variant.startswith("noid"):
    c.execute(f"CREATE TABLE e ({COLS.format(pk='NOT NULL')})")
else:
    c.execute(f"CREATE TABLE e ({COLS.format(pk='PRIMARY KEY')})")
if "noshow" not in variant:
    c.execute("CREATE INDEX e_show ON e (app, room, show, ts)")
if "nouser" not in variant:
    c.execute("CREATE INDEX e_user ON e (app, user_id, ts)")
if "nots" not in variant:
    c.execute("CREATE INDEX e_ts ON e (ts)")
t0 = 1_700_000_000_000
rows = [
    (
        f"bench-1a2b3c4d-{i:010x}",
        "bench",
        f"room-{i % 10}",
        1,
        f"u{i % 10000}",
        "like",
        t0 + i // 50,
        i // 50,
        '{"count":1}',
    )
    for i in range(N)
]
w, cpu, commit = time.perf_counter(), time.process_time(), 0.0
for i in range(0, N, TX):
    c.execute("BEGIN IMMEDIATE")
    c.executemany("INSERT INTO e VALUES (?,?,?,?,?,?,?,?,?)", rows[i : i + TX])
    t = time.perf_counter()
    c.execute("COMMIT")
    commit += time.perf_counter() - t
w, cpu = time.perf_counter() - w, time.process_time() - cpu
size = os.path.getsize(d + "/x.db") >> 20
print(
    variant,
    TX,
    f"wall {w:.2f} cpu {cpu:.2f} commit {commit:.2f} rate {N / w:.0f} size {size} MiB"
    f" load {os.getloadavg()[0]:.1f}",
)
