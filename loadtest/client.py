"""Simulated clients: asyncio protocols over the hand-rolled WebSocket client.

One ``Viewer`` costs one socket, a ``FrameSplitter`` and a ``SeqCheck``
(≈ 1 KiB of Python objects plus the kernel's socket buffers); thousands share
one event loop. A plain viewer never decodes JSON after its join reply; a
*sampling* viewer decodes every frame and records end-to-end latency from the
``t=<unix ns>`` stamp that senders put at the start of each barrage text.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast

import msgspec
from hdrh.histogram import HdrHistogram

from loadtest import histo
from loadtest.verify import SEQ_RE, FrameSeqs, SeqCheck
from loadtest.wsproto import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameSplitter,
    ProtocolError,
    check_upgrade_response,
    client_frame,
    close_payload,
    upgrade_request,
)

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
JOIN_ID: Final = 1
STAMP_RE: Final = re.compile(r"t=(\d+)")
# A reply as the server encodes it (msgspec keeps insertion order: re, ok, data|error).
REPLY_RE: Final = re.compile(
    rb'\{"re":(\d+),"ok":(?:true,"data":\{"seq":(null|\d+)|false,"error":\{"code":"([a-z_]+)")'
)


@dataclass(slots=True)
class Tally:
    """Counters shared by every client of one process (cheap to read each second)."""

    frames: int = 0
    deliveries: int = 0  # durable events received (events x sockets)
    frame_seqs: FrameSeqs = field(default_factory=FrameSeqs)
    # End-to-end latency (µs) since the last tick; the parent merges the intervals.
    latency: HdrHistogram = field(default_factory=histo.new)

    def record_latency(self, us: int) -> None:
        self.latency.record_value(us if us > 0 else 1)

    def take_latency(self) -> bytes:
        h, self.latency = self.latency, histo.new()
        return histo.encode(h) if h.get_total_count() else b""


class SocketTransport:
    """The part of ``asyncio.Transport`` a client uses, over a non-blocking socket.

    Plain viewers are *polled*: once joined, their socket is not registered with
    the event loop at all; the worker reads it every ``poll_ms`` (one ``recv``
    gets several frames). The server's writes then wake no process, as with
    viewers on other machines, and the load generator pays one syscall per poll
    instead of one wake-up per frame. Writes (pongs, close) are a few bytes on an
    idle send buffer: best effort.
    """

    __slots__ = ("_closing", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._closing = False

    def write(self, data: bytes) -> None:
        if not self._closing:
            with contextlib.suppress(OSError):
                self.sock.send(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self.sock.close()

    abort = close


class WsClient(asyncio.Protocol):
    """Upgrade, then split frames; answer pings and closes. Subclasses handle text."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.transport: asyncio.Transport | None = None
        self.splitter = FrameSplitter()
        self.upgraded = False
        self._head = b""
        self._accept = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.error: str | None = None

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is no asyncio.Transport subclass, but has its methods.
        self.transport = stream = cast(asyncio.Transport, transport)
        req, self._accept = upgrade_request(self.host, self.port, self.path)
        stream.write(req)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            data = self._upgrade(data)
            if not data:
                return
        try:
            frames = self.splitter.feed(data)
        except ProtocolError as exc:
            self._fail(str(exc))
            return
        for opcode, payload in frames:
            if opcode == OP_TEXT:
                self.on_text(payload)
            elif opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.send_frame(OP_CLOSE, payload[:2])
                if self.transport:
                    self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.error or f"closed before upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed()

    # -- helpers -------------------------------------------------------------------

    def _upgrade(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 16384:
                self._fail("oversized upgrade response")
            return b""
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        try:
            check_upgrade_response(head, self._accept)
        except ProtocolError as exc:
            self._fail(str(exc))
            return b""
        self.upgraded = True
        if not self.opened.done():
            self.opened.set_result(None)
        self.on_open()
        return rest

    def _fail(self, message: str) -> None:
        self.error = message
        if self.transport:
            self.transport.abort()

    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def send_json(self, obj: Any) -> None:
        self.send_frame(OP_TEXT, _encode(obj))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.send_frame(OP_CLOSE, close_payload(code))
            self.transport.close()

    def on_open(self) -> None:
        pass

    def on_text(self, payload: bytes) -> None:
        pass

    def on_closed(self) -> None:
        pass


class Viewer(WsClient):
    """Joins one room and verifies every durable event after its snapshot seq."""

    def __init__(self, host: str, port: int, path: str, room: str, tally: Tally, *, sample: bool) -> None:
        super().__init__(host, port, path)
        self.room = room
        self.tally = tally
        self.sample = sample
        self.check: SeqCheck | None = None
        self.join_sent_ns = 0
        self.joined_ns = 0
        self.join_error: str | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_open(self) -> None:
        self.join_sent_ns = time.time_ns()
        self.send_json({"id": JOIN_ID, "op": "room.join", "room": self.room})

    def on_text(self, payload: bytes) -> None:
        check = self.check
        if check is not None and not self.sample:
            first, n, seqs = self.tally.frame_seqs(payload)
            if n:
                check.feed_run(first, n, seqs)
                tally = self.tally
                tally.frames += 1
                tally.deliveries += n
            return
        self._decode_frame(payload)

    def _decode_frame(self, payload: bytes) -> None:
        now = time.time_ns()
        try:
            messages = _decode(payload)
        except msgspec.DecodeError:
            self._fail("undecodable frame")
            return
        tally = self.tally
        seqs: list[int] = []
        for m in messages:
            if "re" in m:
                self._on_reply(m)
                continue
            seq = m.get("seq")
            if seq is None or self.check is None:
                continue
            seqs.append(seq)
            if m.get("ev") == "barrage":
                stamp = STAMP_RE.match(m["data"].get("text", ""))
                if stamp:
                    tally.record_latency((now - int(stamp.group(1))) // 1000)
        if seqs and self.check is not None:
            self.check.feed(seqs)
            tally.frames += 1
            tally.deliveries += len(seqs)

    def _on_reply(self, m: dict) -> None:
        if m.get("re") != JOIN_ID or self.check is not None or self.join_error:
            return
        if m.get("ok"):
            self.joined_ns = time.time_ns()
            self.check = SeqCheck(int(m["data"]["room"]["seq"]))
            if not self.joined.done():
                self.joined.set_result(None)
        else:
            self.join_error = str(m.get("error", {}).get("code", "error"))
            if not self.joined.done():
                self.joined.set_exception(ConnectionError(f"join refused: {self.join_error}"))

    def on_closed(self) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(self.error or f"closed (code {self.close_code})"))


@dataclass(slots=True)
class SendStats:
    sent: int = 0
    accepted: int = 0
    shed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    ack: HdrHistogram = field(default_factory=histo.new)


class Sender(Viewer):
    """A viewer that also sends barrage; counts replies (accepted, shed, errors).

    It receives the room's frames too (it is a member) but does not verify them:
    its frames carry replies whose ``"data":{"seq":N}`` would confuse the scan.
    """

    def __init__(self, host: str, port: int, path: str, room: str, tally: Tally, stats: SendStats) -> None:
        super().__init__(host, port, path, room, tally, sample=False)
        self.stats = stats
        self._ids = itertools.count(JOIN_ID + 1)
        self.pending: dict[int, int] = {}  # request id -> send time (ns)

    def send_barrage(self, text_suffix: str) -> None:
        req_id = next(self._ids)
        now = time.time_ns()
        self.pending[req_id] = now
        self.stats.sent += 1
        self.send_json(
            {
                "id": req_id,
                "op": "barrage.send",
                "room": self.room,
                "text": f"t={now} {text_suffix}",
                "cid": f"c{req_id}",
            }
        )

    def on_text(self, payload: bytes) -> None:
        if self.check is None:
            self._decode_frame(payload)
            return
        n_replies = payload.count(b'{"re":')
        replies = REPLY_RE.findall(payload) if n_replies else []
        if len(replies) != n_replies:  # an unexpected reply shape: decode the frame
            for m in _decode(payload):
                if "re" in m:
                    self._on_barrage_reply(
                        m["re"], m.get("ok"), (m.get("data") or {}).get("seq"), m.get("error")
                    )
            return
        now = time.time_ns()
        numeric = 0
        for re_id, seq, code in replies:
            if seq and seq != b"null":
                numeric += 1
            self._on_barrage_reply(int(re_id), not code, seq, {"code": code.decode()} if code else None, now)
        durable = len(SEQ_RE.findall(payload)) - numeric
        if durable > 0:
            self.tally.frames += 1
            self.tally.deliveries += durable

    def _on_barrage_reply(self, req_id: int, ok: Any, seq: Any, error: Any, now: int | None = None) -> None:
        sent = self.pending.pop(req_id, None)
        if sent is None:
            return
        if now is None:
            now = time.time_ns()
        self.stats.ack.record_value(max(1, (now - sent) // 1000))
        if ok:
            if seq is None or seq == b"null":
                self.stats.shed += 1
            else:
                self.stats.accepted += 1
        else:
            code = str((error or {}).get("code", "error"))
            self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
