"""The REST handlers and the route table they are registered from."""

from __future__ import annotations

import bisect
import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from roomserver.appkeys import NODE_KEY, VERIFIER_KEY
from roomserver.auth import USER_ID_RE, Identity
from roomserver.bus.base import BrokerUnavailable, HistoryGone
from roomserver.contract import check as contract_check
from roomserver.contract import wire as w
from roomserver.core import nodes
from roomserver.core import room as rules
from roomserver.core import schedule as sched
from roomserver.core.room import Emit
from roomserver.gateway import identity_of
from roomserver.handlers import REGISTRY, OpContext, commerce, server_api_ops
from roomserver.node import Node
from roomserver.protocol import OpError, convert_params, decode_body, encode, now_ms
from roomserver.tenancy import public_room, room_key

Auth = Literal["none", "admin", "room", "any", "node"]  # node: another node of the deployment


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
    # The JSON body of its success answer (a roomserver.contract.wire shape).
    reply: type[msgspec.Struct] | None = None
    # Further media types of the success answer (e.g. text/csv for ``?format=csv``).
    other_content: tuple[str, ...] = ()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(data), status=status, content_type="application/json")


def _error(status: int, err: OpError) -> web.Response:
    return _json({"error": err.to_wire()}, status)


# Every protocol error code has its HTTP status (the server API runs the same ops).
STATUS_OF = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "muted": 403,
    "not_found": 404,
    "not_joined": 409,
    "conflict": 409,
    "sold_out": 409,
    "limit_reached": 409,
    "not_open": 409,
    "history_gone": 410,
    "too_large": 413,
    "blocked_content": 422,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}


def _node(request: web.Request) -> Node:
    return request.app[NODE_KEY]


def _authorize(request: web.Request, auth: Auth) -> Identity | None:
    if auth == "none":
        return None
    identity = identity_of(request, request.app[VERIFIER_KEY])
    if auth == "admin" and not identity.is_admin:
        raise OpError("forbidden", "an admin token is required")
    if auth == "room":
        room = request.match_info.get("room", "")
        if not identity.admits(room):
            raise OpError("forbidden", f"this token admits room {identity.room} only")
    return identity


def _room_key(request: web.Request, identity: Identity) -> str:
    """The path's room as a room of the caller's app: an admin (or any token) reaches
    only its own app's rooms, whatever id it names."""
    room = request.match_info["room"]
    rules.validate_room_id(room)
    return room_key(identity.app, room)


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
                return _error(503, OpError("unavailable", f"the bus is unavailable: {exc}", 1000))

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
    m = node.metrics
    m.fanout.stats = node.fanout.stats
    m.sockets.set(len(node.fanout.connections))
    m.rooms.set(len(node.fanout.channels))
    m.queue_depth.set(max((c.buffered() for c in node.fanout.connections), default=0))
    return web.Response(body=m.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@endpoint("admin")
async def list_nodes(request: web.Request, _: Identity) -> web.Response:
    """The nodes that announced themselves within their TTL, by node id."""
    entries = await _node(request).broker.nodes()
    listed = [nodes.decode(node, info, left) for node, (info, left) in sorted(entries.items())]
    return _json({"nodes": [e for e in listed if e is not None]})


# -- rooms ------------------------------------------------------------------------

RoomId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class CreateRoom(msgspec.Struct, forbid_unknown_fields=False):
    title: Annotated[str, msgspec.Meta(max_length=rules.TITLE_MAX)] = ""
    id: RoomId | None = None
    mode: Literal["live", "call"] = "live"
    barrage_cap: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    scheduled_at: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)] | None = None


def _room_view(node, room: str, doc: rules.RoomDoc) -> dict[str, Any]:
    view = rules.public_view(doc)
    view["online"] = node.online(room)
    view["record"] = doc.features.get("record")
    view["playback"] = doc.features.get("playback")
    return view


def _page_limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise OpError("bad_request", "limit must be an integer 1..1000")
    return int(raw)


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
    room = room_key(identity.app, room_id)
    doc = await node.create_room(room, doc)
    if doc.scheduled_at is not None:
        await node.hooks.room_scheduled(room, doc)
    return _json({"room": _room_view(node, room, doc)}, 201)


@endpoint("admin")
async def list_rooms(request: web.Request, identity: Identity) -> web.Response:
    """The app's rooms in id order, a page at a time: ``next`` is the ``after`` of the
    next page (null on the last)."""
    node = _node(request)
    limit = _page_limit(request)
    after = request.query.get("after", "")
    if after:
        rules.validate_room_id(after)
    keys = await node.broker.rooms(
        identity.app, after=room_key(identity.app, after) if after else "", limit=limit
    )
    rooms = []
    for room in keys:
        doc = await node.room(room)
        if doc is not None:
            rooms.append(_room_view(node, room, doc))
    more = len(keys) == limit
    return _json({"rooms": rooms, "next": public_room(keys[-1]) if more else None})


