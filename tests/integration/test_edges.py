"""Issue 16, the edges: malformed input answered (3), absurd token claims and
exception-safe socket accounting (4), HTTP exactness (9), REST rate limits and
connections per IP (2/11). Log injection (5) is in test_log_injection.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from roomserver import gateway as gateway_module
from roomserver.api.ratelimit import TokenBuckets
from roomserver.config import Config
from roomserver.protocol import MAX_JSON_DEPTH
from tests.server_fixtures import APP, PROTOCOL_ERRORS, SECRET, WAIT_S, RawWS, Server, token

# -- 3. malformed input -----------------------------------------------------------------


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


async def next_reply(ws: RawWS) -> dict[str, Any]:
    while True:
        for m in ws.messages:
            if "re" in m:
                ws.messages.remove(m)
                return m
        await ws.recv_frame()


async def test_deep_frames_get_bad_request_and_the_socket_stays_open(server: Server, room: str) -> None:
    ws = await server.raw(token("u1"))
    frames = {
        "5000 open brackets": (None, "[" * 5000),
        "5000 nested arrays": (None, nested(5000)),
        "900 nested in a param": (1, '{"id":1,"op":"ping","x":' + nested(900) + "}"),
        "one level too deep": (2, '{"id":2,"op":"ping","x":' + nested(MAX_JSON_DEPTH) + "}"),
        "deep objects": (3, '{"id":3,"op":"ping","x":' + '{"a":' * 300 + "1" + "}" * 300 + "}"),
        "deep product": (4, f'{{"id":4,"op":"product.pin","room":"{room}","product":{nested(200)}}}'),
    }
    for case, (req_id, text) in frames.items():
        await ws.send_text(text)
        reply = await next_reply(ws)
        # Past the C stack the decoder gives up before it reads the id: "re" is null then.
        assert reply["re"] in (None, req_id), (case, reply)
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", (case, reply)
        assert "deeper" in reply["error"]["message"], (case, reply)
    # Brackets inside strings are text, not nesting; the limit itself is accepted.
    ok = await ws.request(10, "ping", x=nested(MAX_JSON_DEPTH - 1), text="[" * 5000)
    assert ok["ok"] is True, ok
    assert (await ws.request(11, "ping"))["ok"] is True


async def test_rest_bodies_that_are_not_utf8_or_too_deep_get_json_400(server: Server, room: str) -> None:
    admin = {"Authorization": f"Bearer {token('admin-1', 'admin')}"}
    assert (await server.admin("POST", "/v1/rooms", {"id": room}))[0] == 201
    bodies = {
        "not UTF-8": b'{"title":"\xff\xfe"}',
        "lone surrogate bytes": b'{"title":"\xed\xa0\x80"}',
        "5000 open brackets": b"[" * 5000,
        "deep data": b'{"ev":"x","data":{"a":' + nested(300).encode() + b"}}",
        "deep objects": b'{"ev":"x","data":' + b'{"a":' * 2000 + b"1" + b"}" * 2001,
    }
    for case, body in bodies.items():
        for path in ("/v1/rooms", f"/v1/rooms/{room}/events"):
            async with server.http.post(server.base_url + path, data=body, headers=admin) as resp:
                assert resp.status == 400, (case, path, resp.status, await resp.text())
                assert resp.content_type == "application/json"
                assert (await resp.json())["error"]["code"] == "bad_request", case
    status, _ = await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "x", "data": {"a": [1, [2]]}})
    assert status == 201


async def test_an_unexpected_exception_is_a_json_500(server: Server, monkeypatch: Any) -> None:
    async def broken() -> set[str]:
        raise RuntimeError("boom\r\nFAKE")

    monkeypatch.setattr(server.node.broker, "rooms", broken)
    status, body = await server.admin("GET", "/v1/rooms")
    assert status == 500 and body == {"error": {"code": "internal", "message": "internal error"}}


async def test_unknown_paths_and_oversized_bodies_are_json(server: Server) -> None:
    status, body = await server.rest("GET", "/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    big = b'{"title":"' + b"x" * (300 * 1024) + b'"}'
    admin = {"Authorization": f"Bearer {token('admin-1', 'admin')}"}
    async with server.http.post(server.base_url + "/v1/rooms", data=big, headers=admin) as resp:
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"


# -- 4. absurd claims, connection accounting ----------------------------------------------


def signed(**claims: Any) -> str:
    base = {"iss": APP, "sub": "u-exp", "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


ABSURD = {
    "exp 10^400": {"exp": 10**400},
    "exp 10^20": {"exp": 10**20},
    "exp 2^53": {"exp": 2**53},
    "exp two years ahead": {"exp": int(time.time()) + 2 * 366 * 86400},
    "exp infinity": {"exp": float("inf")},
    "exp negative": {"exp": -1},
    "exp float": {"exp": time.time() + 600},
    "exp true": {"exp": True},
    "iat infinity": {"iat": float("inf")},
    "iat 10^400": {"iat": 10**400},
    "iat string": {"iat": "yesterday"},
    "nbf infinity": {"nbf": float("inf")},
    "nbf in the future": {"nbf": int(time.time()) + 3600},
    "nbf NaN": {"nbf": float("nan")},
}


@pytest.mark.parametrize("case", list(ABSURD))
async def test_absurd_numeric_claims_are_401_and_never_lock_the_user_out(server: Server, case: str) -> None:
    tok = signed(**ABSURD[case])
    for _ in range(server.config.max_connections_per_user + 2):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await server.http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {tok}"})
        assert err.value.status == 401
        assert 'error="invalid_token"' in err.value.headers["WWW-Authenticate"]
        status, body = await server.rest("GET", "/v1/schedule", tok)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    assert not server.gateway._per_user and not server.gateway._per_ip
    ws = await server.raw(signed(iat=int(time.time()), nbf=int(time.time()) - 5))
    assert (await ws.request(1, "ping"))["ok"] is True


async def wait_counters_empty(server: Server) -> None:
    deadline = time.monotonic() + WAIT_S
    while server.gateway._per_user or server.gateway._per_ip or server.gateway.sessions:
        assert time.monotonic() < deadline, (server.gateway._per_user, server.gateway._per_ip)
        await asyncio.sleep(0.01)


class Injected(Exception):
    pass


def fail(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected failure")


async def fail_async(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected failure")


class RaisingClock:
    @staticmethod
    def time() -> float:
        raise OverflowError("int too large to convert to float")


def inject(server: Server, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if step == "prepare":
        monkeypatch.setattr(web.WebSocketResponse, "prepare", fail_async)
    elif step == "connection":
        monkeypatch.setattr(gateway_module, "Connection", fail)
    elif step == "add_connection":
        monkeypatch.setattr(server.node.fanout, "add_connection", fail)
    elif step == "expiry timer":
        monkeypatch.setattr(gateway_module, "time", RaisingClock)
    elif step == "remove_connection":
        real = server.node.fanout.remove_connection

        def remove_then_fail(conn: Any) -> Any:
            real(conn)
            raise Injected("injected failure")

        monkeypatch.setattr(server.node.fanout, "remove_connection", remove_then_fail)
    else:
        raise AssertionError(step)


async def try_socket(server: Server, user: str) -> None:
    """Connect and ping; whatever the injected failure does to this socket is fine."""
    try:
        ws = await server.http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {token(user)}"})
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 500, exc
        return
    try:
        await ws.send_str('{"id":1,"op":"ping"}')
        await asyncio.wait_for(ws.receive(), WAIT_S)
    finally:
        await ws.close()


STEPS = ["prepare", "connection", "add_connection", "expiry timer", "remove_connection"]


@pytest.mark.parametrize("step", STEPS)
async def test_counts_are_given_back_when_a_step_fails(
    server: Server, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        inject(server, step, m)
        for _ in range(server.config.max_connections_per_user + 2):
            await try_socket(server, "u-inj")
        await wait_counters_empty(server)
    ws = await server.raw(token("u-inj"))
    assert (await ws.request(1, "ping"))["ok"] is True


async def test_counts_are_given_back_when_the_4029_close_fails(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(max_connections_per_user=1)
    first = await server.raw(token("u-max"))
    assert (await first.request(1, "ping"))["ok"] is True
    with monkeypatch.context() as m:
        m.setattr(web.WebSocketResponse, "close", fail_async)
        for _ in range(3):
            ws = await server.http.ws_connect(
                server.ws_url, headers={"Authorization": f"Bearer {token('u-max')}"}
            )
            await ws.close()
        assert dict(server.gateway._per_user) == {(APP, "u-max"): 1}
    second = await server.raw(token("u-max"))
    assert await second.close_code() == 4029
    await first.ws.close()
    await wait_counters_empty(server)
    again = await server.raw(token("u-max"))
    assert (await again.request(1, "ping"))["ok"] is True


async def test_connections_per_ip_have_a_default_and_a_limit(make_server: Any) -> None:
    assert Config().max_connections_per_ip == 200
    server = await make_server(max_connections_per_ip=2)
    a, b = await server.raw(token("ip-a")), await server.raw(token("ip-b"))
    for ws in (a, b):
        assert (await ws.request(1, "ping"))["ok"] is True
    third = await server.raw(token("ip-c"))
    assert await third.close_code() == 4029
    await a.ws.close()
    deadline = time.monotonic() + WAIT_S
    while server.gateway._per_ip.get("127.0.0.1", 0) > 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    fourth = await server.raw(token("ip-d"))
    assert (await fourth.request(1, "ping"))["ok"] is True


# -- 9. HTTP exactness ------------------------------------------------------------------------


async def test_every_401_names_the_bearer_scheme(server: Server) -> None:
    for path in ("/v1/rooms", "/v1/schedule", "/v1/ws", "/v1/rooms/r1/history"):
        async with server.http.get(server.base_url + path) as resp:
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="roomserver"', path
        async with server.http.get(server.base_url + path, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401, path
            challenge = resp.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="roomserver", error="invalid_token"'), challenge
    for path in ("/v1/rooms/r1/whip", "/v1/rooms/r1/whep"):
        async with server.http.post(
            server.base_url + path, data="v=0\r\n", headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer"), path


RESOURCES = {
    "/v1/rooms": {"GET", "HEAD", "POST"},
    "/v1/rooms/r1": {"GET", "HEAD", "DELETE", "PATCH"},  # PATCH: reschedule (issue 12)
    "/v1/rooms/r1/followers": {"GET", "HEAD"},
    "/v1/rooms/r1/events": {"POST"},
    "/v1/rooms/r1/whip": {"POST"},
    "/v1/rooms/r1/whip/s1": {"DELETE"},
    "/v1/rooms/r1/whep/s1": {"DELETE"},
    "/healthz": {"GET", "HEAD"},
    "/v1/ws": {"GET"},
}


@pytest.mark.parametrize("path", list(RESOURCES))
async def test_405_allow_lists_exactly_the_methods_that_work(server: Server, path: str) -> None:
    methods = RESOURCES[path]
    for bad in sorted({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} - methods):
        async with server.http.request(bad, server.base_url + path) as resp:
            assert resp.status == 405, (bad, path)
            if bad != "HEAD":
                assert (await resp.json())["error"]["code"] == "bad_request"
            allow = set(resp.headers["Allow"].split(", "))
            assert allow == methods | {"OPTIONS"}, (bad, path, allow)
    for good in methods | {"OPTIONS"}:
        async with server.http.request(good, server.base_url + path) as resp:
            assert resp.status != 405, (good, path)


async def test_options_and_cors_preflights(server: Server) -> None:
    for kind in ("whip", "whep"):
        async with server.http.options(server.base_url + f"/v1/rooms/r1/{kind}") as resp:
            assert resp.status == 204
            assert resp.headers["Accept-Post"] == "application/sdp"
            assert resp.headers["Allow"] == "OPTIONS, POST"
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "DELETE"}
    for path, methods in RESOURCES.items():
        async with server.http.options(server.base_url + path, headers=preflight) as resp:
            assert resp.status == 204, path
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            listed = set(resp.headers["Access-Control-Allow-Methods"].split(", "))
            assert listed == methods | {"OPTIONS"}, (path, listed)
            if path.endswith("/whip"):
                assert resp.headers["Accept-Post"] == "application/sdp"


# -- 2/11. REST rate limits ----------------------------------------------------------------------


# Rates of one request per 100 s: the refill during the test is negligible however
# slow the machine (refill timing itself is checked on TokenBuckets with a given clock).
SLOW = 0.01


async def test_rest_requests_are_limited_per_token(make_server: Any) -> None:
    server = await make_server(rest_rate_per_token=SLOW, rest_burst_per_token=5, rest_rate_per_ip=1000.0)
    tok = token("rl-1")
    for _ in range(5):
        assert (await server.rest("GET", "/v1/schedule", tok))[0] == 200
    async with server.http.get(
        server.base_url + "/v1/schedule", headers={"Authorization": f"Bearer {tok}"}
    ) as resp:
        assert resp.status == 429
        error = (await resp.json())["error"]
        assert error["code"] == "rate_limited" and 90_000 < error["retry_after_ms"] <= 100_000
        assert resp.headers["Retry-After"] == str(-(-error["retry_after_ms"] // 1000))
    # Another token, and the probes, are not held back by this token's budget.
    assert (await server.rest("GET", "/v1/schedule", token("rl-2")))[0] == 200
    assert (await server.rest("GET", "/healthz", tok))[0] == 200


async def test_rest_requests_are_limited_per_ip_probes_included(make_server: Any) -> None:
    server = await make_server(rest_rate_per_ip=SLOW, rest_burst_per_ip=4)
    for _ in range(4):
        assert (await server.rest("GET", "/healthz"))[0] == 200
    status, body = await server.rest("GET", "/healthz")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    status, body = await server.rest("GET", "/v1/schedule", token("rl-3"))
    assert status == 429
    # Sockets are not REST: they are bounded by connections per IP, not by this budget.
    ws = await server.raw(token("rl-4"))
    assert (await ws.request(1, "ping"))["ok"] is True


def test_token_buckets_refill_and_stay_bounded() -> None:
    buckets = TokenBuckets(rate=10.0, burst=3, max_keys=100)
    assert [buckets.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(1, 0.0) == pytest.approx(0.1)
    assert buckets.take(1, 0.1) == 0.0  # one token back after 1/rate
    for key in range(1000):
        buckets.take(1000 + key, 1.0)
    assert len(buckets) == 100
    # the most recently used survive, the oldest (and full) are forgotten
    assert 1 not in buckets._buckets and 1999 in buckets._buckets


def test_error_codes_of_statuses_are_protocol_codes() -> None:
    from roomserver.api.middleware import CODE_OF_STATUS

    assert set(CODE_OF_STATUS.values()) <= PROTOCOL_ERRORS


async def test_dev_token_mint_answers_bad_bodies_with_400() -> None:
    """The dev mint decodes its body like every REST body: UTF-8, depth-bounded."""
    from aiohttp.test_utils import TestClient, TestServer

    from roomserver.config import Config
    from roomserver.server import create_app

    async with TestClient(TestServer(create_app(Config()), host="127.0.0.1")) as client:
        headers = {"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}
        for body in (b"\xff\xfe", b"[" * 5000, b"{"):
            resp = await client.post("/dev/token", data=body, headers=headers)
            assert resp.status == 400, body
            assert (await resp.json())["error"]["code"] == "bad_request"
        resp = await client.post("/dev/token", json={"user": "u1", "role": "host"}, headers=headers)
        assert resp.status == 200 and (await resp.json())["token"]
