"""Shared helpers for tests that run the real server: an in-process server on a
random loopback port, token minting, SDK clients, a raw WebSocket and an event
recorder. Every wait here is bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.procs import NO_CLIENT_LIMITS
from roomserver.auth import mint_token
from roomserver.client import Event, RoomClient
from roomserver.config import Config
from roomserver.server import GATEWAY_KEY, NODE_KEY, create_app
from tests.ports import free_port
from tests.server_procs import START_TIMEOUT_S

APP = "testapp"
SECRET = "s3cret-for-tests-" + "x" * 48  # ≥ 32 bytes for HS256 (64 so HS512 tests do not warn)
REPO = Path(__file__).resolve().parent.parent
WAIT_S = 5.0


# The protocol's lists, copied from PROTOCOL.md (not imported from the server, which they check).
SNAPSHOT_KEYS = {
    "id",
    "title",
    "mode",
    "state",
    "host",
    "online",
    "likes",
    "seq",
    "epoch",
    "pinned",
    "lottery",
    "sale",
    "pk",
    "cohosts",
    "publishers",
    "gifts",
}
PROTOCOL_ERRORS = {
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "not_joined",
    "rate_limited",
    "muted",
    "blocked_content",
    "sold_out",
    "limit_reached",
    "not_open",
    "conflict",
    "history_gone",
    "too_large",
    "unavailable",
    "internal",
}


def new_room_id(prefix: str = "r") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def token(user: str, role: str = "viewer", **kwargs: Any) -> str:
    return mint_token(APP, SECRET, user, role, **kwargs)  # type: ignore[arg-type]


class Recorder:
    """Records every event a client receives, for waiting on and asserting about."""

    def __init__(self, client: RoomClient) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        client.on("*", self._on)

    def _on(self, ev: Event) -> None:
        self.events.append(ev)
        self._changed.set()

    def named(self, name: str, room: str | None = None) -> list[Event]:
        return [e for e in self.events if e["ev"] == name and (room is None or e.get("room") == room)]

    def durable(self, room: str | None = None) -> list[Event]:
        return [e for e in self.events if "seq" in e and (room is None or e["room"] == room)]

    def seqs(self, room: str | None = None) -> list[int]:
        return [e["seq"] for e in self.durable(room)]

    async def wait(
        self,
        name: str,
        where: Callable[[Event], bool] = lambda e: True,
        *,
        count: int = 1,
        timeout: float = WAIT_S,
    ) -> list[Event]:
        """Wait until ``count`` events named ``name`` matching ``where`` were seen."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e["ev"] == name and where(e)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                names = [e["ev"] for e in self.events][-20:]
                raise AssertionError(f"no {count}x {name!r} within {timeout}s; last events: {names}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def quiet(self, seconds: float = 0.3) -> None:
        """Let in-flight frames arrive (used before asserting that nothing came)."""
        await asyncio.sleep(seconds)


class RawWS:
    """A WebSocket without the SDK: to check frames on the wire exactly."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[Any] = []  # decoded frames, as received
        self.messages: list[dict[str, Any]] = []  # flattened

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(msgspec.json.encode(obj).decode())

    async def send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    async def recv_frame(self, timeout: float = WAIT_S) -> Any:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"got {msg.type!r} ({msg.data!r}, {msg.extra!r}) instead of a text frame")
        frame = msgspec.json.decode(msg.data)
        self.frames.append(frame)
        assert isinstance(frame, list), f"server frames must be JSON arrays, got {msg.data!r}"
        self.messages.extend(frame)
        return frame

    async def reply(self, req_id: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        """Read until the reply to ``req_id`` (``None``: a reply with ``"re": null``)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for m in self.messages[seen:]:
                if "re" in m and m["re"] == req_id and type(m["re"]) is type(req_id):
                    return m
            seen = len(self.messages)
            await self.recv_frame(max(0.01, deadline - time.monotonic()))

    async def request(self, req_id: Any, op: str, room: str | None = None, **params: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {"id": req_id, "op": op, **params}
        if room is not None:
            msg["room"] = room
        await self.send(msg)
        return await self.reply(req_id)

    async def drain(self, seconds: float = 0.3) -> None:
        """Read whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self.recv_frame(left)
            except TimeoutError:
                return

    async def close_code(self, timeout: float = WAIT_S) -> int | None:
        """Read until the server closes; returns its close code."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), max(0.01, deadline - time.monotonic()))
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = msgspec.json.decode(msg.data)
                self.frames.append(frame)
                self.messages.extend(frame)
                continue
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return int(msg.data)  # ws.close_code may say 1006 if our close reply failed
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return self.ws.close_code


@dataclass
class Server:
    """A real roomserver app on 127.0.0.1:<random port> in this event loop."""

    config: Config
    app: web.Application
    test_server: TestServer
    http: aiohttp.ClientSession
    clients: list[RoomClient] = field(default_factory=list)
    raws: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.test_server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/v1/ws"

    @property
    def node(self):  # roomserver.node.Node
        return self.app[NODE_KEY]

    @property
    def gateway(self):  # roomserver.gateway.Gateway
        return self.app[GATEWAY_KEY]

    async def client(
        self,
        user: str,
        role: str = "viewer",
        *,
        connect: bool = True,
        token_kwargs: Any = None,
        **kwargs: Any,
    ) -> RoomClient:
        """An SDK client (closed at teardown). ``token_kwargs`` go to mint_token."""
        kwargs.setdefault("request_timeout", WAIT_S)
        kwargs.setdefault("backoff_initial", 0.05)
        client = RoomClient(self.base_url, token(user, role, **(token_kwargs or {})), **kwargs)
        self.clients.append(client)
        if connect:
            await client.connect()
        return client

    async def raw(self, tok: str | None) -> RawWS:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        ws = await self.http.ws_connect(self.ws_url, headers=headers, autoping=True)
        self.raws.append(ws)
        return RawWS(ws)

    async def rest(self, method: str, path: str, tok: str | None = None, json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        async with self.http.request(method, self.base_url + path, headers=headers, json=json) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, msgspec.json.decode(body) if body else None
            return resp.status, body.decode()

    async def admin(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        return await self.rest(method, path, token("admin-1", "admin"), json)

    async def history(self, room: str, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        status, body = await self.admin("GET", f"/v1/rooms/{room}/history?since={since}&limit={limit}")
        assert status == 200, body
        return body["events"]

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for ws in self.raws:
            await ws.close()
        await self.http.close()
        await self.test_server.close()


# Tests drive REST as fast as they can from one token and IP (publishing thousands
# of events): the REST rate limits are off unless a test turns them on
# (tests/integration/test_edges.py checks them).
NO_REST_LIMITS = {"rest_rate_per_token": 0.0, "rest_rate_per_ip": 0.0}


async def start_server(**overrides: Any) -> Server:
    # Tests let any token create rooms by joining (most have a viewer join first);
    # the default policy ("named") is tested in test_room_limits.py.
    overrides.setdefault("auto_create", "any")
    # Each server its own embedded analytics store (not the working directory's).
    overrides.setdefault("data_dir", tempfile.mkdtemp(prefix="roomserver-data-"))
    config = Config(apps={APP: SECRET}, **{**NO_REST_LIMITS, **overrides})
    app = create_app(config)
    ts = TestServer(app, host="127.0.0.1")
    await ts.start_server()
    return Server(config, app, ts, aiohttp.ClientSession())


@contextlib.asynccontextmanager
async def closed_after(
    start: Callable[..., Awaitable[Server]],
) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """A ``make(...)`` that starts servers with ``start`` and closes them all, newest
    first, when the block ends (the body of every ``make_server``-style fixture)."""
    servers: list[Server] = []

    async def make(*args: Any, **overrides: Any) -> Server:
        server = await start(*args, **overrides)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(servers):
            await server.close()


# -- a real `roomserver serve` process ------------------------------------------------


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


async def start_serve_process(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
    """Run `python -m roomserver.cli serve` on a free port; wait for /healthz (≤ START_TIMEOUT_S)."""
    port = free_port()
    cmd = [sys.executable, "-m", "roomserver.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # As start_server: tests let any token create rooms by joining.
    cmd += [
        "--app",
        f"{APP}:{SECRET}",
        "--log-level",
        "WARNING",
        "--auto-create",
        "any",
        *NO_CLIENT_LIMITS,
        *args,
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    sp = ServeProcess(proc, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"roomserver serve exited with {proc.returncode}: {err[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(sp.base_url + "/healthz") as resp:
                    if resp.status == 200:
                        return sp
            await asyncio.sleep(0.1)
    sp.stop(signal.SIGKILL)
    raise RuntimeError(f"roomserver serve did not become healthy within {START_TIMEOUT_S:g} s")
