"""Loyalty REST routes (issue 12, PROTOCOL §5): profiles, segments, the reward catalog.

Admin token of the app; everything is scoped to the token's app, so another app's
user (or reward) is simply unknown (404). Registered with the main route table
(``roomserver.api.add_routes``), so ``/v1/openapi.json`` describes them.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
from typing import Annotated, Any, Final

import msgspec
from aiohttp import web

from roomserver.api.routes import Query, Route, _json, _page_limit, _page_limit_query, endpoint
from roomserver.appkeys import STORE_KEY
from roomserver.auth import USER_ID_RE, Identity
from roomserver.contract import wire_loyalty as wl
from roomserver.core import loyalty as rules
from roomserver.protocol import OpError, now_ms
from roomserver.store.loyalty import LoyaltyStore

CSV_COLUMNS: Final = (
    "user",
    "tier",
    "points",
    "points_earned",
    "shows_attended",
    "watch_minutes",
    "interactions",
    "orders",
    "gmv_cents",
    "gift_value_cents",
    "referrals",
    "first_seen",
    "last_seen",
    "last_order",
    "tags",
    "rfm",
)
CSV_PAGE: Final = 1000
MAX_NOT_SEEN_DAYS: Final = 36_600


def _store(request: web.Request) -> LoyaltyStore:
    store = request.app.get(STORE_KEY)
    if store is None:
        raise OpError(
            "not_found", "profiles and points need the analytics store (this server runs --no-analytics)"
        )
    return store.loyalty


def _user(request: web.Request) -> str:
    user = request.match_info["user"]
    if not USER_ID_RE.fullmatch(user):
        raise OpError("bad_request", "a user id is 1..64 characters of [A-Za-z0-9_.:@-]")
    return user


@endpoint("admin")
async def get_profile(request: web.Request, identity: Identity) -> web.Response:
    user = _user(request)
    profile = await _store(request).profile(identity.app, user, now_ms())
    if profile is None:
        raise OpError("not_found", f"no user {user!r} in this app's store")
    return _json({"profile": profile})


# -- segments ------------------------------------------------------------------------


class _Filters(msgspec.Struct, frozen=True, array_like=True):
    tag: str | None
    min_tier: int
    not_seen_days: int | None


class _Cursor(msgspec.Struct, frozen=True, array_like=True):
    after: str
    filters: str  # a digest of the filters: a cursor belongs to its own query


def _filters(request: web.Request) -> _Filters:
    q = request.query
    tag = q.get("tag") or None
    if tag is not None and tag not in rules.TAGS:
        raise OpError("bad_request", f"tag must be one of: {', '.join(rules.TAGS)}")
    min_tier = _int_query(q.get("min_tier", "0"), "min_tier", 0, rules.MAX_TIER)
    raw_days = q.get("not_seen_days")
    days = _int_query(raw_days, "not_seen_days", 0, MAX_NOT_SEEN_DAYS) if raw_days else None
    return _Filters(tag, min_tier, days)


def _int_query(raw: str, name: str, low: int, high: int) -> int:
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise OpError("bad_request", f"{name} must be an integer {low}..{high}")
    return int(raw)


def _digest(app: str, f: _Filters) -> str:
    return hashlib.sha256(msgspec.json.encode([app, f])).hexdigest()[:16]


def encode_cursor(app: str, f: _Filters, after: str) -> str:
    raw = msgspec.json.encode(_Cursor(after, _digest(app, f)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(app: str, f: _Filters, text: str) -> str:
    """The user id a cursor continues after; ``bad_request`` for a cursor that is not
    one of this query's ``next`` values (garbled, or from other filters or another app)."""
    if not text:
        return ""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise OpError("bad_request", "cursor must be the `next` of a previous page") from None
    if cursor.filters != _digest(app, f) or not USER_ID_RE.fullmatch(cursor.after):
        raise OpError("bad_request", "this cursor belongs to another query (tag, min_tier, not_seen_days)")
    return cursor.after


@endpoint("admin")
async def list_users(request: web.Request, identity: Identity) -> web.StreamResponse:
    """A segment: the app's users matching every filter given, in user id order."""
    store, f = _store(request), _filters(request)
    after = _decode_cursor(identity.app, f, request.query.get("cursor", ""))
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise OpError("bad_request", "format must be json or csv")
    now = now_ms()
    if fmt == "csv":
        return await _csv(request, store, identity.app, f, after, now)
    limit = _page_limit(request)
    users, last = await store.segment(
        identity.app,
        now_ms=now,
        tag=f.tag,
        min_tier=f.min_tier,
        not_seen_days=f.not_seen_days,
        after=after,
        limit=limit,
    )
    return _json({"users": users, "next": encode_cursor(identity.app, f, last) if last else None})


def _csv_row(p: dict[str, Any]) -> list[Any]:
    row = {**p, "interactions": p["interactions"]["total"], "tags": ";".join(p["tags"])}
    row["rfm"] = "{r}{f}{m}".format(**p["rfm"])
    return ["" if row[c] is None else row[c] for c in CSV_COLUMNS]


