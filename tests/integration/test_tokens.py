"""PROTOCOL §1: tokens are checked before the upgrade (HTTP 401), room-restricted
tokens, and expiry of an open socket (close 4001)."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import jwt
import pytest

from roomserver.auth import mint_token
from roomserver.client import RoomClient, RoomError
from tests.server_fixtures import APP, SECRET, Recorder, Server, token

UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
}


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _alg_none_token() -> str:
    claims = {"iss": APP, "sub": "eve", "role": "admin", "exp": int(time.time()) + 600}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _bad_tokens() -> dict[str, str | None]:
    now = time.time()
    return {
        "missing": None,
        "garbage": "not-a-jwt",
        "forged (other secret)": mint_token(APP, "another-secret-" + "y" * 32, "eve", "admin"),
        "expired": mint_token(APP, SECRET, "u1", ttl_s=-10),
        "wrong app (iss unknown)": mint_token("otherapp", SECRET, "u1"),
        "alg none": _alg_none_token(),
        "HS512 (alg must be HS256)": jwt.encode(
            {"iss": APP, "sub": "u1", "exp": int(now) + 600}, SECRET, algorithm="HS512"
        ),
        "no exp": jwt.encode({"iss": APP, "sub": "u1"}, SECRET, algorithm="HS256"),
        "bad sub": mint_token(APP, SECRET, "bad user!"),
        "bad role": jwt.encode(
            {"iss": APP, "sub": "u1", "exp": int(now) + 600, "role": "root"}, SECRET, algorithm="HS256"
        ),
    }


@pytest.mark.parametrize("case", list(_bad_tokens()))
async def test_bad_token_gets_401_before_upgrade(server: Server, case: str) -> None:
    tok = _bad_tokens()[case]
    for how in ("query", "header"):
        headers = dict(UPGRADE_HEADERS)
        url = server.base_url + "/v1/ws"
        if tok is not None and how == "header":
            headers["Authorization"] = f"Bearer {tok}"
        elif tok is not None:
            url += "?token=" + tok
        async with server.http.get(url, headers=headers) as resp:
            assert resp.status == 401, (case, how, resp.status)
            assert "Upgrade" not in resp.headers.get("Connection", "")
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
            assert body["error"]["message"]


async def test_sdk_connect_with_bad_token_raises_unauthorized(server: Server) -> None:
    client = RoomClient(server.base_url, mint_token(APP, SECRET, "u1", ttl_s=-10))
    with pytest.raises(RoomError) as info:
        await client.connect()
    assert info.value.code == "unauthorized"


async def test_good_token_in_query_and_header(server: Server) -> None:
    tok = token("u1")
    for url, headers in (
        (server.ws_url + "?token=" + tok, {}),
        (server.ws_url, {"Authorization": f"Bearer {tok}"}),
    ):
        async with server.http.ws_connect(url, headers=headers) as ws:
            await ws.send_str('{"id":1,"op":"ping"}')
            frame = await ws.receive_json(timeout=5)
            assert frame[0]["re"] == 1 and frame[0]["ok"] is True
            assert isinstance(frame[0]["data"]["ts"], int)


async def test_room_restricted_token(server: Server, room: str) -> None:
    client = await server.client("u1", token_kwargs={"room": room})
    snap = await client.join(room)
    assert snap["room"]["id"] == room
    with pytest.raises(RoomError) as info:
        await client.join(room + "-other")
    assert info.value.code == "forbidden"
    assert room + "-other" not in client.rooms
    # "*" admits any room
    any_room = await server.client("u2", token_kwargs={"room": "*"})
    await any_room.join(room + "-other")


async def test_expiring_token_closes_open_socket_with_4001(server: Server, room: str) -> None:
    client = await server.client("u1", token_kwargs={"ttl_s": 2})
    rec = Recorder(client)
    await client.join(room)
    code = await client.wait_closed(timeout=6)
    assert code == 4001
    assert client.closed  # no token_provider: no reconnect
    assert rec.named("disconnected")[-1]["data"] == {"code": 4001, "reconnecting": False}


async def test_expired_token_with_provider_reconnects_and_resumes(server: Server, room: str) -> None:
    minted: list[str] = []

    def provider() -> str:
        minted.append(token("u1", ttl_s=600))
        return minted[-1]

    client = await server.client("u1", token_kwargs={"ttl_s": 2}, token_provider=provider)
    rec = Recorder(client)
    await client.join(room)
    await rec.wait("reconnected", timeout=6)
    assert client.close_code == 4001 and len(minted) == 1
    assert not client.closed
    host = await server.client("h1", "host")
    await host.join(room)
    await host.start(room)
    await rec.wait("room.started")
    assert rec.seqs(room) == [1]


async def test_ws_connect_refused_with_aiohttp_status(server: Server) -> None:
    """The plain aiohttp client sees the 401 as a failed handshake."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await server.http.ws_connect(server.ws_url + "?token=x")
    assert info.value.status == 401
