"""The commerce ops end to end on the embedded server (memory bus) through the SDK:
flash sale under concurrent buyers and retries, lottery eligibility, keyword
entry, the automatic draw and its public audit, coupons, red packets, and the
order.created event and webhook."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from roomserver.client import RoomClient, RoomError
from roomserver.core import coupons
from roomserver.core.lottery import verify_draw
from tests.commerce.conftest import WebhookSink
from tests.commerce.draw_check import recompute_winners
from tests.polling import until
from tests.server_fixtures import Recorder, Server, token

PRODUCT = {"id": "p-1", "title": "Tea set", "price_cents": 2500}


async def error_of(coro) -> tuple[str, str]:
    try:
        await coro
    except RoomError as err:
        return err.code, err.message
    raise AssertionError("the op succeeded")


async def joined(server: Server, room: str, user: str, role: str = "viewer", **token_kwargs) -> RoomClient:
    client = await server.client(user, role, token_kwargs=token_kwargs or None)
    await client.join(room)
    return client


async def test_flash_sale_with_concurrent_buyers_and_retries(
    server: Server, room: str, embedded_sink: WebhookSink
):
    """60 buyers want 3 units each of a stock of 100, limit 2, every buy sent
    twice at once with one cid. Exactly 100 units are sold (so by pigeonhole
    some buyers reach the limit, nobody passes it), retries return the same
    order, the listing reconciles, staff get each order.created once, viewers
    none, and each order has one webhook."""
    host = await joined(server, room, "host-1", "host")
    staff = Recorder(host)
    buyers = [await joined(server, room, f"u{i:02d}") for i in range(60)]
    viewers = [Recorder(b) for b in buyers]
    sale = (await host.sale_create(room, product=PRODUCT, price_cents=2500, stock=100, limit_per_user=2))[
        "sale"
    ]
    assert (sale["state"], sale["left"], sale["stock"]) == ("open", 100, 100)

    async def buyer(client: RoomClient, i: int) -> list[tuple[str, object]]:
        out = []
        for n in range(3):
            cid = f"u{i:02d}-{n}"
            replies = await asyncio.gather(
                client.sale_buy(room, sale["id"], 1, cid=cid),
                client.sale_buy(room, sale["id"], 1, cid=cid),
                return_exceptions=True,
            )
            out += [(cid, r) for r in replies]
        return out

    results = await asyncio.gather(*(buyer(c, i) for i, c in enumerate(buyers)))
    orders: dict[str, dict] = {}
    per_user: Counter[str] = Counter()
    for i, attempts in enumerate(results):
        by_cid: dict[str, list] = {}
        for cid, r in attempts:
            by_cid.setdefault(cid, []).append(r)
        for cid, (r1, r2) in by_cid.items():
            if isinstance(r1, dict) or isinstance(r2, dict):
                # Both copies of one cid got the very same order.
                assert r1 == r2, (cid, r1, r2)
                order = r1["order"]
                assert (order["user"], order["cid"], order["qty"]) == (f"u{i:02d}", cid, 1)
                orders[order["id"]] = order
                per_user[order["user"]] += 1
            else:
                assert r1.code == r2.code and r1.code in ("sold_out", "limit_reached"), (cid, r1, r2)
    assert sum(o["qty"] for o in orders.values()) == 100
    assert max(per_user.values()) == 2

    status, listing = await server.admin("GET", f"/v1/rooms/{room}/sales/{sale['id']}/orders")
    assert status == 200 and listing["problems"] == []
    assert {o["id"]: o for o in listing["orders"]} == orders
    assert listing["sold"] == 100 and listing["sale"]["left"] == 0
    closed = await staff.wait("sale.closed")
    assert closed[0]["data"] == {"id": sale["id"], "sold": 100, "reason": "sold_out"}
    await until(lambda: len(staff.named("order.created")) >= 100, 5.0, "order.created")
    await until(lambda: len(embedded_sink.named("order.created", room)) >= 100, 5.0, "webhooks")
    await staff.quiet()
    assert Counter(e["data"]["order"]["id"] for e in staff.named("order.created")) == Counter(orders.keys())
    assert not any(v.named("order.created") for v in viewers)
    assert Counter(h["data"]["order"]["id"] for h in embedded_sink.named("order.created")) == Counter(
        orders.keys()
    )
    assert len(staff.named("sale.closed")) == 1 and len(await server.history(room)) == len(
        staff.durable(room)
    )


async def test_lottery_eligibility_keyword_and_automatic_draw(
    server: Server, room: str, embedded_sink: WebhookSink
):
    host = await joined(server, room, "host-1", "host")
    early = await joined(server, room, "ann", tier=3)  # joined long before: has watched enough
    low = await joined(server, room, "dee", tier=1)  # below min_tier
    await asyncio.sleep(1.1)
    late = await joined(server, room, "bob", tier=3)  # just arrived
    fan = await joined(server, room, "cy", tier=3)
    quiet = await joined(server, room, "eve", tier=5)
    seen = [Recorder(c) for c in (host, early, low)]
    created = await host.lottery_create(
        room, prize="Mug", winners=2, duration_ms=4_000, keyword="Tea", min_watch_s=1, min_tier=2
    )
    lot = created["lottery"]
    assert len(lot["seed_hash"]) == 64

    assert await early.lottery_enter(room, lot["id"]) == {"entered": True}
    assert await error_of(early.lottery_enter(room, lot["id"])) == (
        "conflict",
        "you have already entered this lottery",
    )
    assert await error_of(late.lottery_enter(room, lot["id"])) == (
        "forbidden",
        "watch at least 1 s to enter (you have 0 s)",
    )
    assert await error_of(low.lottery_enter(room, lot["id"])) == (
        "forbidden",
        "fans-club tier 2 or higher is required to enter",
    )
    # Keyword entry: a barrage containing the keyword (any case) enters its sender
    # when eligible; the barrage itself stands either way.
    await asyncio.sleep(1.0)
    assert (await fan.send_barrage(room, "more TEA please"))["seq"]
    assert (await low.send_barrage(room, "tea for me too"))["seq"]  # tier 1: not entered
    assert (await quiet.send_barrage(room, "hello"))["seq"]  # no keyword: not entered
    assert await error_of(fan.lottery_enter(room, lot["id"])) == (
        "conflict",
        "you have already entered this lottery",
    )
    assert await late.lottery_enter(room, lot["id"]) == {"entered": True}  # has watched 1 s by now
    status, audit = await server.rest("GET", f"/v1/rooms/{room}/lotteries/{lot['id']}", token("eve"))
    assert status == 200 and audit["state"] == "open" and audit["entrants_count"] == 3 and "seed" not in audit

    # Nobody draws: the server does at closes_at, once.
    drawn = (await seen[0].wait("lottery.drawn", timeout=10))[0]
    for rec in seen[1:]:
        assert (await rec.wait("lottery.drawn"))[0] == drawn  # same event, same seq, everywhere
    data = drawn["data"]
    assert data["id"] == lot["id"] and data["entrants"] == 3 and len(data["winners"]) == 2
    assert data["seed_hash"] == lot["seed_hash"] and data["drawn_at"] >= lot["closes_at"]
    assert set(data["winners"]) <= {"ann", "bob", "cy"}
    assert await error_of(host.lottery_draw(room, lot["id"])) == (
        "not_open",
        "this lottery has already been drawn",
    )
    assert await error_of(quiet.lottery_enter(room, lot["id"])) == (
        "not_open",
        "this lottery is no longer open for entries",
    )

    # Anyone recomputes the draw from the public audit.
    status, audit = await server.rest("GET", f"/v1/rooms/{room}/lotteries/{lot['id']}", token("eve"))
    assert status == 200 and audit["state"] == "drawn"
    assert audit["entrants"] == ["ann", "bob", "cy"] and audit["winners"] == data["winners"]
    assert audit["seed"] == data["seed"] and audit["entrants_hash"] == data["entrants_hash"]
    assert verify_draw(audit["seed"], audit["seed_hash"], audit["entrants"], audit["winners"], max_winners=2)
    assert recompute_winners(audit) == audit["winners"]

    await seen[0].quiet()
    history = await server.history(room)
    assert [e["ev"] for e in history].count("lottery.drawn") == 1
    await until(lambda: embedded_sink.named("lottery.drawn", room), 5.0, "webhook")
    await asyncio.sleep(0.2)
    hooks = embedded_sink.named("lottery.drawn", room)
    assert len(hooks) == 1 and hooks[0]["data"]["winners"] == data["winners"]
    # A new lottery may open once the last one is drawn.
    assert (await host.lottery_create(room, prize="Cup", winners=1, duration_ms=60_000))["lottery"]["id"]


async def test_a_lottery_without_entrants_draws_nobody(server: Server, room: str):
    host = await joined(server, room, "host-1", "host")
    rec = Recorder(host)
    lot = (await host.lottery_create(room, prize="Mug", winners=3, duration_ms=60_000))["lottery"]
    drawn = (await host.lottery_draw(room, lot["id"]))["lottery"]
    assert drawn["winners"] == [] and drawn["entrants"] == 0
    assert (await rec.wait("lottery.drawn"))[0]["data"] == drawn
    status, audit = await server.admin("GET", f"/v1/rooms/{room}/lotteries/{lot['id']}")
    assert status == 200 and audit["entrants"] == [] and recompute_winners(audit) == []


async def test_coupons_respect_quantity_and_per_user_limit(server: Server, room: str):
    host = await joined(server, room, "host-1", "host")
    rec = Recorder(host)
    coupon = (
        await host.coupon_issue(
            room, title="5 off", discount_cents=500, min_spend_cents=2000, quantity=7, per_user=2
        )
    )["coupon"]
    issued = (await rec.wait("coupon.issued"))[0]["data"]
    assert issued == {
        "id": coupon["id"],
        "title": "5 off",
        "discount_cents": 500,
        "min_spend_cents": 2000,
        "quantity": 7,
        "per_user": 2,
    }
    users = [await joined(server, room, f"c{i}") for i in range(6)]
    # One user alone: two claims, then the per-user limit. A claim retried with its cid
    # returns the first claim and claims nothing; a claim without cid is the user's n-th.
    first = (await users[0].coupon_claim(room, coupon["id"], cid="k1"))["claim"]
    again = (await users[0].coupon_claim(room, coupon["id"], cid="k1"))["claim"]
    assert first == again == {"id": coupons.cid_claim_id(coupon["id"], "c0", "k1"), "coupon": coupon["id"]}
    plain = (await users[0].request("coupon.claim", room, coupon=coupon["id"]))["claim"]
    assert plain == {"id": coupons.claim_id(coupon["id"], "c0", 2), "coupon": coupon["id"]}
    assert await error_of(users[0].coupon_claim(room, coupon["id"])) == (
        "limit_reached",
        "at most 2 per user",
    )
    assert (await users[0].coupon_claim(room, coupon["id"], cid="k1"))["claim"] == first  # still replays
    # Four users race for the 5 left, 3 claims each.
    attempts = await asyncio.gather(
        *(u.coupon_claim(room, coupon["id"]) for u in users[1:5] for _ in range(3)), return_exceptions=True
    )
    claims = [a["claim"] for a in attempts if isinstance(a, dict)]
    errors = [(a.code, a.message) for a in attempts if isinstance(a, RoomError)]
    assert len(claims) == 5 and len(errors) == 7
    assert set(errors) <= {
        ("sold_out", "all coupons have been claimed"),
        ("limit_reached", "at most 2 per user"),
    }
    assert len({c["id"] for c in claims}) == 5  # each SDK call its own cid: five claims
    assert await error_of(users[5].coupon_claim(room, coupon["id"])) == (
        "sold_out",
        "all coupons have been claimed",
    )


async def test_red_packet_sum_one_grab_each_and_the_best_grab(server: Server, room: str):
    host = await joined(server, room, "host-1", "host")
    rec = Recorder(host)
    packet = (await host.redpacket_send(room, total_cents=1000, count=10, message="gl"))["packet"]
    sent = (await rec.wait("redpacket.sent"))[0]["data"]
    assert sent == {"id": packet["id"], "sender": "host-1", "total_cents": 1000, "count": 10, "message": "gl"}
    users = [f"g{i:02d}" for i in range(15)]
    grabbers = {u: await joined(server, room, u) for u in users}
    random.shuffle(users)
    results = await asyncio.gather(
        *(grabbers[u].redpacket_grab(room, packet["id"]) for u in users), return_exceptions=True
    )
    amounts = {u: r["amount_cents"] for u, r in zip(users, results, strict=True) if isinstance(r, dict)}
    assert len(amounts) == 10 and sum(amounts.values()) == 1000 and min(amounts.values()) >= 1
    assert Counter(r.code for r in results if isinstance(r, RoomError)) == Counter({"sold_out": 5})
    # Grabbing twice: "already grabbed" (with the amount), even once the packet is empty.
    lucky = next(iter(amounts))
    assert await error_of(grabbers[lucky].redpacket_grab(room, packet["id"])) == (
        "conflict",
        f"you already grabbed {amounts[lucky]} cents from this red packet",
    )
    unlucky = next(u for u in users if u not in amounts)
    assert await error_of(grabbers[unlucky].redpacket_grab(room, packet["id"])) == (
        "sold_out",
        "this red packet is empty",
    )
    finished = await rec.wait("redpacket.finished")
    await rec.quiet()
    assert len(rec.named("redpacket.finished")) == 1 and "seq" in finished[0]
    best = finished[0]["data"]["best"]
    assert finished[0]["data"]["id"] == packet["id"]
    assert best["amount_cents"] == amounts[best["user"]] == max(amounts.values())
