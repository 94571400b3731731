"""Error messages in the client's language: REST errors by Accept-Language (q-values
weighed), WebSocket error replies by the `lang` given at connect (query or token claim).
English stays the default, byte for byte what a client got before."""

from __future__ import annotations

from typing import Any

import jwt

from roomserver.core.i18n import error_message
from tests.server_fixtures import APP, SECRET, RawWS, Server, token


async def rest(server: Server, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    async with server.http.get(server.base_url + path, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_rest_errors_follow_accept_language(server: Server) -> None:
    auth = {"Authorization": f"Bearer {token('admin-1', 'admin')}"}
    status, headers, en = await rest(server, "/v1/rooms/nope-404", auth)
    assert status == 404 and en["error"]["code"] == "not_found"
    assert "detail" not in en["error"] and headers["Content-Language"] == "en"
    assert "Accept-Language" in headers["Vary"]

    for accept in ("zh-CN", "en;q=0.5, zh;q=0.9", "fr, zh-TW;q=0.3"):
        status, headers, zh = await rest(server, "/v1/rooms/nope-404", {**auth, "Accept-Language": accept})
        assert status == 404, accept
        assert zh["error"] == {
            "code": "not_found",
            "message": error_message("not_found", "zh-CN"),
            "detail": en["error"]["message"],
        }, accept
        assert headers["Content-Language"] == "zh-CN"

    for accept in ("en-US,en;q=0.9,zh;q=0.8", "zh;q=0, *", "de", "zh;q=2"):
        _, _, body = await rest(server, "/v1/rooms/nope-404", {**auth, "Accept-Language": accept})
        assert body == en, accept


async def test_errors_raised_before_a_route_are_translated_too(server: Server) -> None:
    # a bad token (401, raised by the auth check) and a resource that does not exist (404 of the router)
    status, headers, body = await rest(
        server, "/v1/rooms", {"Authorization": "Bearer not-a-jwt", "Accept-Language": "zh-CN"}
    )
    assert status == 401 and body["error"]["message"] == error_message("unauthorized", "zh-CN")
    assert body["error"]["detail"] and "WWW-Authenticate" in headers
    status, _, body = await rest(server, "/v1/no-such-thing", {"Accept-Language": "zh-CN"})
    assert status == 404 and body["error"]["message"] == error_message("not_found", "zh-CN")


async def test_successes_are_not_touched(server: Server) -> None:
    async with server.http.get(server.base_url + "/healthz", headers={"Accept-Language": "zh-CN"}) as resp:
        assert resp.status == 200 and await resp.json() == {"ok": True}
        assert "Content-Language" not in resp.headers


async def raw_ws(server: Server, query: str, tok: str) -> RawWS:
    ws = await server.http.ws_connect(f"{server.ws_url}?{query}", headers={"Authorization": f"Bearer {tok}"})
    server.raws.append(ws)
    return RawWS(ws)


async def test_websocket_errors_in_the_lang_given_at_connect(server: Server, room: str) -> None:
    default = await server.raw(token("u1"))
    en = (await default.request(1, "barrage.send", room, text="hi"))["error"]
    assert en["code"] == "not_joined" and "detail" not in en

    by_query = await raw_ws(server, "lang=zh-CN", token("u2"))
    by_claim = await server.raw(token("u3", lang="zh"))
    for ws in (by_query, by_claim):
        err = (await ws.request(1, "barrage.send", room, text="hi"))["error"]
        assert err == {
            "code": "not_joined",
            "message": error_message("not_joined", "zh-CN"),
            "detail": en["message"],
        }
        # a frame that cannot be parsed gets its reply ("re": null) in the language too
        await ws.send_text("{not json")
        bad = (await ws.reply(None))["error"]
        assert bad["code"] == "bad_request" and bad["message"] == error_message("bad_request", "zh-CN")
        assert bad["detail"].startswith("malformed JSON")

    # the query wins over the claim; an unknown language is English
    english = await raw_ws(server, "lang=en", token("u4", lang="zh-CN"))
    assert (await english.request(1, "barrage.send", room, text="hi"))["error"] == en
    klingon = await raw_ws(server, "lang=tlh", token("u5"))
    assert (await klingon.request(1, "barrage.send", room, text="hi"))["error"] == en


async def test_a_bad_lang_claim_is_refused_like_any_bad_claim(server: Server) -> None:
    bad = jwt.encode({"iss": APP, "sub": "u1", "exp": 4_000_000_000, "lang": 5}, SECRET, algorithm="HS256")
    status, _, body = await rest(server, "/v1/rooms", {"Authorization": f"Bearer {bad}"})
    assert status == 401 and "lang" in body["error"]["message"]
