"""The server API (PROTOCOL §5): an app back end runs host/moderator ops over REST,
through the same handlers as the WebSocket ops, without holding a socket."""

from __future__ import annotations

import asyncio

import pytest

from roomserver.client import RoomError
from roomserver.handlers import server_api_ops
from tests.server_fixtures import Recorder, Server, token


async def test_the_back_end_mutes_pins_and_sells_without_a_socket(server: Server, room: str) -> None:
    viewer = await server.client("v1")
    rec = Recorder(viewer)
    await viewer.join(room)

    status, body = await server.admin("POST", f"/v1/rooms/{room}/ops/mod.mute", {"user": "v1"})
    assert (status, body) == (200, {})
    muted = (await rec.wait("user.muted"))[0]
    assert muted["data"]["user"] == "v1" and "seq" in muted
    with pytest.raises(RoomError) as info:
        await viewer.send_barrage(room, "hi")
    assert info.value.code == "muted"

    product = {"id": "p1", "title": "Tea", "price_cents": 990}
    status, body = await server.admin("POST", f"/v1/rooms/{room}/ops/product.pin", {"product": product})
    assert status == 200
    assert (await rec.wait("product.pinned"))[0]["data"]["product"]["id"] == "p1"

    status, body = await server.admin(
        "POST",
        f"/v1/rooms/{room}/ops/sale.create",
        {"product": product, "price_cents": 500, "stock": 3, "limit_per_user": 1},
    )
    assert status == 200, body
    sale = body["sale"]["id"]
    await rec.wait("sale.opened")
    order = (await viewer.sale_buy(room, sale, 1, cid="o-1"))["order"]
    status, body = await server.admin("GET", f"/v1/rooms/{room}/sales/{sale}/orders")
    assert [o["id"] for o in body["orders"]] == [order["id"]]


async def test_as_user_and_room_lifecycle(server: Server, room: str) -> None:
    status, body = await server.admin("POST", "/v1/rooms", {"id": room, "title": "Tea"})
    assert status == 201
    watcher = await server.client("w1")
    rec = Recorder(watcher)
    await watcher.join(room)
    status, body = await server.admin("POST", f"/v1/rooms/{room}/ops/room.start", {"as": "anchor-7"})
    assert status == 200, body
    started = (await rec.wait("room.started"))[0]
    assert started["data"]["host"] == "anchor-7"
    # The same transition again is the handler's own conflict, with its status.
    status, body = await server.admin("POST", f"/v1/rooms/{room}/ops/room.start", {})
    assert (status, body["error"]["code"]) == (409, "conflict")
    status, body = await server.admin("POST", f"/v1/rooms/{room}/ops/room.end", {})
    assert status == 200 and body["summary"]["show"] == 1


@pytest.mark.parametrize(
    ("op", "body", "status", "code"),
    [
        ("barrage.send", {"text": "hi"}, 404, "not_found"),  # a viewer op: not in the server API
        ("room.join", {}, 404, "not_found"),
        ("no.such", {}, 404, "not_found"),
        ("mod.mute", {}, 400, "bad_request"),  # missing user
        ("mod.mute", {"user": "v1", "as": "bad id!"}, 400, "bad_request"),
        ("mod.mute", {"user": "v1", "room": "other"}, 400, "bad_request"),
        ("mod.slow", {"interval_s": 10**30}, 400, "bad_request"),
        ("mod.slow", [1, 2], 400, "bad_request"),
    ],
)
async def test_bad_server_api_calls(server: Server, room: str, op: str, body, status: int, code: str) -> None:
    host = await server.client("h1", "host")
    await host.join(room)
    got_status, got = await server.admin("POST", f"/v1/rooms/{room}/ops/{op}", body)
    assert (got_status, got["error"]["code"]) == (status, code), got


async def test_only_admins_and_only_their_app(server: Server, room: str) -> None:
    host = await server.client("h1", "host")
    await host.join(room)
    status, body = await server.rest(
        "POST", f"/v1/rooms/{room}/ops/mod.slow", token("h1", "host"), {"interval_s": 5}
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await server.rest("POST", f"/v1/rooms/{room}/ops/mod.slow", None, {"interval_s": 5})
    assert status == 401


def test_every_host_and_moderator_op_is_offered() -> None:
    ops = set(server_api_ops())
    expected = {
        "mod.mute", "mod.unmute", "mod.kick", "mod.slow", "mod.words", "product.pin", "product.unpin",
        "room.announce", "poll.create", "sale.create", "lottery.create", "lottery.draw", "coupon.issue",
        "redpacket.send", "cohost.invite", "cohost.accept", "cohost.reject", "cohost.end", "pk.invite",
        "pk.accept", "pk.reject", "pk.end", "room.start", "room.end",
    }  # fmt: skip
    assert expected <= ops, expected - ops
    assert not ops & {"room.join", "room.leave", "room.resume", "barrage.send", "sale.buy", "like.send"}


CREATING_OPS = [
    # op, params, a change of them, the reply's key, the event it publishes
    (
        "sale.create",
        {
            "product": {"id": "p1", "title": "Tea", "price_cents": 990},
            "price_cents": 500,
            "stock": 3,
            "limit_per_user": 1,
        },
        {"stock": 4},
        "sale",
        "sale.opened",
    ),
    (
        "lottery.create",
        {"prize": "Tea set", "winners": 1, "duration_ms": 60_000},
        {"winners": 2},
        "lottery",
        "lottery.opened",
    ),
    (
        "coupon.issue",
        {"title": "5 off", "discount_cents": 500, "quantity": 10},
        {"quantity": 11},
        "coupon",
        "coupon.issued",
    ),
    ("redpacket.send", {"total_cents": 1000, "count": 5}, {"count": 4}, "packet", "redpacket.sent"),
]


@pytest.mark.parametrize(
    ("op", "params", "change", "key", "event"), CREATING_OPS, ids=[c[0] for c in CREATING_OPS]
)
async def test_a_retried_creating_op_creates_once(
    server: Server, room: str, op: str, params: dict, change: dict, key: str, event: str
) -> None:
    """An app's back end that lost an answer retries with the same cid: it gets what
    the first request created, and the room sees one event; concurrent retries too."""
    watcher = await server.client("w1")
    rec = Recorder(watcher)
    await watcher.join(room)
    path = f"/v1/rooms/{room}/ops/{op}"
    status, first = await server.admin("POST", path, {**params, "cid": "create-1"})
    assert status == 200, first
    answers = await asyncio.gather(
        *(server.admin("POST", path, {**params, "cid": "create-1"}) for _ in range(4))
    )
    assert all(a == (200, first) for a in answers), answers
    assert (await rec.wait(event))[0]["data"]["id"] == first[key]["id"]
    await rec.quiet()
    assert len(rec.named(event)) == 1
    # The cid reused for a request with other parameters: conflict, nothing created.
    status, body = await server.admin("POST", path, {**params, **change, "cid": "create-1"})
    assert (status, body["error"]["code"]) == (409, "conflict"), body
    await rec.quiet()
    assert len(rec.named(event)) == 1
    # Another cid is another request.
    if op != "lottery.create":  # one open lottery at a time
        status, other = await server.admin("POST", path, {**params, "cid": "create-2"})
        assert status == 200 and other[key]["id"] != first[key]["id"]
        await rec.wait(event, count=2)
