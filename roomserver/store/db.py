"""The analytics store's connection: one small async SQL interface, two engines.

Every query of the store is written once, in PostgreSQL's dialect with ``$1``
placeholders, and runs on both engines:

- ``SqliteDatabase`` (the embedded default, a file under ``--data-dir``):
  stdlib ``sqlite3`` in WAL mode. One writer connection on its own thread
  (SQLite has one writer at a time anyway) and one reader connection on
  another, so a report being read never waits for an ingest batch.
  ``$n`` becomes ``?n``, which SQLite binds from the same positional tuple.
- ``PostgresDatabase`` (``--database-url postgresql://…``, clustered
  deployments): an asyncpg pool; ``copy`` is ``COPY … FROM STDIN`` (binary),
  10–50× faster than row inserts.

Write portable SQL: ``INSERT … ON CONFLICT … DO NOTHING / DO UPDATE``,
``RETURNING``, window functions and ``FILTER (WHERE …)`` work on both
(SQLite ≥ 3.35). Column types: ``BIGINT``, ``DOUBLE PRECISION``, ``TEXT``
(JSON is stored as TEXT); no booleans (0/1), no arrays, no JSONB operators.

Migrations are numbered SQL files (``NNN_name.sql``, or ``NNN_name.sqlite.sql``
and ``NNN_name.pg.sql`` where the dialects must differ) in a directory;
``migrate`` applies the ones not yet recorded in ``schema_migrations``, each
in its own transaction, in number order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

Row = tuple[Any, ...]
T = TypeVar("T")

_PLACEHOLDER: Final = re.compile(r"\$(\d+)")
_MIGRATION: Final = re.compile(r"(\d{3})_([a-z0-9_]+?)(?:\.(sqlite|pg))?\.sql")
logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
# The advisory lock that serialises migrations on PostgreSQL: any fixed 64-bit key that
# nothing else on the server takes ("roomserver schema" as bytes).
SCHEMA_LOCK_KEY: Final = int.from_bytes(b"rs-schem", "big") >> 1
PAGE_SIZE: Final = 16384  # a new embedded store's page size (see SqliteDatabase._connect)


class DuplicateKey(Exception):
    """``Tx.copy`` met a row whose unique key is held already; on both engines the
    transaction is usable again after ``ROLLBACK TO`` a savepoint taken before it."""


class _Reads(ABC):
    """``fetchrow``/``fetchval`` from ``fetch``, for transactions and databases alike."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return row[0] if row else None


class Tx(_Reads):
    """Statements inside one transaction (``Database.transaction``)."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert without conflict handling: a row whose unique key is held
        raises ``DuplicateKey`` (take a savepoint first when rows may be there)."""


