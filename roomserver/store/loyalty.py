"""The loyalty facet of the store: per-user rollups across shows, the points
ledger, the reward catalog and redemptions (rules: roomserver/core/loyalty.py).

Rollups and points are maintained by ``step``, an ``EventLog.on_ingest`` step:
it sees each record once (ingest hands it only the new ones, in the ingest's
transaction), so the counters are exact however often the bus re-delivers.

Concurrency. Several ingest writers (PostgreSQL, two processes) may add to the
same user's counters: every change is an ``INSERT … ON CONFLICT DO UPDATE``
that adds, never a read-then-write. A daily cap is exact the same way: the
upsert adds the batch's units and returns the day's new total, so the points
the batch earned are ``points(total) − points(total − added)`` whatever the
other writers did. A redemption is one transaction: the balance check is the
``UPDATE``'s own ``WHERE`` (and a CHECK constraint), the cid a primary key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from roomserver.auth import USER_ID_RE
from roomserver.core import loyalty as rules_
from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.loyalty import DAY_MS, LoyaltyRules, Stats
from roomserver.protocol import OpError
from roomserver.store.db import Database, Tx

# Parameters per SQLite statement (it allows 32,766; PostgreSQL gets one array per column).
_MAX_PARAMS: Final = 15_000
INTERACTION_COLUMNS: Final = tuple(f"n_{k}" for k in dict.fromkeys(rules_.INTERACTIONS.values()))
_PROFILE_COLUMNS: Final = (
    "app",
    "user_id",
    "records",
    "first_seen",
    "last_seen",
    "shows",
    "order_shows",
    "watch_ms",
    "interactions",
    *INTERACTION_COLUMNS,
    "orders",
    "gmv",
    "gift_value",
    "last_order",
)
_ADDED: Final = (
    *("records", "shows", "order_shows", "watch_ms", "interactions"),
    *INTERACTION_COLUMNS,
    *("orders", "gmv", "gift_value", "points_earned"),
)
_P = "loyalty_profiles"
_PROFILE_UPSERT: Final = (
    "ON CONFLICT (app, user_id) DO UPDATE SET "
    + ", ".join(f"{c} = {_P}.{c} + excluded.{c}" for c in _ADDED)
    + f", first_seen = CASE WHEN {_P}.first_seen IS NULL OR excluded.first_seen < {_P}.first_seen"
    f" THEN excluded.first_seen ELSE {_P}.first_seen END"
    f", last_seen = CASE WHEN {_P}.last_seen IS NULL OR excluded.last_seen > {_P}.last_seen"
    f" THEN excluded.last_seen ELSE {_P}.last_seen END"
    f", last_order = CASE WHEN excluded.last_order IS NOT NULL AND ({_P}.last_order IS NULL"
    f" OR excluded.last_order > {_P}.last_order) THEN excluded.last_order ELSE {_P}.last_order END"
    " RETURNING app, user_id, records"
)
_D = "loyalty_points_daily"
_U = tuple(f"u_{r}" for r in rules_.RULES)
_PTS = tuple(f"p_{r}" for r in rules_.RULES)


_DAILY_COLUMNS: Final = ("app", "user_id", "day", *_U, *_PTS)
_SHOW_COLUMNS: Final = ("app", "user_id", "room", "show")
_INTERACTION_KINDS: Final = tuple(c[2:] for c in INTERACTION_COLUMNS)
_RULE_INDEX: Final = {rule: i for i, rule in enumerate(rules_.RULES)}


def _points_of(rules: LoyaltyRules, rule: str) -> Callable[[int], int]:
    """``rules.day_points(rule, ·)`` with the rule looked up once (it runs per ledger row)."""
    r = rules.rules.get(rule)
    if r is None:
        return lambda units: 0
    return functools.partial(r.points, raw_unit=rules_.RAW_UNIT[rule])


def daily_upsert(rules: LoyaltyRules) -> str:
    """The ledger's upsert: adds the batch's units and sets each rule's points for the
    day's new total, the rule's integers written into the SQL (they come from the
    configuration, not from a request); returns the day's new unit totals."""
    sets = [f"{u} = {_D}.{u} + excluded.{u}" for u in _U]
    for rule, p, u in zip(rules_.RULES, _PTS, _U, strict=True):
        r = rules.rules.get(rule)
        if r is None:
            sets.append(f"{p} = 0")
            continue
        total = f"({_D}.{u} + excluded.{u}) / {int(r.per) * rules_.RAW_UNIT[rule]} * {int(r.rate)}"
        capped = f"CASE WHEN {total} > {int(r.cap)} THEN {int(r.cap)} ELSE {total} END" if r.cap else total
        sets.append(f"{p} = {capped}")
    return (
        f"ON CONFLICT (app, user_id, day) DO UPDATE SET {', '.join(sets)}"
        f" RETURNING app, user_id, day, {', '.join(_U)}"
    )


