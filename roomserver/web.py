"""The browser app: static files of ``web_client/`` and, in dev mode only, a token mint.

Pages: ``/`` (dev landing page), ``/host.html``, ``/viewer.html``, ``/call.html``; the
JavaScript SDK under ``/sdk/`` and the pages' shared modules under ``/app/``. Plain files,
no build step: the SDK is an ES module a browser loads as-is.

``POST /dev/token {user, role, room?, name?}`` mints a token with the dev secret so that
``make serve`` is usable at once. It exists only in dev mode (no ``--app`` configured, the
same condition under which ``roomserver serve`` prints the secret); otherwise it is a 404,
because with real apps only the app's back end may mint tokens. Even in dev mode it mints
admin tokens, so it answers only the pages of this server, opened on this machine: the peer
must be a loopback address, a browser's ``Origin``/``Sec-Fetch-Site`` must say same-origin,
and the ``Host`` must be a loopback name (a DNS-rebound name would make a foreign page
"same-origin"). It carries no CORS header. Anything else is a 403.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from roomserver.auth import DEV_APP, Role, mint_token
from roomserver.config import Config
from roomserver.protocol import OpError, decode_body, encode

log = logging.getLogger(__name__)

# Installed from a wheel the pages are package data (roomserver/web_client, mapped from
# the checkout's web_client/ by pyproject.toml); in a checkout (editable install) they
# are the checkout's web_client/.
_PACKAGED = Path(__file__).resolve().parent / "web_client"
WEB_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "web_client"
PAGES = {
    "/": "index.html",
    "/host.html": "host.html",
    "/viewer.html": "viewer.html",
    "/call.html": "call.html",
    "/report.html": "report.html",
    "/replay.html": "replay.html",
}
DEV_TOKEN_PATH = "/dev/token"
DEV_TOKEN_TTL_S = 12 * 3600
# The pages are edited often while developing: never let a browser run a stale SDK.
NO_CACHE = {"Cache-Control": "no-cache"}

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class DevTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    user: Ident
    role: Role = "viewer"
    room: Ident | None = None
    name: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    tier: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=encode({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )


def _page(web_dir: Path, name: str):
    path = web_dir / name

    async def handler(request: web.Request) -> web.StreamResponse:
        if not path.is_file():
            return _error(404, "not_found", f"{name} is missing from {web_dir}")
        return web.FileResponse(path, headers=NO_CACHE)

    return handler


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _loopback_host(host: str) -> bool:
    """``Host``/``Origin`` authority names this machine: localhost or a loopback address."""
    name = urlsplit(f"//{host}").hostname or ""
    return name == "localhost" or name.endswith(".localhost") or _is_loopback(name)


def dev_mint_refusal(peer: str | None, scheme: str, headers: Mapping[str, str]) -> str | None:
    """Why the dev mint must refuse this request, or None to serve it.

    ``peer`` is the TCP peer address: forwarding headers (``X-Forwarded-For``,
    ``Forwarded``) are anyone's to write and are ignored. A client without ``Origin``
    and ``Sec-Fetch-*`` headers is not a browser page (curl, a test) and only needs
    the loopback peer."""
    if not _is_loopback(peer):
        return "the dev token mint answers loopback clients only"
    host = headers.get("Host", "")
    if not _loopback_host(host):
        return "the dev token mint answers requests to localhost only"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return "the dev token mint answers this server's own pages only"
    origin = headers.get("Origin")
    if origin is not None and origin != f"{scheme}://{host}":
        return "the dev token mint answers this server's own pages only"
    return None


def _dev_token(config: Config):
    async def handler(request: web.Request) -> web.Response:
        if not config.dev_mode:
            return _error(404, "not_found", "dev tokens exist only in dev mode (no --app configured)")
        peername = request.transport.get_extra_info("peername") if request.transport else None
        refusal = dev_mint_refusal(peername[0] if peername else None, request.scheme, request.headers)
        if refusal is not None:
            log.warning("dev token refused: %s", refusal)
            return _error(403, "forbidden", refusal)
        try:  # UTF-8 and depth-bounded, like every REST body
            body = decode_body(await request.read(), DevTokenRequest)
        except OpError as err:
            return _error(400, "bad_request", err.message)
        secret = config.app_secrets()[DEV_APP]
        token = mint_token(
            DEV_APP,
            secret,
            body.user,
            body.role,
            room=body.room,
            ttl_s=DEV_TOKEN_TTL_S,
            name=body.name,
            tier=body.tier,
        )
        return web.Response(
            body=encode({"token": token, "expires_in": DEV_TOKEN_TTL_S}),
            content_type="application/json",
            headers=NO_CACHE,
        )

    return handler


def add_web_routes(app: web.Application, config: Config, web_dir: Path = WEB_DIR) -> None:
    """Serve ``web_client/`` at ``/`` and the dev token mint (dev mode only).

    Without the folder (an install that did not ship it) the API still runs; the pages
    answer 404 saying where they were looked for.
    """
    for route, name in PAGES.items():
        app.router.add_get(route, _page(web_dir, name))
    for folder in ("sdk", "app", "vendor"):
        if (web_dir / folder).is_dir():
            app.router.add_static(f"/{folder}/", web_dir / folder, append_version=False)
        else:
            log.warning("web client folder %s is missing: /%s/ is not served", web_dir / folder, folder)
    app.router.add_post(DEV_TOKEN_PATH, _dev_token(config))

    async def no_cache(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(("/sdk/", "/app/")):
            response.headers.setdefault("Cache-Control", "no-cache")
        elif request.path == DEV_TOKEN_PATH:
            # The app-wide CORS middleware lets any origin read any answer (the API is
            # bearer-token only); the mint's answer is a token, so no origin may read it,
            # and a preflight for it must fail.
            for name in [h for h in response.headers if h.lower().startswith("access-control-")]:
                del response.headers[name]

    app.on_response_prepare.append(no_cache)
