"""PROTOCOL §5 HTTP API: health, metrics, rooms, server-side publish, history,
and an OpenAPI document that lists every route the application serves."""

from __future__ import annotations

import re

import pytest

from roomserver.api import API_PREFIXES
from roomserver.client import RoomError
from roomserver.handlers import server_api_ops
from tests.server_fixtures import Recorder, Server, token

METRICS = [
    "roomserver_sockets",
    "roomserver_rooms",
    "roomserver_ops_total",
    "roomserver_bus_events_total",
    "roomserver_deliveries_total",
    "roomserver_frames_total",
    "roomserver_barrage_shed_total",
    "roomserver_ephemeral_shed_total",
    "roomserver_slow_consumer_closes_total",
    "roomserver_cut_connections_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "roomserver_socket_buffer_bytes_max",
    "roomserver_flush_seconds",
]

HISTOGRAMS = {"roomserver_flush_seconds"}


async def test_healthz_and_readyz(server: Server) -> None:
    assert await server.rest("GET", "/healthz") == (200, {"ok": True})
    assert await server.rest("GET", "/readyz") == (200, {"ok": True})


async def test_readyz_fails_while_draining(server: Server) -> None:
    server.node.draining = True
    try:
        status, body = await server.rest("GET", "/readyz")
        assert status == 503 and body == {"ok": False}
        # and a draining server refuses new sockets
        async with server.http.get(
            server.ws_url,
            headers={
                "Authorization": f"Bearer {token('u1')}",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "unavailable"
    finally:
        server.node.draining = False


async def test_metrics_text(server: Server, room: str) -> None:
    viewer = await server.client("u1")
    await viewer.join(room)
    await viewer.send_barrage(room, "hi")
    with pytest.raises(RoomError):
        await viewer.send_barrage(room, "")
    async with server.http.get(server.base_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    for name in METRICS:  # typed right: totals are counters, levels gauges (issue 13)
        kind = "counter" if name.endswith("_total") else "histogram" if name in HISTOGRAMS else "gauge"
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.M), name
    assert 'roomserver_ops_total{app="testapp",op="barrage.send",result="ok"} 1.0' in text
    assert 'roomserver_ops_total{app="testapp",op="barrage.send",result="bad_request"} 1.0' in text
    assert "roomserver_sockets 1.0" in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/rooms"),
        ("GET", "/v1/rooms"),
        ("GET", "/v1/rooms/r1"),
        ("DELETE", "/v1/rooms/r1"),
        ("POST", "/v1/rooms/r1/events"),
    ],
)
async def test_admin_routes_need_an_admin_token(server: Server, method: str, path: str) -> None:
    body = {"title": "t", "ev": "x", "data": {}}
    status, err = await server.rest(method, path, None, body)
    assert status == 401 and err["error"]["code"] == "unauthorized"
    status, err = await server.rest(method, path, "forged.token.value", body)
    assert status == 401
    for role in ("viewer", "host", "moderator"):
        status, err = await server.rest(method, path, token("u1", role), body)
        assert status == 403 and err["error"]["code"] == "forbidden", (role, err)


async def test_rooms_create_list_get_delete(server: Server, room: str) -> None:
    status, body = await server.admin("POST", "/v1/rooms", {"id": room, "title": "Spring", "mode": "live"})
    assert status == 201
    created = body["room"]
    assert created["id"] == room and created["title"] == "Spring" and created["mode"] == "live"
    assert created["state"] == "idle" and created["barrage_cap"] == 100
    assert (await server.admin("POST", "/v1/rooms", {"id": room, "title": "again"}))[0] == 409
    status, body = await server.admin("POST", "/v1/rooms", {"title": "no id", "mode": "call"})
    assert status == 201 and body["room"]["id"] and body["room"]["mode"] == "call"
    generated = body["room"]["id"]
    status, body = await server.admin("GET", "/v1/rooms")
    assert status == 200
    assert {room, generated} <= {r["id"] for r in body["rooms"]}
    status, body = await server.admin("GET", f"/v1/rooms/{room}")
    assert status == 200 and body["room"]["title"] == "Spring"
    assert (await server.admin("GET", "/v1/rooms/nope-404"))[0] == 404

    # DELETE ends a live show; clients see room.ended
    host = await server.client("h1", "host")
    viewer = await server.client("u1")
    rec = Recorder(viewer)
    snap = (await viewer.join(room))["room"]
    assert snap["title"] == "Spring"
    await host.join(room)
    await host.start(room)
    status, body = await server.admin("DELETE", f"/v1/rooms/{room}")
    assert status == 200 and body["room"]["state"] == "ended"
    (ended,) = await rec.wait("room.ended")
    assert "summary" in ended["data"] and "seq" in ended
    assert (await server.admin("GET", f"/v1/rooms/{room}"))[1]["room"]["state"] == "ended"
    assert (await server.admin("DELETE", "/v1/rooms/nope-404"))[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {"id": "bad id!", "title": "t"},
        {"id": "x" * 65, "title": "t"},
        {"title": 5},
        {"title": "t" * 101},
        {"title": "t", "mode": "party"},
        {"title": "t", "barrage_cap": 0},
        {"title": "t", "barrage_cap": "5"},
        {"title": "t", "barrage_cap": True},
        {"title": "t", "scheduled_at": -1},
        [],
        "room",
    ],
)
async def test_create_room_bad_bodies(server: Server, body: object) -> None:
    status, err = await server.admin("POST", "/v1/rooms", body)
    assert status == 400 and err["error"]["code"] == "bad_request" and err["error"]["message"]
    assert (await server.admin("GET", "/v1/rooms"))[1]["rooms"] == []