_PROFILE_SELECT: Final = (
    "SELECT first_seen, last_seen, shows, order_shows, watch_ms, interactions, orders, gmv, gift_value,"
    f" {', '.join(INTERACTION_COLUMNS)}, last_order, referrals, points_earned, points_spent"
    " FROM loyalty_profiles"
)
# Each tag as SQL over loyalty_profiles, mirroring core.loyalty.tags ($1 = now in ms).
TAG_SQL: Final = {
    "new": f"first_seen >= CAST($1 AS BIGINT) - {rules_.NEW_DAYS * DAY_MS}",
    "buyer": "orders >= 1",
    "repeat buyer": "order_shows >= 2",
    "gifter": "gift_value > 0",
    "lurker": f"interactions = 0 AND orders = 0 AND watch_ms >= {rules_.LURKER_MIN_WATCH_MS}",
    "at risk": f"(orders >= 1 OR shows >= {rules_.AT_RISK_MIN_SHOWS})"
    f" AND last_seen < CAST($1 AS BIGINT) - {rules_.AT_RISK_DAYS * DAY_MS}",
}


_TEXT_COLUMNS: Final = frozenset({"app", "user_id", "room"})  # every other column is BIGINT


def _sqlite_values(n_rows: int, n_cols: int) -> str:
    """``(?, ?), (?, ?)``: plain marks — SQLite looks a numbered parameter (``?N``) up
    linearly, so a 1,000-row statement of numbered ones costs 17× its plain twin."""
    row = "(" + ", ".join("?" * n_cols) + ")"
    return ", ".join([row] * n_rows)


def _unnest(columns: Sequence[str]) -> str:
    """``unnest($1::text[], $2::bigint[], …)``: one parameter per column, so the statement's
    text is the same for every batch (prepared once per connection by asyncpg) and short;
    a ``VALUES`` list of 15,000 numbered parameters was re-parsed and re-planned by the
    server and re-prepared by asyncpg for every batch size (docs/benchmarks.md, issue 12)."""
    types = ("text" if c in _TEXT_COLUMNS else "bigint" for c in columns)
    return "unnest(" + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types)) + ")"


