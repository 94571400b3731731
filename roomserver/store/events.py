"""The behaviour log's facet of the store: records in, a show's records out.

``ingest`` is idempotent by record id (the bus delivers at least once) and runs
the ``on_ingest`` steps of the other facets (rollups, points) in the same
transaction with only the records that were new, so a re-delivered batch
changes nothing anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from roomserver.core.behaviour import ANONYMOUS_PREFIX, ERASED_KEEP, BehaviourEvent, erased_data
from roomserver.store.db import Database, DuplicateKey, Tx

# A step another facet runs inside the ingest transaction, given the new records.
IngestStep = Callable[[Tx, list[BehaviourEvent]], Awaitable[None]]

_COLUMNS = ("id", "app", "room", "show", "user_id", "kind", "ts", "show_ms", "data")
_SELECT = "SELECT id, app, room, show, user_id, kind, ts, show_ms, data FROM behaviour_events"
# Ids looked up per statement on SQLite (its default limit is 32,766 parameters).
_ID_CHUNK = 500
_data_decoder = msgspec.json.Decoder(dict)
_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class ShowInfo:
    app: str
    room: str
    show: int
    started_at: int | None
    ended_at: int | None
    title: str
    host: str


class EventLog:
    name = "behaviour"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.on_ingest: list[IngestStep] = [self._shows_step]

    async def ingest(self, events: Sequence[BehaviourEvent]) -> list[BehaviourEvent]:
        """Store ``events``; the ones that were not stored before (in order)."""
        if not events:
            return []
        unique = list({e.id: e for e in events}.values())
        async with self.db.transaction() as tx:
            unique = await self._anonymise_erased(tx, unique)
            new = await self._insert_new(tx, unique)
            if new:
                for step in self.on_ingest:
                    await step(tx, new)
        return new

    @staticmethod
    async def _anonymise_erased(tx: Tx, events: list[BehaviourEvent]) -> list[BehaviourEvent]:
        """Records made before their user's erasure but stored after it (still in a node's
        batch or on the bus when the erasure ran) are stored anonymous, as the erasure
        made the ones already stored; a user's records after it are theirs again. One
        indexed read per batch, nearly always empty: erasures are rare and recent ones few."""
        rows = await tx.fetch(
            "SELECT app, user_digest, erased_at FROM erasures WHERE erased_at >= $1",
            min(e.ts for e in events),
        )
        if not rows:
            return events
        erased = {(app, digest): at for app, digest, at in rows}
        anonymous: dict[tuple[str, str], str] = {}
        out = []
        for e in events:
            at = erased.get((e.app, _digest(e.app, e.user)))
            if at is not None and e.ts <= at:
                user = anonymous.setdefault((e.app, e.user), _anonymous_id())
                e = msgspec.structs.replace(e, user=user, data=erased_data(e.kind, e.data))
            out.append(e)
        return out

    async def _insert_new(self, tx: Tx, events: list[BehaviourEvent]) -> list[BehaviourEvent]:
        rows = [
            (e.id, e.app, e.room, e.show, e.user, e.kind, e.ts, e.show_ms, _encode(e.data).decode())
            for e in events
        ]
        # Batches are almost always new, so they are copied in as they are first; only a
        # re-delivered batch (a duplicate id fails the copy: back to the savepoint) pays
        # for finding what is new. On PostgreSQL staging every batch wrote each record twice
        # (docs/benchmarks.md, "Ingest without staging": 43–55k → 57–67k records/s). With
        # several writers it stays exact: a second copy of an id waits for the first
        # writer's commit, then fails as a duplicate.
        await tx.execute("SAVEPOINT ingest_all_new")
        try:
            await tx.copy("behaviour_events", _COLUMNS, rows)
        except DuplicateKey:
            await tx.execute("ROLLBACK TO SAVEPOINT ingest_all_new")
            await tx.execute("RELEASE SAVEPOINT ingest_all_new")
        else:
            await tx.execute("RELEASE SAVEPOINT ingest_all_new")
            return events
        if self.db.dialect == "pg":
            fresh = await self._pg_insert_new(tx, rows)
        else:
            fresh = await self._sqlite_insert_new(tx, rows)
        return [e for e in events if e.id in fresh]

    @staticmethod
    async def _pg_insert_new(tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
        """The conflict check is the insert itself: exact with writers in parallel."""
        await tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS behaviour_staging"
            " (LIKE behaviour_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await tx.copy("behaviour_staging", _COLUMNS, rows)
        inserted = await tx.fetch(
            f"INSERT INTO behaviour_events ({', '.join(_COLUMNS)})"
            f" SELECT {', '.join(_COLUMNS)} FROM behaviour_staging"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        return {r[0] for r in inserted}

    @staticmethod
    async def _sqlite_insert_new(tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
        """SQLite has one writer at a time (BEGIN IMMEDIATE): what is not there now
        cannot appear before this transaction commits, so the held ids are looked up."""
        held: set[str] = set()
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i : i + _ID_CHUNK]
            marks = ", ".join(f"${n + 1}" for n in range(len(chunk)))
            held.update(
                r[0] for r in await tx.fetch(f"SELECT id FROM behaviour_events WHERE id IN ({marks})", *chunk)
            )
        rows = [r for r in rows if r[0] not in held]
        await tx.copy("behaviour_events", _COLUMNS, rows)
        return {r[0] for r in rows}

    async def _shows_step(self, tx: Tx, new: list[BehaviourEvent]) -> None:
        for e in new:
            if e.kind == "show.start":
                await tx.execute(
                    "INSERT INTO shows (app, room, show, started_at, title, host) VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (app, room, show) DO UPDATE SET started_at = excluded.started_at,"
                    " title = excluded.title, host = excluded.host",
                    e.app,
                    e.room,
                    e.show,
                    e.ts,
                    str(e.data.get("title", "")),
                    str(e.data.get("host", "")),
                )
            elif e.kind == "show.end":
                await tx.execute(
                    "INSERT INTO shows (app, room, show, ended_at) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (app, room, show) DO UPDATE SET ended_at = excluded.ended_at",
                    e.app,
                    e.room,
                    e.show,
                    e.ts,
                )

    async def show_events(
        self,
        app: str,
        room: str,
        show: int,
        *,
        user: str | None = None,
        kinds: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[BehaviourEvent]:
        """A show's records in time order (of one user, of some kinds; the first `limit`)."""
        sql, args = f"{_SELECT} WHERE app = $1 AND room = $2 AND show = $3", [app, room, show]
        if user is not None:
            args.append(user)
            sql += f" AND user_id = ${len(args)}"
        if kinds:
            marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(kinds)))
            args.extend(kinds)
            sql += f" AND kind IN ({marks})"
        sql += " ORDER BY ts, id"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return [_event(r) for r in await self.db.fetch(sql, *args)]

    async def user_events(self, app: str, user: str, *, limit: int = 100_000) -> list[BehaviourEvent]:
        """One user's records across shows, oldest first (export, profile details)."""
        rows = await self.db.fetch(
            f"{_SELECT} WHERE app = $1 AND user_id = $2 ORDER BY ts, id LIMIT $3", app, user, limit
        )
        return [_event(r) for r in rows]

    async def export_user(self, app: str, user: str) -> list[dict[str, Any]]:
        return [msgspec.structs.asdict(e) for e in await self.user_events(app, user)]

    async def erase_user(self, tx: Tx, app: str, user: str) -> None:
        """The records stay, under an id that names nobody and links to nothing
        (a new random one per erasure): reports keep their counts, anonymous.
        The erasure itself is noted under a digest of the id (``erased_at``)."""
        anonymous = _anonymous_id()
        worded = await tx.fetch(
            "SELECT id, kind, data FROM behaviour_events WHERE app = $1 AND user_id = $2"
            f" AND kind IN ({', '.join(repr(k) for k in ERASED_KEEP)})",
            app,
            user,
        )
        if worded:  # their words go; what the reports count stays
            await tx.executemany(
                "UPDATE behaviour_events SET data = $1 WHERE id = $2",
                [
                    (_encode(erased_data(kind, _data_decoder.decode(data))).decode(), id_)
                    for id_, kind, data in worded
                ],
            )
        await tx.execute(
            "UPDATE behaviour_events SET user_id = $3 WHERE app = $1 AND user_id = $2", app, user, anonymous
        )
        await tx.execute(
            "INSERT INTO erasures (app, user_digest, erased_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (app, user_digest) DO UPDATE SET erased_at = excluded.erased_at",
            app,
            _digest(app, user),
            time.time_ns() // 1_000_000,
        )

    async def erased_at(self, app: str, user: str) -> int | None:
        """When ``user`` was last erased (unix ms), or None."""
        value = await self.db.fetchval(
            "SELECT erased_at FROM erasures WHERE app = $1 AND user_digest = $2", app, _digest(app, user)
        )
        return None if value is None else int(value)

    async def purge_before(self, ts: int) -> int:
        """Delete the records older than ``ts`` (unix ms), all apps (``--retention-days``);
        how many went. ``shows`` rows stay: they name no user."""
        async with self.db.transaction() as tx:
            gone = await tx.fetchval("SELECT count(*) FROM behaviour_events WHERE ts < $1", ts)
            if gone:
                await tx.execute("DELETE FROM behaviour_events WHERE ts < $1", ts)
        return int(gone or 0)

    async def shows(self, app: str, room: str) -> list[ShowInfo]:
        rows = await self.db.fetch(
            "SELECT app, room, show, started_at, ended_at, title, host FROM shows"
            " WHERE app = $1 AND room = $2 ORDER BY show",
            app,
            room,
        )
        return [ShowInfo(*r) for r in rows]

    async def show(self, app: str, room: str, show: int) -> ShowInfo | None:
        row = await self.db.fetchrow(
            "SELECT app, room, show, started_at, ended_at, title, host FROM shows"
            " WHERE app = $1 AND room = $2 AND show = $3",
            app,
            room,
            show,
        )
        return ShowInfo(*row) if row else None


def _anonymous_id() -> str:
    return ANONYMOUS_PREFIX + secrets.token_hex(8)


def _digest(app: str, user: str) -> str:
    return hashlib.sha256(f"{app}/{user}".encode()).hexdigest()


def _event(row: tuple) -> BehaviourEvent:
    id_, app, room, show, user, kind, ts, show_ms, data = row
    return BehaviourEvent(id_, app, room, show, user, kind, ts, show_ms, _data_decoder.decode(data))
