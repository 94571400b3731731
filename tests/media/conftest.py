"""Fixtures for the media tests: a loopback-only MediaRouter, a WHIP/WHEP HTTP server with a
JWT `authorize`, and a leak check over every aiortc peer connection in the process.

Real aiortc on both ends over 127.0.0.1, no mocks. ICE host candidates are pinned to loopback
for the whole process (see roomserver/media/ice.py), which is what every test here wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection

from roomserver.media.errors import Forbidden, Unauthorized
from roomserver.media.ice import pin_host_addresses
from roomserver.media.sfu import MediaRouter
from roomserver.media.whip import (
    Authorize,
    IceServers,
    MediaAction,
    MediaPrincipal,
    bearer_token,
    media_routes,
)

LOOPBACK = "127.0.0.1"
SDK = Path(__file__).resolve().parents[2] / "web_client" / "sdk" / "roomserver.js"
APP_KEY = "test-app"
APP_SECRET = "test-secret-0123456789-abcdefghij"

pin_host_addresses([LOOPBACK])

# Browser tests register pages here; the media server serves them at /pages/{name}, same
# origin as WHIP/WHEP (no CORS needed).
PAGES: dict[str, str] = {}


def make_token(
    user: str, role: str = "viewer", room: str | None = None, ttl: float = 3600, secret: str = APP_SECRET
) -> str:
    claims = {"iss": APP_KEY, "sub": user, "name": user, "exp": int(time.time() + ttl), "role": role}
    if room is not None:
        claims["room"] = room
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class Roster:
    """Who may publish where; the real server derives this from room state."""

    cohosts: dict[str, set[str]] = field(default_factory=dict)
    call_rooms: set[str] = field(default_factory=set)


def jwt_authorize(roster: Roster) -> Authorize:
    """The test stand-in for the server's authorize: PROTOCOL §1 tokens, §4 publish rules.

    Publish: a `host` token → role host; an admitted co-host → cohost; anyone in a call room →
    call (the router caps the count); everyone else 403. Play/stop: any valid token for the room.
    """

    async def authorize(request: web.Request, room: str, action: MediaAction) -> MediaPrincipal:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized("missing bearer token")
        try:
            claims = jwt.decode(
                token,
                APP_SECRET,
                algorithms=["HS256"],
                issuer=APP_KEY,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        if claims.get("room") not in (None, "*", room):
            raise Forbidden(f"this token is not for room {room}")
        user, role = claims["sub"], claims.get("role", "viewer")
        if action != "publish":
            return MediaPrincipal(user)
        if room in roster.call_rooms:
            return MediaPrincipal(user, "call")
        if role == "host":
            return MediaPrincipal(user, "host")
        if user in roster.cohosts.get(room, set()):
            return MediaPrincipal(user, "cohost")
        raise Forbidden(f"{user} may not publish in room {room}")

    return authorize


def open_peer_connections() -> list[RTCPeerConnection]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"]


@pytest.fixture(params=["rtp", "frame"])
async def router(request: pytest.FixtureRequest) -> AsyncIterator[MediaRouter]:
    """A router per forwarding mode: RTP-level (the default) and frame-level."""
    changes: list[str] = []
    r = MediaRouter(
        ice_host=LOOPBACK, connect_timeout=5.0, on_publishers_changed=changes.append, forwarding=request.param
    )
    r.changes = changes  # type: ignore[attr-defined]
    yield r
    await r.close()
    assert r.peer_connections == 0


@pytest.fixture(autouse=True)
async def no_leaked_peer_connections() -> AsyncIterator[None]:
    """Every test closes what it opens: server and client peer connections alike."""
    yield
    deadline = time.monotonic() + 3
    while open_peer_connections() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert open_peer_connections() == []


@dataclass
class MediaServer:
    base: str
    http: aiohttp.ClientSession
    roster: Roster

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
async def media_server(router: MediaRouter) -> AsyncIterator[MediaServer]:
    async with serve_media(router) as server:
        yield server


@contextlib.asynccontextmanager
async def serve_media(
    router: MediaRouter, ice_servers: IceServers | None = None
) -> AsyncIterator[MediaServer]:
    """WHIP/WHEP (and the test pages) for `router` on a loopback port."""
    roster = Roster()
    app = web.Application()
    app.add_routes(media_routes(router, jwt_authorize(roster), ice_servers=ice_servers))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGES[request.match_info["name"]], content_type="text/html")

    async def sdk(request: web.Request) -> web.Response:
        return web.Response(text=SDK.read_text(), content_type="application/javascript")

    app.router.add_get("/pages/{name}", page)
    app.router.add_get("/sdk/roomserver.js", sdk)  # the browser SDK, same origin as WHIP/WHEP
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield MediaServer(f"http://{LOOPBACK}:{port}", http, roster)
    finally:
        await runner.cleanup()
