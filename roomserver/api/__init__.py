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


def add_routes(app: web.Application, ws_handler: Handler) -> None:
    """Register the REST routes, the WebSocket endpoint and the OpenAPI document
    built from that same list."""
    doc: dict = {}

    async def openapi(request: web.Request) -> web.Response:
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
    doc.update(openapi_document(routes))
