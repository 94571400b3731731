"""End-to-end fixtures: one real server (embedded bus) and one Debian Chromium per session.

Chromium is driven by Python playwright with ``executable_path=/usr/bin/chromium`` (never
``playwright install``: no browser downloads). ``launch()`` gives every run a fresh temporary
profile. Fake camera and microphone devices stand in for real ones, and loopback is allowed
for WebRTC, so a host page can publish to the server and a viewer page play it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from roomserver.auth import DEV_APP, mint_token
from roomserver.config import Config
from roomserver.server import GATEWAY_KEY, create_app
from roomserver.web import add_web_routes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Real host candidates instead of mDNS names, which a Python ICE agent cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
# Every run takes the screenshots (test-artifacts/, ignored by git); with
# ROOMSERVER_UPDATE_SCREENSHOTS=1 they replace the ones the README shows.
_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = (
    _ROOT / "docs" / "screenshots"
    if os.environ.get("ROOMSERVER_UPDATE_SCREENSHOTS") == "1"
    else _ROOT / "test-artifacts" / "screenshots"
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
# A page is ready once it joined its room: a few round trips, slow only on a loaded box.
READY_MS = 30_000
# Playwright's expect() waits 5 s unless told: with the 2 cores shared (load average 16-20
# measured) a page update took longer. Only a failure waits this long.
expect.set_options(timeout=20_000)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Server:
    url: str
    config: Config
    app: web.Application

    def token(self, user: str, role: str = "viewer", **kw: Any) -> str:
        return mint_token(DEV_APP, self.config.app_secrets()[DEV_APP], user, role, **kw)  # type: ignore[arg-type]

    def sessions_of(self, user: str) -> list:
        return [s for s in self.app[GATEWAY_KEY].sessions if s.identity.user == user]


def web_app(config: Config) -> web.Application:
    """The server's app with the web routes (added here until server.py wires them itself)."""
    app = create_app(config)
    if not any(r.canonical == "/" for r in app.router.resources()):
        add_web_routes(app, config)
    return app


@pytest.fixture(scope="session")
async def server() -> AsyncIterator[Server]:
    # Media (when the server mounts it) gathers ICE candidates on loopback only.
    config = Config(
        host="127.0.0.1",
        port=0,
        flush_ms=20,
        ice_host="127.0.0.1",
        data_dir=tempfile.mkdtemp(prefix="roomserver-data-"),  # its own analytics store
    )
    app = web_app(config)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Server(f"http://127.0.0.1:{port}", config, app)
    await runner.cleanup()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=60_000)
        yield b
        await b.close()


@dataclass
class Pages:
    """Opens pages in fresh browser contexts and fails the test on any uncaught page error."""

    browser: Browser
    server: Server
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def open(
        self,
        page: str,
        room: str,
        user: str,
        role: str = "viewer",
        *,
        viewport: dict[str, int] | None = None,
        phone: bool = False,
        name: str | None = None,
        tier: int = 0,
        ready: bool = True,
        init_script: str | None = None,
        locale: str | None = None,
        query: str = "",
    ) -> Page:
        p = await self.blank(user, phone=phone, viewport=viewport, init_script=init_script, locale=locale)
        token = self.server.token(user, role, name=name, tier=tier)  # type: ignore[arg-type]
        await p.goto(f"{self.server.url}/{page}.html?room={room}{query}#token={token}")
        if ready:
            await p.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
        return p

    async def blank(
        self,
        who: str,
        *,
        phone: bool = False,
        viewport: dict[str, int] | None = None,
        init_script: str | None = None,
        locale: str | None = None,
    ) -> Page:
        """A new page in its own context (desktop or phone), not yet navigated. ``locale``
        is the browser's language (navigator.language, Accept-Language): "zh-CN" opens the
        pages in Chinese."""
        ctx = await self.browser.new_context(
            viewport=viewport or (PHONE if phone else DESKTOP),
            is_mobile=phone,
            has_touch=phone,
            device_scale_factor=2 if phone else 1,
            locale=locale,
        )
        self.contexts.append(ctx)
        if init_script:
            await ctx.add_init_script(init_script)
        p = await ctx.new_page()
        p.on("pageerror", lambda exc: self.errors.append(f"{who}: {exc}"))
        return p

    @contextlib.asynccontextmanager
    async def admin_http(self) -> AsyncIterator[aiohttp.ClientSession]:
        """An HTTP session on the server's REST API with an admin token."""
        headers = {"Authorization": f"Bearer {self.server.token('e2e-admin', 'admin')}"}
        async with aiohttp.ClientSession(base_url=self.server.url, headers=headers) as http:
            yield http

    async def new_context(self, **kw: Any) -> BrowserContext:
        ctx = await self.browser.new_context(viewport=DESKTOP, **kw)
        self.contexts.append(ctx)
        return ctx

    async def close(self) -> None:
        for ctx in self.contexts:
            await ctx.close()


@pytest.fixture
async def pages(browser: Browser, server: Server) -> AsyncIterator[Pages]:
    pg = Pages(browser, server)
    yield pg
    await pg.close()
    assert not pg.errors, f"uncaught errors in pages: {pg.errors}"


@pytest.fixture
def room() -> str:
    return "e2e-" + secrets.token_hex(4)


class Bot:
    """A scripted participant speaking the wire protocol directly (no browser)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = 0
        self._replies: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            for m in json.loads(msg.data):
                if "re" in m and m["re"] in self._replies:
                    self._replies.pop(m["re"]).set_result(m)
                elif "ev" in m:
                    self.events.append(m)

    async def request(self, op: str, room: str | None = None, **params: Any) -> dict:
        self._ids += 1
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._replies[self._ids] = fut
        frame = {"id": self._ids, "op": op, **params}
        if room is not None:
            frame["room"] = room
        await self.ws.send_str(json.dumps(frame))
        reply = await asyncio.wait_for(fut, 10)
        if not reply["ok"]:
            raise AssertionError(f"{op} failed: {reply['error']}")
        return reply["data"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@pytest.fixture
async def bots(server: Server) -> AsyncIterator:
    session = aiohttp.ClientSession()
    made: list[Bot] = []

    async def make(user: str, role: str = "viewer", *, name: str | None = None, tier: int = 0) -> Bot:
        token = server.token(user, role, name=name, tier=tier)
        ws = await session.ws_connect(f"{server.url}/v1/ws?token={token}")
        bot = Bot(ws)
        made.append(bot)
        return bot

    yield make
    for b in made:
        await b.close()
    await session.close()
