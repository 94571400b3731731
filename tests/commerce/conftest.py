"""Fixtures for the commerce tests: a webhook sink, embedded servers that post to
it, and two real `roomserver serve` processes on the session's Redis Cluster."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.server_fixtures import SECRET as EMBEDDED_SECRET
from tests.server_fixtures import Server, closed_after, new_room_id, start_server
from tests.server_procs import SECRET as PROCESS_SECRET
from tests.server_procs import ServerProcess, start_all, stop_all


class WebhookSink:
    """Receives the server's webhooks as an app would: checks each signature and
    dedupes redeliveries by webhook ``id`` (delivery is at least once: a POST
    whose answer was slow is sent again, with the same id)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.redelivered = 0
        self.bad_signatures = 0
        self._ids: set[str] = set()
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/hook"

    def named(self, event: str, room: str | None = None) -> list[dict[str, Any]]:
        return [h for h in self.received if h["event"] == event and (room is None or h["room"] == room)]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Roomserver-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        hook = json.loads(body)
        if hook["id"] in self._ids:
            self.redelivered += 1
        else:
            self._ids.add(hook["id"])
            self.received.append(hook)
        return web.Response(status=204)

    async def start(self) -> WebhookSink:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()


@pytest.fixture
async def embedded_sink() -> AsyncIterator[WebhookSink]:
    sink = await WebhookSink(EMBEDDED_SECRET).start()
    yield sink
    await sink.close()


@pytest.fixture
async def process_sink() -> AsyncIterator[WebhookSink]:
    sink = await WebhookSink(PROCESS_SECRET).start()
    yield sink
    await sink.close()


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """``await make_server(**Config overrides)``: an embedded server, closed at teardown."""

    async def start(**overrides: Any) -> Server:
        overrides.setdefault("flush_ms", 10)
        return await start_server(**overrides)

    async with closed_after(start) as make:
        yield make


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Server]], embedded_sink: WebhookSink) -> Server:
    """An embedded server (memory bus) that posts its webhooks to ``embedded_sink``."""
    return await make_server(webhook_url=embedded_sink.url)


@pytest.fixture
def room() -> str:
    return new_room_id()


def start_processes(
    n: int, redis_cluster: Any, prefix: str, log_dir: Path, *extra: str
) -> list[ServerProcess]:
    """``n`` real server processes sharing the cluster (``extra``: more flags)."""
    servers = [
        ServerProcess(
            "--redis-cluster",
            redis_cluster.startup,
            "--redis-prefix",
            prefix,
            "--flush-ms",
            "20",
            "--log-level",
            "WARNING",
            *extra,
            log_dir=log_dir,
        )
        for _ in range(n)
    ]
    return start_all(servers)  # stops them all if one fails to start


@pytest.fixture
def two_processes(
    redis_cluster: Any, unique_prefix: str, tmp_path: Path, process_sink: WebhookSink
) -> Iterator[list[ServerProcess]]:
    """Two `roomserver serve` processes on the session cluster, webhooks to ``process_sink``
    (durability left at its default for ``--redis-cluster``)."""
    servers = start_processes(2, redis_cluster, unique_prefix, tmp_path, "--webhook-url", process_sink.url)
    yield servers
    stop_all(servers)
