"""The wire protocol: error codes, close codes, frame encoding and decoding.

Single source of truth for names that cross the wire (see docs/protocol.md).
Encoding is done once per event: an event is JSON bytes *without* ``seq``; the
bus splices ``"seq":N`` in when it assigns one (``with_seq``), so no layer after
the publisher ever re-encodes an event.
"""

from __future__ import annotations

import re
import time
from itertools import accumulate
from typing import Any, Final, Literal

import msgspec

MAX_FRAME_BYTES: Final = 16 * 1024
# Nesting of client JSON (frames and REST bodies). msgspec has no depth option and
# recurses on the C stack: ~1,000 levels raise RecursionError, and a few hundred
# stored in a room document would break every later decode of it at a deeper stack.
MAX_JSON_DEPTH: Final = 64

# Close codes (PROTOCOL §2).
CLOSE_TOKEN_EXPIRED: Final = 4001
CLOSE_KICKED: Final = 4003
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_TOO_MANY_CONNECTIONS: Final = 4029
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TOO_LARGE: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011  # a server bug after the upgrade (RFC 6455 §7.4.1)

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


# A JSON string (escapes included): what the depth scan skips, since brackets in
# text are not nesting. Unrolled so that long strings do not backtrack.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests containers more than ``limit`` deep.

    Exact for valid JSON and for every valid prefix of invalid JSON (all a decoder
    reads before failing), so it runs before decoding. Usual text is decided by two
    ``str.count`` calls (nesting deeper than ``limit`` needs more than ``limit``
    opening brackets); the scan runs only for bracket-heavy input.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    steps = map(_STEP.__getitem__, _BRACKET.findall(_JSON_STRING.sub("", text)))
    return max(accumulate(steps), default=0) > limit


def decode_client_json(text: str, type: Any = None) -> Any:
    """Decode JSON a client sent, depth-bounded: OpError(bad_request) for malformed,
    too deep or (with ``type``) invalid input — never RecursionError."""
    if len(text) > 2 * MAX_JSON_DEPTH and json_too_deep(text):
        raise _too_deep()
    try:
        # type=Any costs a frame 2x the time of no type at all
        return decode(text) if type is None else msgspec.json.decode(text, type=type)
    except msgspec.ValidationError as exc:
        # JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees, and
        # so do clients that serialise every number as a double). Retried on the
        # error path only, so well-formed requests pay nothing.
        if "got `float`" in str(exc):
            try:
                return msgspec.convert(_integral_floats_as_ints(decode(text)), type)
            except msgspec.ValidationError:
                pass
        raise OpError("bad_request", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise OpError("bad_request", f"malformed JSON: {exc}") from None
    except RecursionError:  # unreachable after the scan; kept so a scan bug is still a 400
        raise _too_deep() from None


def _integral_floats_as_ints(value: Any) -> Any:
    if value.__class__ is float and value.is_integer():
        return int(value)
    if value.__class__ is dict:
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if value.__class__ is list:
        return [_integral_floats_as_ints(v) for v in value]
    return value


def decode_body(raw: bytes, type: Any = None) -> Any:
    """A REST request body (empty = ``{}``) as ``decode_client_json`` decodes a frame."""
    try:
        text = raw.decode("utf-8") if raw else "{}"
    except UnicodeDecodeError as exc:
        raise OpError("bad_request", f"the body is not UTF-8 (byte {exc.start})") from None
    return decode_client_json(text, type)


def parse_request(raw: str) -> Request:
    """Decode one client frame. Raises OpError(bad_request) with a readable message."""
    # The hot path: no text scan (two str.count calls would cost a 200-byte frame
    # 40 % more). A frame nesting past the C stack fails inside msgspec; one that
    # nests past MAX_JSON_DEPTH is found by walking only its nested params below.
    try:
        obj = decode(raw)
    except msgspec.DecodeError as exc:
        raise OpError("bad_request", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
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
    # Nesting past MAX_JSON_DEPTH takes 2 characters a level, so short frames cannot,
    # and a nested value needs a "[" or a second "{" (found in C, before any walk).
    if (
        len(raw) > 2 * MAX_JSON_DEPTH
        and (raw.find("{", 1) >= 0 or "[" in raw)
        and _nests_deeper(obj, MAX_JSON_DEPTH)
    ):
        raise _with_id(_too_deep(), req_id)
    return Request(op=op, id=req_id, room=room, params=obj)


def _too_deep() -> OpError:
    return OpError("bad_request", f"JSON nests deeper than {MAX_JSON_DEPTH} levels")


def _nests_deeper(root: dict | list, limit: int) -> bool:
    """Whether decoded JSON nests containers more than ``limit`` deep (iterative:
    the walk itself must not recurse)."""
    stack: list[tuple[Any, int]] = []
    for child in root.values() if root.__class__ is dict else root:  # usually all scalars
        if child.__class__ is dict or child.__class__ is list:
            stack.append((child, 2))
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if node.__class__ is dict else node:
            if child.__class__ is dict or child.__class__ is list:
                stack.append((child, depth + 1))
    return False


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
