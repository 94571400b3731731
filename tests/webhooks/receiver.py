"""A real webhook endpoint for tests: an aiohttp server on a fixed loopback port
that can be taken down (connections refused) and brought back, answer slowly or
with scripted statuses, and checks every signature with the verify helper."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.core.webhooks import SIGNATURE_V2_HEADER, SignatureError, verify
from tests.ports import free_port


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.got: list[dict[str, Any]] = []  # verified payloads, in arrival order
        self.arrivals: list[float] = []  # monotonic time of every request (answered or not)
        self.ids: Counter[str] = Counter()
        self.bad_signatures = 0
        # Answers to give first, in order: (status, headers); then 204.
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.gate: asyncio.Event | None = None  # if set: hold every answer until it is set
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        body = await request.read()
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            status, headers = self.script.popleft()
            return web.Response(status=status, headers=headers)
        try:
            verify(self.secret, body, request.headers.get(SIGNATURE_V2_HEADER, ""), now_s=time.time())
        except SignatureError:
            self.bad_signatures += 1
            return web.Response(status=401)
        payload = json.loads(body)
        self.ids[payload["id"]] += 1
        self.got.append(payload)
        return web.Response(status=204)

    async def up(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()
        return self

    async def down(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    def named(self, event: str) -> list[dict[str, Any]]:
        return [p for p in self.got if p["event"] == event]
