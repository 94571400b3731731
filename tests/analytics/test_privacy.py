"""Privacy REST (PIPL/GDPR), on both store engines: a user's export holds their behaviour records; after
DELETE it holds nothing, the show keeps the records under an anonymous id, and a
second DELETE changes nothing. Bad input gets a clear error."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from roomserver.appkeys import STORE_KEY
from roomserver.behaviour_writer import wait_show_stored
from tests.server_fixtures import APP, Server, new_room_id, start_server, token


@pytest.fixture(params=["sqlite", "pg"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A server on each store engine (the memory bus)."""
    if request.param == "pg":
        s = await start_server(database_url=request.getfixturevalue("postgres_url"))
    else:
        s = await start_server()
    yield s
    await s.close()


async def _show(server: Server, room: str) -> int:
    host = await server.client("h1", "host")
    await host.join(room)
    await host.start(room)
    ann = await server.client("ann")
    await ann.join(room)
    await ann.send_barrage(room, "hi")
    await ann.send_like(room, 2)
    await ann.track(room, "cart.add", product="p1")
    await ann.leave(room)
    show = (await host.end(room))["summary"]["show"]
    await wait_show_stored(server.app[STORE_KEY], server.node.broker, APP, room, show, timeout=20)
    return show


async def test_export_then_erase_keeps_anonymous_counts(server: Server) -> None:
    room = new_room_id()
    show = await _show(server, room)
    status, body = await server.admin("GET", "/v1/users/ann/export")
    assert status == 200, body
    assert (body["app"], body["user"], body["erased_at"]) == (APP, "ann", None)
    kinds = Counter(r["kind"] for r in body["data"]["behaviour"])
    assert kinds == Counter({"join": 1, "barrage": 1, "like": 1, "track": 1, "leave": 1})
    assert all(r["user"] == "ann" and r["room"] == room for r in body["data"]["behaviour"])

    store = server.app[STORE_KEY]
    before = Counter(e.kind for e in await store.events.show_events(APP, room, show))
    status, body = await server.admin("DELETE", "/v1/users/ann")
    assert (status, body) == (200, {"app": APP, "user": "ann", "erased": True})
    status, body = await server.admin("GET", "/v1/users/ann/export")
    assert status == 200 and body["data"]["behaviour"] == [] and body["erased_at"] > 0
    after = await store.events.show_events(APP, room, show)
    assert Counter(e.kind for e in after) == before  # the report's inputs keep their counts
    anonymous = {e.user for e in after if e.user not in ("h1",)}
    assert len(anonymous) == 1 and next(iter(anonymous)).startswith("~erased-")
    (barrage,) = [e for e in after if e.kind == "barrage"]
    assert "text" not in barrage.data and barrage.data["seq"] > 0  # her words go, the count stays
    # Idempotent: erased again, nothing changes.
    status, body = await server.admin("DELETE", "/v1/users/ann")
    assert (status, body["erased"]) == (200, True)
    assert [(e.id, e.user) for e in await store.events.show_events(APP, room, show)] == [
        (e.id, e.user) for e in after
    ]


async def test_bad_privacy_requests(server: Server) -> None:
    await _show(server, new_room_id())
    for method, path in (("GET", "/v1/users/nobody/export"), ("DELETE", "/v1/users/nobody")):
        status, body = await server.admin(method, path)
        assert (status, body["error"]["code"]) == (404, "not_found"), body
    status, body = await server.admin("GET", "/v1/users/a%20b/export")
    assert (status, body["error"]["code"]) == (400, "bad_request")
    for method, path in (("GET", "/v1/users/ann/export"), ("DELETE", "/v1/users/ann")):
        status, body = await server.rest(method, path, token("ann"))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, _ = await server.rest(method, path)
        assert status == 401
    # Nothing changed: ann's records are still hers.
    status, body = await server.admin("GET", "/v1/users/ann/export")
    assert status == 200 and len(body["data"]["behaviour"]) == 5
