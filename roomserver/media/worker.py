"""A media worker process: one MediaRouter behind WHIP/WHEP routes on a loopback port.

    python -m roomserver.media.worker [--host 127.0.0.1] [--port 0] [--ice-host IP] [--public-ip IP]

Started by `MediaWorkerPool` (workers.py), which proxies the public WHIP/WHEP requests here
after authorizing them, passing who is acting in headers authenticated by a per-pool secret
(env `ROOMSERVER_MEDIA_WORKER_SECRET`), so nothing else on the host can publish through it.

The worker talks back on stdout, one JSON object per line (logs go to stderr):

    {"type": "ready", "port": 41234, "pid": 123}
    {"type": "publishers", "room": "r1", "publishers": [...]}   # its local publishers of r1
    {"type": "session_closed", "session": "…"}

and exits when its stdin closes (the pool is closing it, or the parent died).

`POST /internal/recording/{room key}` (same secret) with `{"target": RecordingTarget | null}`
starts (or with null stops) recording a room's publishers here (recording.py);
`{"hls": directory | null}` its host's live HLS (hls.py).

Cascade (cascade.py): a WHEP request for a publisher on another node carries
``X-Roomserver-Upstream`` (same secret); the worker's router relays that publisher once and
fans it out to its viewers, as the in-process router does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import hmac
import json
import os
import signal
import sys

import aiohttp
from aiohttp import web

from roomserver import logsetup

from .cascade import Upstream, decode_upstream
from .errors import BadRequest, MediaError, Unauthorized
from .recording import RecordingTarget
from .sfu import FORWARDING_MODES, MediaRouter
from .whip import ROOM_KEY, Authorize, MediaAction, MediaPrincipal, error_response, media_routes

SECRET_ENV = "ROOMSERVER_MEDIA_WORKER_SECRET"
SECRET_HEADER = "X-Roomserver-Media-Secret"
USER_HEADER = "X-Roomserver-User"
ROLE_HEADER = "X-Roomserver-Role"
# On a WHEP request: the publisher is on another node, here is how to relay it
# (cascade.encode_upstream). The pool locates it on the bus; a worker has no bus.
UPSTREAM_HEADER = "X-Roomserver-Upstream"

# The upstream handed to the WHEP request being served: aiohttp serves each request in its
# own task, so the router's locator, called from within the request, sees its own.
_request_upstream: contextvars.ContextVar[Upstream | None] = contextvars.ContextVar(
    "request_upstream", default=None
)


async def upstream_of_request(room: str, user: str | None) -> Upstream | None:
    """The router's locator in a worker: the upstream the pool sent with this request, if
    it is the one asked for (None: the host, whom the pool resolved to a user)."""
    upstream = _request_upstream.get()
    if upstream is None or upstream.room != room or (user is not None and upstream.user != user):
        return None
    return upstream


def upstream_middleware(http: aiohttp.ClientSession):
    @web.middleware
    async def middleware(request: web.Request, handler):
        value = request.headers.get(UPSTREAM_HEADER)
        if value is None:
            return await handler(request)
        try:
            upstream = decode_upstream(value, http)
        except ValueError as exc:
            return error_response(BadRequest(f"bad {UPSTREAM_HEADER}: {exc}"))
        token = _request_upstream.set(upstream)
        try:
            return await handler(request)
        finally:
            _request_upstream.reset(token)

    return middleware


def internal_authorize(secret: str) -> Authorize:
    """Trust the identity headers set by the pool, and only with the pool's secret."""

    async def authorize(request: web.Request, room: str, action: MediaAction) -> MediaPrincipal:
        given = request.headers.get(SECRET_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            raise Unauthorized("media workers only accept requests from their pool")
        user = request.headers.get(USER_HEADER)
        if not user:
            raise Unauthorized("no acting user")
        return MediaPrincipal(user=user, role=request.headers.get(ROLE_HEADER, "viewer"))

    return authorize


def layer_route(router: MediaRouter, authorize: Authorize) -> web.RouteDef:
    """`POST /internal/layer/{room key}` {"viewer", "publisher", "layer"} → {"layer"}."""

    async def set_layer(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        try:
            if not ROOM_KEY.match(room):
                raise BadRequest("not a room key")
            await authorize(request, room, "stop")
            try:
                body = await request.json()
                viewer, publisher, layer = body["viewer"], body["publisher"], body["layer"]
                if not all(isinstance(v, str) for v in (viewer, publisher, layer)):
                    raise TypeError("viewer, publisher and layer are strings")
            except (ValueError, KeyError, TypeError) as exc:
                raise BadRequest(f"bad layer request: {exc}") from None
            return web.json_response({"layer": router.set_layer(room, viewer, publisher, layer)})
        except MediaError as exc:
            return error_response(exc)

    return web.post("/internal/layer/{room}", set_layer)


def recording_route(router: MediaRouter, authorize: Authorize) -> web.RouteDef:
    async def set_recording(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        try:
            if not ROOM_KEY.match(room):
                raise BadRequest("not a room key")
            await authorize(request, room, "stop")
            try:
                body = await request.json()
                if "hls" in body:  # {"hls": directory | null}: the host's live HLS
                    hls = body["hls"]
                    if hls is not None and (not isinstance(hls, str) or not hls):
                        raise ValueError("hls must be a directory or null")
                else:
                    target = body["target"]
                    parsed = None if target is None else RecordingTarget.from_json(target)
            except (ValueError, KeyError, TypeError) as exc:
                raise BadRequest(f"bad recording request: {exc}") from None
        except MediaError as exc:
            return error_response(exc)
        if "hls" in body:
            if hls is None:
                router.stop_hls(room)
            else:
                router.start_hls(room, hls)
        elif parsed is None:
            router.stop_recording(room)
        else:
            router.start_recording(room, parsed)
        return web.json_response({"ok": True})

    return web.post("/internal/recording/{room}", set_recording)


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def serve(
    host: str, port: int, ice_host: str | None, public_ip: str | None, secret: str, forwarding: str = "rtp"
) -> None:
    http = aiohttp.ClientSession()  # relays' WHEP requests to other nodes (cascade)
    router = MediaRouter(
        ice_host=ice_host, public_ip=public_ip, forwarding=forwarding, upstreams=upstream_of_request
    )
    router.on_publishers_changed = lambda room: _emit(
        {"type": "publishers", "room": room, "publishers": router.local_publishers(room)}
    )
    router.on_session_closed = lambda session: _emit({"type": "session_closed", "session": session})
    app = web.Application(middlewares=[upstream_middleware(http)])
    app.add_routes(media_routes(router, internal_authorize(secret), room_pattern=ROOM_KEY))
    app.add_routes(
        [recording_route(router, internal_authorize(secret)), layer_route(router, internal_authorize(secret))]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def watch_parent() -> None:
        while await stdin.read(4096):
            pass
        done.set()

    watcher = asyncio.ensure_future(watch_parent())
    _emit({"type": "ready", "port": bound, "pid": os.getpid()})
    try:
        await done.wait()
    finally:
        watcher.cancel()
        await router.close()
        await runner.cleanup()
        await http.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ice-host", default=None)
    parser.add_argument("--public-ip", default=None)
    parser.add_argument("--forwarding", default="rtp", choices=FORWARDING_MODES)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--node-id", default="media-worker")
    args = parser.parse_args(argv)
    # Through logsafe's SafeFormatter: room ids and SDP errors in log lines are client text.
    logsetup.configure(args.log_level, args.log_format, args.node_id)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        parser.error(f"{SECRET_ENV} must be set")
    asyncio.run(serve(args.host, args.port, args.ice_host, args.public_ip, secret, args.forwarding))


if __name__ == "__main__":
    main()
