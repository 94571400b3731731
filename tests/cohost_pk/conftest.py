"""Real servers (``create_app``) for the co-host, PK and media wiring tests.

``make_node`` starts a server on a random loopback port; ``hub=`` makes several of
them share one in-memory bus (``MemoryHub``), which is how two processes share a
Redis Cluster: separate nodes, one room state. Media gathers ICE candidates on
127.0.0.1 only (``ice_host``), both in the server and in the aiortc test clients.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from roomserver.bus.base import HistoryLimits
from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.client import RoomClient, RoomError
from roomserver.config import Config
from roomserver.media.ice import pin_host_addresses
from roomserver.server import create_app
from tests.server_fixtures import APP, SECRET, Recorder, Server, closed_after, new_room_id

LOOPBACK = "127.0.0.1"
pin_host_addresses([LOOPBACK])

MakeNode = Callable[..., Awaitable[Server]]


async def start_node(hub: MemoryHub | None = None, **overrides: Any) -> Server:
    overrides.setdefault("flush_ms", 10)
    overrides.setdefault("ice_host", LOOPBACK)
    overrides.setdefault("auto_create", "any")  # as tests/server_fixtures.start_server
    overrides.setdefault("data_dir", tempfile.mkdtemp(prefix="roomserver-data-"))  # ditto
    config = Config(apps={APP: SECRET}, **overrides)
    broker = MemoryBroker(hub, node_id=config.node_id) if hub is not None else None
    app = create_app(config, broker)
    ts = TestServer(app, host=LOOPBACK)
    await ts.start_server()
    return Server(config, app, ts, aiohttp.ClientSession())


def open_peer_connections() -> list[RTCPeerConnection]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"]


@pytest.fixture
async def no_leaked_peer_connections() -> AsyncIterator[None]:
    """After the servers closed (see ``make_node``), no aiortc peer connection of the
    test is left open: neither the server's nor the test clients'."""
    yield
    deadline = time.monotonic() + 3
    while open_peer_connections() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert open_peer_connections() == []


async def joined(server: Server, room: str, user: str, role: str = "viewer") -> tuple[RoomClient, Recorder]:
    """A client of ``user`` that joined ``room``, with a recorder of its events."""
    client = await server.client(user, role)
    rec = Recorder(client)
    await client.join(room)
    return client, rec


async def expect_error(call: Awaitable[Any], code: str) -> None:
    with pytest.raises(RoomError) as info:
        await call
    assert info.value.code == code, info.value


@pytest.fixture
async def make_node(no_leaked_peer_connections: None) -> AsyncIterator[MakeNode]:
    async with closed_after(start_node) as make:
        yield make


@pytest.fixture
async def server(make_node: MakeNode) -> Server:
    return await make_node()


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub(HistoryLimits())


@pytest.fixture
def room() -> str:
    return new_room_id()


@pytest.fixture
def short_expiry(monkeypatch: pytest.MonkeyPatch) -> int:
    """Requests and invitations expire after 400 ms instead of 60 s (the rule is the same)."""
    from roomserver.core import cohost, pk

    monkeypatch.setattr(cohost, "PENDING_TTL_MS", 400)
    monkeypatch.setattr(pk, "INVITE_TTL_MS", 400)
    return 400
