"""The load tester's WebSocket client codec, against aiohttp's own reader/writer bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.wsproto import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameSplitter,
    ProtocolError,
    check_upgrade_response,
    client_frame,
    upgrade_request,
)
from roomserver.fanout import ws_text_frame


def unmask(frame: bytes) -> tuple[int, bytes]:
    """Decode one masked client frame the way a server does (RFC 6455 §5.3)."""
    b0, b1 = frame[0], frame[1]
    assert b0 & 0x80 and b1 & 0x80
    n, pos = b1 & 0x7F, 2
    if n == 126:
        n, pos = struct.unpack("!H", frame[2:4])[0], 4
    elif n == 127:
        n, pos = struct.unpack("!Q", frame[2:10])[0], 10
    mask, payload = frame[pos : pos + 4], frame[pos + 4 :]
    assert len(payload) == n
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_client_frames_are_masked_and_unmask_to_the_payload(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = client_frame(OP_TEXT, payload)
    assert unmask(frame) == (OP_TEXT, payload)


@given(st.lists(st.binary(max_size=70_000), min_size=1, max_size=5), st.data())
def test_splitter_returns_the_frames_whatever_the_chunking(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(ws_text_frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    splitter = FrameSplitter()
    got: list[tuple[int, bytes]] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += splitter.feed(stream[prev:cut])
        prev = cut
    assert got == [(OP_TEXT, p) for p in payloads]


def test_splitter_reassembles_fragments_and_passes_control_frames_between() -> None:
    stream = (
        bytes([0x01, 3])
        + b"abc"  # text, not final
        + bytes([0x89, 2])
        + b"hi"  # ping in between (allowed by RFC 6455 §5.4)
        + bytes([0x80, 2])
        + b"de"  # final continuation
        + bytes([0x88, 2])
        + struct.pack("!H", 4008)
    )
    assert FrameSplitter().feed(stream) == [(OP_PING, b"hi"), (OP_TEXT, b"abcde"), (OP_CLOSE, b"\x0f\xa8")]


def test_splitter_refuses_masked_server_frames_and_orphan_continuations() -> None:
    with pytest.raises(ProtocolError):
        FrameSplitter().feed(bytes([0x81, 0x81]) + b"\x00\x00\x00\x00x")
    with pytest.raises(ProtocolError):
        FrameSplitter().feed(bytes([0x80, 1]) + b"x")


def test_upgrade_response_must_be_101_with_the_right_accept() -> None:
    req, accept = upgrade_request("127.0.0.1", 8080, "/v1/ws?token=t")
    assert req.startswith(b"GET /v1/ws?token=t HTTP/1.1\r\n") and req.endswith(b"\r\n\r\n")
    ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept
    check_upgrade_response(ok, accept)
    with pytest.raises(ProtocolError, match="401"):
        check_upgrade_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0", accept)
    with pytest.raises(ProtocolError, match="Accept"):
        check_upgrade_response(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: xyz", accept)
