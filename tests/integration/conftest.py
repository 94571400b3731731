"""Fixtures for integration tests: the real server (create_app) on a random loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.server_fixtures import Server, closed_after, new_room_id, start_server


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """``await make_server(**Config overrides)``: a fresh server, closed at teardown."""
    async with closed_after(start_server) as make:
        yield make


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Server]]) -> Server:
    """A server with the default configuration."""
    return await make_server()


@pytest.fixture
def room() -> str:
    return new_room_id()
