"""Loyalty through a real server: the profile and segment REST routes (JSON, paging,
CSV), the reward catalog, points.redeem over the WebSocket, and the tier perks the
room enforces — a sale's early access, member-only coupons, lotteries' min_tier —
with the tier from the token or computed from the store's points."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from roomserver.appkeys import STORE_KEY
from roomserver.client import RoomClient, RoomError
from roomserver.core.behaviour import BehaviourEvent
from roomserver.protocol import now_ms
from tests.analytics.test_loyalty_store import _scripted_shows
from tests.server_fixtures import APP, Server, new_room_id, start_server, token

PRODUCT = {"id": "p-1", "title": "Tea set", "price_cents": 2500}


@pytest.fixture(params=["sqlite", "pg"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    extra = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "pg" else {}
    srv = await start_server(**extra)
    yield srv
    await srv.close()


@pytest.fixture(params=["memory+sqlite", "redis+pg"])
async def perks_server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The perks on the embedded server, and on a Redis bus (the stock's Lua opens the
    sale early) with the PostgreSQL store."""
    extra: dict[str, Any] = {}
    if request.param == "redis+pg":
        redis = request.getfixturevalue("redis_single")
        extra = {
            "redis_url": redis.url,
            "redis_prefix": request.getfixturevalue("unique_prefix"),
            "database_url": request.getfixturevalue("postgres_url"),
        }
    srv = await start_server(**extra)
    yield srv
    await srv.close()


async def ingest(server: Server, events: list[BehaviourEvent]) -> None:
    await server.app[STORE_KEY].events.ingest(events)


async def give_points(server: Server, user: str, points: int) -> None:
    """``points`` through one order (1 point a yuan under the default rules)."""
    e = BehaviourEvent(
        f"fund-{user}-{points}", APP, "shop", 1, user, "order", now_ms(), 0, {"amount": points * 100}
    )
    await ingest(server, [e])


async def error_of(coro: Any) -> RoomError:
    try:
        await coro
    except RoomError as err:
        return err
    raise AssertionError("the op succeeded")


def app_events(batches: list[list[BehaviourEvent]]) -> list[list[BehaviourEvent]]:
    """The scripted shows under the test server's app."""
    import msgspec

    return [[msgspec.structs.replace(e, app=APP) for e in b] for b in batches]


