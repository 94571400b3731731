"""A real server in a thread of its own, for tests written as plain functions
(hypothesis and schemathesis drive them synchronously)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from roomserver.config import Config
from roomserver.server import create_app
from tests.server_fixtures import APP, SECRET, token


@dataclass
class ThreadServer:
    base_url: str
    loop: asyncio.AbstractEventLoop
    app: web.Application

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/v1/ws"

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine in the server's loop (to inspect its state consistently)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def serve_in_thread(**overrides: Any) -> Iterator[ThreadServer]:
    loop = asyncio.new_event_loop()
    ready: list[Any] = []
    started = threading.Event()

    async def start() -> web.AppRunner:
        # Its own embedded analytics store, as tests/server_fixtures.start_server's.
        data_dir = tempfile.mkdtemp(prefix="roomserver-data-")
        app = create_app(Config(apps={APP: SECRET}, data_dir=data_dir, **overrides))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        ready.append((f"http://{host}:{port}", app))
        return runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(start())
        except BaseException as exc:
            ready.append(exc)
            started.set()
            raise
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, name="fuzz-server", daemon=True)
    thread.start()
    assert started.wait(15), "server thread did not start"
    if isinstance(ready[0], BaseException):
        raise ready[0]
    base_url, app = ready[0]
    try:
        yield ThreadServer(base_url, loop, app)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)


@pytest.fixture(scope="module")
def thread_server() -> Iterator[ThreadServer]:
    # No REST rate limits: the fuzzers send hundreds of requests a second from one
    # IP with one token (the limits have their own tests).
    yield from serve_in_thread(rest_rate_per_token=0, rest_rate_per_ip=0)


@pytest.fixture(scope="module")
def admin_token() -> str:
    return token("fuzz-admin", "admin", ttl_s=3600)