class Database(_Reads):
    """A connection to one store. Statements outside ``transaction`` are each
    their own transaction; reads outside it may run beside a writing one."""

    dialect: str  # "sqlite" | "pg"

    @abstractmethod
    def transaction(self) -> Any:
        """``async with db.transaction() as tx:`` — commit on exit, roll back on error."""

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            changed: int = await tx.execute(sql, *args)
        return changed

    @abstractmethod
    async def close(self) -> None: ...

    async def migrate(self, directory: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply the migrations of ``directory`` not applied yet; their names.

        Safe when several processes (a cluster's nodes) start on one store together:
        each migration's transaction first takes the schema lock, then looks whether
        another process applied it meanwhile.
        """
        async with self.transaction() as tx:
            await self._lock_schema(tx)
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
        applied = {row[0] for row in await self.fetch("SELECT version FROM schema_migrations")}
        done = []
        for version, name, path in migration_files(directory, self.dialect):
            if version in applied:
                continue
            statements = split_statements(path.read_text(encoding="utf-8"))
            async with self.transaction() as tx:
                await self._lock_schema(tx)
                if await tx.fetch("SELECT 1 FROM schema_migrations WHERE version = $1", version):
                    continue  # another process applied it while we waited for the lock
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    version,
                    name,
                    time.time_ns() // 1_000_000,
                )
            done.append(f"{version:03d}_{name}")
        return done

    async def _lock_schema(self, tx: Tx) -> None:
        """Serialise schema changes between processes until ``tx`` ends (SQLite's
        ``BEGIN IMMEDIATE`` already holds the file's write lock: nothing more to take)."""


def migration_files(directory: Path, dialect: str) -> list[tuple[int, str, Path]]:
    """``(version, name, path)`` in version order; a dialect's own file wins."""
    chosen: dict[int, tuple[str, Path, bool]] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION.fullmatch(path.name)
        if not m:
            raise ValueError(f"migration file {path.name}: name it NNN_name[.sqlite|.pg].sql")
        version, name, only = int(m.group(1)), m.group(2), m.group(3)
        if only is not None and only != dialect:
            continue
        if version in chosen and chosen[version][2] == (only is not None):
            raise ValueError(f"two migrations numbered {version:03d} in {directory}")
        if version not in chosen or only is not None:
            chosen[version] = (name, path, only is not None)
    if not chosen:  # a broken install (package data left out) must not start schemaless
        raise FileNotFoundError(f"no migrations in {directory}")
    return [(v, name, path) for v, (name, path, _) in sorted(chosen.items())]


def split_statements(script: str) -> list[str]:
    """A migration's statements (``;`` at a line's end separates them; ``--``
    comment lines are dropped). Keep ``;`` out of string literals' line ends."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
    return [p.strip() for p in parts if p.strip()]


def to_sqlite(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


# -- SQLite -------------------------------------------------------------------


class _SqliteTx(Tx):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> int:
        conn = self._db._writer_conn
        return await self._db._on_writer(lambda: conn.execute(to_sqlite(sql), args).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = self._db._writer_conn
        await self._db._on_writer(lambda: conn.executemany(to_sqlite(sql), rows))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        conn = self._db._writer_conn
        return await self._db._on_writer(lambda: conn.execute(to_sqlite(sql), args).fetchall())

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        try:
            await self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        except sqlite3.IntegrityError as e:
            if "UNIQUE" not in str(e):
                raise
            raise DuplicateKey(str(e)) from e


def _begin(conn: sqlite3.Connection) -> None:
    # The BEGIN of a caller cancelled while it waited for this thread still ran, and nothing
    # rolled it back: without this every later transaction failed with "cannot start a
    # transaction within a transaction". (``transaction`` now queues a rollback behind such a
    # BEGIN; this stays for any other way one is left open.)
    if conn.in_transaction:
        logger.warning("embedded store: rolling back a transaction its cancelled caller left open")
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        # One thread per connection: sqlite3 connections are used from the
        # thread that made them, and the writer's thread serialises writes.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-r")
        self._writer_conn = self._writer.submit(self._connect).result()
        self._reader_conn = self._reader.submit(self._connect).result()
        self._tx_lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        # 16 KiB pages (default 4 KiB) for a new store: a B-tree of a quarter as many pages,
        # fewer splits, and a quarter as many WAL frames and checkpoints per ingest commit
        # (docs/benchmarks.md, issue 12). Only an empty file takes it (it must come before
        # WAL mode is set); an existing store keeps its page size, unchanged.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last transactions, never
        # corrupt the file; the bus stream re-delivers what was not acknowledged.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        # 64 MiB of page cache (default 2 MiB): the behaviour log's per-user index takes
        # inserts all over its pages; cached, ingest runs ~30 % faster (docs/benchmarks.md).
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._tx_lock:
            conn = self._writer_conn
            try:
                await self._on_writer(lambda: _begin(conn))
            except asyncio.CancelledError:
                # A BEGIN already running on the writer thread (waiting out another process's
                # write lock) still succeeds, and would hold the file's write lock until this
                # process's next transaction: other processes on the file fail meanwhile
                # ("database is locked"). Queued behind it, before the lock lets anyone else in.
                self._writer.submit(_rollback, conn)
                raise
            try:
                yield _SqliteTx(self)
            except BaseException:
                # Shielded: a cancelled caller must not leave the connection in its transaction.
                await asyncio.shield(self._on_writer(lambda: _rollback(conn)))
                raise
            await self._on_writer(lambda: conn.execute("COMMIT"))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        conn = self._reader_conn
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: conn.execute(to_sqlite(sql), args).fetchall()
        )

    async def close(self) -> None:
        for pool, conn in ((self._writer, self._writer_conn), (self._reader, self._reader_conn)):
            await asyncio.get_running_loop().run_in_executor(pool, conn.close)
            pool.shutdown(wait=True)


# -- PostgreSQL ---------------------------------------------------------------


class _PgTx(Tx):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]  # "INSERT 0 5", "UPDATE 3", "CREATE TABLE"
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(sql, *args)]

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        import asyncpg

        try:
            await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))
        except asyncpg.UniqueViolationError as e:
            raise DuplicateKey(str(e)) from e


class PostgresDatabase(Database):
    dialect = "pg"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> PostgresDatabase:
        import asyncpg  # only deployments with --database-url need it loaded

        return cls(await asyncpg.create_pool(url, min_size=min_size, max_size=max_size))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgTx(conn)

    async def _lock_schema(self, tx: Tx) -> None:
        # A transaction-scoped advisory lock: released at commit or rollback, so a
        # process killed mid-migration never leaves it held. Concurrent DDL on
        # PostgreSQL otherwise fails (even CREATE TABLE IF NOT EXISTS, on pg_type).
        await tx.fetch("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._pool.fetch(sql, *args)]

    async def close(self) -> None:
        await self._pool.close()


async def open_database(*, url: str | None = None, data_dir: Path | None = None) -> Database:
    """``url`` (``postgresql://…``) or the embedded file ``<data_dir>/analytics.sqlite3``."""
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("--database-url must be postgresql://user:password@host:port/database")
        return await PostgresDatabase.connect(url)
    if data_dir is None:
        raise ValueError("the embedded store needs a data directory (--data-dir)")
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteDatabase(data_dir / "analytics.sqlite3")
