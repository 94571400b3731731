"""The web routes over HTTP: static pages and SDK, and the dev-only token mint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from roomserver.auth import DEV_APP, TokenVerifier
from roomserver.config import Config
from roomserver.web import add_web_routes
from tests.e2e.conftest import web_app


async def _client(config: Config) -> TestClient:
    client = TestClient(TestServer(web_app(config), host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def dev() -> AsyncIterator[tuple[TestClient, Config]]:
    config = Config(host="127.0.0.1", port=0)
    client = await _client(config)
    yield client, config
    await client.close()


@pytest.fixture
async def prod() -> AsyncIterator[TestClient]:
    client = await _client(Config(host="127.0.0.1", port=0, apps={"shop": "s3cret-s3cret"}))
    yield client
    await client.close()


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", "Mint a token"),
        ("/host.html", "Host studio"),
        ("/viewer.html", 'id="like-btn"'),
        ("/call.html", 'id="leave-btn"'),
    ],
)
async def test_pages_are_served(dev, path: str, marker: str) -> None:
    client, _ = dev
    res = await client.get(path)
    assert res.status == 200
    assert res.content_type == "text/html"
    assert marker in await res.text()


async def test_sdk_is_an_es_module_served_as_javascript(dev) -> None:
    client, _ = dev
    res = await client.get("/sdk/roomserver.js")
    assert res.status == 200
    assert "javascript" in res.content_type
    assert res.headers["Cache-Control"] == "no-cache"
    body = await res.text()
    assert "export class RoomClient" in body
    types = await client.get("/sdk/roomserver.d.ts")
    assert types.status == 200
    assert "export declare class RoomClient" in await types.text()


async def test_static_routes_do_not_escape_web_client(dev) -> None:
    client, _ = dev
    for path in ("/sdk/../roomserver/auth.py", "/app/%2e%2e/%2e%2e/pyproject.toml", "/sdk/nope.js"):
        res = await client.get(path)
        assert res.status in (403, 404), path


async def test_dev_token_mints_a_token_the_server_accepts(dev) -> None:
    client, config = dev
    res = await client.post("/dev/token", json={"user": "ann", "role": "host", "room": "r1", "name": "Ann"})
    assert res.status == 200
    body = await res.json()
    identity = TokenVerifier(config.app_secrets()).verify(body["token"])
    assert (identity.app, identity.user, identity.role, identity.room, identity.name) == (
        DEV_APP,
        "ann",
        "host",
        "r1",
        "Ann",
    )
    assert body["expires_in"] > 3600
    ws = await client.ws_connect(f"/v1/ws?token={body['token']}")
    await ws.send_json({"id": 1, "op": "ping"})
    reply = await ws.receive_json(timeout=5)
    assert reply[0]["ok"] is True
    await ws.close()


@pytest.mark.parametrize(
    "body",
    [
        {"role": "viewer"},
        {"user": "a b", "role": "viewer"},
        {"user": "ann", "role": "emperor"},
        {"user": "ann", "room": "bad room"},
        {"user": "ann", "name": "x" * 33},
        {"user": "ann", "surprise": 1},
    ],
)
async def test_dev_token_rejects_bad_requests(dev, body: dict) -> None:
    client, _ = dev
    res = await client.post("/dev/token", json=body)
    assert res.status == 400
    assert (await res.json())["error"]["code"] == "bad_request"


async def test_dev_token_is_404_outside_dev_mode(prod) -> None:
    res = await prod.post("/dev/token", json={"user": "ann", "role": "admin"})
    assert res.status == 404
    assert (await res.json())["error"]["code"] == "not_found"
    # The pages themselves are still served: apps hand them tokens in the URL fragment.
    assert (await prod.get("/viewer.html")).status == 200


async def test_a_missing_web_client_folder_is_a_404_not_a_crash(tmp_path: Path) -> None:
    app = web.Application()
    add_web_routes(app, Config(host="127.0.0.1", port=0), web_dir=tmp_path / "nowhere")
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        res = await client.get("/viewer.html")
        assert res.status == 404
        assert "viewer.html is missing" in (await res.json())["error"]["message"]
        assert (await client.get("/sdk/roomserver.js")).status == 404
        assert (await client.post("/dev/token", json={"user": "u1"})).status == 200
    finally:
        await client.close()
