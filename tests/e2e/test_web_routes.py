"""The web routes over HTTP: static pages and SDK, and the dev-only token mint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from roomserver.auth import DEV_APP, TokenVerifier
from roomserver.config import Config
from roomserver.web import add_web_routes, dev_mint_refusal
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


def _no_cors(res) -> None:
    assert not [h for h in res.headers if h.lower().startswith("access-control-")], dict(res.headers)


async def test_dev_token_answers_its_own_pages_without_cors_headers(dev) -> None:
    client, _ = dev
    own = f"http://{client.host}:{client.port}"
    res = await client.post(
        "/dev/token", json={"user": "ann"}, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}
    )
    assert res.status == 200
    _no_cors(res)
    # Other routes keep the app-wide CORS answer (SDKs embedded on apps' own origins).
    assert (await client.get("/healthz", headers={"Origin": "http://evil.example"})).headers[
        "Access-Control-Allow-Origin"
    ] == "*"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        # DNS rebinding: a foreign name resolving to 127.0.0.1 is "same-origin" for the browser.
        {"Host": "evil.example", "Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
    ],
)
async def test_dev_token_refuses_other_origins(dev, headers: dict) -> None:
    client, _ = dev
    res = await client.post("/dev/token", json={"user": "mallory", "role": "admin"}, headers=headers)
    assert res.status == 403
    assert (await res.json())["error"]["code"] == "forbidden"
    _no_cors(res)


async def test_dev_token_preflight_from_another_origin_is_not_allowed(dev) -> None:
    client, _ = dev
    res = await client.options(
        "/dev/token",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    _no_cors(res)


async def test_dev_token_refuses_a_peer_that_is_not_loopback_whatever_it_forwards() -> None:
    app = web.Application()
    add_web_routes(app, Config(host="127.0.0.1", port=0))
    (handler,) = [r.handler for r in app.router.routes() if r.method == "POST"]

    class Transport:
        def __init__(self, peer: str) -> None:
            self.peer = peer

        def get_extra_info(self, name: str, default=None):
            return (self.peer, 40000) if name == "peername" else default

    headers = {"Host": "127.0.0.1:8080", "X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    req = make_mocked_request(
        "POST", "/dev/token", headers=headers, transport=Transport("192.0.2.7"), app=app
    )
    res = await handler(req)
    assert res.status == 403
    assert b"loopback" in res.body


@pytest.mark.parametrize(
    ("peer", "headers", "refused"),
    [
        ("127.0.0.1", {"Host": "127.0.0.1:8080"}, False),  # curl on the machine
        ("127.0.0.1", {"Host": "localhost:8080", "Origin": "http://localhost:8080"}, False),
        (
            "::1",
            {"Host": "[::1]:8080", "Origin": "http://[::1]:8080", "Sec-Fetch-Site": "same-origin"},
            False,
        ),
        ("::ffff:127.0.0.1", {"Host": "127.0.0.1:8080"}, False),
        ("192.0.2.7", {"Host": "127.0.0.1:8080", "X-Forwarded-For": "127.0.0.1"}, True),
        ("10.0.0.2", {"Host": "localhost:8080", "Forwarded": "for=127.0.0.1"}, True),
        (None, {"Host": "127.0.0.1:8080"}, True),
        ("127.0.0.1", {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:9999"}, True),
        ("127.0.0.1", {"Host": "127.0.0.1:8080", "Origin": "https://127.0.0.1:8080"}, True),
        ("127.0.0.1", {"Host": "127.0.0.1:8080", "Sec-Fetch-Site": "none"}, True),
        ("127.0.0.1", {"Host": "shop.example:8080"}, True),
        ("127.0.0.1", {}, True),
    ],
)
def test_dev_mint_refusal_rules(peer, headers: dict, refused: bool) -> None:
    assert (dev_mint_refusal(peer, "http", headers) is not None) is refused
