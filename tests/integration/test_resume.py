"""PROTOCOL §2/§3 room.resume on the wire: exact replay of missed durable events,
in order, without duplicates; history_gone when the range or epoch is gone."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.server_fixtures import RawWS, Server, token


async def publish(server: Server, room: str, n: int, tag: str = "tick") -> list[int]:
    """Publish ``n`` custom durable events through the REST API; returns their seqs."""
    seqs = []
    for i in range(n):
        status, body = await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": tag, "data": {"i": i}})
        assert status == 201, body
        seqs.append(body["seq"])
    return seqs


async def joined_raw(server: Server, room: str, user: str = "ann") -> tuple[RawWS, dict[str, Any]]:
    raw = await server.raw(token(user))
    reply = await raw.request("join", "room.join", room)
    assert reply["ok"] is True, reply
    return raw, reply["data"]["room"]


def events_after(raw: RawWS, req_id: Any) -> list[dict[str, Any]]:
    """Messages after the reply to ``req_id``, in arrival order."""
    idx = next(i for i, m in enumerate(raw.messages) if m.get("re") == req_id)
    return [m for m in raw.messages[idx + 1 :] if "ev" in m]


async def test_resume_replays_exactly_the_missed_events(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    host = await server.client("h1", "host")
    await host.join(room)
    await host.start(room)
    await raw.drain(0.2)
    last = max(m["seq"] for m in raw.messages if "seq" in m)
    await raw.ws.close()

    await host.send_barrage(room, "while you were away")
    missed = await publish(server, room, 5)
    await host.pin_product(room, {"id": "p1", "title": "Tea", "price_cents": 100})

    again = await server.raw(token("ann"))
    reply = await again.request("r", "room.resume", room, since=last, epoch=snap["epoch"])
    assert reply == {"re": "r", "ok": True, "data": {"replayed": 7}}
    await again.drain(0.3)
    replay = events_after(again, "r")
    durable = [m for m in replay if "seq" in m]
    assert [m["seq"] for m in durable] == list(range(last + 1, last + 8))
    assert [m["ev"] for m in durable] == ["barrage"] + ["custom.tick"] * 5 + ["product.pinned"]
    assert [m["data"]["i"] for m in durable if m["ev"] == "custom.tick"] == [0, 1, 2, 3, 4]
    assert durable[1]["seq"] == missed[0]
    # the replayed events are the very events the history holds
    assert durable == await server.history(room, since=last)
    # and the resumed socket is a member again: live events continue from there
    await host.send_barrage(room, "welcome back")
    await again.drain(0.3)
    live = [m for m in events_after(again, "r") if "seq" in m]
    assert [m["seq"] for m in live] == list(range(last + 1, last + 9))


async def test_resume_at_head_replays_nothing_and_rejoins(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    await raw.ws.close()
    again = await server.raw(token("ann"))
    reply = await again.request(1, "room.resume", room, since=snap["seq"], epoch=snap["epoch"])
    assert reply["data"] == {"replayed": 0}
    seqs = await publish(server, room, 2)
    await again.drain(0.3)
    assert [m["seq"] for m in events_after(again, 1) if "seq" in m] == seqs


async def test_resume_while_events_keep_coming(server: Server, room: str) -> None:
    """Events published during the resume are neither lost nor duplicated."""
    raw, snap = await joined_raw(server, room)
    await publish(server, room, 3)
    await raw.ws.close()
    await publish(server, room, 20)

    async def keep_publishing() -> None:
        await publish(server, room, 30, tag="during")

    publisher = asyncio.ensure_future(keep_publishing())
    await asyncio.sleep(0.01)
    again = await server.raw(token("ann"))
    reply = await again.request(1, "room.resume", room, since=snap["seq"], epoch=snap["epoch"])
    assert reply["ok"] is True
    await publisher
    await again.drain(0.4)
    seqs = [m["seq"] for m in events_after(again, 1) if "seq" in m]
    assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 54))
    assert reply["data"]["replayed"] <= 53


async def test_resume_while_joined_replays_from_since(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    await publish(server, room, 4)
    await raw.drain(0.3)
    reply = await raw.request(9, "room.resume", room, since=snap["seq"] + 2, epoch=snap["epoch"])
    assert reply["data"] == {"replayed": 2}
    await publish(server, room, 1)
    await raw.drain(0.3)
    after = [m["seq"] for m in events_after(raw, 9) if "seq" in m]
    assert after == [snap["seq"] + 3, snap["seq"] + 4, snap["seq"] + 5]


async def test_resume_from_trimmed_history_is_history_gone(make_server, room: str) -> None:
    server = await make_server(history_events=20)
    raw, snap = await joined_raw(server, room)
    assert snap["seq"] == 0
    await raw.ws.close()
    await publish(server, room, 30)  # history keeps seq 11..30
    again = await server.raw(token("ann"))
    gone = await again.request(1, "room.resume", room, since=1, epoch=snap["epoch"])
    assert gone["ok"] is False and gone["error"]["code"] == "history_gone" and gone["error"]["message"]
    gone = await again.request(2, "room.resume", room, since=9, epoch=snap["epoch"])
    assert gone["error"]["code"] == "history_gone"
    # the oldest kept event is 11: resuming after 10 works
    ok = await again.request(3, "room.resume", room, since=10, epoch=snap["epoch"])
    assert ok["data"] == {"replayed": 20}
    await again.drain(0.3)
    assert [m["seq"] for m in events_after(again, 3) if "seq" in m] == list(range(11, 31))


async def test_resume_with_wrong_epoch_is_history_gone(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    await publish(server, room, 3)
    await raw.ws.close()
    again = await server.raw(token("ann"))
    for i, epoch in enumerate(("0000000000000000", "", snap["epoch"] + "x"), start=1):
        reply = await again.request(i, "room.resume", room, since=1, epoch=epoch)
        assert reply["ok"] is False and reply["error"]["code"] == "history_gone", (epoch, reply)
    # a failed resume changes nothing: the socket is not a member of the room
    await publish(server, room, 1)
    await again.drain(0.3)
    assert not [m for m in again.messages if "ev" in m]


async def test_resume_beyond_head_or_unknown_room(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    await publish(server, room, 2)
    reply = await raw.request(1, "room.resume", room, since=99, epoch=snap["epoch"])
    assert reply["error"]["code"] == "history_gone"
    reply = await raw.request(2, "room.resume", room + "-nope", since=0, epoch=snap["epoch"])
    assert reply["error"]["code"] == "history_gone"


async def test_resume_respects_kicks_and_token_room(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    host = await server.client("h1", "host")
    await host.join(room)
    await host.kick(room, "ann")
    assert await raw.close_code() == 4003
    again = await server.raw(token("ann"))
    reply = await again.request(1, "room.resume", room, since=snap["seq"], epoch=snap["epoch"])
    assert reply["error"]["code"] == "forbidden"
    other = await server.raw(token("bob", room="elsewhere"))
    reply = await other.request(1, "room.resume", room, since=snap["seq"], epoch=snap["epoch"])
    assert reply["error"]["code"] == "forbidden"


async def test_resume_replays_only_durable_events(server: Server, room: str) -> None:
    raw, snap = await joined_raw(server, room)
    await raw.ws.close()
    viewer = await server.client("bob")
    await viewer.join(room)  # member.joined: ephemeral
    await viewer.send_like(room, 3)  # likes: ephemeral
    await viewer.send_barrage(room, "durable")
    await asyncio.sleep(1.2)  # let the likes flush happen
    again = await server.raw(token("ann"))
    reply = await again.request(1, "room.resume", room, since=snap["seq"], epoch=snap["epoch"])
    assert reply["data"] == {"replayed": 1}
    replay = events_after(again, 1)
    assert [m["ev"] for m in replay if "seq" in m] == ["barrage"]
