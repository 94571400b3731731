"""The REST handlers and the route table they are registered from."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from roomserver.auth import Identity
from roomserver.bus.base import BrokerUnavailable, HistoryGone
from roomserver.core import room as rules
from roomserver.core.room import Emit
from roomserver.gateway import identity_of
from roomserver.protocol import OpError, decode, decode_body, encode, now_ms

Auth = Literal["none", "admin", "room", "any"]


# (name, description) or (name, description, JSON schema); a string without one
Query = tuple[str, str] | tuple[str, str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    auth: Auth
    body: type[msgspec.Struct] | None = None
    ok_status: int = 200
    query: tuple[Query, ...] = ()
    content: str = "application/json"
    # Error statuses this route answers beyond those every route of its kind does
    # (see openapi.error_statuses), e.g. 409 for a create that can conflict.
    errors: tuple[int, ...] = ()
    body_content: str = "application/json"  # "application/sdp": the body is text, not a Struct
    bus: bool = True  # reads or writes the bus: may answer 503 unavailable
    headers: tuple[Query, ...] = ()  # request headers the route requires


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(data), status=status, content_type="application/json")


def _error(status: int, err: OpError) -> web.Response:
    return _json({"error": err.to_wire()}, status)


STATUS_OF = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "history_gone": 410,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


def _node(request: web.Request):  # -> Node
    from roomserver.server import NODE_KEY

    return request.app[NODE_KEY]


def _authorize(request: web.Request, auth: Auth) -> Identity | None:
    if auth == "none":
        return None
    from roomserver.server import VERIFIER_KEY

    identity = identity_of(request, request.app[VERIFIER_KEY])
    if auth == "admin" and not identity.is_admin:
        raise OpError("forbidden", "an admin token is required")
    if auth == "room":
        room = request.match_info.get("room", "")
        if not identity.admits(room):
            raise OpError("forbidden", f"this token admits room {identity.room} only")
    return identity


def endpoint(auth: Auth, body: type[msgspec.Struct] | None = None):
    """Wrap a handler: authorize, decode the body, map errors to HTTP statuses."""

    def wrap(fn):
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                identity = _authorize(request, auth)
                args: list[Any] = [request, identity]
                if body is not None:
                    args.append(decode_body(await request.read(), body))
                return await fn(*args)
            except OpError as err:
                return _error(STATUS_OF.get(err.code, 500), err)
            except BrokerUnavailable as exc:
                return _error(503, OpError("unavailable", f"the bus is unreachable: {exc}", 1000))

        handler.__name__ = fn.__name__
        return handler

    return wrap


# -- health and metrics ---------------------------------------------------------


@endpoint("none")
async def healthz(request: web.Request, _: None) -> web.Response:
    return _json({"ok": True})


@endpoint("none")
async def readyz(request: web.Request, _: None) -> web.Response:
    node = _node(request)
    ok = not node.draining and await node.broker.healthy()
    return _json({"ok": ok}, 200 if ok else 503)


@endpoint("none")
async def metrics(request: web.Request, _: None) -> web.Response:
    node = _node(request)
    st = node.fanout.stats
    m = node.metrics
    m.deliveries.set(st.deliveries)
    m.frames.set(st.frames)
    m.shed_ephemeral.set(st.shed_ephemeral)
    m.slow_closes.set(st.slow_closes)
    m.sockets.set(len(node.fanout.connections))
    m.rooms.set(len(node.fanout.channels))
    m.queue_depth.set(max((c.buffered() for c in node.fanout.connections), default=0))
    return web.Response(body=m.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


# -- rooms ------------------------------------------------------------------------

RoomId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class CreateRoom(msgspec.Struct, forbid_unknown_fields=False):
    title: Annotated[str, msgspec.Meta(max_length=rules.TITLE_MAX)] = ""
    id: RoomId | None = None
    mode: Literal["live", "call"] = "live"
    barrage_cap: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    scheduled_at: Annotated[int, msgspec.Meta(ge=0)] | None = None


def _room_view(node, doc: rules.RoomDoc) -> dict[str, Any]:
    view = rules.public_view(doc)
    view["online"] = node.online(doc.id)
    return view


@endpoint("admin", CreateRoom)
async def create_room(request: web.Request, identity: Identity, body: CreateRoom) -> web.Response:
    node = _node(request)
    room_id = body.id or "r-" + secrets.token_hex(6)
    doc = rules.new_room(
        room_id,
        now_ms(),
        title=body.title,
        mode=body.mode,
        barrage_cap=body.barrage_cap or node.config.barrage_cap,
        scheduled_at=body.scheduled_at,
    )
    res = await node.broker.commit(room_id, [], expect_version=0, doc=rules.encode_doc(doc))
    if res.status != "ok":
        raise OpError("conflict", f"room {room_id} already exists")
    if doc.scheduled_at is not None:
        await node.hooks.room_scheduled(room_id, doc)
    return _json({"room": _room_view(node, doc)}, 201)


@endpoint("admin")
async def list_rooms(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    rooms = []
    for room_id in sorted(await node.broker.rooms()):
        doc = await node.room(room_id)
        if doc is not None:
            rooms.append(_room_view(node, doc))
    return _json({"rooms": rooms})


@endpoint("any")
async def schedule(request: web.Request, identity: Identity) -> web.Response:
    """Upcoming shows: rooms with a future ``scheduled_at`` that are not live."""
    node = _node(request)
    now = now_ms()
    shows = []
    for room_id in await node.broker.rooms():
        doc = await node.room(room_id)
        if doc is not None and doc.scheduled_at and doc.scheduled_at > now and doc.state != "live":
            shows.append(rules.public_view(doc))
    shows.sort(key=lambda v: v["scheduled_at"])
    return _json({"shows": shows})


@endpoint("admin")
async def get_room(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    doc = await node.require_room(request.match_info["room"])
    return _json({"room": _room_view(node, doc)})


@endpoint("admin")
async def delete_room(request: web.Request, identity: Identity) -> web.Response:
    """Ends the room's show (if live); the room and its history remain readable."""
    node = _node(request)
    room = request.match_info["room"]
    doc = await node.require_room(room)
    if doc.state == "live":
        now = now_ms()
        summary = await node.hooks.show_summary(room)
        doc, _ = await node.transact(room, lambda d: rules.end(d, now, summary))
        await node.hooks.room_ended(room, doc, summary)
    return _json({"room": _room_view(node, doc)})


