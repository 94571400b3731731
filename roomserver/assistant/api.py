"""REST routes of the assistant (PROTOCOL §7): the app's catalogue and a room's counts.

The catalogue is on the bus (``shared.py``): a write on any node is read on every
node; a read checks the catalogue's version on the bus (its copy is reread when it moved).

Added to the app by ``create_app``; described in ``/v1/openapi.json`` by each
handler's ``openapi`` attribute (api/__init__.py ``_undeclared``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from roomserver.api.routes import _json, _room_key, endpoint
from roomserver.assistant import catalog as cat
from roomserver.assistant.service import Assistant
from roomserver.assistant.shared import Shared
from roomserver.auth import Identity
from roomserver.protocol import OpError, now_ms

ASSISTANT_KEY: web.AppKey[Assistant] = web.AppKey("assistant", Assistant)


def _product_id(request: web.Request) -> str:
    """The catalogue's key: any 1..128 characters (what /v1/openapi.json says of an id).
    Only ids of at most 64 can also be pinned (product.pin's rule)."""
    pid = request.match_info["id"]
    if not 1 <= len(pid) <= 128:
        raise OpError("bad_request", "a product id is 1..128 characters")
    return pid


def _shared(request: web.Request) -> Shared:
    return request.app[ASSISTANT_KEY].bus()


async def _catalog(request: web.Request, identity: Identity) -> cat.Catalog:
    return await _shared(request).catalog(identity.app)


@endpoint("admin")
async def list_products(request: web.Request, identity: Identity) -> web.Response:
    catalog = await _catalog(request, identity)
    products = [cat.view(p) for p in sorted(catalog.products.values(), key=lambda p: p.id)]
    return _json({"products": products, "version": catalog.version})


@endpoint("admin", cat.ProductBody)
async def put_product(request: web.Request, identity: Identity, body: cat.ProductBody) -> web.Response:
    product = await _shared(request).put_product(identity.app, _product_id(request), body, now_ms())
    return _json({"product": cat.view(product)})


@endpoint("admin")
async def get_product(request: web.Request, identity: Identity) -> web.Response:
    return _json({"product": cat.view((await _catalog(request, identity)).get(_product_id(request)))})


@endpoint("admin")
async def delete_product(request: web.Request, identity: Identity) -> web.Response:
    pid = _product_id(request)
    await _shared(request).delete_product(identity.app, pid)
    return _json({"deleted": pid})


@endpoint("admin")
async def get_faq(request: web.Request, identity: Identity) -> web.Response:
    product = (await _catalog(request, identity)).get(_product_id(request))
    return _json({"faq": [cat.view_faq(e) for e in product.faq], "version": product.version})


@endpoint("admin", cat.FaqBody)
async def put_faq(request: web.Request, identity: Identity, body: cat.FaqBody) -> web.Response:
    product = await _shared(request).put_faq(identity.app, _product_id(request), body, now_ms())
    return _json({"faq": [cat.view_faq(e) for e in product.faq], "version": product.version})


@endpoint("admin")
async def room_stats(request: web.Request, identity: Identity) -> web.Response:
    """Counts for the post-live report: asked, answered, unanswered top clusters, answer log."""
    room = _room_key(request, identity)
    return _json(await request.app[ASSISTANT_KEY].stats(room))


def _describe(
    handler: Any, summary: str, body: type | None = None, errors: tuple[int, ...] = (), ok_status: int = 200
) -> Any:
    """What /v1/openapi.json says about the route. A product id that is not one is a 400;
    the catalogue and the counts are on the bus: it may be unavailable (503)."""
    handler.openapi = {
        "summary": summary,
        "auth": "admin",
        "body": body,
        "errors": (400, *errors),
        "ok_status": ok_status,
        "bus": True,
    }
    return handler


def add_assistant_routes(app: web.Application, assistant: Assistant) -> None:
    app[ASSISTANT_KEY] = assistant
    p = "/v1/products/{id}"
    app.router.add_get("/v1/products", _describe(list_products, "The app's products (assistant catalogue)"))
    app.router.add_put(p, _describe(put_product, "Create or replace a product", cat.ProductBody, (409,)))
    app.router.add_get(p, _describe(get_product, "One product", errors=(404,)))
    app.router.add_delete(p, _describe(delete_product, "Remove a product", errors=(404,)))
    app.router.add_get(p + "/faq", _describe(get_faq, "A product's FAQ entries", errors=(404,)))
    app.router.add_put(p + "/faq", _describe(put_faq, "Replace a product's FAQ", cat.FaqBody, (404, 409)))
    app.router.add_get(
        "/v1/rooms/{room}/assistant/stats",
        _describe(room_stats, "Assistant counts of a room (for the post-live report)", errors=(404,)),
    )
