"""Replays (issue 14): a room's recorded shows and their files.

    GET /v1/rooms/{room}/replays               the manifests written by the recorder, newest show first
    GET /v1/rooms/{room}/replays/{file}        the file, with HTTP Range (206, 416) for seeking
    GET /v1/rooms/{room}/hls/{file}            the host's live LL-HLS (--hls): index.m3u8 (blocking reload
                                               with _HLS_msn/_HLS_part), init.mp4, seg<N>.m4s, seg<N>.<i>.m4s
    GET /v1/rooms/{room}/replays/{show}/timeline   barrage and product-pin chapters on the show's
                                               clock, from the behaviour log (first 20,000 records)

A token admitting the room (``?token=`` works too, for ``<video src>``); rooms are the token's
app's, so another app's room is 404 like every room route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from roomserver.appkeys import STORE_KEY
from roomserver.auth import Identity
from roomserver.contract import wire as w
from roomserver.core import llhls, replay
from roomserver.media.hls import playlist_when_ready
from roomserver.protocol import OpError

from .routes import Route, _json, _node, _room_key, endpoint


def _manifests(directory: Path) -> list[Any]:
    found: list[Any] = []
    if not directory.is_dir():
        return found
    for path in directory.glob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced, or not ours
    return found


@endpoint("room")
async def list_replays(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    room = _room_key(request, identity)
    await node.require_room(room)
    base = f"/v1/rooms/{request.match_info['room']}/replays"
    raw = request.query.get("show")
    if raw is not None and not (raw.isdigit() and len(raw) <= 9):
        raise OpError("bad_request", "show must be a show number")
    directory = replay.recording_dir(node.config.data_dir, room)
    entries = [e for m in _manifests(directory) if (e := replay.replay_entry(m, base)) is not None]
    return _json({"replays": replay.replay_list(entries, int(raw) if raw is not None else None)})


@endpoint("room")
async def replay_file(request: web.Request, identity: Identity) -> web.StreamResponse:
    node = _node(request)
    room = _room_key(request, identity)
    await node.require_room(room)
    name = request.match_info["file"]
    if not replay.REPLAY_FILE.match(name):
        raise OpError("not_found", "no such recording")
    path = replay.recording_dir(node.config.data_dir, room) / name
    if not path.is_file():
        raise OpError("not_found", "no such recording")
    content_type = replay.CONTENT_TYPES[name.rsplit(".", 1)[1]]
    # FileResponse answers Range requests (206, 416 for an unsatisfiable range) and HEAD.
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "private"})


TIMELINE_LIMIT: Final = 20_000


@endpoint("room")
async def hls_file(request: web.Request, identity: Identity) -> web.StreamResponse:
    """The live rendition's files; the playlist changes every part, so it is never cached
    (segments and parts are immutable once listed: a CDN may cache them). A playlist request
    with `_HLS_msn`[/`_HLS_part`] is held until the playlist lists that part (LL-HLS blocking
    reload). The files may be written by another process (a media worker): the wait reads
    the file, every 50 ms."""
    node = _node(request)
    room = _room_key(request, identity)
    name = request.match_info["file"]
    if not replay.HLS_FILE.match(name):
        raise OpError("not_found", "no such HLS file")
    path = replay.hls_dir(node.config.data_dir, room) / name
    suffix = name.rsplit(".", 1)[1]
    headers = {
        "Content-Type": replay.HLS_CONTENT_TYPES[suffix],
        "Cache-Control": "no-cache" if suffix == "m3u8" else "max-age=60",
    }
    if suffix != "m3u8":
        if not path.is_file():
            raise OpError("not_found", "no such HLS file (not live, or it left the playlist)")
        return web.FileResponse(path, headers=headers)
    try:
        wanted = llhls.reload_request(request.query.get("_HLS_msn"), request.query.get("_HLS_part"))
    except llhls.BadReload as exc:
        raise OpError("bad_request", str(exc)) from None
    text = await _playlist(path, wanted)
    token = request.query.get("token")
    if token:
        text = replay.playlist_with_token(text, token)
    return web.Response(body=text.encode(), headers=headers)


async def _playlist(path: Path, wanted: tuple[int, int | None] | None) -> str:
    try:
        text = await playlist_when_ready(path, wanted)
    except FileNotFoundError:
        raise OpError(
            "not_found", "no live HLS for this room (not live, not H.264/VP8, or --hls off)"
        ) from None
    except llhls.BadReload as exc:
        raise OpError("bad_request", str(exc)) from None
    if text is None:
        assert wanted is not None
        raise OpError("unavailable", f"segment {wanted[0]} part {wanted[1]} is not ready; reload later")
    return text


@endpoint("room")
async def replay_timeline(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    room = _room_key(request, identity)
    raw = request.match_info["show"]
    if not (raw.isdigit() and len(raw) <= 9):  # a path id is looked up: no such show
        raise OpError("not_found", f"room {request.match_info['room']} has no show {raw[:20]!r}")
    store = request.app.get(STORE_KEY)
    if store is None:
        raise OpError("not_found", "this server keeps no analytics (--no-analytics): no timelines")
    await node.require_room(room)
    app, public = identity.app, request.match_info["room"]
    info = await store.events.show(app, public, int(raw))
    if info is None or info.started_at is None:
        raise OpError("not_found", f"room {public} has no show {raw} that started")
    records = await store.events.show_events(
        app, public, info.show, kinds=("barrage", "mark"), limit=TIMELINE_LIMIT
    )
    body = replay.timeline(records, info.started_at)
    return _json(
        {
            "show": info.show,
            "started_at": info.started_at,
            **body,
            "truncated": len(records) >= TIMELINE_LIMIT,
        }
    )


REPLAY_ROUTES: Final[list[Route]] = [
    Route(
        "GET",
        "/v1/rooms/{room}/replays",
        list_replays,
        "The room's recorded shows (issue 14), newest first: file URL, show offset, duration",
        "room",
        query=(("show", "only this show", {"type": "integer", "minimum": 0, "maximum": 999_999_999}),),
        errors=(400, 404),
        reply=w.ReplayList,
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/replays/{file}",
        replay_file,
        "A recording (WebM or MP4); Range requests answer 206, an unsatisfiable range 416",
        "room",
        query=(("token", "the JWT (for <video src>; or send Authorization: Bearer)"),),
        errors=(404, 416),
        content="video/webm",
        other_content=("video/mp4",),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/hls/{file}",
        hls_file,
        "The room host's live Low-Latency HLS (--hls; H.264 remuxed, VP8 transcoded): index.m3u8, "
        "init.mp4, segments seg<N>.m4s and parts seg<N>.<i>.m4s",
        "room",
        query=(
            ("token", "the JWT (for players that cannot send headers; or Authorization: Bearer)"),
            ("_HLS_msn", "playlist only: hold the request until segment N (or its part) is listed"),
            ("_HLS_part", "playlist only, with _HLS_msn: hold until part i of segment N is listed"),
        ),
        errors=(400, 404, 503),
        bus=False,
        content="application/vnd.apple.mpegurl",
        other_content=("video/mp4", "video/iso.segment"),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/replays/{show}/timeline",
        replay_timeline,
        "A show's barrage and product-pin chapters on its clock (seconds), for the replay page",
        "room",
        errors=(404,),
        bus=False,
        reply=w.ReplayTimeline,
    ),
]
