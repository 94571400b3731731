"""PROTOCOL §2/§3 on the wire: frame shape, replies, ids, the join snapshot,
and bad input (each a clear error reply, never a dropped socket, never a state change)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from roomserver.client import RoomError
from roomserver.tenancy import room_key
from tests.server_fixtures import APP, PROTOCOL_ERRORS, SNAPSHOT_KEYS, Recorder, Server, token


def assert_error(reply: dict[str, Any], req_id: Any, code: str) -> None:
    assert set(reply) == {"re", "ok", "error"}, reply
    assert reply["re"] == req_id and type(reply["re"]) is type(req_id), reply
    assert reply["ok"] is False
    err = reply["error"]
    assert err["code"] == code, reply
    assert isinstance(err["message"], str) and err["message"], reply
    assert set(err) <= {"code", "message", "retry_after_ms"}


async def test_join_snapshot_shape_and_reply_envelope(server: Server, room: str) -> None:
    raw = await server.raw(token("u1"))
    reply = await raw.request(1, "room.join", room)
    assert set(reply) == {"re", "ok", "data"} and reply["re"] == 1 and reply["ok"] is True
    snap = reply["data"]["room"]
    assert set(snap) >= SNAPSHOT_KEYS, SNAPSHOT_KEYS - set(snap)
    assert snap["id"] == room
    assert snap["mode"] == "live" and snap["state"] == "idle" and snap["host"] is None
    assert isinstance(snap["seq"], int) and snap["seq"] >= 0
    assert isinstance(snap["epoch"], str) and snap["epoch"]
    assert snap["online"] >= 1 and snap["likes"] == 0
    assert snap["pinned"] is None and snap["lottery"] is None and snap["sale"] is None and snap["pk"] is None
    assert snap["cohosts"] == [] and snap["publishers"] == []
    assert snap["gifts"] and all(set(g) == {"id", "name", "value"} for g in snap["gifts"])
    assert all(isinstance(g["value"], int) for g in snap["gifts"])
    # every frame seen so far was a JSON array (RawWS asserts it on receipt)
    assert raw.frames and all(isinstance(f, list) for f in raw.frames)


async def test_id_echoed_as_int_and_as_string(server: Server) -> None:
    raw = await server.raw(token("u1"))
    for req_id in (7, 0, -3, 2**40, "abc", "17", ""):
        reply = await raw.request(req_id, "ping")
        assert reply["ok"] is True and reply["re"] == req_id and type(reply["re"]) is type(req_id)


async def test_no_reply_without_id(server: Server, room: str) -> None:
    raw = await server.raw(token("u1"))
    await raw.request(1, "room.join", room)
    await raw.send({"op": "ping"})
    await raw.send({"op": "barrage.send", "room": room, "text": "fire and forget"})
    await raw.send({"op": "barrage.send", "room": room, "text": ""})  # bad, but no id: no reply
    await raw.send({"op": "no.such.op", "room": room})
    await raw.drain(0.4)
    assert not [m for m in raw.messages if "re" in m and m["re"] != 1], raw.messages
    # the fire-and-forget barrage did happen
    barrages = [m for m in raw.messages if m.get("ev") == "barrage"]
    assert [b["data"]["text"] for b in barrages] == ["fire and forget"]


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "",
        '{"id": 1, "op": "ping"',
        "[]",
        '[{"id": 1, "op": "ping"}]',
        "17",
        '"ping"',
        "null",
        "true",
    ],
)
async def test_malformed_and_non_object_frames(server: Server, frame: str) -> None:
    raw = await server.raw(token("u1"))
    await raw.send_text(frame)
    reply = await raw.reply(None)
    assert_error(reply, None, "bad_request")
    # the socket survives
    assert (await raw.request(2, "ping"))["ok"] is True


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"id": 1}, "bad_request"),  # no op
        ({"id": 1, "op": 5}, "bad_request"),
        ({"id": 1, "op": ""}, "bad_request"),
        ({"id": 1, "op": "no.such.op", "room": "r"}, "bad_request"),
        ({"id": 1, "op": "ping", "room": 5}, "bad_request"),
        ({"id": 1, "op": "room.join"}, "bad_request"),  # needs a room
        ({"id": 1, "op": "room.join", "room": "bad room!"}, "bad_request"),
        ({"id": 1, "op": "room.join", "room": "x" * 65}, "bad_request"),
    ],
)
async def test_bad_envelopes(server: Server, msg: dict[str, Any], code: str) -> None:
    raw = await server.raw(token("u1"))
    await raw.send(msg)
    assert_error(await raw.reply(1), 1, code)


@pytest.mark.parametrize("req_id", [True, 1.5, None, [1], {"a": 1}])
async def test_bad_id_types(server: Server, req_id: Any) -> None:
    raw = await server.raw(token("u1"))
    await raw.send({"id": req_id, "op": "ping"})
    if req_id is None:
        await raw.drain(0.3)  # "id": null is no id: fire and forget
        assert not [m for m in raw.messages if "re" in m]
        return
    assert_error(await raw.reply(None), None, "bad_request")


async def test_binary_frame_is_refused_with_an_error(server: Server) -> None:
    raw = await server.raw(token("u1"))
    await raw.ws.send_bytes(b'{"id": 1, "op": "ping"}')
    reply = await raw.reply(None, timeout=2)
    assert_error(reply, None, "bad_request")
    assert (await raw.request(2, "ping"))["ok"] is True


async def test_oversize_frame_too_large_then_close_1009(server: Server, room: str) -> None:
    raw = await server.raw(token("u1"))
    await raw.request(1, "room.join", room)
    text = "x" * (16 * 1024)
    await raw.send({"id": 2, "op": "barrage.send", "room": room, "text": text})
    code = await raw.close_code()
    errors = [m for m in raw.messages if m.get("ok") is False]
    assert len(errors) == 1 and errors[0]["error"]["code"] == "too_large"
    assert code == 1009
    assert await server.history(room) == []


async def test_huge_frame_closes_1009(server: Server) -> None:
    raw = await server.raw(token("u1"))
    await raw.send_text("x" * (2 * 1024 * 1024))
    assert await raw.close_code() == 1009


async def test_frame_of_exactly_16_kib_is_accepted(server: Server) -> None:
    raw = await server.raw(token("u1"))
    head = '{"id":1,"op":"ping","pad":"'
    text = head + "x" * (16 * 1024 - len(head) - 2) + '"}'
    assert len(text) == 16 * 1024
    await raw.send_text(text)
    assert (await raw.reply(1))["ok"] is True


async def test_op_on_room_not_joined(server: Server, room: str) -> None:
    host = await server.client("h1", "host")
    await host.join(room)
    viewer = await server.client("u1")
    for call in (
        viewer.send_barrage(room, "hi"),
        viewer.send_like(room, 1),
        viewer.send_gift(room, "rose"),
        viewer.track(room, "share"),
        viewer.leave(room),
    ):
        with pytest.raises(RoomError) as info:
            await call
        assert info.value.code == "not_joined"
    # host ops also need the room joined
    other = await server.client("h2", "host")
    with pytest.raises(RoomError) as info:
        await other.start(room)
    assert info.value.code == "not_joined"
    assert await server.history(room) == []


async def test_viewer_cannot_call_host_ops(server: Server, room: str) -> None:
    host = await server.client("h1", "host")
    await host.join(room)
    viewer = await server.client("u1")
    rec = Recorder(host)
    await viewer.join(room)
    product = {"id": "p1", "title": "Tea", "price_cents": 990}
    calls = {
        "room.start": viewer.start(room),
        "room.end": viewer.end(room),
        "product.pin": viewer.pin_product(room, product),
        "product.unpin": viewer.unpin_product(room),
        "mod.mute": viewer.mute(room, "h1"),
        "mod.unmute": viewer.unmute(room, "h1"),
        "mod.kick": viewer.kick(room, "h1"),
        "mod.slow": viewer.slow(room, 5),
        "mod.words": viewer.words(room, add=["x"]),
    }
    for name, call in calls.items():
        with pytest.raises(RoomError) as info:
            await call
        assert info.value.code == "forbidden", name
        assert info.value.message
    # a moderator may moderate and pin, but not start the show (H only)
    mod = await server.client("m1", "moderator")
    await mod.join(room)
    with pytest.raises(RoomError) as info:
        await mod.start(room)
    assert info.value.code == "forbidden"
    await rec.quiet()
    assert rec.durable(room) == []
    assert await server.history(room) == []


# -- params: wrong types, missing fields, bounds; nothing may change --------------------

WRONG_PARAMS: list[tuple[str, dict[str, Any]]] = [
    # barrage.send text 1..200, cid 1..64
    ("barrage.send", {}),
    ("barrage.send", {"text": True}),
    ("barrage.send", {"text": 5}),
    ("barrage.send", {"text": 1.5}),
    ("barrage.send", {"text": None}),
    ("barrage.send", {"text": ["hi"]}),
    ("barrage.send", {"text": {"t": "hi"}}),
    ("barrage.send", {"text": ""}),
    ("barrage.send", {"text": "   "}),
    ("barrage.send", {"text": "\t\n "}),
    ("barrage.send", {"text": "x" * 201}),
    ("barrage.send", {"text": "hi", "cid": 5}),
    ("barrage.send", {"text": "hi", "cid": ""}),
    ("barrage.send", {"text": "hi", "cid": "c" * 65}),
    # like.send count 1..100
    ("like.send", {"count": True}),
    ("like.send", {"count": "5"}),
    ("like.send", {"count": 1.5}),
    ("like.send", {"count": None}),
    ("like.send", {"count": [1]}),
    ("like.send", {"count": 0}),
    ("like.send", {"count": 101}),
    ("like.send", {"count": -1}),
    # gift.send gift (catalog id), count 1..999
    ("gift.send", {}),
    ("gift.send", {"gift": "no-such-gift"}),
    ("gift.send", {"gift": 1}),
    ("gift.send", {"gift": None}),
    ("gift.send", {"gift": ["rose"]}),
    ("gift.send", {"gift": "rose", "count": True}),
    ("gift.send", {"gift": "rose", "count": "2"}),
    ("gift.send", {"gift": "rose", "count": 2.5}),
    ("gift.send", {"gift": "rose", "count": None}),
    ("gift.send", {"gift": "rose", "count": []}),
    ("gift.send", {"gift": "rose", "count": 0}),
    ("gift.send", {"gift": "rose", "count": 1000}),
    # track action enum, product string
    ("track", {}),
    ("track", {"action": "buy-now"}),
    ("track", {"action": 1}),
    ("track", {"action": None}),
    ("track", {"action": "product.click"}),  # needs a product
    ("track", {"action": "cart.add", "product": 5}),
    # room.resume since int >= 0, epoch string
    ("room.resume", {"since": True, "epoch": "e"}),
    ("room.resume", {"since": "1", "epoch": "e"}),
    ("room.resume", {"since": 1.5, "epoch": "e"}),
    ("room.resume", {"since": None, "epoch": "e"}),
    ("room.resume", {"since": [1], "epoch": "e"}),
    ("room.resume", {"since": -1, "epoch": "e"}),
    ("room.resume", {"epoch": "e"}),
    ("room.resume", {"since": 0, "epoch": 5}),
]

WRONG_HOST_PARAMS: list[tuple[str, dict[str, Any]]] = [
    ("room.start", {"title": 5}),
    ("room.start", {"title": True}),
    ("room.start", {"title": ["t"]}),
    ("room.start", {"title": "t" * 101}),
    ("product.pin", {}),
    ("product.pin", {"product": None}),
    ("product.pin", {"product": "p1"}),
    # ({"id": "p1", "title": "Tea"} is a pin by id: not_found, tests/assistant/test_assistant_server.py)
    ("product.pin", {"product": {"id": "p1", "price_cents": 1, "title": None, "image": 5}}),
    ("product.pin", {"product": {"id": "p1", "title": "Tea", "price_cents": "990"}}),
    ("product.pin", {"product": {"id": "p1", "title": "Tea", "price_cents": True}}),
    ("product.pin", {"product": {"id": "p1", "title": "Tea", "price_cents": 9.5}}),
    ("product.pin", {"product": {"id": "p1", "title": "Tea", "price_cents": -1}}),
    ("product.pin", {"product": {"id": "", "title": "Tea", "price_cents": 1}}),
    ("product.pin", {"product": {"id": 1, "title": "Tea", "price_cents": 1}}),
    ("product.pin", {"product": {"id": "p1", "title": "", "price_cents": 1}}),
    ("product.unpin", {"product": "p1"}),
    ("product.unpin", {"product": {"id": 5}}),
    ("mod.mute", {}),
    ("mod.mute", {"user": 5}),
    ("mod.mute", {"user": None}),
    ("mod.mute", {"user": ["u1"]}),
    ("mod.mute", {"user": "bad user!"}),
    ("mod.mute", {"user": "u1", "duration_s": "60"}),
    ("mod.mute", {"user": "u1", "duration_s": True}),
    ("mod.mute", {"user": "u1", "duration_s": 1.5}),
    ("mod.mute", {"user": "u1", "duration_s": -1}),
    ("mod.kick", {"user": 5}),
    ("mod.kick", {"user": "u1", "duration_s": "x"}),
    ("mod.slow", {}),
    ("mod.slow", {"interval_s": True}),
    ("mod.slow", {"interval_s": "5"}),
    ("mod.slow", {"interval_s": 1.5}),
    ("mod.slow", {"interval_s": None}),
    ("mod.slow", {"interval_s": [5]}),
    ("mod.slow", {"interval_s": -1}),
    ("mod.slow", {"interval_s": 301}),
    ("mod.words", {"add": "word"}),
    ("mod.words", {"add": [1]}),
    ("mod.words", {"add": [None]}),
    ("mod.words", {"add": [""]}),
    ("mod.words", {"add": ["   "]}),
    ("mod.words", {"add": ["w" * 51]}),
    ("mod.words", {"remove": True}),
]


async def test_wrong_params_are_bad_request_and_change_nothing(server: Server, room: str) -> None:
    host = await server.client("h1", "host")
    await host.join(room)
    await host.start(room)
    viewer = await server.client("u1")
    watcher = await server.client("u2")
    await viewer.join(room)
    snap = (await watcher.join(room))["room"]
    rec = Recorder(watcher)
    history_before = await server.history(room)
    # Per-socket rate limits count bad requests too: a fresh socket every few cases.
    sockets: dict[tuple[str, int], Any] = {}

    async def socket_for(role: str, i: int) -> Any:
        key = (role, i // 8)
        if key not in sockets:
            raw = await server.raw(token(f"{role}-{key[1]}", role))
            assert (await raw.request(0, "room.join", room))["ok"] is True
            sockets[key] = raw
        return sockets[key]

    failures = []
    for i, (op, params) in enumerate(WRONG_PARAMS + WRONG_HOST_PARAMS, start=1):
        raw = await socket_for("viewer" if (op, params) in WRONG_PARAMS else "host", i)
        reply = await raw.request(i, op, room, **params)
        if reply.get("ok") is not False or reply["error"]["code"] != "bad_request":
            failures.append((op, params, reply))
        else:
            assert_error(reply, i, "bad_request")
    assert not failures, failures
    await rec.quiet()
    assert rec.durable(room) == [], "a bad request published an event"
    assert await server.history(room) == history_before
    # the room still works and the next seq follows the snapshot's
    assert (await viewer.send_barrage(room, "still fine"))["seq"] == snap["seq"] + 1
    doc = await server.node.require_room(room_key(APP, room))
    assert doc.slow_s == 0 and doc.mutes == {} and doc.words == [] and doc.pinned is None


async def test_text_length_bounds(server: Server, room: str) -> None:
    viewer = await server.client("u1")
    await viewer.join(room)
    assert (await viewer.send_barrage(room, "x" * 200))["seq"] == 1
    assert (await viewer.send_barrage(room, "字" * 200))["seq"] == 2  # chars, not bytes
    with pytest.raises(RoomError) as info:
        await viewer.send_barrage(room, "字" * 201)
    assert info.value.code == "bad_request"
    assert [e["seq"] for e in await server.history(room)] == [1, 2]


async def test_unknown_extra_params_are_ignored(server: Server, room: str) -> None:
    """Additions to the protocol must not break older servers: unknown fields pass."""
    viewer = await server.client("u1")
    await viewer.join(room)
    assert (await viewer.request("barrage.send", room, text="hi", future_field=1))["seq"] == 1


async def test_durable_events_have_consecutive_seq_ephemeral_none(server: Server, room: str) -> None:
    host = await server.client("h1", "host")
    viewer = await server.client("u1")
    rec = Recorder(viewer)
    snap = (await viewer.join(room))["room"]
    await host.join(room)
    await host.start(room, title="Show")
    await host.pin_product(room, {"id": "p1", "title": "Tea", "price_cents": 990})
    await viewer.send_barrage(room, "hello")
    await viewer.send_gift(room, "rose", 2)
    await viewer.send_like(room, 3)
    await host.unpin_product(room)
    await host.end(room)
    await rec.wait("room.ended")
    await rec.wait("likes", timeout=3)
    durable = rec.durable(room)
    assert [e["ev"] for e in durable] == [
        "room.started",
        "product.pinned",
        "barrage",
        "gift",
        "product.unpinned",
        "room.ended",
    ]
    assert [e["seq"] for e in durable] == list(range(snap["seq"] + 1, snap["seq"] + 7))
    for e in rec.events:
        if e.get("local"):
            continue
        assert set(e) <= {"ev", "room", "ts", "data", "seq"}, e
        assert e["room"] == room and isinstance(e["ts"], int) and isinstance(e["data"], dict)
    for name in ("online", "likes", "member.joined"):
        for e in rec.named(name):
            assert "seq" not in e, e
    assert rec.named("member.joined"), "member.joined was not sent for the host's join"


async def test_socket_survives_a_burst_of_garbage(server: Server) -> None:
    raw = await server.raw(token("u1"))
    for text in ("{", "[1,2", "\x00", '{"op":null}', '{"id":{},"op":"ping"}', "🙂" * 100):
        await raw.send_text(text)
    await raw.send({"id": 99, "op": "ping"})
    reply = await raw.reply(99)
    assert reply["ok"] is True
    assert sum(1 for m in raw.messages if m.get("re") is None and m.get("ok") is False) == 6
    assert not raw.ws.closed


async def test_reply_error_codes_are_protocol_codes(server: Server, room: str) -> None:
    raw = await server.raw(token("u1"))
    await raw.send({"id": 1, "op": "barrage.send", "room": room, "text": "x"})
    await raw.send_text("garbage")
    await raw.send({"id": 2, "op": "room.start", "room": room})
    await raw.send({"id": 3, "op": "nope"})
    await raw.drain(0.4)
    errors = [m["error"]["code"] for m in raw.messages if m.get("ok") is False]
    assert len(errors) == 4 and set(errors) <= PROTOCOL_ERRORS


async def test_aiohttp_close_frame_from_client_is_clean(server: Server) -> None:
    async with server.http.ws_connect(
        server.ws_url, headers={"Authorization": f"Bearer {token('u1')}"}
    ) as ws:
        await ws.send_str('{"id":1,"op":"ping"}')
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT
    await asyncio.sleep(0.1)
    assert not server.gateway.sessions
