"""The wire protocol: error codes, close codes, frame encoding and decoding.

Single source of truth for names that cross the wire (see docs/protocol.md).
Encoding is done once per event: an event is JSON bytes *without* ``seq``; the
bus splices ``"seq":N`` in when it assigns one (``with_seq``), so no layer after
the publisher ever re-encodes an event.
"""

from __future__ import annotations

import time
from typing import Any, Final, Literal

import msgspec

MAX_FRAME_BYTES: Final = 16 * 1024

# Close codes (PROTOCOL §2).
CLOSE_TOKEN_EXPIRED: Final = 4001
CLOSE_KICKED: Final = 4003
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_TOO_MANY_CONNECTIONS: Final = 4029
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TOO_LARGE: Final = 1009

ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "not_joined",
    "rate_limited",
    "muted",
    "blocked_content",
    "sold_out",
    "limit_reached",
    "not_open",
    "conflict",
    "history_gone",
    "too_large",
    "unavailable",
    "internal",
]
ERROR_CODES: Final[frozenset[str]] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


class OpError(Exception):
    """A request failed with a protocol error code; becomes an error reply."""

    def __init__(self, code: ErrorCode, message: str, retry_after_ms: int | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    def to_wire(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after_ms is not None:
            err["retry_after_ms"] = int(self.retry_after_ms)
        return err


_encoder = msgspec.json.Encoder()
encode = _encoder.encode
decode = msgspec.json.decode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Request(msgspec.Struct, frozen=True):
    """A decoded client frame: the envelope plus the op's raw params."""

    op: str
    id: int | str | None
    room: str | None
    params: dict[str, Any]


def parse_request(raw: str | bytes) -> Request:
    """Decode one client frame. Raises OpError(bad_request) with a readable message."""
    try:
        obj = decode(raw)
    except msgspec.DecodeError as exc:
        raise OpError("bad_request", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise OpError("bad_request", "a frame must be one JSON object")
    req_id = obj.pop("id", None)
    if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, (int, str))):
        raise OpError("bad_request", "id must be an integer or a string")
    op = obj.pop("op", None)
    if not isinstance(op, str) or not op:
        raise _with_id(OpError("bad_request", "missing op (a string)"), req_id)
    room = obj.pop("room", None)
    if room is not None and not isinstance(room, str):
        raise _with_id(OpError("bad_request", "room must be a string"), req_id)
    return Request(op=op, id=req_id, room=room, params=obj)


def _with_id(err: OpError, req_id: int | str | None) -> OpError:
    err.req_id = req_id  # type: ignore[attr-defined]
    return err


def convert_params(params: dict[str, Any], schema: type[msgspec.Struct]) -> Any:
    """Validate an op's params against its msgspec schema (bad_request on mismatch)."""
    try:
        return msgspec.convert(params, schema)
    except msgspec.ValidationError as exc:
        raise OpError("bad_request", str(exc)) from None


# --- server -> client ------------------------------------------------------


def reply_ok(req_id: int | str, data: Any) -> bytes:
    return encode({"re": req_id, "ok": True, "data": data})


def reply_error(req_id: int | str, err: OpError) -> bytes:
    return encode({"re": req_id, "ok": False, "error": err.to_wire()})


def encode_event(ev: str, room: str, data: Any, ts: int | None = None) -> bytes:
    """An event's JSON bytes without ``seq`` (the bus adds it for durable events)."""
    return encode({"ev": ev, "room": room, "ts": now_ms() if ts is None else ts, "data": data})


def with_seq(body: bytes, seq: int) -> bytes:
    """Splice ``"seq":N`` into an encoded event object (``{...}`` -> ``{"seq":N,...}``)."""
    return b'{"seq":%d,%s' % (seq, body[1:])


def frame(messages: list[bytes]) -> bytes:
    """Server frames are JSON arrays of messages (PROTOCOL §2)."""
    return b"[" + b",".join(messages) + b"]"