async def test_profile_and_segments_over_rest(server: Server) -> None:
    batches, _, _ = _scripted_shows()
    for batch in app_events(batches):
        await ingest(server, batch)
    # the same user id in another app is another user
    await ingest(server, [BehaviourEvent("o-1", "other", "r", 1, "dave", "join", now_ms(), 0, {})])
    status, body = await server.admin("GET", "/v1/users/alice/profile")
    assert status == 200
    p = body["profile"]
    assert (p["shows_attended"], p["watch_minutes"], p["orders"], p["gmv_cents"], p["points"], p["tier"]) == (
        2,
        75,
        2,
        17_000,
        276,
        1,
    )
    assert set(p["tags"]) >= {"buyer", "repeat buyer", "gifter"}
    for path, code in (
        ("/v1/users/dave/profile", 404),  # another app's user
        ("/v1/users/nobody/profile", 404),
        ("/v1/users/bad%20id/profile", 400),
    ):
        status, body = await server.admin("GET", path)
        assert (status, body["error"]["code"]) == (code, {404: "not_found", 400: "bad_request"}[code]), path
    status, _ = await server.rest("GET", "/v1/users/alice/profile", token("alice"))
    assert status == 403  # an admin token of the app is required

    # segments: complete and ordered a page at a time
    users, cursor = [], None
    while True:
        q = "/v1/users?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body = await server.admin("GET", q)
        assert status == 200, body
        users += [u["user"] for u in body["users"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert users == ["alice", "bob", "carol"]
    status, body = await server.admin("GET", "/v1/users?tag=lurker")
    assert [u["user"] for u in body["users"]] == ["bob"]
    status, body = await server.admin("GET", "/v1/users?min_tier=1")
    assert [u["user"] for u in body["users"]] == ["alice"]
    status, body = await server.admin("GET", "/v1/users?not_seen_days=0")
    assert [u["user"] for u in body["users"]] == ["alice", "bob", "carol"]
    # bad input: a clear 400
    _, first = await server.admin("GET", "/v1/users?limit=1")
    for q in (
        "cursor=garbage!",
        "cursor=" + first["next"] + "&tag=buyer",  # another query's cursor
        "tag=vip",
        "min_tier=11",
        "not_seen_days=-1",
        "limit=0",
        "format=xml",
    ):
        status, body = await server.admin("GET", "/v1/users?" + q)
        assert (status, body["error"]["code"]) == (400, "bad_request"), q

    # CSV: the whole segment, with a byte-order mark for spreadsheets
    status, text = await server.admin("GET", "/v1/users?format=csv")
    assert status == 200 and text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    assert [r["user"] for r in rows] == ["alice", "bob", "carol"]
    assert (
        rows[0]["gmv_cents"] == "17000" and rows[0]["points"] == "276" and "repeat buyer" in rows[0]["tags"]
    )


async def test_reward_catalog_and_redeem_over_the_websocket(server: Server) -> None:
    body = {"title": "10 off", "cost": 100, "coupon": {"id": "TEN-OFF", "discount_cents": 1000}}
    status, put = await server.admin("PUT", "/v1/rewards/ten", body)
    assert status == 200 and put["reward"]["cost"] == 100
    status, got = await server.admin("GET", "/v1/rewards/ten")
    assert status == 200 and got["reward"]["coupon"] == {"id": "TEN-OFF", "discount_cents": 1000}
    for bad in ({**body, "cost": 0}, {**body, "coupon": {}}, {**body, "extra": 1}, {"title": "x"}):
        status, err = await server.admin("PUT", "/v1/rewards/ten", bad)
        assert (status, err["error"]["code"]) == (400, "bad_request"), bad
    status, err = await server.rest("PUT", "/v1/rewards/ten", token("u1"), body)
    assert status == 403
    await server.admin("PUT", "/v1/rewards/gone", {**body, "coupon": {"id": "G"}})
    status, _ = await server.admin("DELETE", "/v1/rewards/gone")
    assert status == 200
    assert (await server.admin("GET", "/v1/rewards/gone"))[0] == 404
    assert (await server.admin("DELETE", "/v1/rewards/gone"))[0] == 404
    _, listing = await server.admin("GET", "/v1/rewards")
    assert [r["id"] for r in listing["rewards"]] == ["ten"]

    await give_points(server, "u1", 250)
    u1 = await server.client("u1")
    first = await u1.points_redeem("ten", cid="r-1")
    assert first["points_left"] == 150 and first["claim"]["coupon"] == "TEN-OFF"
    assert await u1.points_redeem("ten", cid="r-1") == first  # a retry
    assert (await u1.points_redeem("ten", cid="r-2"))["points_left"] == 50
    for (reward, cid), code in (
        (("ten", "r-3"), "limit_reached"),
        (("nope", "r-4"), "bad_request"),
        (("gone", "r-5"), "bad_request"),
        (("ten", ""), "bad_request"),
    ):
        assert (await error_of(u1.ops.points_redeem(reward=reward, cid=cid))).code == code
    _, profile = await server.admin("GET", "/v1/users/u1/profile")
    assert (profile["profile"]["points"], profile["profile"]["points_spent"]) == (50, 200)


async def _room(server: Server) -> tuple[str, RoomClient]:
    room = new_room_id()
    host = await server.client("host-1", "host")
    await host.join(room)
    await host.start(room, "Show")
    return room, host


async def _viewer(server: Server, room: str, user: str, tier: int = 0) -> RoomClient:
    client = await server.client(user, token_kwargs={"tier": tier} if tier else None)
    await client.join(room)
    return client


async def test_early_sale_access_for_members(perks_server: Server) -> None:
    server = perks_server
    room, host = await _room(server)
    await give_points(server, "earned", 600)  # computed tier 2 (500 points)
    await give_points(server, "little", 150)  # computed tier 1
    by_token = await _viewer(server, room, "by-token", tier=2)
    earned = await _viewer(server, room, "earned")
    little = await _viewer(server, room, "little")
    other = await _viewer(server, room, "other")
    starts_at = now_ms() + 2_000
    sale = (
        await host.sale_create(
            room,
            product=PRODUCT,
            price_cents=2500,
            stock=10,
            limit_per_user=1,
            starts_at=starts_at,
            early_min_tier=2,
            early_ms=2_000,
        )
    )["sale"]
    assert (sale["state"], sale["early_min_tier"], sale["early_ms"]) == ("scheduled", 2, 2_000)
    # members (by the token's tier, or by points) buy before the start; the others wait
    assert (await by_token.sale_buy(room, sale["id"], 1, cid="a"))["order"]["user"] == "by-token"
    assert (await earned.sale_buy(room, sale["id"], 1, cid="b"))["order"]["user"] == "earned"
    for client in (little, other):
        err = await error_of(client.sale_buy(room, sale["id"], 1, cid="c"))
        assert err.code == "not_open" and err.retry_after_ms is not None and 0 < err.retry_after_ms <= 2_000
    assert now_ms() < starts_at, "the members' buys should have happened before the start"
    # from starts_at everyone may buy (awaited with a bounded poll)
    deadline = time.monotonic() + 10
    while True:
        try:
            order = await other.sale_buy(room, sale["id"], 1, cid="d")
            break
        except RoomError as early:
            assert early.code == "not_open" and time.monotonic() < deadline
            await asyncio.sleep(min(early.retry_after_ms or 50, 200) / 1000)
    assert order["order"]["user"] == "other" and now_ms() >= starts_at
    # bad input: half of the pair, a tier out of range
    for params in ({"early_min_tier": 2}, {"early_ms": 1000}, {"early_min_tier": 11, "early_ms": 1000}):
        err = await error_of(
            host.sale_create(room, product=PRODUCT, price_cents=1, stock=1, limit_per_user=1, **params)
        )
        assert err.code == "bad_request", params


async def test_member_only_coupon_and_lottery_take_the_computed_tier(perks_server: Server) -> None:
    server = perks_server
    room, host = await _room(server)
    await give_points(server, "earned", 2_000)  # computed tier 3
    earned = await _viewer(server, room, "earned")
    by_token = await _viewer(server, room, "by-token", tier=3)
    plain = await _viewer(server, room, "plain", tier=1)
    coupon = (
        await host.coupon_issue(
            room, title="VIP", discount_cents=500, min_spend_cents=0, quantity=10, per_user=1, min_tier=3
        )
    )["coupon"]
    assert (await earned.coupon_claim(room, coupon["id"]))["claim"]["coupon"] == coupon["id"]
    assert (await by_token.coupon_claim(room, coupon["id"]))["claim"]["coupon"] == coupon["id"]
    assert (await error_of(plain.coupon_claim(room, coupon["id"]))).code == "forbidden"
    err = await error_of(
        host.coupon_issue(
            room, title="X", discount_cents=5, min_spend_cents=0, quantity=1, per_user=1, min_tier=11
        )
    )
    assert err.code == "bad_request"
    lottery = (await host.lottery_create(room, prize="Tea", winners=1, duration_ms=60_000, min_tier=3))[
        "lottery"
    ]
    assert (await earned.lottery_enter(room, lottery["id"]))["entered"] is True
    assert (await by_token.lottery_enter(room, lottery["id"]))["entered"] is True
    assert (await error_of(plain.lottery_enter(room, lottery["id"]))).code == "forbidden"
