"""REST API (PROTOCOL §5): health, metrics, rooms, server-side publish, history.

Every route is declared once in ``ROUTES`` with its OpenAPI description, so
``/v1/openapi.json`` is generated from the same table the router is built from
and cannot drift from the handlers.
"""

from __future__ import annotations

from aiohttp import web

from roomserver.api.openapi import openapi_document
from roomserver.api.routes import ROUTES


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    doc = openapi_document(ROUTES)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(doc)

    app.router.add_get("/v1/openapi.json", openapi)
