import json
import os
import random
import sqlite3
import tempfile
import time

from roomserver.store import loyalty as L
from roomserver.store.db import split_statements

sql = open("roomserver/store/migrations/010_loyalty.sql").read()  # noqa: SIM115


def setup(without):
    d = tempfile.mkdtemp()
    conn = sqlite3.connect(os.path.join(d, "x.db"), isolation_level=None)
    for p in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA cache_size=-65536"]:
        conn.execute(p)
    s = sql
    if without:
        for t in [
            "points_spent <= points_earned)\n)",
            "PRIMARY KEY (app, user_id, room, show)\n)",
            "PRIMARY KEY (app, user_id, day)\n)",
        ]:
            s = s.replace(t, t + " WITHOUT ROWID")
    for st in split_statements(s):
        conn.execute(st)
    return conn


cols = [*list(L._PROFILE_COLUMNS), "points_earned"]
head = f"INSERT INTO loyalty_profiles ({', '.join(cols)})"


def batches(seed=1):
    rng = random.Random(seed)
    for _b in range(100):
        us = sorted({rng.randrange(10000) for _ in range(2000)})
        yield [
            ("bench", f"u{u}", 1, 5, 6, 0, 0, 0, 1, *([0] * len(L.INTERACTION_COLUMNS)), 0, 0, 0, None, 1)
            for u in us
        ]


def run(without, mode):
    conn = setup(without)
    t = time.process_time()
    tc = 0
    for rows in batches():
        conn.execute("BEGIN IMMEDIATE")
        if mode == "values":
            for chunk in L._chunks(rows, len(cols)):
                args = [v for r in chunk for v in r]
                conn.execute(
                    f"{head} VALUES {L._values(len(chunk), len(cols), numbered=False)} {L._PROFILE_UPSERT}",
                    args,
                ).fetchall()
        elif mode == "json":
            sel = ", ".join(f"value->>{i}" for i in range(len(cols)))
            conn.execute(
                f"{head} SELECT {sel} FROM json_each(?) WHERE true {L._PROFILE_UPSERT}", (json.dumps(rows),)
            ).fetchall()
        elif mode == "many":
            marks = ", ".join("?" * len(cols))
            conn.executemany(f"{head} VALUES ({marks}) {L._PROFILE_UPSERT.rsplit(' RETURNING', 1)[0]}", rows)
        t1 = time.process_time()
        conn.execute("COMMIT")
        tc += time.process_time() - t1
    print(f"without_rowid={without} {mode}: {time.process_time() - t:.3f}s cpu (commit {tc:.3f})", flush=True)


for mode in ["values", "json", "many"]:
    for w in (False, True):
        run(w, mode)
