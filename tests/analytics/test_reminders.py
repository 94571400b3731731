"""Follows, schedules and ``room.reminder`` webhooks (issue 12), on two nodes sharing one
Redis and a real webhook endpoint: one reminder per offset however many nodes look, with
the followers; none for a show that started; a reschedule re-arms them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roomserver.core import schedule as sched
from roomserver.core.webhooks import Endpoint
from roomserver.server import REMINDERS_KEY
from tests.polling import until
from tests.server_fixtures import APP, SECRET, Server, closed_after, new_room_id, start_server, token
from tests.webhooks.receiver import Receiver


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = await Receiver(SECRET).up()
    yield rx
    await rx.down()


@pytest.fixture
async def two_nodes(
    redis_single, unique_prefix, receiver
) -> AsyncIterator[Callable[..., Awaitable[list[Server]]]]:
    async def make(offsets: tuple[int, ...]) -> list[Server]:
        options = {
            "redis_url": redis_single.url,
            "redis_prefix": unique_prefix,
            "webhooks": [Endpoint(APP, "rx", receiver.url, ("room.reminder", "room.scheduled"))],
            "webhook_poll_s": 0.1,
            "reminder_offsets": offsets,
        }
        return [await start(**options), await start(**options)]

    async with closed_after(start_server) as start:
        yield make


async def follow(server: Server, room: str, user: str) -> None:
    viewer = await server.client(user)
    await viewer.join(room)
    await viewer.track(room, "follow")


async def schedule_room(server: Server, at: int) -> str:
    room = new_room_id()
    status, body = await server.admin("POST", "/v1/rooms", {"id": room, "scheduled_at": at})
    assert status == 201, body
    return room


def reminders(rx: Receiver, room: str) -> list[dict]:
    return [p["data"] for p in rx.named("room.reminder") if p["room"] == room]


async def test_reminders_fire_once_per_offset_across_two_nodes(two_nodes, receiver) -> None:
    a, b = await two_nodes((4000, 1500))
    room = await schedule_room(a, now_ms() + 3_600_000)  # followers first, then the short wait
    await follow(a, room, "f1")
    await follow(b, room, "f2")
    await follow(b, room, "f1")  # following twice keeps one entry
    at = now_ms() + 7000
    status, _ = await b.admin("PATCH", f"/v1/rooms/{room}", {"scheduled_at": at})
    assert status == 200
    await until(lambda: len(reminders(receiver, room)) >= 2, timeout=30, what="two reminders")
    got = reminders(receiver, room)
    assert [r["offset_s"] for r in got] == [4.0, 1.5]
    assert all(r["followers"] == ["f1", "f2"] and r["scheduled_at"] == at for r in got)
    assert got[1]["starts_in_s"] <= 1 and got[0]["room"]["id"] == room
    # Past the show's time nothing more can be due; whatever was emitted is delivered by then.
    await until(lambda: now_ms() > at + 1000, timeout=15, what="the show's time")
    # Every reminder either node emitted (the claim's winners) arrived, and there were two.
    assert a.app[REMINDERS_KEY].sent + b.app[REMINDERS_KEY].sent == 2
    assert len(reminders(receiver, room)) == 2


async def test_claims_make_concurrent_checks_send_once_and_reschedule_rearms(two_nodes, receiver) -> None:
    """Both nodes check at the same (virtual) moments at once, lease or not: the bus claim
    lets one send. A reschedule arms the new time; a started show gets none."""
    a, b = await two_nodes((60_000, 10_000))
    loops = [a.app[REMINDERS_KEY], b.app[REMINDERS_KEY]]
    at = now_ms() + 3_600_000  # beyond the running loops' horizon: only these checks see it
    room = await schedule_room(a, at)
    await follow(a, room, "f1")

    async def both(moment: int) -> int:
        return sum(await asyncio.gather(*(r.check(moment) for r in loops)))

    assert await both(at - 70_000) == 0  # not due yet
    assert await both(at - 60_000) == 1
    assert await both(at - 30_000) == 0  # 60 s sent, 10 s not due
    assert await both(at - 5_000) == 1
    assert await both(at - 1_000) == 0
    assert await both(at) == 0  # the show's time: nothing due

    later = at + 600_000
    status, body = await a.admin("PATCH", f"/v1/rooms/{room}", {"scheduled_at": later})
    assert status == 200 and body["room"]["scheduled_at"] == later
    assert await both(at - 5_000) == 0  # the old time is gone with the reschedule
    assert await both(later - 20_000) == 1  # re-armed: the nearest due offset only
    assert await both(later - 9_000) == 1
    await until(lambda: len(reminders(receiver, room)) == 4, timeout=10, what="four reminders")
    sent = [(r["scheduled_at"], r["offset_s"]) for r in reminders(receiver, room)]
    assert sent == [(at, 60.0), (at, 10.0), (later, 60.0), (later, 10.0)]
    assert [
        p["data"]["room"]["scheduled_at"] for p in receiver.named("room.scheduled") if p["room"] == room
    ] == [
        at,
        later,
    ]

    # A show that started is no longer upcoming: no reminder however close its time was.
    started = await schedule_room(b, at)
    host = await b.client("host", "host")
    await host.join(started)
    await host.start(started)
    assert await both(at - 5_000) == 0
    # Cancelling (null) takes the room off the schedule.
    status, body = await a.admin("PATCH", f"/v1/rooms/{room}", {"scheduled_at": None})
    assert status == 200 and body["room"]["scheduled_at"] is None
    status, body = await a.admin("GET", "/v1/schedule")
    assert room not in [s["id"] for s in body["shows"]]


async def test_reschedule_and_followers_bad_input(two_nodes) -> None:
    a, _ = await two_nodes((60_000,))
    room = await schedule_room(a, now_ms() + 3_600_000)
    for user in ("u3", "u1", "u2"):
        await follow(a, room, user)
    status, body = await a.admin("GET", f"/v1/rooms/{room}/followers?limit=2")
    assert status == 200 and body == {"followers": ["u1", "u2"], "count": 3, "next": "u2"}
    status, body = await a.admin("GET", f"/v1/rooms/{room}/followers?limit=2&after=u2")
    assert body == {"followers": ["u3"], "count": 3, "next": None}
    assert (await a.admin("GET", f"/v1/rooms/{room}/followers?limit=0"))[0] == 400
    # track unfollow takes a follow back (twice is harmless); following again adds it anew.
    quitter = await a.client("u2")
    await quitter.join(room)
    await quitter.track(room, "unfollow")
    await quitter.track(room, "unfollow")
    assert (await a.admin("GET", f"/v1/rooms/{room}/followers"))[1]["followers"] == ["u1", "u3"]
    await quitter.track(room, "follow")
    assert (await a.admin("GET", f"/v1/rooms/{room}/followers"))[1]["count"] == 3
    assert (await a.admin("GET", f"/v1/rooms/{new_room_id()}/followers"))[0] == 404
    viewer_status, _ = await a.rest("GET", f"/v1/rooms/{room}/followers", token("u1"))
    assert viewer_status == 403
    before = (await a.admin("GET", f"/v1/rooms/{room}"))[1]["room"]
    for bad in ({"scheduled_at": -1}, {"scheduled_at": "soon"}, {"record": "yes"}):
        status, body = await a.admin("PATCH", f"/v1/rooms/{room}", bad)
        assert status == 400 and body["error"]["code"] == "bad_request", (bad, body)
    status, body = await a.admin("PATCH", f"/v1/rooms/{room}", {})  # a patch that changes nothing
    assert (status, body["room"]) == (200, before), body
    assert (await a.admin("PATCH", f"/v1/rooms/{new_room_id()}", {"scheduled_at": 1}))[0] == 404
    host = await a.client("host", "host")
    await host.join(room)
    await host.start(room)
    status, body = await a.admin("PATCH", f"/v1/rooms/{room}", {"scheduled_at": now_ms() + 10_000})
    assert status == 409 and body["error"]["code"] == "conflict"
    # A patch refused in part changes nothing: the record setting beside the refused time stays.
    status, body = await a.admin("PATCH", f"/v1/rooms/{room}", {"record": True, "scheduled_at": 1})
    assert status == 409, body
    assert (await a.admin("GET", f"/v1/rooms/{room}"))[1]["room"]["record"] is None
    after = (await a.admin("GET", f"/v1/rooms/{room}"))[1]["room"]
    assert after["scheduled_at"] == before["scheduled_at"]


def test_offsets_setting() -> None:
    assert sched.parse_offsets("10m,24h") == (86_400_000, 600_000)
    assert sched.parse_offsets("1.5s, 500ms") == (1500, 500)
    assert sched.parse_offsets("none") == ()
    assert sched.show_offsets((86_400_000, 600_000)) == "1d,10m"
    for bad in ("10", "10m,10m", "-1s", "31d", "0s", "1w"):
        with pytest.raises(ValueError):
            sched.parse_offsets(bad)
