"""Webhooks: signed, retried, sent once per transition, followers included."""

from __future__ import annotations

import hashlib
import hmac
import json

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.auth import mint_token
from roomserver.bus.memory import MemoryBroker
from roomserver.config import Config
from roomserver.core.webhooks import Endpoint, RetryPolicy
from roomserver.protocol import now_ms
from roomserver.server import create_app
from roomserver.webhooks import Webhooks
from tests.polling import until

SECRET = "w" * 40


async def receiver(fail_first: int = 0):
    got: list[tuple[dict, str, bytes]] = []
    calls = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= fail_first:
            return web.Response(status=503)
        body = await request.read()
        got.append((json.loads(body), request.headers["X-Roomserver-Signature"], body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    return srv, got, calls


async def test_webhook_is_signed_and_retried():
    srv, got, calls = await receiver(fail_first=2)
    hooks = Webhooks(
        MemoryBroker(),
        {"shop": SECRET},
        [Endpoint("shop", "default", f"http://127.0.0.1:{srv.port}/hook")],
        node_id="n1",
        policy=RetryPolicy(base_s=0.01),
    )
    hooks.start()
    hooks.emit("room.ended", "shop/r1", {"x": 1})
    await until(lambda: got, 5.0)
    payload, sig, body = got[0]
    assert calls["n"] == 3
    assert sig == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert (payload["event"], payload["app"], payload["room"]) == ("room.ended", "shop", "r1")
    assert payload["data"] == {"x": 1}
    assert payload["id"] and payload["ts"] > 0
    await hooks.stop()
    await srv.close()


async def test_start_and_end_send_webhooks_with_followers():
    srv, got, _ = await receiver()
    app = create_app(
        Config(apps={"app": SECRET}, webhook_url=f"http://127.0.0.1:{srv.port}/hook", flush_ms=10)
    )
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    admin = mint_token("app", SECRET, "backend", "admin")
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            f"{base}/v1/rooms",
            json={"id": "show1", "title": "Tea", "scheduled_at": now_ms() + 86_400_000},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status == 201
        async with s.ws_connect(f"{base}/v1/ws?token={mint_token('app', SECRET, 'fan1', 'viewer')}") as fan:
            await fan.send_json({"id": 1, "op": "room.join", "room": "show1"})
            await fan.receive()
            await fan.send_json({"id": 2, "op": "track", "room": "show1", "action": "follow"})
            await fan.receive()
        r = await s.get(f"{base}/v1/schedule", headers={"Authorization": f"Bearer {admin}"})
        assert [v["id"] for v in (await r.json())["shows"]] == ["show1"]
        async with s.ws_connect(f"{base}/v1/ws?token={mint_token('app', SECRET, 'h1', 'host')}") as host:
            for i, op in enumerate(("room.join", "room.start", "room.end")):
                await host.send_json({"id": i, "op": op, "room": "show1"})
                await host.receive()
        await until(lambda: len(got) >= 3, 5.0)
        r = await s.get(f"{base}/v1/schedule", headers={"Authorization": f"Bearer {admin}"})
        assert (await r.json())["shows"] == []  # it went live: no longer upcoming
    events = [p["event"] for p, _, _ in got]
    assert events == ["room.scheduled", "room.started", "room.ended"]
    assert got[1][0]["data"]["followers"] == ["fan1"]
    assert got[2][0]["data"]["summary"]["show"] == 1
    await server.close()
    await srv.close()
