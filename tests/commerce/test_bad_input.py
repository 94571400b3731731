"""Bad input to every commerce op (PROTOCOL §2 "Errors"): wrong types, ranges,
unknown ids, wrong roles, not joined, too early, too late, twice, beyond the
limits. Each gets its exact error code and a human message, and changes
nothing: the room document and its history, every stock, order list, claim
list, entrant set and red packet stay as they were, no event goes out, and
the socket keeps working."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest

from roomserver.handlers.commerce import coupon_key, entries_key, packet_key, sale_key
from roomserver.tenancy import room_key
from tests.server_fixtures import APP, RawWS, Server, new_room_id, token

PRODUCT = {"id": "p-1", "title": "Tea set", "price_cents": 1200}
SALE = {"product": PRODUCT, "price_cents": 1200, "stock": 3, "limit_per_user": 1}
FORBIDDEN = ("forbidden", "only the host or a moderator may do this")
HOUR_MS = 3_600_000


@dataclass
class Fixture:
    """What the room holds before the bad input starts."""

    sale: str  # open, stock 3, limit 1: ann bought 1 (cid "a-1")
    sold_out: str  # stock 1, bob bought it
    scheduled: str  # starts in an hour
    ended: str  # ran for 1 s
    other_room_sale: str  # a sale of another room
    drawn: str  # a lottery already drawn (ann entered)
    lottery: str  # open, min_watch_s 3600 (nobody may enter)
    coupon: str  # quantity 2, per_user 1: ann and bob claimed it
    open_coupon: str  # quantity 5, per_user 1: ann claimed it
    packet: str  # 2 shares: ann and bob grabbed them
    open_packet: str  # 3 shares: ann grabbed one
    ann_amount: int  # what ann got from open_packet
    ann_order: dict[str, Any]


async def ok(ws: RawWS, op: str, room: str, **params: Any) -> dict[str, Any]:
    reply = await ws.request(f"{op}-{time.monotonic_ns()}", op, room, **params)
    assert reply["ok"], (op, params, reply)
    return reply["data"]


async def setup(server: Server, room: str, host: RawWS, ann: RawWS, bob: RawWS) -> Fixture:
    sale = (await ok(host, "sale.create", room, **SALE))["sale"]["id"]
    ann_order = (await ok(ann, "sale.buy", room, sale=sale, qty=1, cid="a-1"))["order"]
    sold_out = (await ok(host, "sale.create", room, **{**SALE, "stock": 1}))["sale"]["id"]
    await ok(bob, "sale.buy", room, sale=sold_out, qty=1, cid="b-1")
    scheduled = (await ok(host, "sale.create", room, **SALE, starts_at=int(time.time() * 1000) + HOUR_MS))[
        "sale"
    ]["id"]
    ended = (await ok(host, "sale.create", room, **SALE, duration_ms=1000))["sale"]["id"]

    other = new_room_id()
    other_host = await server.raw(token("host-2", "host"))
    await ok(other_host, "room.join", other)
    other_room_sale = (await ok(other_host, "sale.create", other, **SALE))["sale"]["id"]

    drawn = (await ok(host, "lottery.create", room, prize="Mug", winners=1, duration_ms=60_000))["lottery"][
        "id"
    ]
    await ok(ann, "lottery.enter", room, lottery=drawn)
    await ok(host, "lottery.draw", room, lottery=drawn)
    lottery = (
        await ok(host, "lottery.create", room, prize="Cup", winners=1, duration_ms=60_000, min_watch_s=3600)
    )["lottery"]["id"]

    coupon = (await ok(host, "coupon.issue", room, title="1 off", discount_cents=100, quantity=2))["coupon"][
        "id"
    ]
    await ok(ann, "coupon.claim", room, coupon=coupon)
    await ok(bob, "coupon.claim", room, coupon=coupon)
    open_coupon = (await ok(host, "coupon.issue", room, title="2 off", discount_cents=200, quantity=5))[
        "coupon"
    ]["id"]
    await ok(ann, "coupon.claim", room, coupon=open_coupon)

    packet = (await ok(host, "redpacket.send", room, total_cents=10, count=2))["packet"]["id"]
    await ok(ann, "redpacket.grab", room, packet=packet)
    await ok(bob, "redpacket.grab", room, packet=packet)
    open_packet = (await ok(host, "redpacket.send", room, total_cents=30, count=3))["packet"]["id"]
    ann_amount = (await ok(ann, "redpacket.grab", room, packet=open_packet))["amount_cents"]

    # The 1 s sale ends and the server's deadline loop records it (a document
    # change: it must happen before the "nothing changed" baseline).
    deadline = time.monotonic() + 10
    while True:
        status, listing = await server.admin("GET", f"/v1/rooms/{room}/sales/{ended}/orders")
        assert status == 200, listing
        if listing["sale"].get("reason") == "ended":
            break
        assert time.monotonic() < deadline, listing
        await asyncio.sleep(0.1)
    return Fixture(
        sale,
        sold_out,
        scheduled,
        ended,
        other_room_sale,
        drawn,
        lottery,
        coupon,
        open_coupon,
        packet,
        open_packet,
        ann_amount,
        ann_order,
    )


async def room_state(server: Server, room: str, fx: Fixture) -> dict[str, Any]:
    """Everything a bad op could have changed (read from the bus and the REST API)."""
    bus = server.node.broker
    rest_room, room = room, room_key(APP, room)  # the bus knows the app's room by its key
    rec = await bus.load(room)
    state: dict[str, Any] = {"doc": (rec.version, rec.doc), "seq": rec.seq, "epoch": rec.epoch}
    for s in (fx.sale, fx.sold_out, fx.scheduled, fx.ended):
        status, listing = await server.admin("GET", f"/v1/rooms/{rest_room}/sales/{s}/orders")
        assert status == 200 and listing["problems"] == []
        state[f"sale {s}"] = (
            await bus.stock_state(room, sale_key(s)),
            await bus.stock_records(room, sale_key(s)),
            listing["orders"],
            listing["sold"],
        )
    for lot in (fx.drawn, fx.lottery):
        status, audit = await server.admin("GET", f"/v1/rooms/{rest_room}/lotteries/{lot}")
        assert status == 200
        state[f"lottery {lot}"] = (audit, sorted(await bus.tally_members(room, entries_key(lot))))
    for c in (fx.coupon, fx.open_coupon):
        state[f"coupon {c}"] = (
            await bus.stock_state(room, coupon_key(c)),
            await bus.stock_records(room, coupon_key(c)),
        )
    for p in (fx.packet, fx.open_packet):
        state[f"packet {p}"] = await bus.shares_grabs(room, packet_key(p))
    return state


def cases(room: str, fx: Fixture) -> list[tuple[str, str, dict[str, Any], str, str]]:
    """(who, op, params, code, message); a message starting with "re:" is a regex."""
    s, lot, cp, pk = fx.sale, fx.lottery, fx.open_coupon, fx.open_packet
    buy = {"sale": s, "qty": 1, "cid": "new-cid"}
    return [
        # -- wrong role / not joined -------------------------------------------------
        ("ann", "sale.create", SALE, *FORBIDDEN),
        ("ann", "lottery.create", {"prize": "x", "winners": 1, "duration_ms": 5000}, *FORBIDDEN),
        ("ann", "lottery.draw", {"lottery": lot}, *FORBIDDEN),
        ("ann", "coupon.issue", {"title": "x", "discount_cents": 1, "quantity": 1}, *FORBIDDEN),
        ("ann", "redpacket.send", {"total_cents": 10, "count": 1}, *FORBIDDEN),
        ("outsider", "sale.buy", buy, "not_joined", f"join room {room} first"),
        ("outsider", "lottery.enter", {"lottery": lot}, "not_joined", f"join room {room} first"),
        ("outsider", "coupon.claim", {"coupon": cp}, "not_joined", f"join room {room} first"),
        ("outsider", "redpacket.grab", {"packet": pk}, "not_joined", f"join room {room} first"),
        ("host2", "sale.create", SALE, "not_joined", f"join room {room} first"),
        # -- sale.create: types and ranges --------------------------------------------
        ("host", "sale.create", {**SALE, "stock": 0}, "bad_request", "stock must be between 1 and 10000000"),
        ("host", "sale.create", {**SALE, "stock": -5}, "bad_request", "stock must be between 1 and 10000000"),
        (
            "host",
            "sale.create",
            {**SALE, "stock": 10**7 + 1},
            "bad_request",
            "stock must be between 1 and 10000000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "stock": 2**80},
            "bad_request",
            "stock must be between 1 and 10000000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "stock": "3"},
            "bad_request",
            "Expected `int`, got `str` - at `$.stock`",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "stock": 3.0},
            "bad_request",
            "Expected `int`, got `float` - at `$.stock`",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "price_cents": -1},
            "bad_request",
            "price_cents must be between 0 and 100000000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "price_cents": 10**12},
            "bad_request",
            "price_cents must be between 0 and 100000000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "price_cents": True},
            "bad_request",
            "Expected `int`, got `bool` - at `$.price_cents`",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "limit_per_user": 0},
            "bad_request",
            "limit_per_user must be between 1 and 10000000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "duration_ms": 999},
            "bad_request",
            "duration_ms must be between 1000 and 86400000",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "starts_at": -1},
            "bad_request",
            "starts_at must be a unix time in milliseconds",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "starts_at": int(time.time() * 1000) + 2 * 86_400_000},
            "bad_request",
            "starts_at must be within 24 h from now",
        ),
        (
            "host",
            "sale.create",
            {k: v for k, v in SALE.items() if k != "product"},
            "bad_request",
            "Object missing required field `product`",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "product": {**PRODUCT, "price_cents": -1}},
            "bad_request",
            "product.price_cents must be between 0 and 100000000 - at `$.product`",
        ),
        (
            "host",
            "sale.create",
            {**SALE, "product": {**PRODUCT, "title": " "}},
            "bad_request",
            "product.title must be 1 to 100 characters - at `$.product`",
        ),
        # -- sale.buy -----------------------------------------------------------------
        ("ann", "sale.buy", {**buy, "qty": 0}, "bad_request", "qty must be between 1 and 10000000"),
        ("ann", "sale.buy", {**buy, "qty": -1}, "bad_request", "qty must be between 1 and 10000000"),
        ("ann", "sale.buy", {**buy, "qty": 2**64}, "bad_request", "qty must be between 1 and 10000000"),
        ("ann", "sale.buy", {**buy, "qty": None}, "bad_request", "Expected `int`, got `null` - at `$.qty`"),
        ("ann", "sale.buy", {**buy, "qty": "1"}, "bad_request", "Expected `int`, got `str` - at `$.qty`"),
        ("ann", "sale.buy", {"sale": s, "qty": 1}, "bad_request", "Object missing required field `cid`"),
        ("ann", "sale.buy", {**buy, "cid": ""}, "bad_request", "cid must be 1 to 64 characters"),
        ("ann", "sale.buy", {**buy, "cid": "c" * 65}, "bad_request", "cid must be 1 to 64 characters"),
        (
            "ann",
            "sale.buy",
            {**buy, "sale": ""},
            "bad_request",
            "sale must be a sale id (1 to 64 characters)",
        ),
        ("ann", "sale.buy", {**buy, "sale": "s-nope"}, "not_found", "no sale s-nope in this room"),
        (
            "ann",
            "sale.buy",
            {**buy, "sale": fx.other_room_sale},
            "not_found",
            f"no sale {fx.other_room_sale} in this room",
        ),
        ("ann", "sale.buy", {**buy, "sale": fx.scheduled}, "not_open", "this sale has not started yet"),
        ("ann", "sale.buy", {**buy, "sale": fx.ended}, "not_open", "this sale has ended"),
        ("ann", "sale.buy", {**buy, "sale": fx.sold_out}, "sold_out", "sold out"),
        # ann already holds 1 of a limit of 1; qty beyond the limit and the stock too
        ("ann", "sale.buy", buy, "limit_reached", "at most 1 per user"),
        ("ann", "sale.buy", {**buy, "qty": 10**7}, "limit_reached", "at most 1 per user"),
        ("bob", "sale.buy", {**buy, "qty": 2}, "limit_reached", "at most 1 per user"),
        # ann's cid of her order, with another qty or for another sale
        (
            "ann",
            "sale.buy",
            {**buy, "cid": "a-1", "qty": 2},
            "conflict",
            "this cid was already used for another order",
        ),
        (
            "ann",
            "sale.buy",
            {**buy, "cid": "a-1", "sale": fx.sold_out},
            "conflict",
            "this cid was already used for another order",
        ),
        # -- lotteries ----------------------------------------------------------------
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 1, "duration_ms": 5000},
            "conflict",
            "a lottery is already open; draw it first",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 0, "duration_ms": 5000},
            "bad_request",
            "winners must be between 1 and 10000",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 10**9, "duration_ms": 5000},
            "bad_request",
            "winners must be between 1 and 10000",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "", "winners": 1, "duration_ms": 5000},
            "bad_request",
            "prize must be 1 to 100 characters",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 1, "duration_ms": -1},
            "bad_request",
            "duration_ms must be between 1000 and 86400000",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 1, "duration_ms": 5000, "min_tier": 11},
            "bad_request",
            "min_tier must be between 0 and 10",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 1, "duration_ms": 5000, "min_watch_s": -1},
            "bad_request",
            "min_watch_s must be between 0 and 86400",
        ),
        (
            "host",
            "lottery.create",
            {"prize": "x", "winners": 1, "duration_ms": 5000, "keyword": "k" * 21},
            "bad_request",
            "keyword must be at most 20 characters",
        ),
        ("ann", "lottery.enter", {"lottery": "l-nope"}, "not_found", "no lottery l-nope in this room"),
        (
            "ann",
            "lottery.enter",
            {"lottery": ""},
            "bad_request",
            "lottery must be a lottery id (1 to 64 characters)",
        ),
        ("ann", "lottery.enter", {}, "bad_request", "Object missing required field `lottery`"),
        (
            "ann",
            "lottery.enter",
            {"lottery": lot},
            "forbidden",
            r"re:watch at least 3600 s to enter \(you have \d+ s\)",
        ),
        (
            "tier0",
            "lottery.enter",
            {"lottery": lot},
            "forbidden",
            r"re:watch at least 3600 s to enter \(you have \d+ s\)",
        ),
        (
            "ann",
            "lottery.enter",
            {"lottery": fx.drawn},
            "not_open",
            "this lottery is no longer open for entries",
        ),
        (
            "bob",
            "lottery.enter",
            {"lottery": fx.drawn},
            "not_open",
            "this lottery is no longer open for entries",
        ),
        ("host", "lottery.draw", {"lottery": fx.drawn}, "not_open", "this lottery has already been drawn"),
        ("host", "lottery.draw", {"lottery": "l-nope"}, "not_found", "no lottery l-nope in this room"),
        # -- coupons ------------------------------------------------------------------
        (
            "host",
            "coupon.issue",
            {"title": "x", "discount_cents": 0, "quantity": 1},
            "bad_request",
            "discount_cents must be between 1 and 100000000",
        ),
        (
            "host",
            "coupon.issue",
            {"title": "x", "discount_cents": 10**12, "quantity": 1},
            "bad_request",
            "discount_cents must be between 1 and 100000000",
        ),
        (
            "host",
            "coupon.issue",
            {"title": "x", "discount_cents": 1, "quantity": -3},
            "bad_request",
            "quantity must be between 1 and 1000000",
        ),
        (
            "host",
            "coupon.issue",
            {"title": "x", "discount_cents": 1, "quantity": 1, "per_user": 0},
            "bad_request",
            "per_user must be between 1 and 1000000",
        ),
        (
            "host",
            "coupon.issue",
            {"title": "x", "discount_cents": 500, "quantity": 1, "min_spend_cents": 100},
            "bad_request",
            "discount_cents must not exceed min_spend_cents (or set min_spend_cents to 0)",
        ),
        (
            "host",
            "coupon.issue",
            {"title": "   ", "discount_cents": 1, "quantity": 1},
            "bad_request",
            "title must be 1 to 50 characters",
        ),
        ("ann", "coupon.claim", {"coupon": "c-nope"}, "not_found", "no coupon c-nope in this room"),
        ("ann", "coupon.claim", {"coupon": cp, "cid": ""}, "bad_request", "cid must be 1 to 64 characters"),
        (
            "ann",
            "coupon.claim",
            {"coupon": cp, "cid": "c" * 65},
            "bad_request",
            "cid must be 1 to 64 characters",
        ),
        # ann's sale.buy cid reused for a coupon claim
        (
            "ann",
            "coupon.claim",
            {"coupon": cp, "cid": "a-1"},
            "conflict",
            "this cid was already used for another request",
        ),
        ("ann", "coupon.claim", {"coupon": 7}, "bad_request", "Expected `str`, got `int` - at `$.coupon`"),
        ("ann", "coupon.claim", {"coupon": cp}, "limit_reached", "at most 1 per user"),
        ("tier0", "coupon.claim", {"coupon": fx.coupon}, "sold_out", "all coupons have been claimed"),
        ("ann", "coupon.claim", {"coupon": fx.coupon}, "sold_out", "all coupons have been claimed"),
        # -- red packets --------------------------------------------------------------
        (
            "host",
            "redpacket.send",
            {"total_cents": 5, "count": 10},
            "bad_request",
            "total_cents must be at least count (every share gets 1 cent or more)",
        ),
        (
            "host",
            "redpacket.send",
            {"total_cents": -5, "count": 1},
            "bad_request",
            "total_cents must be at least count (every share gets 1 cent or more)",
        ),
        (
            "host",
            "redpacket.send",
            {"total_cents": 0, "count": 0},
            "bad_request",
            "count must be between 1 and 10000",
        ),
        (
            "host",
            "redpacket.send",
            {"total_cents": 10**12, "count": 10},
            "bad_request",
            "total_cents must be at most 100000000",
        ),
        (
            "host",
            "redpacket.send",
            {"total_cents": 10, "count": 2, "message": "m" * 51},
            "bad_request",
            "message must be at most 50 characters",
        ),
        ("ann", "redpacket.grab", {"packet": "p-nope"}, "not_found", "no red packet p-nope in this room"),
        (
            "ann",
            "redpacket.grab",
            {"packet": None},
            "bad_request",
            "Expected `str`, got `null` - at `$.packet`",
        ),
        (
            "ann",
            "redpacket.grab",
            {"packet": pk},
            "conflict",
            f"you already grabbed {fx.ann_amount} cents from this red packet",
        ),
        (
            "ann",
            "redpacket.grab",
            {"packet": fx.packet},
            "conflict",
            "re:you already grabbed \\d+ cents from this red packet",
        ),
        ("tier0", "redpacket.grab", {"packet": fx.packet}, "sold_out", "this red packet is empty"),
    ]


@pytest.fixture
async def room_with_history(server: Server, room: str) -> tuple[dict[str, RawWS], Fixture]:
    host = await server.raw(token("host-1", "host"))
    ann = await server.raw(token("ann"))
    bob = await server.raw(token("bob"))
    for ws in (host, ann, bob):
        await ok(ws, "room.join", room)
    fx = await setup(server, room, host, ann, bob)
    tier0 = await server.raw(token("tier0"))
    await ok(tier0, "room.join", room)
    who = {
        "host": host,
        "ann": ann,
        "bob": bob,
        "tier0": tier0,
        "outsider": await server.raw(token("outsider")),
        "host2": await server.raw(token("host-2", "host")),  # a host who did not join this room
    }
    return who, fx


async def test_bad_input_gets_its_error_and_changes_nothing(
    server: Server, room: str, room_with_history: tuple[dict[str, RawWS], Fixture]
):
    who, fx = room_with_history
    await asyncio.sleep(0.3)  # let the setup's own events settle
    for ws in who.values():
        await ws.drain(0.05)
    before = await room_state(server, room, fx)
    seen_before = {name: len(ws.messages) for name, ws in who.items()}
    for n, (user, op, params, code, message) in enumerate(cases(room, fx)):
        reply = await who[user].request(f"bad-{n}", op, room, **params)
        assert not reply["ok"], (user, op, params, reply)
        err = reply["error"]
        if message.startswith("re:"):
            assert err["code"] == code and re.fullmatch(message[3:], err["message"]), (user, op, params, err)
        else:
            assert (err["code"], err["message"]) == (code, message), (user, op, params, err)
        if code == "not_open" and message.endswith("not started yet"):
            assert 0 < err["retry_after_ms"] <= HOUR_MS
        elif code not in ("rate_limited", "unavailable"):
            assert "retry_after_ms" not in err, err  # only where a retry can succeed
        assert await room_state(server, room, fx) == before, f"{op} {params} changed the room"

    # No event went out because of any of it, and every socket still works.
    # (Presence events come and go; a sale.stock may repeat a level the setup
    # left, as the deadline loop publishes the last level of a burst.)
    levels = {s: state[0][0] for s, state in ((s, before[f"sale {s}"]) for s in (fx.sale, fx.sold_out))}
    await asyncio.sleep(0.3)
    for name, ws in who.items():
        await ws.drain(0.05)
        events = [m for m in ws.messages[seen_before[name] :] if "ev" in m]
        unrelated = ("online", "member.joined", "likes")
        caused = [
            e
            for e in events
            if e["ev"] not in unrelated
            and not (e["ev"] == "sale.stock" and levels.get(e["data"]["id"]) == e["data"]["left"])
        ]
        assert not caused, (name, caused)
        assert (await ws.request(f"ping-{name}", "ping"))["ok"]
    # And the good paths still work after all that.
    order = (await ok(who["bob"], "sale.buy", room, sale=fx.sale, qty=1, cid="b-2"))["order"]
    assert order["user"] == "bob"
    assert (await ok(who["ann"], "sale.buy", room, sale=fx.sale, qty=1, cid="a-1"))["order"] == fx.ann_order
