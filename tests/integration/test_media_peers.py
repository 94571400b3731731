"""Asking other nodes to apply `media.layer` (roomserver/media_peers.py), against real
aiohttp servers standing in for the other nodes and the memory bus's node list: who
answers wins, only 404s is "nobody holds it", a node that fails or is gone is
`unavailable`, and what a node is sent is a token only a node's route accepts."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from roomserver.auth import TokenVerifier, mint_token
from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.core import nodes as node_rules
from roomserver.media.errors import NotFound, Unavailable
from roomserver.media_peers import MediaPeers, peer_layer_route

SECRET = "0123456789abcdef0123456789abcdef"
ROOM = "shop/r1"  # the room's key: app "shop", public id "r1"


async def announce(hub: MemoryHub, node: str, address: str) -> None:
    load = node_rules.NodeLoad(node, address, 0, 0, 0, 0.0, False, 0, 0)
    await MemoryBroker(hub, node_id=node).announce_node(node_rules.encode(load), 60_000)


@pytest.fixture
async def peers() -> AsyncIterator[tuple[MediaPeers, MemoryHub, aiohttp.ClientSession]]:
    hub = MemoryHub()
    async with aiohttp.ClientSession() as http:
        verifier = TokenVerifier({"shop": SECRET})
        yield MediaPeers(MemoryBroker(hub, node_id="me"), verifier, "me", lambda: http), hub, http


async def node_server(set_local_layer: Callable, runners: list) -> str:
    """A node's answering side on a free port; its address."""
    app = web.Application()
    app.add_routes([peer_layer_route(TokenVerifier({"shop": SECRET}), set_local_layer)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}"


def holding(viewer: str, calls: list) -> Callable:
    async def set_local_layer(room: str, v: str, publisher: str, layer: str) -> str:
        calls.append((room, v, publisher, layer))
        if v != viewer:
            raise NotFound("no such session")
        return "low" if layer == "low" else "high"

    return set_local_layer


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused


async def test_the_node_holding_the_session_applies_it(peers) -> None:
    asker, hub, _ = peers
    runners: list = []
    calls_b: list = []
    calls_c: list = []
    try:
        await announce(hub, "b", await node_server(holding("v1", calls_b), runners))
        await announce(hub, "c", await node_server(holding("someone-else", calls_c), runners))
        assert await asker.set_layer(ROOM, "v1", "h1", "low") == "low"
        assert calls_b == [(ROOM, "v1", "h1", "low")]  # the node maps the public id back
        assert await asker.set_layer(ROOM, "v9", "h1", "low") is None  # only 404s
    finally:
        for r in runners:
            await r.cleanup()


async def test_no_other_node_means_nobody_holds_it(peers) -> None:
    asker, hub, _ = peers
    await announce(hub, "me", "http://127.0.0.1:1")  # itself: never asked
    assert await asker.set_layer(ROOM, "v1", "h1", "low") is None


async def test_a_node_that_fails_or_is_gone_makes_it_unavailable_unless_another_applied_it(peers) -> None:
    asker, hub, _ = peers
    runners: list = []

    async def broken(room: str, v: str, publisher: str, layer: str) -> str:
        raise RuntimeError("a bug")

    try:
        await announce(hub, "gone", dead_address())
        with pytest.raises(Unavailable):
            await asker.set_layer(ROOM, "v1", "h1", "low")
        await announce(hub, "b", await node_server(holding("v1", []), runners))
        assert await asker.set_layer(ROOM, "v1", "h1", "high") == "high"
    finally:
        for r in runners:
            await r.cleanup()
    hub2 = MemoryHub()
    asker2 = MediaPeers(MemoryBroker(hub2, node_id="me"), asker.verifier, "me", asker._http)
    runners = []
    try:
        await announce(hub2, "b", await node_server(broken, runners))
        with pytest.raises(Unavailable):  # a 500 is not "nobody holds it"
            await asker2.set_layer(ROOM, "v1", "h1", "low")
    finally:
        for r in runners:
            await r.cleanup()


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        ("client", {"viewer": "v1", "publisher": "h1", "layer": "low"}, 403),
        ("none", {"viewer": "v1", "publisher": "h1", "layer": "low"}, 401),
        ("other-room", {"viewer": "v1", "publisher": "h1", "layer": "low"}, 403),
        ("node", {"viewer": "v1", "publisher": "h1", "layer": "sideways"}, 400),
        ("node", {"viewer": "v1", "publisher": "h1", "layer": "low", "extra": 1}, 400),
        ("node", {"viewer": "", "publisher": "h1", "layer": "low"}, 400),
        ("node", {"viewer": "v1\u200b" * 200, "publisher": "h1", "layer": "low"}, 400),
        ("node", [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]], 400),
        ("node", {"viewer": "nobody", "publisher": "h1", "layer": "low"}, 404),
        ("node", {"viewer": "v1", "publisher": "h1", "layer": "low"}, 200),
    ],
)
async def test_the_route_answers_nodes_only_and_refuses_bad_bodies(peers, who, body, status) -> None:
    _, _, http = peers
    runners: list = []
    calls: list = []
    tokens = {
        "client": mint_token("shop", SECRET, "v1", room="r1"),
        "other-room": mint_token("shop", SECRET, "node:b", room="r2"),
        "node": mint_token("shop", SECRET, "node:b", room="r1"),
    }
    try:
        address = await node_server(holding("v1", calls), runners)
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {}
        async with http.post(f"{address}/v1/rooms/r1/media/layer", json=body, headers=headers) as r:
            assert r.status == status, await r.text()
            if status != 200:
                assert "error" in await r.json()
        assert len(calls) == (1 if status in (200, 404) else 0)  # nothing applied on a refusal
    finally:
        for r in runners:
            await r.cleanup()


async def test_invalid_utf8_and_oversized_bodies_are_refused(peers) -> None:
    _, _, http = peers
    runners: list = []
    token = mint_token("shop", SECRET, "node:b", room="r1")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        address = await node_server(holding("v1", []), runners)
        url = f"{address}/v1/rooms/r1/media/layer"
        async with http.post(url, data=b'{"viewer": "\xff\xfe"}', headers=headers) as r:
            assert r.status == 400
        async with http.post(url, data=b"x" * 10_000, headers=headers) as r:
            assert r.status == 413
    finally:
        for r in runners:
            await r.cleanup()