@endpoint("any")
async def schedule(request: web.Request, identity: Identity) -> web.Response:
    """Upcoming shows of the caller's app: rooms with a future ``scheduled_at`` that
    are not live, soonest first, read from the app's schedule index (never every room)."""
    node = _node(request)
    limit = _page_limit(request, 50)
    # `next` is "<ms>:<room id>": shows booked at the same ms are paged in id order.
    at, _, after_room = request.query.get("after", "").partition(":")
    if (at or after_room) and not (at.isdigit() and len(at) <= 16):
        raise OpError("bad_request", "after must be the `next` of the previous page")
    if after_room:
        rules.validate_room_id(after_room)
    now = now_ms()
    if at and int(at) >= now:
        after_ms, after_key = int(at), room_key(identity.app, after_room) if after_room else ""
    else:
        after_ms, after_key = now, ""
    entries = await node.broker.scheduled(identity.app, after_ms=after_ms, after_room=after_key, limit=limit)
    shows = []
    for _, room in entries:
        doc = await node.room(room)
        if doc is not None and doc.scheduled_at and doc.state != "live":
            shows.append(rules.public_view(doc))
    more = len(entries) == limit
    return _json(
        {"shows": shows, "next": f"{entries[-1][0]}:{public_room(entries[-1][1])}" if more else None}
    )


class Reschedule(msgspec.Struct, forbid_unknown_fields=False):
    # The room's next show (unix ms), or null to cancel it; absent: unchanged.
    scheduled_at: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)] | msgspec.UnsetType | None = msgspec.UNSET
    # Issue 14: record this room's shows (true/false), or null for the server's --record;
    # absent: unchanged. Takes effect when a show starts.
    record: bool | msgspec.UnsetType | None = msgspec.UNSET
    # Issue 14: "hls" has the viewer pages play the host's live HLS instead of WebRTC; null
    # (the default): WebRTC, with HLS as the fallback. Absent: unchanged. Read at join; a
    # change is announced (`room.playback`) to the pages already open.
    playback: Literal["hls"] | msgspec.UnsetType | None = msgspec.UNSET


@endpoint("admin", Reschedule)
async def reschedule_room(request: web.Request, identity: Identity, body: Reschedule) -> web.Response:
    """Move or cancel a room's next show (issue 12): the schedule index follows, a
    ``room.scheduled`` webhook announces the new time, and its reminders are armed
    afresh (they are claimed per ``scheduled_at``). Not while the room is live.
    ``record`` (issue 14) sets whether the room's shows are recorded, live or not."""
    node = _node(request)
    room = _room_key(request, identity)
    await node.require_room(room)
    settings = {k: getattr(body, k) for k in ("record", "playback") if getattr(body, k) is not msgspec.UNSET}

    def patch(d: rules.RoomDoc) -> tuple[rules.RoomDoc, list]:
        # One transaction: a refused part (a live room cannot be rescheduled) changes nothing.
        d, emits = rules.with_settings(d, **settings)
        if body.scheduled_at is msgspec.UNSET:
            return d, emits
        d, more = sched.reschedule(d, body.scheduled_at)
        return d, emits + more

    doc, _ = await node.transact(room, patch)
    if body.scheduled_at is not msgspec.UNSET:
        await node.broker.set_schedule(room, doc.scheduled_at)
        if doc.scheduled_at is not None:
            await node.hooks.room_scheduled(room, doc)
    return _json({"room": _room_view(node, room, doc)})


@endpoint("admin")
async def followers(request: web.Request, identity: Identity) -> web.Response:
    """The room's followers (``track follow``) in user-id order, paged by ``after``."""
    node = _node(request)
    room = _room_key(request, identity)
    await node.require_room(room)
    limit = _page_limit(request)
    after = request.query.get("after", "")
    if len(after) > 128:
        raise OpError("bad_request", "after must be the `next` of the previous page")
    everyone = await node.hooks.followers(room)  # sorted
    start = bisect.bisect_right(everyone, after) if after else 0
    page = everyone[start : start + limit]
    more = start + limit < len(everyone)
    return _json({"followers": page, "count": len(everyone), "next": page[-1] if more else None})