async def upsert_returning(
    tx: Tx, dialect: str, table: str, columns: Sequence[str], tail: str, rows: Sequence[tuple[Any, ...]]
) -> list[tuple]:
    """``INSERT INTO table (columns) <rows> tail`` (``tail``: the ``ON CONFLICT … RETURNING``
    clause, no parameters of its own); all the rows returned."""
    if not rows:
        return []
    head = f"INSERT INTO {table} ({', '.join(columns)})"
    if dialect == "pg":
        # Rows in key order: two PostgreSQL writers upserting the same users lock them in
        # the same order, so they wait for each other instead of deadlocking (``unnest``
        # yields the arrays' elements in order). A row's key (its leading columns) is
        # unique among the rows, so tuples compare without reaching a NULL column.
        # (SQLite has one writer at a time: no order needed.)
        rows = sorted(rows)
        arrays = [list(column) for column in zip(*rows, strict=True)]
        return await tx.fetch(f"{head} SELECT * FROM {_unnest(columns)} {tail}", *arrays)
    out: list[tuple] = []
    size = max(1, _MAX_PARAMS // len(columns))
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        args = [v for row in chunk for v in row]
        out.extend(await tx.fetch(f"{head} VALUES {_sqlite_values(len(chunk), len(columns))} {tail}", *args))
    return out


class _SameCidRace(Exception):
    """Another transaction stored this cid first: roll back, replay its result."""


class LoyaltyStore:
    name = "loyalty"

    def __init__(self, db: Database, rules: LoyaltyRules | None = None) -> None:
        self.db = db
        self.rules = rules or LoyaltyRules()
        self._upsert_for: LoyaltyRules | None = None  # the rules ``_daily_sql`` was written for
        self._daily_sql = ""
        self._points: list[Callable[[int], int]] = []  # per rule: the day's points for its units

    # -- ingest ----------------------------------------------------------------------

    async def _upsert(
        self, tx: Tx, table: str, columns: Sequence[str], tail: str, rows: Sequence[tuple[Any, ...]]
    ) -> list[tuple]:
        return await upsert_returning(tx, self.db.dialect, table, columns, tail, rows)

    async def step(self, tx: Tx, new: list[BehaviourEvent]) -> None:
        """The ``on_ingest`` step: roll ``new`` up into profiles and the points ledger."""
        rules = self.rules
        f = rules_.fold(new, rules)
        if not f.users:
            return
        users = f.users
        # Shows attended and shows with an order: counted when their row is new.
        new_shows: dict[tuple[str, str], int] = {}
        show_rows = [(a, u, room, show) for (a, u), d in users.items() for room, show in d.shows]
        for a, u in await self._upsert(
            tx,
            "loyalty_user_shows",
            _SHOW_COLUMNS,
            "ON CONFLICT (app, user_id, room, show) DO NOTHING RETURNING app, user_id",
            show_rows,
        ):
            new_shows[(a, u)] = new_shows.get((a, u), 0) + 1
        new_order_shows: dict[tuple[str, str], int] = {}
        ordered = [(a, u, room, show, 1) for (a, u), d in users.items() for room, show in d.order_shows]
        # (Rows of both kinds exist by now: the upsert only flips ``ordered``, and
        # returns the rows it flipped; an IN list of row values would scan the table.)
        for a, u in await self._upsert(
            tx,
            "loyalty_user_shows",
            (*_SHOW_COLUMNS, "ordered"),
            "ON CONFLICT (app, user_id, room, show) DO UPDATE SET ordered = 1"
            " WHERE loyalty_user_shows.ordered = 0 RETURNING app, user_id",
            ordered,
        ):
            new_order_shows[(a, u)] = new_order_shows.get((a, u), 0) + 1
        # The points of the records' own rules first, so one profile upsert adds both.
        earned = await self._earn(tx, f.units)
        rows = []
        for au, d in users.items():
            counts = d.interactions
            rows.append(
                (
                    *au,
                    d.records,
                    d.first_seen,
                    d.last_seen,
                    new_shows.get(au, 0),
                    new_order_shows.get(au, 0),
                    d.watch_ms,
                    sum(counts.values()),
                    *[counts.get(k, 0) for k in _INTERACTION_KINDS],
                    d.orders,
                    d.gmv,
                    d.gift_value,
                    d.last_order,
                    earned.pop(au, 0),
                )
            )
        returned = await self._upsert(tx, _P, (*_PROFILE_COLUMNS, "points_earned"), _PROFILE_UPSERT, rows)
        # A viewer is new to the app when all its records so far are this batch's:
        # the sharer whose link brought them earns the share rule's points.
        shares: dict[tuple[str, str, int, str], int] = {}
        referrals: dict[tuple[str, str], int] = {}
        for a, u, records in returned:
            d = users[(a, u)]
            if records == d.records and d.ref is not None and USER_ID_RE.fullmatch(d.ref):
                assert d.first_seen is not None
                key = (a, d.ref, rules.day(d.first_seen), "share")
                shares[key] = shares.get(key, 0) + 1
                referrals[(a, d.ref)] = referrals.get((a, d.ref), 0) + 1
        earned.update(await self._earn(tx, shares))
        if earned or referrals:
            # Sharers: points and referrals from other users' records (rare: one statement).
            await self._upsert(
                tx,
                _P,
                ("app", "user_id", "points_earned", "referrals"),
                f"ON CONFLICT (app, user_id) DO UPDATE SET points_earned = {_P}.points_earned"
                f" + excluded.points_earned, referrals = {_P}.referrals + excluded.referrals RETURNING app",
                [
                    (a, u, earned.get((a, u), 0), referrals.get((a, u), 0))
                    for a, u in sorted(earned | referrals)
                ],
            )

    async def _earn(self, tx: Tx, units: dict[tuple[str, str, int, str], int]) -> dict[tuple[str, str], int]:
        """Add ``units`` to the ledger; the points they earned per user (capped per day)."""
        rules = self.rules
        if self._upsert_for is not rules:
            self._upsert_for, self._daily_sql = rules, daily_upsert(rules)
            self._points = [_points_of(rules, rule) for rule in rules_.RULES]
        points = self._points
        by_day: dict[tuple[str, str, int], list[int]] = {}
        for (a, u, day, rule), n in units.items():
            added = by_day.get((a, u, day))
            if added is None:
                added = by_day[(a, u, day)] = [0] * len(_RULE_INDEX)
            added[_RULE_INDEX[rule]] += n
        rows = [
            (*key, *added, *[p(n) if n else 0 for p, n in zip(points, added, strict=True)])
            for key, added in by_day.items()
        ]
        earned: dict[tuple[str, str], int] = {}
        for a, u, day, *totals in await self._upsert(tx, _D, _DAILY_COLUMNS, self._daily_sql, rows):
            added = by_day[(a, u, day)]
            delta = 0
            for p, total, n in zip(points, totals, added, strict=True):
                if n:
                    delta += p(total) - p(total - n)
            if delta:
                earned[(a, u)] = earned.get((a, u), 0) + delta
        return earned

    # -- reads -----------------------------------------------------------------------

    async def points_earned(self, app: str, user: str) -> int:
        """Lifetime points (what the computed tier is made of); 0 for an unknown user."""
        value = await self.db.fetchval(
            "SELECT points_earned FROM loyalty_profiles WHERE app = $1 AND user_id = $2", app, user
        )
        return int(value or 0)

    async def tier(self, app: str, user: str) -> int:
        return self.rules.tier(await self.points_earned(app, user))

    async def profile(self, app: str, user: str, now_ms: int) -> dict[str, Any] | None:
        row = await self.db.fetchrow(f"{_PROFILE_SELECT} WHERE app = $1 AND user_id = $2", app, user)
        return None if row is None else self._view(user, row, now_ms)

    def _view(self, user: str, row: Sequence[Any], now_ms: int) -> dict[str, Any]:
        (first_seen, last_seen, shows, order_shows, watch_ms, interactions, orders, gmv, gift_value) = row[:9]
        by_kind = dict(
            zip((c[2:] for c in INTERACTION_COLUMNS), row[9 : 9 + len(INTERACTION_COLUMNS)], strict=True)
        )
        last_order, referrals, earned, spent = row[9 + len(INTERACTION_COLUMNS) :]
        stats = Stats(
            first_seen, last_seen, shows, order_shows, watch_ms, interactions, orders, gmv, gift_value
        )
        return {
            "user": user,
            "shows_attended": shows,
            "watch_ms": watch_ms,
            "watch_minutes": watch_ms // 60_000,
            "interactions": {"total": interactions, **by_kind},
            "orders": orders,
            "order_shows": order_shows,
            "gmv_cents": gmv,
            "gift_value_cents": gift_value,
            "referrals": referrals,
            "points": earned - spent,
            "points_earned": earned,
            "points_spent": spent,
            "first_seen": first_seen,
            "last_seen": last_seen,
            "last_order": last_order,
            "tier": self.rules.tier(earned),
            "tags": rules_.tags(stats, now_ms),
            "rfm": rules_.rfm(stats, now_ms),
        }

    async def segment(
        self,
        app: str,
        *,
        now_ms: int,
        tag: str | None = None,
        min_tier: int = 0,
        not_seen_days: int | None = None,
        after: str = "",
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Profiles matching every filter given, in user id order after ``after``;
        the page and the last user id when there may be more."""
        where = ["app = $2", "user_id > $3"]
        args: list[Any] = [now_ms, app, after]
        if tag is not None:
            where.append(TAG_SQL[tag])
        if min_tier > 0:
            need = self.rules.min_points(min_tier)
            if need < 0:
                return [], None  # no configured tier that high: nobody is in it
            args.append(need)
            where.append(f"points_earned >= ${len(args)}")
        if not_seen_days is not None:
            args.append(now_ms - not_seen_days * DAY_MS)
            where.append(f"last_seen < ${len(args)}")
        args.append(limit)
        # $1 (now) is referenced by some tags only; a no-op term keeps its type known to PostgreSQL.
        sql = (
            f"SELECT user_id, {_PROFILE_SELECT[len('SELECT ') :]} WHERE {' AND '.join(where)}"
            f" AND CAST($1 AS BIGINT) >= 0 ORDER BY user_id LIMIT ${len(args)}"
        )
        rows = await self.db.fetch(sql, *args)
        page = [self._view(r[0], r[1:], now_ms) for r in rows]
        return page, (rows[-1][0] if len(rows) == limit else None)

    # -- rewards ---------------------------------------------------------------------

    async def put_reward(
        self, app: str, reward_id: str, title: str, cost: int, coupon: dict, now_ms: int
    ) -> dict:
        await self.db.execute(
            "INSERT INTO loyalty_rewards (app, id, title, cost, coupon, updated_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (app, id) DO UPDATE SET title = excluded.title, cost = excluded.cost,"
            " coupon = excluded.coupon, updated_at = excluded.updated_at",
            app,
            reward_id,
            title,
            cost,
            msgspec.json.encode(coupon).decode(),
            now_ms,
        )
        return {"id": reward_id, "title": title, "cost": cost, "coupon": coupon, "updated_at": now_ms}

    async def reward(self, app: str, reward_id: str) -> dict | None:
        row = await self.db.fetchrow(
            "SELECT id, title, cost, coupon, updated_at FROM loyalty_rewards WHERE app = $1 AND id = $2",
            app,
            reward_id,
        )
        return None if row is None else _reward_view(row)

    async def rewards(self, app: str) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT id, title, cost, coupon, updated_at FROM loyalty_rewards WHERE app = $1 ORDER BY id", app
        )
        return [_reward_view(r) for r in rows]

    async def delete_reward(self, app: str, reward_id: str) -> bool:
        return (
            await self.db.execute("DELETE FROM loyalty_rewards WHERE app = $1 AND id = $2", app, reward_id)
            > 0
        )

    # -- redemption ------------------------------------------------------------------

    async def redeem(self, app: str, user: str, reward_id: str, cid: str, now_ms: int) -> dict[str, Any]:
        """Spend the reward's cost for its coupon, once per ``cid`` (a retry answers
        the first result); ``limit_reached`` when the balance is short, nothing spent."""
        first = await self._redeemed(app, user, cid, reward_id)
        if first is not None:
            return first
        try:
            async with self.db.transaction() as tx:
                row = await tx.fetchrow(
                    "SELECT cost, coupon FROM loyalty_rewards WHERE app = $1 AND id = $2", app, reward_id
                )
                if row is None:
                    raise OpError("bad_request", f"no reward {reward_id!r} in the app's catalog")
                cost, coupon_json = int(row[0]), row[1]
                left = await tx.fetchval(
                    "UPDATE loyalty_profiles SET points_spent = points_spent + $3"
                    " WHERE app = $1 AND user_id = $2 AND points_earned - points_spent >= $3"
                    " RETURNING points_earned - points_spent",
                    app,
                    user,
                    cost,
                )
                if left is None:
                    # A concurrent request with this cid may have spent the points first.
                    if await tx.fetchval(
                        "SELECT 1 FROM loyalty_redemptions WHERE app = $1 AND user_id = $2 AND cid = $3",
                        app,
                        user,
                        cid,
                    ):
                        raise _SameCidRace
                    have = await tx.fetchval(
                        "SELECT points_earned - points_spent FROM loyalty_profiles WHERE app = $1 AND user_id = $2",
                        app,
                        user,
                    )
                    raise OpError(
                        "limit_reached", f"this reward costs {cost} points; you have {int(have or 0)}"
                    )
                coupon = msgspec.json.decode(coupon_json)
                claim_id = _claim_id(app, user, cid)
                stored = await tx.fetch(
                    "INSERT INTO loyalty_redemptions (app, user_id, cid, id, reward, cost, coupon, points_left, ts)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    " ON CONFLICT (app, user_id, cid) DO NOTHING RETURNING id",
                    app,
                    user,
                    cid,
                    claim_id,
                    reward_id,
                    cost,
                    str(coupon.get("id", reward_id)),
                    int(left),
                    now_ms,
                )
                if not stored:
                    raise _SameCidRace
        except _SameCidRace:
            first = await self._redeemed(app, user, cid, reward_id)
            assert first is not None, "a cid that conflicted is stored"
            return first
        return {
            "claim": {"id": claim_id, "coupon": str(coupon.get("id", reward_id))},
            "points_left": int(left),
        }

    async def _redeemed(self, app: str, user: str, cid: str, reward_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            "SELECT id, reward, coupon, points_left FROM loyalty_redemptions"
            " WHERE app = $1 AND user_id = $2 AND cid = $3",
            app,
            user,
            cid,
        )
        if row is None:
            return None
        if row[1] != reward_id:
            raise OpError("conflict", "this cid was already used to redeem another reward")
        return {"claim": {"id": row[0], "coupon": row[2]}, "points_left": int(row[3])}

    # -- the user's rights -----------------------------------------------------------

    async def export_user(self, app: str, user: str) -> dict[str, Any]:
        profile = await self.profile(app, user, 0)
        ledger = await self.db.fetch(
            f"SELECT day, {', '.join(_U)}, {', '.join(_PTS)} FROM {_D} WHERE app = $1 AND user_id = $2 ORDER BY day",
            app,
            user,
        )
        redemptions = await self.db.fetch(
            "SELECT id, cid, reward, cost, coupon, ts FROM loyalty_redemptions WHERE app = $1 AND user_id = $2"
            " ORDER BY ts, id",
            app,
            user,
        )
        shows = await self.db.fetch(
            "SELECT room, show, ordered FROM loyalty_user_shows WHERE app = $1 AND user_id = $2 ORDER BY room, show",
            app,
            user,
        )
        if profile is not None:
            del profile["tags"], profile["rfm"]  # computed against "now", not held
        return {
            "profile": profile,
            "points": [
                {"day": row[0], "rule": rule, "units": row[1 + i], "points": row[1 + len(_U) + i]}
                for row in ledger
                for i, rule in enumerate(rules_.RULES)
                if row[1 + i]
            ],
            "redemptions": [
                {"id": i, "cid": c, "reward": rw, "cost": cost, "coupon": cp, "ts": ts}
                for i, c, rw, cost, cp, ts in redemptions
            ],
            "shows": [{"room": r, "show": s, "ordered": bool(o)} for r, s, o in shows],
        }

    async def erase_user(self, tx: Tx, app: str, user: str) -> None:
        for table in (
            "loyalty_profiles",
            "loyalty_user_shows",
            "loyalty_points_daily",
            "loyalty_redemptions",
        ):
            await tx.execute(f"DELETE FROM {table} WHERE app = $1 AND user_id = $2", app, user)


def _reward_view(row: Sequence[Any]) -> dict[str, Any]:
    rid, title, cost, coupon, updated_at = row
    return {
        "id": rid,
        "title": title,
        "cost": cost,
        "coupon": msgspec.json.decode(coupon),
        "updated_at": updated_at,
    }


def _claim_id(app: str, user: str, cid: str) -> str:
    digest = hashlib.sha256(msgspec.json.encode([app, user, cid])).digest()
    return "pc_" + base64.b32encode(digest[:15]).decode().lower()
