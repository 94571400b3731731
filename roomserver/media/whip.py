"""WHIP/WHEP endpoints (RFC 9725 shapes) over any media backend.

    POST    /v1/rooms/{room}/whip                 publish  → 201, Location, answer
    DELETE  /v1/rooms/{room}/whip/{session}       stop     → 200
    POST    /v1/rooms/{room}/whep[?publisher=u]   play     → 201, Location, answer
    DELETE  /v1/rooms/{room}/whep/{session}       stop     → 200
    OPTIONS /v1/rooms/{room}/whip|whep            204, Accept-Post: application/sdp (RFC 9725 4.2)
    PATCH   …/{session}                           405 from the router, Allow: DELETE, OPTIONS:
                                                  no trickle ICE or ICE restarts (RFC 9725 4.3.1)

Errors are JSON `{"error": {"code", "message"}}` with protocol codes: 400 bad SDP, 401 no or
bad token (with `WWW-Authenticate: Bearer`, RFC 6750), 403 not allowed, 404 unknown publisher or session, 413 offer too large, 415 body
not `application/sdp`. The backend is a `MediaRouter` (media in this process) or a
`MediaWorkerPool` (media in worker processes); both have the same three coroutines.

Who may do what is decided by the injected `authorize(request, room, action)`, which returns a
`MediaPrincipal` or raises a `MediaError` (`Unauthorized`, `Forbidden`, `LimitReached`).
For action "publish" the principal's `role` is the publisher role (host | cohost | call).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from roomserver.logsafe import clean

from .errors import BadRequest, MediaError, TooLarge, UnsupportedMediaType

logger = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "application/sdp"
MAX_OFFER_BYTES = 64 * 1024
ROOM_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
# Media workers are addressed by whatever their pool names rooms by: the server's room
# keys ("<app>/<room>", sent with the / as %2F), or plain ids.
ROOM_KEY = re.compile(r"^(?:[A-Za-z0-9_-]{1,32}/)?[A-Za-z0-9_.:@-]{1,64}$")

MediaAction = Literal["publish", "play", "stop"]


@dataclass(frozen=True)
class MediaPrincipal:
    """Who is acting. `role` matters for "publish": the role the publisher will be listed with.
    `room` is the name the backend knows the room by (the server's tenant-scoped room key;
    empty = the path's room id)."""

    user: str
    role: str = "viewer"
    room: str = ""


Authorize = Callable[[web.Request, str, MediaAction], Awaitable[MediaPrincipal]]


class MediaBackend(Protocol):
    async def publish(self, room: str, user: str, role: str, offer_sdp: str) -> tuple[str, str]: ...

    async def play(
        self, room: str, publisher_user: str | None, viewer_user: str, offer_sdp: str
    ) -> tuple[str, str]: ...

    async def stop(
        self, session_id: str, user: str, *, room: str | None = None, kind: str | None = None
    ) -> None: ...


def error_response(error: MediaError) -> web.Response:
    headers = None
    if error.status == 401:  # RFC 6750 §3; the token is in the header or absent
        headers = {"WWW-Authenticate": 'Bearer realm="roomserver"'}
    return web.json_response(error.to_json(), status=error.status, headers=headers)


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer …` (WHIP clients cannot put it elsewhere)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def media_routes(
    backend: MediaBackend, authorize: Authorize, *, room_pattern: re.Pattern[str] = ROOM_ID
) -> list[web.RouteDef]:
    """aiohttp routes for WHIP/WHEP on `backend`; add them with `app.add_routes(...)`.
    `room_pattern` is what a path's room must match (public ids; a worker takes room keys)."""

    def _room(request: web.Request) -> str:
        room = request.match_info["room"]
        if not room_pattern.match(room):
            raise BadRequest("room ids are 1..64 characters of [A-Za-z0-9_.:@-]")
        return room

    async def publish(request: web.Request) -> web.StreamResponse:
        room = _room(request)
        principal = await authorize(request, room, "publish")
        offer = await _read_offer(request)
        session, answer = await backend.publish(principal.room or room, principal.user, principal.role, offer)
        return _created(f"/v1/rooms/{room}/whip/{session}", answer)

    async def play(request: web.Request) -> web.StreamResponse:
        room = _room(request)
        principal = await authorize(request, room, "play")
        publisher = request.query.get("publisher") or None
        offer = await _read_offer(request)
        session, answer = await backend.play(principal.room or room, publisher, principal.user, offer)
        return _created(f"/v1/rooms/{room}/whep/{session}", answer)

    def stopper(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def stop(request: web.Request) -> web.StreamResponse:
            room = _room(request)
            principal = await authorize(request, room, "stop")
            await backend.stop(
                request.match_info["session"], principal.user, room=principal.room or room, kind=kind
            )
            return web.Response(status=200)

        return stop

    async def options(request: web.Request) -> web.StreamResponse:
        """RFC 9725 §4.2: what a WHIP/WHEP endpoint accepts (no ICE servers to announce:
        the server's candidates are in its answer)."""
        return web.Response(status=204, headers={"Accept-Post": SDP_CONTENT_TYPE, "Allow": "OPTIONS, POST"})

    # No PATCH routes: without trickle ICE the router's 405 (Allow: DELETE, OPTIONS)
    # is the answer RFC 9725 §4.3.1 asks for.
    routes = [
        web.post("/v1/rooms/{room}/whip", _described(publish, "WHIP: publish (SDP offer in, answer out)")),
        web.options("/v1/rooms/{room}/whip", options),
        web.delete(
            "/v1/rooms/{room}/whip/{session}",
            _described(stopper("publish"), "WHIP: stop publishing", name="stop_publish"),
        ),
        web.post(
            "/v1/rooms/{room}/whep",
            _described(
                play,
                "WHEP: play a publisher (SDP offer in, answer out)",
                query=(("publisher", "the user to play (default: the room's host)"),),
            ),
        ),
        web.options("/v1/rooms/{room}/whep", options),
        web.delete(
            "/v1/rooms/{room}/whep/{session}",
            _described(stopper("play"), "WHEP: stop playing", name="stop_play"),
        ),
    ]
    return routes


def _described(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    summary: str,
    *,
    name: str | None = None,
    query: tuple[tuple[str, str], ...] = (),
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The guarded handler, with what /v1/openapi.json says about it (api/openapi.py)."""
    guarded = _guarded(handler)
    guarded.__name__ = name or handler.__name__
    creates = name is None  # POST: an SDP answer; DELETE: an empty 200
    guarded.openapi = {  # type: ignore[attr-defined]
        "summary": summary,
        "auth": "room",
        "ok_status": 201 if creates else 200,
        "content": SDP_CONTENT_TYPE if creates else "",
        "body_content": SDP_CONTENT_TYPE if creates else "",
        "errors": (403, 404),
        "query": query,
    }
    return guarded


def _guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except MediaError as error:
            return error_response(error)
        except Exception:
            logger.exception("media request %s %s failed", request.method, clean(request.path))
            return error_response(MediaError("internal error"))

    return guarded


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP_CONTENT_TYPE:
        raise UnsupportedMediaType(
            f"the offer must be sent as {SDP_CONTENT_TYPE}, not {request.content_type}"
        )
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        raise TooLarge(f"SDP offers are limited to {MAX_OFFER_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_OFFER_BYTES:
            raise TooLarge(f"SDP offers are limited to {MAX_OFFER_BYTES} bytes")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the SDP offer is not UTF-8") from None


def _created(location: str, answer: str) -> web.Response:
    return web.Response(
        status=201,
        body=answer.encode(),
        headers={"Location": location, "Content-Type": SDP_CONTENT_TYPE},
    )


def parse_error_body(text: str) -> tuple[str, str]:
    """(code, message) of an error body produced by `error_response` (for proxies and clients)."""
    try:
        error = json.loads(text)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "internal", text[:200] or "no error body"
