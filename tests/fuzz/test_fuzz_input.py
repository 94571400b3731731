"""Issue 16: fuzzing the frame decoder and the REST bodies of a real server.

Every input must get a documented answer (an error reply with a protocol code, or
a JSON error with one), the socket must stay open, and the server healthy
afterwards (a ping answers, /healthz is 200). Bounded: max_examples and a
per-example deadline keep each pass well under 30 s."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from roomserver.handlers import REGISTRY
from roomserver.handlers.catalog import OP_MODULES
from roomserver.protocol import MAX_FRAME_BYTES
from tests.fuzz.conftest import ThreadServer
from tests.server_fixtures import PROTOCOL_ERRORS

assert OP_MODULES  # importing the catalog registered every op
OPS = sorted(REGISTRY)
ROOM = "fz-1"
RECV_S = 5.0

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def deep(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=6000))
    opener = draw(st.sampled_from(["[", '{"a":', '{"op":"ping","x":[']))
    closed = draw(st.booleans())
    closer = {"[": "]", '{"a":': "}", '{"op":"ping","x":[': "]"}[opener]
    body = opener * depth + "1" + (closer * depth if closed else "")
    return body + ("}" if closed and opener.startswith('{"op"') else "")


@st.composite
def envelopes(draw: st.DrawFn) -> str:
    frame: dict[str, Any] = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=4))
    frame["op"] = draw(st.sampled_from(OPS) | st.text(max_size=20) | json_values)
    if draw(st.booleans()):
        frame["room"] = draw(st.sampled_from([ROOM, "", "x" * 70, "bad room"]) | json_values)
    if draw(st.booleans()):
        frame["id"] = draw(st.integers() | st.text(max_size=8) | json_values)
    return json.dumps(frame, allow_nan=True)


frames = st.one_of(
    st.text(max_size=300),
    json_values.map(lambda v: json.dumps(v)),
    envelopes(),
    deep(),
    envelopes().flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n])),  # truncated
)


@pytest.fixture(scope="module")
def socket(thread_server: ThreadServer, admin_token: str) -> Iterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with connect(thread_server.ws_url, additional_headers=headers) as ws:
        ws.send(json.dumps({"id": "join", "op": "room.join", "room": ROOM}))
        sentinel_reply(ws, "join", allow_error=True)
        yield ws


_sentinels = iter(range(10**9))


def sentinel_reply(ws: ClientConnection, req_id: Any, *, allow_error: bool = False) -> list[dict[str, Any]]:
    """Read until the reply to ``req_id``; return every reply seen on the way."""
    replies = []
    while True:
        frame = msgspec.json.decode(ws.recv(timeout=RECV_S))
        assert isinstance(frame, list), frame
        for message in frame:
            assert isinstance(message, dict), message
            if "re" not in message:
                assert isinstance(message.get("ev"), str), message
                continue
            replies.append(message)
            if message["re"] == req_id:
                # the fuzzer outruns the per-user op budget: rate_limited is an answer too
                limited = not message["ok"] and message["error"]["code"] == "rate_limited"
                assert allow_error or limited or message["ok"] is True, message
                return replies


def assert_documented(reply: dict[str, Any]) -> None:
    if reply["ok"] is False:
        assert reply["error"]["code"] in PROTOCOL_ERRORS, reply
        assert reply["error"]["code"] != "internal", reply
        assert isinstance(reply["error"]["message"], str), reply


@settings(
    max_examples=250,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frame=frames | st.binary(max_size=200))
def test_every_frame_gets_a_documented_answer_and_the_socket_stays_open(
    socket: ClientConnection, frame: str | bytes
) -> None:
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_BYTES:  # those get too_large and a 1009 close, by design (test_wire)
        return
    if isinstance(frame, str):
        try:
            frame.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot be sent as a text frame
            return
    socket.send(frame)
    sentinel = f"s{next(_sentinels)}"
    socket.send(json.dumps({"id": sentinel, "op": "ping"}))
    for reply in sentinel_reply(socket, sentinel):
        assert_documented(reply)


REST_PATHS = ["/v1/rooms", f"/v1/rooms/{ROOM}/events", "/dev/token", f"/v1/rooms/{ROOM}/whip"]

bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes().map(str.encode),
    deep().map(str.encode),
    st.dictionaries(
        st.sampled_from(["title", "id", "mode", "barrage_cap", "scheduled_at", "ev", "data", "user", "role"]),
        json_values,
    ).map(lambda d: json.dumps(d).encode()),
)


def request(server: ThreadServer, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
    url = urllib.parse.urlsplit(server.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=RECV_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


@settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(REST_PATHS),
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "application/sdp", "text/plain", "application/x-www-form-urlencoded"]
    ),
)
def test_every_rest_body_gets_a_documented_answer(
    thread_server: ThreadServer, admin_token: str, path: str, body: bytes, content_type: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": content_type}
    status, ctype, raw = request(thread_server, "POST", path, body, headers)
    assert status < 500, (status, raw[:300])
    if status >= 400:
        assert ctype.startswith("application/json"), (status, ctype, raw[:300])
        error = json.loads(raw)["error"]
        assert error["code"] in PROTOCOL_ERRORS, error


def test_the_server_is_healthy_after_the_fuzzing(
    thread_server: ThreadServer, socket: ClientConnection
) -> None:
    for attempt in range(3):
        socket.send(json.dumps({"id": f"last{attempt}", "op": "ping"}))
        reply = sentinel_reply(socket, f"last{attempt}")[-1]
        if reply["ok"]:
            break
        time.sleep(reply["error"]["retry_after_ms"] / 1000)  # the op budget refills with time
    assert reply["ok"] is True, reply
    status, _, raw = request(thread_server, "GET", "/healthz", None, {})
    assert (status, json.loads(raw)) == (200, {"ok": True})