async def test_create_room_malformed_json(server: Server) -> None:
    async with server.http.post(
        server.base_url + "/v1/rooms",
        data=b"{nope",
        headers={"Authorization": f"Bearer {token('a', 'admin')}", "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_request"


async def test_server_side_publish_reaches_clients_with_a_seq(server: Server, room: str) -> None:
    viewer = await server.client("u1")
    rec = Recorder(viewer)
    snap = (await viewer.join(room))["room"]
    status, body = await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "flash", "data": {"x": 1}})
    assert status == 201 and body == {"seq": snap["seq"] + 1}
    (ev,) = await rec.wait("custom.flash")
    assert ev["seq"] == snap["seq"] + 1 and ev["data"] == {"x": 1} and ev["room"] == room
    # bad input
    for bad in ({"ev": "has space"}, {"ev": ""}, {"ev": "x" * 49}, {"data": {}}, {"ev": "x", "data": [1]}):
        status, err = await server.admin("POST", f"/v1/rooms/{room}/events", bad)
        assert status == 400 and err["error"]["code"] == "bad_request", bad
    status, err = await server.admin(
        "POST", f"/v1/rooms/{room}/events", {"ev": "big", "data": {"p": "x" * 9000}}
    )
    assert status == 413 and err["error"]["code"] == "too_large"
    status, err = await server.admin("POST", "/v1/rooms/nope-404/events", {"ev": "x"})
    assert status == 404 and err["error"]["code"] == "not_found"
    await rec.quiet()
    assert len(rec.durable(room)) == 1


async def test_history_paging(server: Server, room: str) -> None:
    viewer = await server.client("u1")
    epoch = (await viewer.join(room))["room"]["epoch"]
    for i in range(25):
        await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "n", "data": {"i": i}})
    path = f"/v1/rooms/{room}/history"
    status, page = await server.rest("GET", f"{path}?since=0&limit=10", token("u1", room=room))
    assert status == 200
    assert page["epoch"] == epoch and page["seq"] == 25
    assert [e["seq"] for e in page["events"]] == list(range(1, 11))
    assert all(e["ev"] == "custom.n" and e["room"] == room for e in page["events"])
    seen = []
    since = 0
    for _ in range(10):  # bounded paging loop
        _, page = await server.rest("GET", f"{path}?since={since}&limit=10", token("u1"))
        if not page["events"]:
            break
        seen += [e["data"]["i"] for e in page["events"]]
        since = page["events"][-1]["seq"]
    assert seen == list(range(25))
    # default limit and bad parameters
    _, page = await server.rest("GET", path, token("u1"))
    assert len(page["events"]) == 25
    for query in ("since=-1", "limit=0", "limit=1001", "since=x", "limit=1.5"):
        status, err = await server.rest("GET", f"{path}?{query}", token("u1"))
        assert status == 400 and err["error"]["code"] == "bad_request", query
    status, err = await server.rest("GET", f"{path}?since=99", token("u1"))
    assert status == 410 and err["error"]["code"] == "history_gone"


async def test_history_access(server: Server, room: str) -> None:
    viewer = await server.client("u1")
    await viewer.join(room)
    path = f"/v1/rooms/{room}/history"
    assert (await server.rest("GET", path))[0] == 401
    assert (await server.rest("GET", path, token("u1", room="another-room")))[0] == 403
    assert (await server.rest("GET", path, token("u1", room=room)))[0] == 200
    assert (await server.rest("GET", "/v1/rooms/nope-404/history", token("u1")))[0] == 404


async def test_openapi_lists_every_route(server: Server) -> None:
    status, doc = await server.rest("GET", "/v1/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in server.app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None:  # static routes: a prefix
            path = info.get("prefix", "") + "/{filename}"
        if path.startswith(API_PREFIXES):  # the browser pages and their files are not API
            served.add((route.method, path))
    assert served, "no routes found"
    # The server API route is documented as one path per op it runs (roomserver/api/openapi.py).
    ops_path = "/v1/rooms/{room}/ops/{op}"
    assert ("POST", ops_path) in served
    per_op = {("POST", ops_path.replace("{op}", name)) for name in server_api_ops()}
    assert per_op <= documented
    served = (served - {("POST", ops_path)}) | per_op
    assert served - documented == set(), f"served but not in openapi.json: {sorted(served - documented)}"
    assert documented - served == set(), f"in openapi.json but not served: {sorted(documented - served)}"


async def test_openapi_gives_each_server_api_op_its_params_and_reply(server: Server) -> None:
    _, doc = await server.rest("GET", "/v1/openapi.json")
    post = doc["paths"]["/v1/rooms/{room}/ops/sale.create"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["allOf"]
    params = doc["components"]["schemas"][body[0]["$ref"].rsplit("/", 1)[1]]
    assert {"product", "price_cents", "stock", "limit_per_user"} <= set(params["required"])
    assert "as" in body[1]["properties"]
    reply = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert reply == {"$ref": "#/components/schemas/SaleCreated"}
    sale = doc["components"]["schemas"]["SaleCreated"]
    assert sale["additionalProperties"] is False and sale["required"] == ["sale"]
    rooms = doc["paths"]["/v1/rooms"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert rooms == {"$ref": "#/components/schemas/RoomPage"}
    assert "/v1/rooms/{room}/ops/barrage.send" not in doc["paths"]  # a viewer's op: not in the server API


async def test_openapi_describes_errors_and_auth(server: Server) -> None:
    _, doc = await server.rest("GET", "/v1/openapi.json")
    rooms = doc["paths"]["/v1/rooms"]
    assert rooms["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert rooms["get"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []  # unauthenticated, said explicitly
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
