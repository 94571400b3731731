"""The upstream a worker pool hands its worker with a WHEP request (media/cascade.py)."""

from __future__ import annotations

import base64

import pytest

from roomserver.media.cascade import Upstream, decode_upstream, encode_upstream

HTTP = object()  # only carried along: decoding never uses the session


def test_round_trip_keeps_every_field_and_is_header_safe() -> None:
    up = Upstream(
        "app/直播-1", "主播", "host", "http://10.0.0.2:8080/v1/rooms/直播-1/whep?publisher=x", "t.k.n", HTTP
    )  # type: ignore[arg-type]
    value = encode_upstream(up)
    value.encode("ascii")  # a header value
    back = decode_upstream(value, HTTP)  # type: ignore[arg-type]
    assert (back.room, back.user, back.role, back.url, back.token) == (
        up.room,
        up.user,
        up.role,
        up.url,
        up.token,
    )
    assert back.http is HTTP and back.location is None


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "value",
    [
        "%%%not base64%%%",
        b64(b"\xff\xfe not utf-8"),
        b64(b"not json"),
        b64(b"[1, 2]"),
        b64(b'{"room": "r", "user": "u", "role": "host", "url": "http://x"}'),  # no token
        b64(b'{"room": "r", "user": 7, "role": "host", "url": "http://x", "token": "t"}'),
        b64(b"[" * 100_000 + b"]" * 100_000),  # deep nesting
    ],
)
def test_anything_else_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        decode_upstream(value, HTTP)  # type: ignore[arg-type]
