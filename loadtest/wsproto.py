"""The client side of RFC 6455, reduced to what a load generator needs.

Pure functions over bytes (no sockets): the upgrade request, the check of the
server's 101 answer, masked client frames, and a frame splitter fed with
whatever ``data_received`` got. Hand-rolled rather than ``websockets`` or
aiohttp's client because the load generator's cost per received frame decides
how many viewers one process can simulate (see docs/benchmarks.md, "client
cost"): here a frame costs one header check and one slice.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Final

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

# A server frame bigger than this is a protocol error for our purposes (the
# server's batch frames are a few KiB; a resume replay at most ~1 MiB).
MAX_FRAME: Final = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The server sent something a WebSocket client must not accept."""


def upgrade_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """The HTTP/1.1 upgrade request and the ``Sec-WebSocket-Accept`` it must get back."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return req, accept


def check_upgrade_response(head: bytes, accept: bytes) -> None:
    """Raise ``ProtocolError`` unless ``head`` (up to the blank line) is a valid 101."""
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        raise ProtocolError(f"upgrade refused: {lines[0].decode(errors='replace')}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            if value.strip() != accept:
                raise ProtocolError("bad Sec-WebSocket-Accept")
            return
    raise ProtocolError("no Sec-WebSocket-Accept")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (clients must mask, RFC 6455 §5.3)."""
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if n:
        # XOR as one big integer: C speed without numpy for a few hundred bytes.
        keystream = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return head + mask + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:120]


class FrameSplitter:
    """Cuts a byte stream from the server into ``(opcode, payload)`` frames.

    Server frames are unmasked and, from aiohttp and the fan-out, never
    fragmented; a fragmented message is still reassembled (RFC 6455 §5.4).
    Memory: at most one partial frame is buffered.
    """

    __slots__ = ("_buf", "_frag", "_frag_op")

    def __init__(self) -> None:
        self._buf = b""
        self._frag: list[bytes] | None = None
        self._frag_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b1 & 0x80:
                raise ProtocolError("server frames must not be masked")
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
                if n > MAX_FRAME:
                    raise ProtocolError(f"frame of {n} bytes")
            stop = pos + head + n
            if stop > end:
                break
            payload = buf[pos + head : stop]
            pos = stop
            opcode = b0 & 0x0F
            if b0 & 0x80:  # FIN
                if opcode == OP_CONT:
                    if self._frag is None:
                        raise ProtocolError("continuation without a start")
                    self._frag.append(payload)
                    out.append((self._frag_op, b"".join(self._frag)))
                    self._frag = None
                else:
                    out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._frag is None:
                    raise ProtocolError("continuation without a start")
                self._frag.append(payload)
            else:
                self._frag, self._frag_op = [payload], opcode
        self._buf = buf[pos:] if pos < end else b""
        return out
