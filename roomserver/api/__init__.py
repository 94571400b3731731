"""REST API (PROTOCOL §5): health, metrics, rooms, server-side publish, history.

Every route is declared once in ``ROUTES`` with its OpenAPI description, so
``/v1/openapi.json`` is generated from the same table the router is built from
and cannot drift from the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from roomserver.api import loyalty
from roomserver.api.openapi import openapi_document
from roomserver.api.privacy import PRIVACY_ROUTES
from roomserver.api.replays import REPLAY_ROUTES
from roomserver.api.report import REPORT_ROUTES
from roomserver.api.routes import ROUTES, Route

# Every declared route: the main table and the feature tables beside it.
DECLARED_ROUTES: list[Route] = [*ROUTES, *loyalty.ROUTES, *REPORT_ROUTES, *PRIVACY_ROUTES, *REPLAY_ROUTES]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


API_PREFIXES = ("/v1/", "/dev/", "/healthz", "/readyz", "/metrics")
API_ROUTES: web.AppKey[list[Route]] = web.AppKey("api_routes", list)


def openapi_for(app: web.Application) -> dict:
    """The OpenAPI document of ``app``'s API (also checked in as docs/openapi.json)."""
    routes = app[API_ROUTES]
    return openapi_document(routes + _undeclared(app, routes))


def add_routes(app: web.Application, ws_handler: Handler) -> None:
    """Register the REST routes and the WebSocket endpoint, and serve an OpenAPI
    document built from the route table plus every other API route the app has
    when the document is first asked for (WHIP/WHEP, the dev token mint), so it
    cannot drift from what is served."""
    doc: dict = {}

    async def openapi(request: web.Request) -> web.Response:
        if not doc:
            doc.update(openapi_for(request.app))
        return web.json_response(doc)

    routes = [
        *DECLARED_ROUTES,
        Route("GET", "/v1/openapi.json", openapi, "This document", "none", bus=False),
        Route(
            "GET",
            "/v1/ws",
            ws_handler,
            "WebSocket signalling and events (PROTOCOL §2); 401 before the upgrade for a bad token",
            "any",
            ok_status=101,
            query=(("token", "the JWT (or send Authorization: Bearer)"),),
            errors=(400,),  # not a WebSocket upgrade
            headers=(
                ("Upgrade", "RFC 6455 opening handshake", {"type": "string", "enum": ["websocket"]}),
                ("Connection", "RFC 6455 opening handshake", {"type": "string", "enum": ["Upgrade"]}),
                ("Sec-WebSocket-Version", "RFC 6455 opening handshake", {"type": "string", "enum": ["13"]}),
                (
                    "Sec-WebSocket-Key",
                    "16 random bytes in base64 (RFC 6455 §4.1)",
                    {"type": "string", "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"},
                ),
            ),
        ),
    ]
    app[API_ROUTES] = routes
    for route in routes:
        if route.method == "GET" and route.ok_status != 101:  # HEAD too (RFC 9110 §9.3.2)
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)


def _undeclared(app: web.Application, declared: list[Route]) -> list[Route]:
    """API routes registered by other modules, described by their handler's ``openapi``
    attribute (``Route`` fields) or else by its docstring. Routes under ``/dev/``
    exist in dev mode only and take no token."""
    known = {(r.method, r.path) for r in declared}
    extra = []
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if r.method in ("HEAD", "OPTIONS", "*") or not path or not path.startswith(API_PREFIXES):
            continue
        if (r.method, path) not in known:
            meta = getattr(r.handler, "openapi", None)
            if meta is None:
                summary = (getattr(r.handler, "__doc__", None) or path).strip().splitlines()[0]
                meta = {"summary": summary, "auth": "any"}
                if path.startswith("/dev/"):  # dev mode only (404 otherwise), no token
                    meta.update(auth="none", errors=(400, 404))
            extra.append(Route(r.method, path, r.handler, **meta))
            known.add((r.method, path))
    return extra