@endpoint("admin")
async def get_room(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    room = _room_key(request, identity)
    doc = await node.require_room(room)
    return _json({"room": _room_view(node, room, doc)})


@endpoint("admin")
async def delete_room(request: web.Request, identity: Identity) -> web.Response:
    """Ends the room's show (if live); the room and its history remain readable."""
    node = _node(request)
    room = _room_key(request, identity)
    doc = await node.require_room(room)
    if doc.state == "live":
        now = now_ms()
        summary = await node.hooks.show_summary(room)
        doc, _ = await node.transact(room, lambda d: rules.end(d, now, summary))
        await node.hooks.room_ended(room, doc, summary)
    return _json({"room": _room_view(node, room, doc)})


class CustomEvent(msgspec.Struct, forbid_unknown_fields=False):
    ev: Annotated[str, msgspec.Meta(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.-]+$")]
    data: dict[str, Any] = {}


@endpoint("admin", CustomEvent)
async def publish_event(request: web.Request, identity: Identity, body: CustomEvent) -> web.Response:
    node = _node(request)
    room = _room_key(request, identity)
    await node.require_room(room)
    if len(encode(body.data)) > 8 * 1024:
        raise OpError("too_large", "custom event data is limited to 8 KiB")
    res = await node.publish(room, [Emit("custom." + body.ev, body.data)])
    return _json({"seq": res.seqs[0]}, 201)


@endpoint("room")
async def history(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    room = _room_key(request, identity)
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
    return _json(
        {"epoch": page.epoch, "seq": page.seq, "events": [msgspec.json.decode(e.body) for e in page.events]}
    )


# -- webhooks: the delivery log ------------------------------------------------------

DELIVERY_STATUSES = ("delivered", "failed")


@endpoint("admin")
async def webhook_deliveries(request: web.Request, identity: Identity) -> web.Response:
    """The app's webhook delivery outcomes, oldest first, a page at a time
    (roomserver/webhooks.py keeps the last ``--webhook-log-retention``)."""
    from roomserver.bus.streams import ID_RE
    from roomserver.core.webhooks import ENDPOINT_ID_RE

    node = _node(request)
    limit = _page_limit(request)
    q = request.query
    for name in ("endpoint", "status", "after"):
        if name in q and not q[name]:
            raise OpError("bad_request", f"{name} must not be empty (leave it out for no filter)")
    endpoint_id, status, after = q.get("endpoint", ""), q.get("status", ""), q.get("after", "")
    if endpoint_id and not ENDPOINT_ID_RE.fullmatch(endpoint_id):
        raise OpError("bad_request", "endpoint must be an endpoint id (1..32 of [A-Za-z0-9_-])")
    if endpoint_id and node.webhooks.endpoint(identity.app, endpoint_id) is None:
        raise OpError("not_found", f"the app has no webhook endpoint {endpoint_id!r}")
    if status and status not in DELIVERY_STATUSES:
        raise OpError("bad_request", f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    if after and not ID_RE.fullmatch(after):
        raise OpError("bad_request", "after must be the `next` (or a `cursor`) of a previous page")
    records, nxt = await node.webhooks.deliveries(
        identity.app, endpoint=endpoint_id, status=status, after=after, limit=limit
    )
    return _json({"deliveries": records, "next": nxt})


@endpoint("any")
async def lottery_audit(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    return _json(
        await commerce.lottery_audit(node, _room_key(request, identity), request.match_info["lottery"])
    )


@endpoint("admin")
async def sale_orders(request: web.Request, identity: Identity) -> web.Response:
    node = _node(request)
    return _json(await commerce.sale_orders(node, _room_key(request, identity), request.match_info["sale"]))


@endpoint("admin")
async def run_op(request: web.Request, identity: Identity) -> web.Response:
    """The server API: an app back end runs a host/moderator op without a socket,
    through the op's own handler (same rules, events, reply data and ``cid``
    idempotency). The op acts as the admin, or as ``"as": user`` when given."""
    node = _node(request)
    name = request.match_info["op"]
    spec = REGISTRY.get(name)
    if spec is None or name not in server_api_ops():
        raise OpError("not_found", f"no server API op {name!r}; see /v1/openapi.json for the list")
    params = await _json_object(request)
    acting = identity
    as_user = params.pop("as", None)
    if as_user is not None:
        if not isinstance(as_user, str) or not USER_ID_RE.fullmatch(as_user):
            raise OpError("bad_request", "as must be a user id (1..64 chars of [A-Za-z0-9_.:@-])")
        acting = dataclasses.replace(identity, user=as_user, name=as_user[:32])
    room = _room_key(request, identity)
    if params.pop("room", request.match_info["room"]) != request.match_info["room"]:
        raise OpError("bad_request", "the body's room differs from the path's")
    result = "error"
    try:
        data = await spec.handler(OpContext(node, acting, room, None), convert_params(params, spec.schema))
        if contract_check.ENABLED:
            contract_check.check_reply(name, data if data is not None else {})
        result = "ok"
    except OpError as err:
        result = err.code
        raise
    finally:
        node.metrics.count_op(identity.app, name, result)
    return _json(data if data is not None else {})


async def _json_object(request: web.Request) -> dict[str, Any]:
    obj = decode_body(await request.read())
    if not isinstance(obj, dict):
        raise OpError("bad_request", "the body must be one JSON object (the op's params)")
    return obj


def _page_limit_query(default: int) -> Query:
    """The ``limit`` query parameter of a paged list (see ``_page_limit``)."""
    schema = {"type": "integer", "minimum": 1, "maximum": 1000, "default": default}
    return ("limit", f"1..1000 (default {default})", schema)


ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, "Liveness: the process answers", "none", bus=False, reply=w.Health),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: the bus (Redis) is reachable and the node not draining",
        "none",
        reply=w.Health,
    ),
    Route("GET", "/metrics", metrics, "Prometheus metrics", "none", content="text/plain", bus=False),
    Route(
        "GET",
        "/v1/nodes",
        list_nodes,
        "The live nodes: address and load each last announced on the bus (docs/deploy.md)",
        "admin",
        reply=w.NodeList,
    ),
    Route(
        "POST",
        "/v1/rooms",
        create_room,
        "Create a room",
        "admin",
        CreateRoom,
        201,
        errors=(409,),
        reply=w.RoomReply,
    ),
    Route(
        "GET",
        "/v1/rooms",
        list_rooms,
        "The app's rooms, in id order, a page at a time",
        "admin",
        query=(
            (
                "after",
                "room id the page starts after (`next` of the previous page)",
                {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{0,64}$"},
            ),
            _page_limit_query(100),
        ),
        reply=w.RoomPage,
    ),
    Route("GET", "/v1/rooms/{room}", get_room, "Get a room", "admin", reply=w.RoomReply),
    Route(
        "PATCH",
        "/v1/rooms/{room}",
        reschedule_room,
        "Move (or with null cancel) the room's next show: `scheduled_at`; re-arms its reminders."
        " `record`: whether its shows are recorded (null: the server's --record)."
        ' `playback`: "hls" has viewer pages play the live HLS (null: WebRTC, HLS as fallback)',
        "admin",
        Reschedule,
        errors=(404, 409),
        reply=w.RoomReply,
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/followers",
        followers,
        "The room's followers (`track follow`), in user-id order, a page at a time",
        "admin",
        query=(
            ("after", "user id the page starts after (`next` of the previous page)", {"type": "string"}),
            _page_limit_query(100),
        ),
        errors=(404,),
        reply=w.FollowerPage,
    ),
    Route(
        "GET",
        "/v1/schedule",
        schedule,
        "The app's upcoming scheduled shows, soonest first",
        "any",
        query=(
            (
                "after",
                "`next` of the previous page (`<unix ms>:<room id>`)",
                {"type": "string", "pattern": "^([0-9]{1,16}(:[A-Za-z0-9_.:@-]{1,64})?)?$"},
            ),
            _page_limit_query(50),
        ),
        reply=w.SchedulePage,
    ),
    Route("DELETE", "/v1/rooms/{room}", delete_room, "End a room's show", "admin", reply=w.RoomReply),
    Route(
        "POST",
        "/v1/rooms/{room}/events",
        publish_event,
        "Publish a custom durable event `custom.<ev>` to the room",
        "admin",
        CustomEvent,
        201,
        errors=(413,),
        reply=w.Published,
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
        reply=w.HistoryPage,
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/lotteries/{lottery}",
        lottery_audit,
        "A lottery's audit record: seed (after the draw), seed_hash, sorted entrants, winners",
        "any",
        reply=w.LotteryAudit,
    ),
    Route(
        "POST",
        "/v1/rooms/{room}/ops/{op}",
        run_op,
        "Server API: run a host/moderator op (the body is its params, plus `as` to act as a user)",
        "admin",
        errors=(404, 409, 422),
    ),
    Route(
        "GET",
        "/v1/webhooks/deliveries",
        webhook_deliveries,
        "The app's webhook delivery log (delivered / failed, with attempts), oldest first, paged",
        "admin",
        query=(
            ("endpoint", "only this endpoint id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}),
            ("status", "only this outcome", {"type": "string", "enum": ["delivered", "failed"]}),
            (
                "after",
                "`next` of the previous page (a log cursor `<ms>-<n>`)",
                {"type": "string", "pattern": "^(0|[1-9][0-9]{0,15})-(0|[1-9][0-9]{0,15})$"},
            ),
            _page_limit_query(100),
        ),
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/sales/{sale}/orders",
        sale_orders,
        "A sale's orders, sold count and reconciliation problems (empty = reconciled)",
        "admin",
        reply=w.SaleOrders,
    ),
]
