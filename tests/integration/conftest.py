"""Fixtures for integration tests: the real server (create_app) on a random loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.server_fixtures import Server, new_room_id, start_server


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """``await make_server(**Config overrides)``: a fresh server, closed at teardown."""
    servers: list[Server] = []

    async def make(**overrides: Any) -> Server:
        server = await start_server(**overrides)
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Server]]) -> Server:
    """A server with the default configuration."""
    return await make_server()


@pytest.fixture
def room() -> str:
    return new_room_id()