async def _csv(
    request: web.Request, store: LoyaltyStore, app: str, f: _Filters, after: str, now: int
) -> web.StreamResponse:
    """The whole segment (from ``cursor`` on), streamed a page at a time. UTF-8 with a
    byte-order mark, so spreadsheet programs read Chinese names right."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="users.csv"',
        }
    )
    await response.prepare(request)
    buf = io.StringIO()
    buf.write("\ufeff")
    csv.writer(buf).writerow(CSV_COLUMNS)
    while True:
        users, last = await store.segment(
            app,
            now_ms=now,
            tag=f.tag,
            min_tier=f.min_tier,
            not_seen_days=f.not_seen_days,
            after=after,
            limit=CSV_PAGE,
        )
        writer = csv.writer(buf)
        for p in users:
            writer.writerow(_csv_row(p))
        await response.write(buf.getvalue().encode())
        buf = io.StringIO()
        if last is None:
            break
        after = last
    await response.write_eof()
    return response


# -- the reward catalog ------------------------------------------------------------------

RewardId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class RewardCouponBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: RewardId
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=50)] | None = None
    discount_cents: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    min_spend_cents: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None


class RewardBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/rewards/{reward}``: what a redemption costs and the coupon it grants."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    cost: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
    coupon: RewardCouponBody


def _reward_id(request: web.Request) -> str:
    rid = request.match_info["reward"]
    if not USER_ID_RE.fullmatch(rid):
        raise OpError("bad_request", "a reward id is 1..64 characters of [A-Za-z0-9_.:@-]")
    return rid


@endpoint("admin", RewardBody)
async def put_reward(request: web.Request, identity: Identity, body: RewardBody) -> web.Response:
    coupon = msgspec.to_builtins(body.coupon)
    reward = await _store(request).put_reward(
        identity.app, _reward_id(request), body.title.strip(), body.cost, coupon, now_ms()
    )
    return _json({"reward": reward})


@endpoint("admin")
async def get_reward(request: web.Request, identity: Identity) -> web.Response:
    rid = _reward_id(request)
    reward = await _store(request).reward(identity.app, rid)
    if reward is None:
        raise OpError("not_found", f"no reward {rid!r} in the app's catalog")
    return _json({"reward": reward})


@endpoint("admin")
async def list_rewards(request: web.Request, identity: Identity) -> web.Response:
    return _json({"rewards": await _store(request).rewards(identity.app)})


@endpoint("admin")
async def delete_reward(request: web.Request, identity: Identity) -> web.Response:
    """Past redemptions keep the coupon they granted."""
    rid = _reward_id(request)
    if not await _store(request).delete_reward(identity.app, rid):
        raise OpError("not_found", f"no reward {rid!r} in the app's catalog")
    return _json({"deleted": rid})


_SEGMENT_QUERY: tuple[Query, ...] = (
    ("tag", "only users with this tag", {"type": "string", "enum": list(rules.TAGS)}),
    (
        "min_tier",
        "only users whose computed member tier is at least this",
        {"type": "integer", "minimum": 0, "maximum": rules.MAX_TIER},
    ),
    (
        "not_seen_days",
        "only users not seen for at least this many days",
        {"type": "integer", "minimum": 0, "maximum": MAX_NOT_SEEN_DAYS},
    ),
    (
        "cursor",
        "`next` of the previous page (opaque; one of another query is a bad request)",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
    ),
    (
        "format",
        "json (a page) or csv (the whole segment from `cursor` on, streamed)",
        {"type": "string", "enum": ["json", "csv"], "default": "json"},
    ),
    _page_limit_query(100),
)

ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/users/{user}/profile",
        get_profile,
        "A user's profile across shows: watch time, interactions, orders, GMV, points, tier, tags, RFM",
        "admin",
        errors=(400, 404),
        bus=False,
        reply=wl.ProfileReply,
    ),
    Route(
        "GET",
        "/v1/users",
        list_users,
        "A segment of the app's users (tag, min_tier, not_seen_days), in user id order, paged; CSV export",
        "admin",
        query=_SEGMENT_QUERY,
        bus=False,
        reply=wl.UserPage,
        other_content=("text/csv",),
    ),
    Route(
        "GET",
        "/v1/rewards",
        list_rewards,
        "The app's reward catalog",
        "admin",
        bus=False,
        reply=wl.RewardList,
    ),
    Route(
        "PUT",
        "/v1/rewards/{reward}",
        put_reward,
        "Create or replace a reward: its points cost and the coupon a redemption grants",
        "admin",
        RewardBody,
        errors=(400,),
        bus=False,
        reply=wl.RewardReply,
    ),
    Route(
        "GET",
        "/v1/rewards/{reward}",
        get_reward,
        "A reward of the app's catalog",
        "admin",
        errors=(400, 404),
        bus=False,
        reply=wl.RewardReply,
    ),
    Route(
        "DELETE",
        "/v1/rewards/{reward}",
        delete_reward,
        "Remove a reward from the catalog (past redemptions keep their coupon)",
        "admin",
        errors=(400, 404),
        bus=False,
        reply=wl.RewardDeleted,
    ),
]
