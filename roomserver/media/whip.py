"""WHIP/WHEP endpoints (RFC 9725 shapes) over any media backend.

    POST    /v1/rooms/{room}/whip                 publish  → 201, Location, answer
    DELETE  /v1/rooms/{room}/whip/{session}       stop     → 200
    POST    /v1/rooms/{room}/whep[?publisher=u]   play     → 201, Location, answer
            [&layers=high,low]                    (each video m-line one layer, fixed: relays)
    DELETE  /v1/rooms/{room}/whep/{session}       stop     → 200
    OPTIONS /v1/rooms/{room}/whip|whep            204, Accept-Post: application/sdp (RFC 9725 4.2),
                                                  and with a valid token the ICE servers (Link)
    PATCH   …/{session}                           trickle ICE (RFC 9725 4.3.2): 204 + ETag;
                                                  ICE restarts are not supported: 422 (4.3.1)
    OPTIONS …/{session}                           204, Allow, Accept-Patch (RFC 5789 3.1)

A 201 carries `ETag` (the session's ICE entity-tag), `Accept-Patch:
application/trickle-ice-sdpfrag` and one `Link: <turn:…>; rel="ice-server"; …` per TURN URL
with credentials minted for the caller (RFC 9725 4.6; `ice_servers`, see turn.py). A client
that must know its ICE servers before it offers (no trickle: aiortc, OBS) asks OPTIONS
with its token first, as WHIP drafts before the RFC allowed.

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
from multidict import CIMultiDict

from roomserver.core.layers import parse_layers
from roomserver.logsafe import clean

from .errors import BadRequest, MediaError, TooLarge, UnsupportedMediaType
from .trickle import MAX_FRAGMENT_BYTES, TRICKLE_CONTENT_TYPE, PreconditionFailed, Unprocessable, session_etag

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
# The `Link` header values (RFC 9725 §4.6) of the ICE servers offered to a principal.
IceServers = Callable[[MediaPrincipal], list[str]]


class MediaBackend(Protocol):
    async def publish(
        self, room: str, user: str, role: str, offer_sdp: str, layers: tuple[str, ...] | None = None
    ) -> tuple[str, str]: ...

    async def play(
        self,
        room: str,
        publisher_user: str | None,
        viewer_user: str,
        offer_sdp: str,
        layers: tuple[str, ...] | None = None,
    ) -> tuple[str, str]: ...

    async def stop(
        self, session_id: str, user: str, *, room: str | None = None, kind: str | None = None
    ) -> None: ...

    async def trickle(
        self,
        session_id: str,
        user: str,
        fragment_text: str,
        *,
        room: str | None = None,
        kind: str | None = None,
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
    backend: MediaBackend,
    authorize: Authorize,
    *,
    room_pattern: re.Pattern[str] = ROOM_ID,
    ice_servers: IceServers | None = None,
) -> list[web.RouteDef]:
    """aiohttp routes for WHIP/WHEP on `backend`; add them with `app.add_routes(...)`.
    `room_pattern` is what a path's room must match (public ids; a worker takes room keys);
    `ice_servers` gives each caller its TURN servers (None: none are announced)."""

    def _links(principal: MediaPrincipal) -> list[str]:
        return [] if ice_servers is None else ice_servers(principal)

    def _room(request: web.Request) -> str:
        room = request.match_info["room"]
        if not room_pattern.match(room):
            raise BadRequest("room ids are 1..64 characters of [A-Za-z0-9_.:@-]")
        return room

    async def publish(request: web.Request) -> web.StreamResponse:
        room = _room(request)
        principal = await authorize(request, room, "publish")
        layers = _layers(request)
        offer = await _read_offer(request)
        session, answer = await backend.publish(
            principal.room or room, principal.user, principal.role, offer, layers
        )
        return _created(f"/v1/rooms/{room}/whip/{session}", answer, session, _links(principal))

    async def play(request: web.Request) -> web.StreamResponse:
        room = _room(request)
        principal = await authorize(request, room, "play")
        publisher = request.query.get("publisher") or None
        layers = _layers(request)
        offer = await _read_offer(request)
        session, answer = await backend.play(principal.room or room, publisher, principal.user, offer, layers)
        return _created(f"/v1/rooms/{room}/whep/{session}", answer, session, _links(principal))

    def stopper(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def stop(request: web.Request) -> web.StreamResponse:
            room = _room(request)
            principal = await authorize(request, room, "stop")
            await backend.stop(
                request.match_info["session"], principal.user, room=principal.room or room, kind=kind
            )
            return web.Response(status=200)

        return stop

    def patcher(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def patch(request: web.Request) -> web.StreamResponse:
            """RFC 9725 §4.3: trickle ICE yes (204), ICE restart no (422)."""
            room = _room(request)
            principal = await authorize(request, room, "stop")
            session = request.match_info["session"]
            if request.content_type != TRICKLE_CONTENT_TYPE:  # RFC 5789 §2.2: say what is accepted
                refused = error_response(
                    UnsupportedMediaType(f"PATCH a media session with {TRICKLE_CONTENT_TYPE}")
                )
                refused.headers["Accept-Patch"] = TRICKLE_CONTENT_TYPE
                return refused
            if_match = request.headers.get("If-Match")
            if if_match is not None and if_match.strip() == "*":
                raise Unprocessable("ICE restarts are not supported (If-Match: * asks for one)")
            if if_match is not None and session_etag(session) not in _entity_tags(if_match):
                raise PreconditionFailed("If-Match does not name this session's ICE entity-tag")
            fragment = await read_body(request, MAX_FRAGMENT_BYTES, "trickle fragments")
            await backend.trickle(session, principal.user, fragment, room=principal.room or room, kind=kind)
            return web.Response(status=204, headers={"ETag": session_etag(session)})

        return patch

    async def options(request: web.Request) -> web.StreamResponse:
        """RFC 9725 §4.2: what a WHIP/WHEP endpoint accepts; with a valid token also the
        caller's ICE servers, so a client that does not trickle can gather relay candidates
        before its one POST. No or a bad token is not an error here (CORS preflights)."""
        headers: CIMultiDict[str] = CIMultiDict({"Accept-Post": SDP_CONTENT_TYPE, "Allow": "OPTIONS, POST"})
        if ice_servers is not None and bearer_token(request) is not None:
            try:
                principal = await authorize(request, _room(request), "play")
            except MediaError:
                principal = None
            for link in [] if principal is None else _links(principal):
                headers.add("Link", link)
        return web.Response(status=204, headers=headers)

    async def session_options(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=204, headers={"Allow": "DELETE, OPTIONS, PATCH", "Accept-Patch": TRICKLE_CONTENT_TYPE}
        )

    routes = [
        web.post(
            "/v1/rooms/{room}/whip",
            _described(
                publish,
                "WHIP: publish (SDP offer in, answer out)",
                query=(("layers", "quality layers: the offer's two video m-lines, e.g. high,low"),),
            ),
        ),
        web.options("/v1/rooms/{room}/whip", _guarded(options)),
        web.delete(
            "/v1/rooms/{room}/whip/{session}",
            _described(stopper("publish"), "WHIP: stop publishing", name="stop_publish"),
        ),
        web.patch(
            "/v1/rooms/{room}/whip/{session}",
            _described(patcher("publish"), "WHIP: trickle ICE candidates", name="trickle_publish"),
        ),
        web.options("/v1/rooms/{room}/whip/{session}", session_options),
        web.post(
            "/v1/rooms/{room}/whep",
            _described(
                play,
                "WHEP: play a publisher (SDP offer in, answer out)",
                query=(
                    ("publisher", "the user to play (default: the room's host)"),
                    (
                        "layers",
                        "each of the offer's video m-lines one quality layer, fixed, e.g. high,low (relays)",
                    ),
                ),
            ),
        ),
        web.options("/v1/rooms/{room}/whep", _guarded(options)),
        web.delete(
            "/v1/rooms/{room}/whep/{session}",
            _described(stopper("play"), "WHEP: stop playing", name="stop_play"),
        ),
        web.patch(
            "/v1/rooms/{room}/whep/{session}",
            _described(patcher("play"), "WHEP: trickle ICE candidates", name="trickle_play"),
        ),
        web.options("/v1/rooms/{room}/whep/{session}", session_options),
    ]
    return routes


def _layers(request: web.Request) -> tuple[str, ...] | None:
    value = request.query.get("layers")
    if value is None:
        return None
    try:
        return parse_layers(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


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
    creates = name is None  # POST: an SDP answer; DELETE: an empty 200; PATCH: an empty 204
    patches = guarded.__name__.startswith("trickle_")
    guarded.openapi = {  # type: ignore[attr-defined]
        "summary": summary,
        "auth": "room",
        "ok_status": 201 if creates else 204 if patches else 200,
        "content": SDP_CONTENT_TYPE if creates else "",
        "body_content": SDP_CONTENT_TYPE if creates else TRICKLE_CONTENT_TYPE if patches else "",
        "errors": (400, 403, 404, 412, 415, 422) if patches else (403, 404),
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
    return await read_body(request, MAX_OFFER_BYTES, "SDP offers")


async def read_body(request: web.Request, limit: int, what: str) -> str:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} are limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} are limited to {limit} bytes")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} must be UTF-8") from None


def _entity_tags(if_match: str) -> list[str]:
    """The entity-tags of an If-Match list (weak ones never match: RFC 9110 §13.1.1)."""
    return [tag.strip() for tag in if_match.split(",") if not tag.strip().startswith("W/")]


def _created(location: str, answer: str, session: str, links: list[str]) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Location": location,
            "Content-Type": SDP_CONTENT_TYPE,
            "ETag": session_etag(session),
            "Accept-Patch": TRICKLE_CONTENT_TYPE,
        }
    )
    for link in links:
        headers.add("Link", link)
    return web.Response(status=201, body=answer.encode(), headers=headers)


def parse_error_body(text: str) -> tuple[str, str]:
    """(code, message) of an error body produced by `error_response` (for proxies and clients)."""
    try:
        error = json.loads(text)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "internal", text[:200] or "no error body"
