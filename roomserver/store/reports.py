"""The post-live report's facet of the store: the history a report needs and
the cached report of every ended show.

The figures are defined in ``roomserver/core/report.py`` (pure); this facet
looks up what the computation needs beyond the show's own records (who the
app saw before, who bought before, the previous show's viewers and buyers),
and keeps each ended show's report and per-user table (``show_reports``) so
it is computed once. A live show's report is computed on each request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from roomserver.core.behaviour import KINDS, BehaviourEvent
from roomserver.core.report import (
    FOLDED_KINDS,
    MINUTE_MS,
    History,
    ShowFacts,
    Tallies,
    compute_report,
    fold,
    user_timeline,
)
from roomserver.core.report_model import Report, UserRow, UserTimeline
from roomserver.store.db import Database, Tx
from roomserver.store.events import EventLog, ShowInfo

_report_decoder = msgspec.json.Decoder(Report)
_users_decoder = msgspec.json.Decoder(list[UserRow])
_encode = msgspec.json.encode
_USER_CHUNK = 500  # ids per IN (...) (SQLite binds at most 32,766 parameters)
_UNFOLDED = tuple(sorted(KINDS - set(FOLDED_KINDS)))


class ShowNotStarted(LookupError):
    """The show has records (or an end) but never started: no report."""


@dataclass(frozen=True, slots=True)
class ReportBundle:
    report: Report
    users: list[UserRow]
    cached: bool  # read from show_reports rather than computed now


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def facts_of(info: ShowInfo) -> ShowFacts:
    if info.started_at is None:
        raise ShowNotStarted(f"show {info.show} of room {info.room} never started")
    return ShowFacts(info.app, info.room, info.show, info.started_at, info.ended_at, info.title, info.host)


class ShowReports:
    name = "reports"

    def __init__(self, db: Database, events: EventLog) -> None:
        self.db = db
        self.events = events

    # -- the history a report needs -----------------------------------------------------

    async def _seen_before(self, app: str, users: Sequence[str], before: int, kind: str | None) -> set[str]:
        """Those of ``users`` with a record (of ``kind``) in the app before ``before``
        (the (app, user_id, ts) index answers each user)."""
        found: set[str] = set()
        kind_sql = " AND kind = $3" if kind else ""
        head = [app, before] + ([kind] if kind else [])
        for i in range(0, len(users), _USER_CHUNK):
            chunk = users[i : i + _USER_CHUNK]
            marks = ", ".join(f"${len(head) + n + 1}" for n in range(len(chunk)))
            rows = await self.db.fetch(
                f"SELECT DISTINCT user_id FROM behaviour_events WHERE app = $1 AND ts < $2{kind_sql}"
                f" AND user_id IN ({marks})",
                *head,
                *chunk,
            )
            found.update(r[0] for r in rows)
        return found

    async def previous_show(self, app: str, room: str, show: int) -> int | None:
        """The room's latest show before ``show`` that started."""
        value = await self.db.fetchval(
            "SELECT MAX(show) FROM shows WHERE app = $1 AND room = $2 AND show < $3 AND started_at IS NOT NULL",
            app,
            room,
            show,
        )
        return int(value) if value is not None else None

    async def _users_of_kind(self, app: str, room: str, show: int, kind: str) -> set[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT user_id FROM behaviour_events WHERE app = $1 AND room = $2 AND show = $3 AND kind = $4",
            app,
            room,
            show,
            kind,
        )
        return {r[0] for r in rows}

    async def history(self, facts: ShowFacts, users: Iterable[str]) -> History:
        """What the report needs beyond the show's records; ``users``: the show's."""
        app, room, show = facts.app, facts.room, facts.show
        people = sorted(set(users))
        previous = await self.previous_show(app, room, show)
        viewers: set[str] = set()
        buyers: set[str] = set()
        if previous is not None:
            cached = await self._cached_users(app, room, previous)
            if cached is not None:  # the previous show's table is at hand: no scan of its records
                viewers = {u.user for u in cached if u.sessions}
                buyers = {u.user for u in cached if u.orders}
            else:
                viewers = await self._users_of_kind(app, room, previous, "join")
                buyers = await self._users_of_kind(app, room, previous, "order")
            info = await self.events.show(app, room, previous)
            viewers.discard(info.host if info else "")
        return History(
            seen_before=await self._seen_before(app, people, facts.started_at, None),
            bought_before=await self._seen_before(app, people, facts.started_at, "order"),
            previous_show=previous,
            previous_viewers=viewers,
            previous_buyers=buyers,
        )

    # -- reports ---------------------------------------------------------------------------

    async def latest_show(self, app: str, room: str) -> int | None:
        value = await self.db.fetchval("SELECT MAX(show) FROM shows WHERE app = $1 AND room = $2", app, room)
        return int(value) if value is not None else None

    def _like_count(self) -> str:
        """A like record's ``data.count`` (1 when absent) in this engine's SQL."""
        if self.db.dialect == "pg":
            return "COALESCE((data::json->>'count')::numeric::bigint, 1)"
        return "COALESCE(CAST(json_extract(data, '$.count') AS INTEGER), 1)"

    async def tallies(self, facts: ShowFacts, until: int) -> Tallies:
        """The show's barrage and like records folded (``core.report.Tallies``).
        PostgreSQL groups them itself (one scan, hash aggregates, 10,000 rows
        back instead of 850,000); SQLite would sort a million rows to group them by user, so
        it hands over narrow rows (the like count taken out of the JSON) and
        ``core.report.fold`` groups them. Records after ``until`` (the show's
        end) are not the show's (``core.report``)."""
        key = (facts.app, facts.room, facts.show, until)
        where = "WHERE app = $1 AND room = $2 AND show = $3 AND kind IN ('barrage', 'like') AND ts <= $4"
        count = f"CASE WHEN kind = 'like' THEN {self._like_count()} ELSE 1 END"
        if self.db.dialect != "pg":
            # Small ints instead of the kind and the time: no new object per row for them.
            minute = f"CASE WHEN ts >= $5 THEN (ts - $5) / {MINUTE_MS} ELSE -1 END"
            rows = await self.db.fetch(
                f"SELECT user_id, kind = 'barrage', {minute}, {count} FROM behaviour_events {where}",
                *key,
                facts.started_at,
            )
            return fold(rows)
        sums = (
            "SUM(CASE WHEN kind = 'barrage' THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN kind = 'like' THEN {count} ELSE 0 END), COUNT(*)"
        )
        # floor(), as core.report.fold divides: the minutes before the start stay apart.
        # One scan, grouped twice (by user, by minute): user_id is never null, so a
        # null one marks a minute's row.
        minute = f"floor((ts - $5)::numeric / {MINUTE_MS})::bigint"
        rows = await self.db.fetch(
            f"SELECT user_id, {minute}, {sums} FROM behaviour_events {where}"
            f" GROUP BY GROUPING SETS ((user_id), ({minute}))",
            *key,
            facts.started_at,
        )
        return Tallies(
            users={r[0]: (int(r[2]), int(r[3])) for r in rows if r[0] is not None},
            minutes={int(r[1]): (int(r[2]), int(r[3])) for r in rows if r[0] is None},
            records=sum(int(r[4]) for r in rows if r[0] is not None),
        )

    async def records(self, facts: ShowFacts, until: int) -> tuple[Tallies, list[BehaviourEvent]]:
        """The show's barrage and likes folded, and its other records in time order
        (side by side on PostgreSQL's pool; one after the other on SQLite's one
        reader, where reading the show once in wide rows measured slower)."""
        return await asyncio.gather(
            self.tallies(facts, until),
            self.events.show_events(facts.app, facts.room, facts.show, kinds=_UNFOLDED),
        )

    async def compute(self, info: ShowInfo, *, now_ms: int | None = None) -> ReportBundle:
        """Compute the show's report from its records (nothing cached)."""
        facts = facts_of(info)
        now = now_ms or _now_ms()
        until = info.ended_at if info.ended_at is not None else max(now, facts.started_at)
        tallies, events = await self.records(facts, until)
        history = await self.history(facts, {e.user for e in events}.union(tallies.users))
        report, users = compute_report(facts, events, history=history, tallies=tallies, now_ms=now)
        return ReportBundle(report, users, cached=False)

    async def build(self, info: ShowInfo) -> ReportBundle:
        """Compute the report and keep it when the show has ended (replacing one kept before)."""
        bundle = await self.compute(info)
        if info.ended_at is not None:
            await self.db.execute(
                "INSERT INTO show_reports (app, room, show, ended_at, generated_at, report, users)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app, room, show) DO UPDATE SET"
                " ended_at = excluded.ended_at, generated_at = excluded.generated_at,"
                " report = excluded.report, users = excluded.users",
                info.app,
                info.room,
                info.show,
                info.ended_at,
                _now_ms(),
                _encode(bundle.report).decode(),
                _encode(bundle.users).decode(),
            )
        return bundle

    async def get(self, info: ShowInfo) -> ReportBundle:
        """The kept report of an ended show (computed and kept now if missing or
        older than the show's end); a live show's computed now."""
        if info.ended_at is not None:
            row = await self.db.fetchrow(
                "SELECT ended_at, report, users FROM show_reports WHERE app = $1 AND room = $2 AND show = $3",
                info.app,
                info.room,
                info.show,
            )
            if row is not None and row[0] == info.ended_at:
                return ReportBundle(
                    _report_decoder.decode(row[1]), _users_decoder.decode(row[2]), cached=True
                )
        return await self.build(info)

    async def cached_report(self, app: str, room: str, show: int) -> Report | None:
        raw = await self.db.fetchval(
            "SELECT report FROM show_reports WHERE app = $1 AND room = $2 AND show = $3", app, room, show
        )
        return _report_decoder.decode(raw) if raw is not None else None

    async def _cached_users(self, app: str, room: str, show: int) -> list[UserRow] | None:
        raw = await self.db.fetchval(
            "SELECT users FROM show_reports WHERE app = $1 AND room = $2 AND show = $3", app, room, show
        )
        return _users_decoder.decode(raw) if raw is not None else None

    async def timeline(self, info: ShowInfo, user: str) -> UserTimeline:
        facts = facts_of(info)
        events = await self.events.show_events(info.app, info.room, info.show, user=user)
        return user_timeline(facts, events, user, now_ms=_now_ms())

    # -- a user's rights ---------------------------------------------------------------------

    async def export_user(self, app: str, user: str) -> list[dict[str, Any]]:
        """The user's line of every kept per-user table."""
        rows = await self.db.fetch(
            "SELECT room, show, users FROM show_reports WHERE app = $1 AND users LIKE $2 ORDER BY room, show",
            app,
            f"%{_encode(user).decode()}%",
        )
        out = []
        for room, show, raw in rows:
            for line in _users_decoder.decode(raw):
                if line.user == user:
                    out.append({"room": room, "show": show, **msgspec.structs.asdict(line)})
        return out

    async def erase_user(self, tx: Tx, app: str, user: str) -> None:
        """Kept reports naming the user are dropped; the next read recomputes them
        from the records, which erasure re-keys to an anonymous id."""
        await tx.execute(
            "DELETE FROM show_reports WHERE app = $1 AND (users LIKE $2 OR report LIKE $2)",
            app,
            f"%{_encode(user).decode()}%",
        )