class CustomEvent(msgspec.Struct, forbid_unknown_fields=False):
    ev: Annotated[str, msgspec.Meta(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.-]+$")]
    data: dict[str, Any] = {}


@endpoint("admin", CustomEvent)
async def publish_event(request: web.Request, identity: Identity, body: CustomEvent) -> web.Response:
    node = _node(request)
    room = request.match_info["room"]
    await node.require_room(room)
    if len(encode(body.data)) > 8 * 1024:
        raise OpError("too_large", "custom event data is limited to 8 KiB")
    res = await node.publish(room, [Emit("custom." + body.ev, body.data)])
    return _json({"seq": res.seqs[0]}, 201)


@endpoint("room")
async def history(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    room = request.match_info["room"]
    try:
        since = int(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise OpError("bad_request", "since and limit must be integers") from None
    if since < 0 or not 1 <= limit <= 1000:
        raise OpError("bad_request", "since must be >= 0 and limit 1..1000")
    await node.require_room(room)
    try:
        page = await node.broker.history(room, since, limit)
    except HistoryGone as exc:
        raise OpError("history_gone", str(exc)) from None
    return _json({"epoch": page.epoch, "seq": page.seq, "events": [decode(e.body) for e in page.events]})


@endpoint("any")
async def lottery_audit(request: web.Request, identity: Identity) -> web.Response:
    from roomserver.handlers.commerce import lottery_audit as audit

    node = _node(request)
    return _json(await audit(node, request.match_info["room"], request.match_info["lottery"]))


@endpoint("admin")
async def sale_orders(request: web.Request, identity: Identity) -> web.Response:
    from roomserver.handlers.commerce import sale_orders as orders

    node = _node(request)
    return _json(await orders(node, request.match_info["room"], request.match_info["sale"]))


ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, "Liveness: the process answers", "none", bus=False),
    Route(
        "GET", "/readyz", readyz, "Readiness: the bus (Redis) is reachable and the node not draining", "none"
    ),
    Route("GET", "/metrics", metrics, "Prometheus metrics", "none", content="text/plain", bus=False),
    Route("POST", "/v1/rooms", create_room, "Create a room", "admin", CreateRoom, 201, errors=(409,)),
    Route("GET", "/v1/rooms", list_rooms, "List rooms", "admin"),
    Route("GET", "/v1/rooms/{room}", get_room, "Get a room", "admin"),
    Route("GET", "/v1/schedule", schedule, "Upcoming scheduled shows", "any"),
    Route("DELETE", "/v1/rooms/{room}", delete_room, "End a room's show", "admin"),
    Route(
        "POST",
        "/v1/rooms/{room}/events",
        publish_event,
        "Publish a custom durable event `custom.<ev>` to the room",
        "admin",
        CustomEvent,
        201,
        errors=(413,),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/history",
        history,
        "Durable events after `since` (a token admitting the room suffices)",
        "room",
        query=(
            ("since", "seq to read after (default 0)", {"type": "integer", "minimum": 0, "default": 0}),
            (
                "limit",
                "events at most (default 100)",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            ),
        ),
        errors=(410,),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/lotteries/{lottery}",
        lottery_audit,
        "A lottery's audit record: seed (after the draw), seed_hash, sorted entrants, winners",
        "any",
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/sales/{sale}/orders",
        sale_orders,
        "A sale's orders, sold count and reconciliation problems (empty = reconciled)",
        "admin",
    ),
]
