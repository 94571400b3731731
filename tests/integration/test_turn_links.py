"""The server announces its TURN servers (--turn-url, --turn-secret, --turn-ttl-s) to WHIP/WHEP
callers as RFC 9725 §4.6 Link headers, with credentials minted per caller; without a valid
token OPTIONS answers as before (CORS preflights) and gives no credentials away."""

from __future__ import annotations

import time
from typing import Any

from roomserver.core.turn import parse_link_headers, turn_credentials
from tests.server_fixtures import token

URLS = ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349?transport=tcp"]


async def test_options_gives_each_caller_its_turn_credentials(make_server: Any, room: str) -> None:
    server = await make_server(turn_urls=URLS, turn_secret="coturn-secret", turn_ttl_s=900)
    url = f"{server.base_url}/v1/rooms/{room}/whep"
    async with server.http.options(url, headers={"Authorization": f"Bearer {token('v7')}"}) as resp:
        assert resp.status == 204
        servers = parse_link_headers(resp.headers.getall("Link"))
    assert [s.url for s in servers] == URLS
    expiry, user = servers[0].username.split(":", 1)
    assert user == "v7" and abs(int(expiry) - (time.time() + 900)) < 5
    assert (servers[0].username, servers[0].credential) == turn_credentials(
        "coturn-secret", "v7", int(expiry) - 900, 900
    )
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        async with server.http.options(url, headers=headers) as resp:
            assert resp.status == 204 and "Link" not in resp.headers


async def test_no_turn_configured_no_links(server: Any, room: str) -> None:
    url = f"{server.base_url}/v1/rooms/{room}/whip"
    async with server.http.options(url, headers={"Authorization": f"Bearer {token('h1', 'host')}"}) as resp:
        assert resp.status == 204 and "Link" not in resp.headers
