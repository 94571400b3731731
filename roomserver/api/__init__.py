"""REST API (PROTOCOL §5): health, metrics, rooms, server-side publish, history.

Every route is declared once in ``ROUTES`` with its OpenAPI description, so
``/v1/openapi.json`` is generated from the same table the router is built from
and cannot drift from the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from roomserver.api.openapi import openapi_document
from roomserver.api.routes import ROUTES, Route

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


API_PREFIXES = ("/v1/", "/dev/", "/healthz", "/readyz", "/metrics")


def add_routes(app: web.Application, ws_handler: Handler) -> None:
    """Register the REST routes and the WebSocket endpoint, and serve an OpenAPI
    document built from the route table plus every other API route the app has
    when the document is first asked for (WHIP/WHEP, the dev token mint), so it
    cannot drift from what is served."""
    doc: dict = {}

    async def openapi(request: web.Request) -> web.Response:
        if not doc:
            doc.update(openapi_document(routes + _undeclared(request.app, routes)))
        return web.json_response(doc)

    routes = [
        *ROUTES,
        Route("GET", "/v1/openapi.json", openapi, "This document", "none"),
        Route(
            "GET",
            "/v1/ws",
            ws_handler,
            "WebSocket signalling and events (PROTOCOL §2); 401 before the upgrade for a bad token",
            "any",
            ok_status=101,
            query=(("token", "the JWT (or send Authorization: Bearer)"),),
        ),
    ]
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)


def _undeclared(app: web.Application, declared: list[Route]) -> list[Route]:
    """API routes registered by other modules, described by their handler's docstring."""
    known = {(r.method, r.path) for r in declared}
    extra = []
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if r.method in ("HEAD", "OPTIONS", "*") or not path or not path.startswith(API_PREFIXES):
            continue
        if (r.method, path) not in known:
            summary = (getattr(r.handler, "__doc__", None) or path).strip().splitlines()[0]
            extra.append(Route(r.method, path, r.handler, summary, "any"))
            known.add((r.method, path))
    return extra
