"""Delivery guarantees at the socket: a consumer that stops reading is closed
with 4008 while the others keep receiving everything; the per-user connection
limit closes with 4029."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

import msgspec

from tests.server_fixtures import Recorder, Server, token

EVENT_PAD = "x" * 7000  # ≈ 7 KB per custom event


class StalledSocket:
    """A WebSocket client on a bare TCP socket with a tiny receive buffer that
    stops reading after the handshake: the server's writes pile up."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def open(cls, host: str, port: int, tok: str) -> StalledSocket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # also turns off autotuning
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {tok}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        self = cls(sock)
        head = await self._read_until(b"\r\n\r\n", 5.0)
        assert head.startswith(b"HTTP/1.1 101"), head
        return self

    async def _read_until(self, marker: bytes, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), deadline - time.monotonic())
            if not chunk:
                raise ConnectionError("EOF")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def send_json(self, obj: object) -> None:
        payload = msgspec.json.encode(obj)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
        await asyncio.get_running_loop().sock_sendall(self.sock, header + mask + masked)

    async def read_to_close(self, timeout: float) -> tuple[int | None, int]:
        """Read everything; returns (close code or None if EOF came first, text frames read)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        frames = 0
        while time.monotonic() < deadline:
            while True:  # parse whole frames in the buffer
                frame = _parse_frame(self.buffer)
                if frame is None:
                    break
                opcode, payload, used = frame
                self.buffer = self.buffer[used:]
                if opcode == 0x8:
                    return (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None), frames
                frames += opcode == 0x1
            try:
                chunk = await asyncio.wait_for(
                    loop.sock_recv(self.sock, 1 << 20), deadline - time.monotonic()
                )
            except (TimeoutError, ConnectionError):
                return None, frames
            if not chunk:
                return None, frames
            self.buffer += chunk
        return None, frames

    def close(self) -> None:
        self.sock.close()


def _parse_frame(buf: bytes) -> tuple[int, bytes, int] | None:
    if len(buf) < 2:
        return None
    opcode = buf[0] & 0x0F
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < pos + n:
        return None
    return opcode, buf[pos : pos + n], pos + n


async def _stall_until_closed(server: Server, room: str) -> tuple[StalledSocket, int]:
    """Join a stalled socket to ``room`` and publish 7 KB events until the
    server cuts it (bounded: 3,000 events or 30 s). Returns it and the count."""
    host, port = server.test_server.host, server.test_server.port
    assert port is not None
    stalled = await StalledSocket.open(host, port, token("slowpoke"))
    await stalled.send_json({"id": 1, "op": "room.join", "room": room})
    await asyncio.sleep(0.2)
    fanout = server.node.fanout
    published = 0
    deadline = time.monotonic() + 30
    while fanout.stats.slow_closes == 0 and published < 3000 and time.monotonic() < deadline:
        for _ in range(10):
            status, _ = await server.admin(
                "POST", f"/v1/rooms/{room}/events", {"ev": "bulk", "data": {"i": published, "pad": EVENT_PAD}}
            )
            assert status == 201
            published += 1
    assert fanout.stats.slow_closes >= 1, f"no 4008 after {published} events of 7 KB"
    return stalled, published


async def test_slow_consumer_is_closed_4008_others_keep_receiving(make_server, room: str) -> None:
    server: Server = await make_server(socket_buffer_limit=256 * 1024, socket_buffer_soft=64 * 1024)
    # The stalled client reads again only at the end: keep it from being cut meanwhile
    # (the cut after close_timeout is tested in test_slow_consumer_cut.py).
    server.node.fanout.close_timeout = 30.0
    healthy = await server.client("bob")
    rec = Recorder(healthy)
    snap = (await healthy.join(room))["room"]
    stalled, published = await _stall_until_closed(server, room)
    try:
        # more events after the close: the healthy client still gets them all, in order
        for i in range(5):
            await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "after", "data": {"i": i}})
        published += 5
        await rec.wait("custom.after", count=5, timeout=10)
        assert rec.seqs(room) == list(range(snap["seq"] + 1, snap["seq"] + published + 1))
        assert not healthy.closed and healthy.close_code is None
        # the stalled client, once it reads again, finds the 4008 close after its backlog
        code, frames = await stalled.read_to_close(timeout=15)
        assert code == 4008, (code, frames)
        assert frames < published
    finally:
        stalled.close()


async def test_slow_consumer_metric_counts_each_socket_once(make_server, room: str) -> None:
    server: Server = await make_server(socket_buffer_limit=256 * 1024, socket_buffer_soft=64 * 1024)
    stalled, _ = await _stall_until_closed(server, room)
    try:
        # flushes that happen while the cut socket is still closing must not count it again
        for i in range(20):
            await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "after", "data": {"i": i}})
            await asyncio.sleep(0.06)
        metrics = (await server.rest("GET", "/metrics"))[1]
        line = next(
            ln for ln in metrics.splitlines() if ln.startswith("roomserver_slow_consumer_closes_total ")
        )
        assert line == "roomserver_slow_consumer_closes_total 1.0"
    finally:
        stalled.close()


async def test_too_many_connections_per_user_4029(make_server, room: str) -> None:
    server: Server = await make_server(max_connections_per_user=2)
    first = await server.client("ann")
    second = await server.client("ann")
    third = await server.client("ann")
    assert await third.wait_closed(timeout=5) == 4029
    assert third.closed  # the SDK does not retry a 4029
    # the first two are unaffected
    await first.join(room)
    await second.join(room)
    # another user is not limited by ann's sockets
    bob = await server.client("bob")
    await bob.join(room)
    # once one of ann's sockets closes, a new one is admitted
    await first.close()
    await asyncio.sleep(0.1)
    fourth = await server.client("ann")
    assert (await fourth.join(room))["room"]["id"] == room
    assert not fourth.closed


async def test_sdk_client_that_stops_reading_is_cut_then_resumes(make_server, room: str) -> None:
    """End to end: the SDK's socket stops reading (its transport is paused, as a
    stuck app would), the server cuts it with 4008 once its buffer passes the
    limit, and after reading again the SDK reconnects and resumes: every event
    exactly once, in order."""
    server: Server = await make_server(socket_buffer_limit=256 * 1024, socket_buffer_soft=64 * 1024)
    server.node.fanout.close_timeout = 30.0  # reading the backlog may take a while on a loaded box
    client = await server.client("ann")
    rec = Recorder(client)
    snap = (await client.join(room))["room"]
    transport = client._ws._writer.transport  # type: ignore[union-attr]  # test-only: stall the reader
    transport.pause_reading()
    fanout = server.node.fanout
    published = 0
    deadline = time.monotonic() + 30
    try:
        while fanout.stats.slow_closes == 0 and published < 3000 and time.monotonic() < deadline:
            for _ in range(10):
                await server.admin(
                    "POST",
                    f"/v1/rooms/{room}/events",
                    {"ev": "bulk", "data": {"i": published, "pad": EVENT_PAD}},
                )
                published += 1
        assert fanout.stats.slow_closes >= 1, f"no 4008 after {published} events"
    finally:
        transport.resume_reading()
    await rec.wait("reconnected", timeout=15)
    for i in range(3):
        await server.admin("POST", f"/v1/rooms/{room}/events", {"ev": "after", "data": {"i": i}})
    published += 3
    await rec.wait("custom.after", count=3, timeout=10)
    assert client.close_code == 4008 and client.reconnects == 1
    assert rec.seqs(room) == list(range(snap["seq"] + 1, snap["seq"] + published + 1))
    assert not rec.named("resync")
