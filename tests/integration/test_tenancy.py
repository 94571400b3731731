"""Apps are tenants (PROTOCOL §1): two apps on one server share nothing.

Replays the attack of issue 16 point 1 on both bus backends: the second app's admin
must not list, read, publish into or end the first app's rooms; its users are other
users (its ``v9`` cannot grab the first app's red packet, and does not use up the
first app's ``v9``); idempotency keys, webhooks and metrics labels are per app.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.auth import mint_token
from roomserver.client import RoomClient, RoomError
from roomserver.config import Config
from roomserver.server import create_app
from tests.server_fixtures import WAIT_S, Recorder

SHOP_A, SECRET_A = "shopA", "a" * 40
SHOP_B, SECRET_B = "shopB", "b" * 40
SECRETS = {SHOP_A: SECRET_A, SHOP_B: SECRET_B}


class TwoApps:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http
        self.clients: list[RoomClient] = []

    def token(self, app: str, user: str, role: str = "viewer", **kw: Any) -> str:
        return mint_token(app, SECRETS[app], user, role, **kw)  # type: ignore[arg-type]

    async def client(self, app: str, user: str, role: str = "viewer") -> RoomClient:
        c = RoomClient(self.base_url, self.token(app, user, role), request_timeout=WAIT_S)
        self.clients.append(c)
        await c.connect()
        return c

    async def rest(self, app: str, method: str, path: str, json_body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": "Bearer " + self.token(app, "ops", "admin")}
        async with self.http.request(method, self.base_url + path, headers=headers, json=json_body) as r:
            body = await r.read()
            return r.status, (json.loads(body) if body else None)


@pytest.fixture(params=["memory", "redis"])
async def apps(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TwoApps, list[tuple[dict, Any]]]]:
    got: list[tuple[dict, Any]] = []

    async def hook(req: web.Request) -> web.Response:
        body = await req.read()
        got.append((json.loads(body), (req.headers, body)))
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", hook)
    receiver = TestServer(receiver_app, host="127.0.0.1", port=0)
    await receiver.start_server()
    options: dict[str, Any] = {"webhook_url": f"http://127.0.0.1:{receiver.port}/hook"}
    if request.param == "redis":
        cluster = request.getfixturevalue("redis_cluster")
        options |= {
            "redis_cluster": cluster.startup,
            "redis_prefix": request.getfixturevalue("unique_prefix"),
        }
    server = TestServer(create_app(Config(apps=dict(SECRETS), **options)), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    two = TwoApps(str(server.make_url("")).rstrip("/"), http)
    try:
        yield two, got
    finally:
        for c in two.clients:
            await c.close()
        await http.close()
        await server.close()
        await receiver.close()


async def error_code(call: Any) -> str:
    with pytest.raises(RoomError) as info:
        await call
    return info.value.code


async def test_another_apps_admin_reaches_none_of_its_rooms(apps) -> None:
    two, _ = apps
    host_a = await two.client(SHOP_A, "h1", "host")
    await host_a.join("r1")
    await host_a.start("r1", "A's show")
    assert (await two.rest(SHOP_A, "GET", "/v1/rooms"))[1]["rooms"][0]["id"] == "r1"

    status, body = await two.rest(SHOP_B, "GET", "/v1/rooms")
    assert (status, body["rooms"]) == (200, [])
    for method, path, payload in [
        ("GET", "/v1/rooms/r1", None),
        ("DELETE", "/v1/rooms/r1", None),
        ("POST", "/v1/rooms/r1/events", {"ev": "x", "data": {}}),
        ("GET", "/v1/rooms/r1/history", None),
    ]:
        status, body = await two.rest(SHOP_B, method, path, payload)
        assert (status, body["error"]["code"]) == (404, "not_found"), (method, path, body)
    # B's own r1 is another room: B's host ending it leaves A's show live.
    host_b = await two.client(SHOP_B, "h1", "host")
    await host_b.join("r1")
    assert await error_code(host_b.end("r1")) == "conflict"  # B's r1 is not live
    status, body = await two.rest(SHOP_A, "GET", "/v1/rooms/r1")
    assert (status, body["room"]["state"], body["room"]["title"]) == (200, "live", "A's show")
    status, body = await two.rest(SHOP_A, "GET", "/v1/rooms/r1/history")
    assert [e["ev"] for e in body["events"]] == ["room.started"]


async def test_same_user_id_in_two_apps_is_two_users(apps) -> None:
    two, _ = apps
    host_a = await two.client(SHOP_A, "h1", "host")
    await host_a.join("r1")
    host_b = await two.client(SHOP_B, "h1", "host")
    await host_b.join("r1")
    v9_a = await two.client(SHOP_A, "v9")
    v9_b = await two.client(SHOP_B, "v9")
    await v9_a.join("r1")
    rec_a = Recorder(v9_a)
    await v9_b.join("r1")  # B's own r1: joining it shows none of A's room
    packet = (await host_a.redpacket_send("r1", total_cents=100, count=2))["packet"]["id"]
    # B's v9 names A's packet in B's r1: there is no such packet there.
    assert await error_code(v9_b.redpacket_grab("r1", packet)) == "not_found"
    assert (await v9_a.redpacket_grab("r1", packet))["amount_cents"] >= 1
    # Same cid, same user id, two apps: two messages, each in its own room.
    sent_b = await v9_b.send_barrage("r1", "from B", cid="c-1")
    sent_a = await v9_a.send_barrage("r1", "from A", cid="c-1")
    assert sent_a["seq"] and sent_b["seq"]
    await rec_a.wait("barrage")
    await rec_a.quiet()
    assert [e["data"]["text"] for e in rec_a.named("barrage")] == ["from A"]
    assert {e["room"] for e in rec_a.events} == {"r1"}  # public ids on the wire


async def test_webhooks_are_signed_per_app_and_metrics_labelled(apps) -> None:
    two, got = apps
    for app in (SHOP_A, SHOP_B):
        host = await two.client(app, "h1", "host")
        await host.join("r1")
        await host.start("r1")
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while len([p for p, _ in got if p["event"] == "room.started"]) < 2:
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.02)
    for payload, (headers, body) in got:
        secret = SECRETS[payload["app"]]
        assert payload["room"] == "r1"
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Roomserver-Signature"] == expected
        t, v1 = (part.split("=", 1)[1] for part in headers["X-Roomserver-Signature-V2"].split(","))
        assert v1 == hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert {p["app"] for p, _ in got} == {SHOP_A, SHOP_B}
    async with two.http.get(two.base_url + "/metrics") as r:
        text = await r.text()
    for app in (SHOP_A, SHOP_B):
        assert f'roomserver_ops_total{{app="{app}",op="room.start",result="ok"}} 1.0' in text


async def test_lottery_audit_and_orders_are_per_app(apps) -> None:
    two, _ = apps
    host_a = await two.client(SHOP_A, "h1", "host")
    await host_a.join("r1")
    lot = (await host_a.lottery_create("r1", prize="tea", winners=1, duration_ms=60_000))["lottery"]["id"]
    status, _ = await two.rest(SHOP_A, "GET", f"/v1/rooms/r1/lotteries/{lot}")
    assert status == 200
    status, body = await two.rest(SHOP_B, "GET", f"/v1/rooms/r1/lotteries/{lot}")
    assert (status, body["error"]["code"]) == (404, "not_found")
