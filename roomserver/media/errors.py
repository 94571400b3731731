"""Errors of the media layer, as values the HTTP edge turns into protocol error replies.

Every failure a client can cause (bad SDP, no right to publish, unknown session) is a
`MediaError` carrying the protocol error code (PROTOCOL.md "Errors") and the HTTP status
WHIP/WHEP (RFC 9725) expects. Anything else escaping the media layer is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar


class MediaError(Exception):
    """A client-visible failure: `code` is a protocol error code, `status` the HTTP status."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(MediaError):
    code = "bad_request"
    status = 400


class UnsupportedMediaType(MediaError):
    """RFC 9725: a WHIP/WHEP POST whose body is not `application/sdp`."""

    code = "bad_request"
    status = 415


class Unauthorized(MediaError):
    code = "unauthorized"
    status = 401


class Forbidden(MediaError):
    code = "forbidden"
    status = 403


class NotFound(MediaError):
    code = "not_found"
    status = 404


class LimitReached(MediaError):
    code = "limit_reached"
    status = 403


class TooLarge(MediaError):
    code = "too_large"
    status = 413


class Unavailable(MediaError):
    """A media worker is down or not answering; the client may retry."""

    code = "unavailable"
    status = 503


class _Addressed(Protocol):
    room: str
    kind: str


S = TypeVar("S", bound=_Addressed)


def session_at(sessions: Mapping[str, S], session_id: str, room: str | None, kind: str | None) -> S:
    """The session ``session_id`` if it lives in ``room`` as ``kind`` (None: any), else
    ``NotFound``: a session is addressed only through the URL it was created under."""
    session = sessions.get(session_id)
    if (
        session is None
        or (room is not None and session.room != room)
        or (kind is not None and session.kind != kind)
    ):
        raise NotFound("no such media session")
    return session
