"""Who makes rooms, how many, and what times a client may set (issue 16 points 2 and 11)."""

from __future__ import annotations

import pytest

from roomserver.client import RoomError
from roomserver.core.room import MAX_AHEAD_MS
from roomserver.protocol import now_ms
from tests.server_fixtures import Server, new_room_id


async def error_code(call) -> str:
    with pytest.raises(RoomError) as info:
        await call
    return info.value.code


async def test_a_wildcard_viewer_cannot_create_rooms_by_joining(make_server) -> None:
    server = await make_server(auto_create="named")  # the default
    viewer = await server.client("v1")
    room = new_room_id()
    assert await error_code(viewer.join(room)) == "not_found"
    status, body = await server.admin("GET", f"/v1/rooms/{room}")
    assert status == 404, body
    # A token minted for that very room may create it; so may staff.
    named = await server.client("v2", token_kwargs={"room": room})
    assert (await named.join(room))["room"]["id"] == room
    host = await server.client("h1", "host")
    other = new_room_id()
    assert (await host.join(other))["room"]["id"] == other
    assert (await viewer.join(other))["room"]["id"] == other  # it exists now


@pytest.mark.parametrize(
    ("policy", "viewer_creates", "host_creates"), [("any", True, True), ("off", False, False)]
)
async def test_auto_create_policy(make_server, policy: str, viewer_creates: bool, host_creates: bool) -> None:
    server = await make_server(auto_create=policy)
    for role, creates in (("viewer", viewer_creates), ("host", host_creates)):
        client = await server.client("u-" + role, role)
        room = new_room_id()
        if creates:
            assert (await client.join(room))["room"]["id"] == room
        else:
            assert await error_code(client.join(room)) == "not_found"
    # The app's back end always can.
    status, _ = await server.admin("POST", "/v1/rooms", {"id": new_room_id(), "title": "t"})
    assert status == 201


async def test_rooms_per_app_are_limited(make_server) -> None:
    server = await make_server(max_rooms_per_app=3)
    for _ in range(3):
        status, body = await server.admin("POST", "/v1/rooms", {"title": "t"})
        assert status == 201, body
    status, body = await server.admin("POST", "/v1/rooms", {"title": "t"})
    assert (status, body["error"]["code"]) == (409, "limit_reached")
    host = await server.client("h1", "host")
    assert await error_code(host.join(new_room_id())) == "limit_reached"
    status, body = await server.admin("GET", "/v1/rooms")
    assert len(body["rooms"]) == 3


async def test_room_list_pages(make_server) -> None:
    server = await make_server()
    ids = sorted(f"p-{i:02d}" for i in range(7))
    for room in ids:
        assert (await server.admin("POST", "/v1/rooms", {"id": room}))[0] == 201
    seen, after = [], ""
    while True:
        status, body = await server.admin("GET", f"/v1/rooms?limit=3&after={after}")
        assert status == 200, body
        seen += [r["id"] for r in body["rooms"]]
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ids
    for bad in ("limit=0", "limit=1001", "limit=x", "after=%2F..", "after=" + "x" * 65):
        status, body = await server.admin("GET", f"/v1/rooms?{bad}")
        assert (status, body["error"]["code"]) == (400, "bad_request"), bad


async def test_schedule_lists_the_apps_upcoming_shows_soonest_first(server: Server) -> None:
    now = now_ms()
    later, sooner = new_room_id(), new_room_id()
    for room, at in ((later, now + 7_200_000), (sooner, now + 3_600_000)):
        status, body = await server.admin("POST", "/v1/rooms", {"id": room, "scheduled_at": at})
        assert status == 201, body
    status, body = await server.rest("GET", "/v1/schedule", server_token(server))
    assert status == 200
    assert [s["id"] for s in body["shows"]][:2] == [sooner, later]
    # Going live takes a show off the schedule.
    host = await server.client("h1", "host")
    await host.join(sooner)
    await host.start(sooner)
    status, body = await server.rest("GET", "/v1/schedule", server_token(server))
    assert sooner not in [s["id"] for s in body["shows"]]


def server_token(server: Server) -> str:
    from tests.server_fixtures import token

    return token("any-viewer")


@pytest.mark.parametrize(
    "scheduled_at",
    [-1, 2**53, 10**20, "soon", 1.5],
)
async def test_scheduled_at_out_of_range_is_refused(server: Server, scheduled_at) -> None:
    status, body = await server.admin("POST", "/v1/rooms", {"title": "t", "scheduled_at": scheduled_at})
    assert (status, body["error"]["code"]) == (400, "bad_request"), body


async def test_countdowns_more_than_a_year_ahead_are_refused(server: Server, room: str) -> None:
    now = now_ms()
    host = await server.client("h1", "host")
    await host.join(room)
    for countdown_to in (now - 1, now + MAX_AHEAD_MS + 60_000, 2**53, 10**30):
        assert await error_code(host.announce(room, "soon", countdown_to=countdown_to)) == "bad_request"
    assert (await host.announce(room, "soon", countdown_to=now + 60_000)) == {}
