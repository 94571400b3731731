"""The browser app: static files of ``web_client/`` and, in dev mode only, a token mint.

Pages: ``/`` (dev landing page), ``/host.html``, ``/viewer.html``, ``/call.html``; the
JavaScript SDK under ``/sdk/`` and the pages' shared modules under ``/app/``. Plain files,
no build step: the SDK is an ES module a browser loads as-is.

``POST /dev/token {user, role, room?, name?}`` mints a token with the dev secret so that
``make serve`` is usable at once. It exists only in dev mode (no ``--app`` configured, the
same condition under which ``roomserver serve`` prints the secret); otherwise it is a 404,
because with real apps only the app's back end may mint tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import msgspec
from aiohttp import web

from roomserver.auth import DEV_APP, Role, mint_token
from roomserver.config import Config
from roomserver.protocol import encode

log = logging.getLogger(__name__)

# The checkout's web_client/ (the package is installed editable: `pip install -e .`).
WEB_DIR = Path(__file__).resolve().parent.parent / "web_client"
PAGES = {
    "/": "index.html",
    "/host.html": "host.html",
    "/viewer.html": "viewer.html",
    "/call.html": "call.html",
}
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


def _dev_token(config: Config):
    async def handler(request: web.Request) -> web.Response:
        if not config.dev_mode:
            return _error(404, "not_found", "dev tokens exist only in dev mode (no --app configured)")
        try:
            body = msgspec.json.decode(await request.read() or b"{}", type=DevTokenRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(400, "bad_request", str(exc))
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
    for folder in ("sdk", "app"):
        if (web_dir / folder).is_dir():
            app.router.add_static(f"/{folder}/", web_dir / folder, append_version=False)
        else:
            log.warning("web client folder %s is missing: /%s/ is not served", web_dir / folder, folder)
    app.router.add_post("/dev/token", _dev_token(config))

    async def no_cache(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(("/sdk/", "/app/")):
            response.headers.setdefault("Cache-Control", "no-cache")

    app.on_response_prepare.append(no_cache)
