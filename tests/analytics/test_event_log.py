"""The behaviour log facet on both engines: a batch stored twice is stored once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from roomserver.core.behaviour import BehaviourEvent
from roomserver.store.db import Database, open_database
from roomserver.store.events import EventLog


def ev(n: int, user: str, kind: str, ts: int, **data: object) -> BehaviourEvent:
    return BehaviourEvent(f"n1-{n}", "a", "r", 1, user, kind, ts, ts - 1000, data)  # type: ignore[arg-type]


async def test_ingest_is_idempotent_by_id(db: Database) -> None:
    log = EventLog(db)
    batch = [ev(1, "host", "show.start", 1000, title="T", host="host"), ev(2, "u1", "join", 2000)]
    assert [e.id for e in await log.ingest(batch)] == ["n1-1", "n1-2"]
    again = await log.ingest([*batch, batch[1], ev(3, "u1", "leave", 9000, joined_at=2000)])
    assert [e.id for e in again] == ["n1-3"]
    assert [e.kind for e in await log.show_events("a", "r", 1, user="u1")] == ["join", "leave"]
    assert (await log.show_events("a", "r", 1, kinds=["leave"]))[0].data == {"joined_at": 2000}
    show = await log.show("a", "r", 1)
    assert show is not None and (show.started_at, show.title) == (1000, "T")
    assert await log.show("a", "r", 2) is None and await log.show("b", "r", 1) is None


async def test_writers_storing_overlapping_batches_at_once_store_each_record_once(db: Database) -> None:
    """A redelivered batch can reach a second writer while the first still holds it: the
    first copy wins, the other falls back to keeping only what is new, and between
    them every record is reported new exactly once."""
    log = EventLog(db)
    first = [ev(n, "u1", "like", 1000 + n) for n in range(0, 300)]
    second = [ev(n, "u2", "like", 1000 + n) for n in range(200, 500)]  # 200..299 overlap
    new = await asyncio.gather(log.ingest(first), log.ingest(second), log.ingest(first[250:]))
    ids = [e.id for batch in new for e in batch]
    assert sorted(ids) == sorted(f"n1-{n}" for n in range(500))
    stored = await log.show_events("a", "r", 1)
    assert len(stored) == 500


async def test_migrate_twice_applies_nothing_new(db: Database) -> None:
    assert await db.migrate() == []


@pytest.mark.parametrize("engine", ["sqlite", "pg"])
async def test_processes_starting_together_apply_each_migration_once(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Every node of a cluster migrates the shared store at start; started together, each
    # must either apply a migration or see it applied, never fail on "already exists".
    url = request.getfixturevalue("postgres_url") if engine == "pg" else None
    nodes = [await open_database(url=url, data_dir=tmp_path) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(n.migrate() for n in nodes))
        names = [name for done in applied for name in done]
        assert sorted(names) == sorted(set(names)) and len(set(names)) >= 1  # each once, by someone
        assert [await n.migrate() for n in nodes] == [[]] * len(nodes)
    finally:
        for n in nodes:
            await n.close()


async def test_a_new_embedded_store_has_16k_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    new = await open_database(data_dir=tmp_path / "new")
    await new.migrate()
    assert await new.fetchval("PRAGMA page_size") == 16384
    await new.close()
    # A store made with SQLite's default 4 KiB pages (before this setting) opens as it is.
    (tmp_path / "old").mkdir()
    with sqlite3.connect(tmp_path / "old" / "analytics.sqlite3") as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE kept (x BIGINT)")
        conn.execute("INSERT INTO kept VALUES (7)")
    old = await open_database(data_dir=tmp_path / "old")
    await old.migrate()
    assert await old.fetchval("PRAGMA page_size") == 4096
    assert await old.fetchval("SELECT x FROM kept") == 7
    log = EventLog(old)
    assert [e.id for e in await log.ingest([ev(1, "u1", "join", 2000)])] == ["n1-1"]
    await old.close()


async def test_a_transaction_cancelled_at_its_begin_leaves_the_store_usable(db: Database) -> None:
    # A caller cancelled while its BEGIN waits for the store still had the BEGIN run (on the
    # embedded store's writer thread); nothing rolled it back, and every later transaction
    # failed with "cannot start a transaction within a transaction" (seen from the behaviour
    # writer in a server test).
    await db.migrate()
    started = asyncio.Event()

    async def transaction() -> None:
        async with db.transaction() as tx:
            started.set()
            await tx.execute("CREATE TABLE never (x BIGINT)")

    task = asyncio.create_task(transaction())
    await asyncio.sleep(0)  # the task is now waiting for its BEGIN
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not started.is_set()
    log = EventLog(db)
    assert [e.id for e in await log.ingest([ev(1, "u1", "join", 2000)])] == ["n1-1"]


async def test_a_transaction_cancelled_at_its_begin_leaves_no_lock_on_the_file(tmp_path: Path) -> None:
    """Another process holds the file's write lock, so our BEGIN IMMEDIATE waits on the writer
    thread (busy timeout) and its caller is cancelled meanwhile. The BEGIN still succeeds once
    the lock is free; rolled back only by this process's next transaction, it then held the lock
    until that one: a CI run's fuzz servers, sharing the data directory of an idle test server,
    could not migrate ("database is locked")."""
    db = await open_database(data_dir=tmp_path)
    await db.migrate()
    other = sqlite3.connect(tmp_path / "analytics.sqlite3", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(_cancelled_transaction(db))
        await asyncio.sleep(0.2)  # its BEGIN is waiting for the lock, on the writer thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other.execute("ROLLBACK")  # the BEGIN gets the lock now
        await asyncio.sleep(0.5)
        other.execute("BEGIN IMMEDIATE")  # free again: nothing of ours holds it
        other.execute("ROLLBACK")
    finally:
        other.close()
        await db.close()


async def _cancelled_transaction(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("CREATE TABLE never (x BIGINT)")
