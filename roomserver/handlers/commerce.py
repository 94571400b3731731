"""Live-commerce ops: flash sales, lotteries, coupons, red packets.

Definitions (a sale, a lottery, a coupon, a packet) live in the room document
under ``features`` and change through ``Node.transact``; the hot counters
(stock, entries, shares) are atomic bus primitives so thousands of buyers do
not serialise on the document. Every deadline (sale end, lottery draw) is a
CAS-guarded transition, so it fires once however many nodes notice it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from roomserver.bus.base import AUDIENCE_STAFF, BrokerUnavailable, GrabStatus, StockStatus, TallyStatus
from roomserver.core import coupons, creation, flashsale, lottery, redpacket
from roomserver.core.room import Emit, RoomDoc, with_features
from roomserver.handlers import OpContext, PerNode, deadline, op
from roomserver.handlers.loyalty import check_tier, member_tier
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms

# Counters outlive their show long enough for audits and late retries.
COUNTER_TTL_MS = 7 * 24 * 3600 * 1000
# Definitions kept in the room document per kind (older ones are dropped).
KEEP_PER_KIND = 50
STOCK_EVENT_INTERVAL_MS = 250  # sale.stock at most 4/s
# A sold-out answer on a sale not yet closed retries the close at most this often per node.
CLOSE_RETRY_INTERVAL_MS = 1_000
CLOSED_SOLD_OUT = flashsale.CloseReason.SOLD_OUT
UNCONFIRMED_TTL_MS = 300_000
UNCONFIRMED_MAX = 10_000
# Background follow-ups of a take (announce, close) outlive a short bus outage or
# overload: about 3 s of pauses between tries, each try bounded by the bus.
FOLLOW_UP_TRIES = 6


async def _follow_up(attempt: Callable[[], Awaitable[Any]], *, idempotent: bool) -> None:
    """Run background work a take committed us to, retrying on ``unavailable``: always
    if it is ``idempotent``, else only when it certainly did not happen (no duplicates)."""
    delay = 0.1
    for i in range(FOLLOW_UP_TRIES):
        try:
            await attempt()
            return
        except BrokerUnavailable as exc:
            certain = exc.executed is False
            if i == FOLLOW_UP_TRIES - 1 or not (idempotent or certain):
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


class _Take(flashsale.Order, frozen=True):
    """The order record as stored by ``stock_take``: the order plus the id of the
    attempt that stored it (readers decoding a plain ``Order`` ignore it)."""

    attempt: str = ""


class _Unconfirmed:
    """Attempts this node sent to the bus without learning their outcome
    (``unavailable``: a timeout, a lost connection, no replica acknowledgement).

    Whoever stores an order announces it (``order.created``, webhook), exactly
    once. An attempt that stored it but could not say so is found out when the
    buyer's retry replays the order carrying that attempt's id: the node that
    made the attempt announces it then (likewise ``redpacket.finished`` when a
    lost grab emptied the packet). Node-local and bounded: a retry through
    another node (or none within 5 minutes) leaves that order unannounced, and
    the orders listing (REST) stays the reference."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, str], int] = {}  # (what, attempt id) -> when

    def add(self, what: str, attempt: str = "") -> None:
        now = now_ms()
        if len(self._since) >= UNCONFIRMED_MAX:
            self._since = {k: t for k, t in self._since.items() if now - t < UNCONFIRMED_TTL_MS}
            while len(self._since) >= UNCONFIRMED_MAX:
                self._since.pop(next(iter(self._since)))
        self._since[(what, attempt)] = now

    def took_it(self, what: str, attempt: str = "") -> bool:
        """True (once) if this node made ``attempt`` at ``what`` without learning its outcome."""
        since = self._since.pop((what, attempt), None)
        return since is not None and now_ms() - since < UNCONFIRMED_TTL_MS


_unconfirmed = PerNode(_Unconfirmed)


# Attempt ids: unique per process start (random prefix) and per attempt (counter),
# without a urandom syscall per buy.
_ATTEMPT_PREFIX = secrets.token_hex(6)
_attempts = itertools.count(1)


def _new_attempt() -> str:
    return f"{_ATTEMPT_PREFIX}.{next(_attempts)}"


def _features(doc: RoomDoc, kind: str, item_id: str, item: Any, **views: Any) -> RoomDoc:
    table = dict(doc.features.get(kind, {}))
    table[item_id] = msgspec.to_builtins(item)
    while len(table) > KEEP_PER_KIND:
        table.pop(next(iter(table)))
    return with_features(doc, **{kind: table}, **views)


# (kind, id) -> (the document's entry, its frozen struct). Every buy reads its sale
# from the cached document; converting the same entry again each time cost ~5 % of a
# flash sale's CPU. Documents are never changed in place (a new entry is a new
# object), so identity says whether the struct is still the entry's.
_parsed: dict[tuple[str, str], tuple[Any, Any]] = {}
MAX_PARSED = 4096


def _get(doc: RoomDoc, kind: str, item_id: str, typ: type, what: str) -> Any:
    raw = doc.features.get(kind, {}).get(item_id)
    if raw is None:
        raise OpError("not_found", f"no {what} {item_id} in this room")
    hit = _parsed.get((kind, item_id))
    if hit is not None and hit[0] is raw:
        return hit[1]
    item: Any = msgspec.convert(raw, typ)
    if len(_parsed) >= MAX_PARSED:
        _parsed.clear()
    _parsed[(kind, item_id)] = (raw, item)
    return item


async def _created_before(ctx: OpContext, kind: str, item_id: str) -> bool:
    """Whether a creating op with a ``cid`` is a retry (see ``core.creation``)."""
    doc = await ctx.node.require_room(ctx.room)
    return creation.already_created(doc.features.get(kind, {}), item_id)


async def _announce_created(
    ctx: OpContext, kind: str, item: Any, emit: Emit, mark: dict[str, Any], **views: Any
) -> None:
    """Keep a created item in the room's ``kind`` table (plus ``views`` in the snapshot)
    and send ``emit``, once: a concurrent retry with the same ``cid`` may have got there
    first, and then nothing changes. Then the staff member's ``mark`` for the report."""

    def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
        if creation.already_created(doc.features.get(kind, {}), item.id):
            return doc, []
        return _features(doc, kind, item.id, item, **views), [emit]

    await ctx.node.transact(ctx.room, rule)
    ctx.node.behaviour.record(ctx.room, ctx.user, "mark", mark)


# -- flash sale ------------------------------------------------------------------------


def sale_key(sale_id: str) -> str:
    return "sale:" + sale_id


def _load_sale(doc: RoomDoc, sale_id: str) -> flashsale.Sale:
    return _get(doc, "sales", sale_id, flashsale.Sale, "sale")


@op("sale.create", flashsale.SaleParams, who="staff")
async def sale_create(ctx: OpContext, p: flashsale.SaleParams) -> dict:
    node, now = ctx.node, now_ms()
    sale_id = creation.created_id("s-", ctx.room, ctx.user, p.cid, p)
    if p.cid is not None:  # a retry gets the sale its first request created
        doc = await node.require_room(ctx.room)
        if creation.already_created(doc.features.get("sales", {}), sale_id):
            sale = _load_sale(doc, sale_id)
            return {"sale": flashsale.sale_view(sale, now, sale.stock)}
    sale = flashsale.new_sale(p, sale_id=sale_id, now_ms=now)
    await node.broker.stock_create(
        ctx.room,
        sale_key(sale.id),
        sale.stock,
        opens_at=sale.opens_at,  # members with early access buy from here; the others wait (check_started)
        closes_at=sale.ends_at or 0,
        ttl_ms=COUNTER_TTL_MS,
    )
    view = flashsale.sale_view(sale, now, sale.stock)
    mark = {"what": "sale", "id": sale.id, "product": sale.product.id}
    await _announce_created(ctx, "sales", sale, Emit("sale.opened", view), mark, sale=view)
    return {"sale": view}


@op("sale.buy", flashsale.BuyParams, family="buy")
async def sale_buy(ctx: OpContext, p: flashsale.BuyParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    sale = _load_sale(await node.require_room(room), p.sale)
    # The member tier is looked up only for a sale in its early-access window.
    early = sale.early_min_tier and sale.opens_at <= now < sale.starts_at
    flashsale.check_started(sale, now, await member_tier(ctx) if early else 0)
    order = _Take(
        id=flashsale.order_id(sale.id, ctx.user, p.cid),
        sale=sale.id,
        user=ctx.user,
        qty=p.qty,
        price_cents=sale.price_cents,
        cid=p.cid,
        created_at=now,
        attempt=_new_attempt(),
    )
    try:
        res = await node.broker.stock_take(
            room,
            sale_key(sale.id),
            user=ctx.user,
            qty=p.qty,
            per_user_limit=sale.limit_per_user,
            record=msgspec.json.encode(order),
            cid=p.cid,
            fingerprint=f"{sale.id}:{p.qty}",
        )
    except BrokerUnavailable as exc:
        if exc.executed is not False:  # it may have run: remember the attempt
            _unconfirmed(node).add(order.id, order.attempt)
        raise
    return await _settle_buy(ctx, sale, res)


async def _settle_buy(ctx: OpContext, sale: flashsale.Sale, res: Any) -> dict:
    node, room = ctx.node, ctx.room
    status = res.status
    # Whoever took the last unit closes the sale, but its answer may have been lost
    # (unavailable after the take): any later answer from an empty stock closes it
    # then (once: CAS in the document).
    if (
        res.left == 0
        and sale.closed_reason is None
        and status in (StockStatus.REPLAYED, StockStatus.SOLD_OUT)
        and node.local_gate(f"sale.close:{room}:{sale.id}", CLOSE_RETRY_INTERVAL_MS)
    ):
        node.spawn(_follow_up(lambda: _close_sale(node, room, sale.id, CLOSED_SOLD_OUT), idempotent=True))
    if status == StockStatus.REPLAYED:
        take = msgspec.json.decode(res.record, type=_Take)
        view = flashsale.order_view(take)
        if _unconfirmed(node).took_it(take.id, take.attempt):
            _announce_order(node, room, view)  # its own attempt could not
            _record_order(ctx, sale, take)
        return {"order": view}
    if status == StockStatus.CONFLICT:
        raise OpError("conflict", "this cid was already used for another order")
    if status == StockStatus.NOT_FOUND:
        raise OpError("not_found", f"sale {sale.id} has no stock (expired)")
    if status == StockStatus.NOT_OPEN:
        raise OpError("not_open", "this sale has ended")
    if status == StockStatus.SOLD_OUT:
        if res.left == 0:
            raise OpError("sold_out", "sold out")
        raise OpError("sold_out", f"only {res.left} left")
    if status == StockStatus.LIMIT_REACHED:
        raise OpError("limit_reached", f"at most {sale.limit_per_user} per user")
    # The order is taken: from here on nothing may fail the reply (the buyer would
    # be told "unavailable" for an order that exists), so the rest is background.
    order = msgspec.json.decode(res.record, type=flashsale.Order)
    view = flashsale.order_view(order)
    _announce_order(node, room, view)
    _record_order(ctx, sale, order)
    if node.local_gate(f"sale.stock:{room}:{sale.id}", STOCK_EVENT_INTERVAL_MS):
        node.spawn(_publish_stock(node, room, sale.id, res.left))
    if res.left == 0:
        # The buyer who took the last unit closes the sale (once: CAS in the document).
        node.spawn(_follow_up(lambda: _close_sale(node, room, sale.id, CLOSED_SOLD_OUT), idempotent=True))
    return {"order": view}


def _record_order(ctx: OpContext, sale: flashsale.Sale, order: flashsale.Order) -> None:
    """The behaviour log's order record: once, by whoever announces the order."""
    data = {
        "order": order.id,
        "sale": sale.id,
        "product": sale.product.id,
        "qty": order.qty,
        "amount": order.amount_cents,
    }
    ctx.node.behaviour.record(ctx.room, order.user, "order", data, ts=order.created_at)


def _announce_order(node: Node, room: str, view: dict[str, Any]) -> None:
    """``order.created`` to the room's staff and to the app's webhook."""
    emit = Emit("order.created", {"order": view}, durable=False, audience=AUDIENCE_STAFF)
    node.spawn(_follow_up(lambda: node.publish(room, [emit]), idempotent=False))
    node.webhooks.emit("order.created", room, {"order": view})


async def _publish_stock(node: Node, room: str, sale_id: str, left: int) -> None:
    if await node.broker.gate(room, "sale.stock:" + sale_id, STOCK_EVENT_INTERVAL_MS, str(left)):
        await node.publish(room, [Emit("sale.stock", flashsale.stock_view(sale_id, left), durable=False)])


async def _close_sale(node: Node, room: str, sale_id: str, reason: flashsale.CloseReason) -> None:
    state = await node.broker.stock_state(room, sale_key(sale_id))
    now = now_ms()
    if reason is flashsale.CloseReason.ENDED:
        await node.broker.stock_close(room, sale_key(sale_id), now)
        state = await node.broker.stock_state(room, sale_key(sale_id))
    left, initial = state if state is not None else (0, 0)

    def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
        sale = _load_sale(doc, sale_id)
        closed = flashsale.close_sale(sale, reason, sold=initial - left, now_ms=now)
        view = flashsale.sale_view(closed, now, left)
        current = doc.features.get("sale")
        views = {"sale": view} if current is None or current.get("id") == sale_id else {}
        return _features(doc, "sales", sale_id, closed, **views), [
            Emit("sale.closed", flashsale.closed_view(closed))
        ]

    try:
        await node.transact(room, rule)
    except OpError as err:
        if err.code != "conflict":  # conflict: already closed by another node
            raise


@deadline
async def sale_deadline(node: Node, room: str, doc: RoomDoc, now: int) -> None:
    for raw in doc.features.get("sales", {}).values():
        if raw.get("closed_reason") is not None:
            continue
        if raw.get("ends_at") is not None and raw["ends_at"] <= now:
            await _close_sale(node, room, raw["id"], flashsale.CloseReason.ENDED)
            continue
        state = await node.broker.stock_state(room, sale_key(raw["id"]))
        if state is not None and state[0] == 0:
            # Sold out but not closed: the close after the last take was lost (its
            # node died, or the bus failed it past its retries).
            await _close_sale(node, room, raw["id"], flashsale.CloseReason.SOLD_OUT)
            continue
        # The trailing sale.stock: the last level of a burst was held back by the gate.
        if state is not None and await node.broker.gate(
            room, "sale.stock:" + raw["id"], STOCK_EVENT_INTERVAL_MS, str(state[0])
        ):
            await node.publish(
                room, [Emit("sale.stock", flashsale.stock_view(raw["id"], state[0]), durable=False)]
            )


async def current_sale_view(node: Node, room: str, doc: RoomDoc) -> dict[str, Any] | None:
    """The join snapshot's ``sale`` with the live stock left (the document's copy
    is as of the sale's last transition)."""
    view = doc.features.get("sale")
    if view is None or view.get("reason") is not None:
        return view
    state = await node.broker.stock_state(room, sale_key(view["id"]))
    return view if state is None else {**view, "left": state[0]}


async def sale_orders(node: Node, room: str, sale_id: str) -> dict[str, Any]:
    """The reconciliation view for ``GET /v1/rooms/{room}/sales/{id}/orders``."""
    sale = _load_sale(await node.require_room(room), sale_id)
    records = await node.broker.stock_records(room, sale_key(sale_id))
    orders = [msgspec.json.decode(r, type=flashsale.Order) for r in records]
    state = await node.broker.stock_state(room, sale_key(sale_id))
    left = state[0] if state else 0
    sold = sale.stock - left
    return {
        "sale": flashsale.sale_view(sale, now_ms(), left),
        "sold": sold,
        "orders": [flashsale.order_view(o) for o in orders],
        "problems": flashsale.reconcile(sale, orders, sold=sold),
    }


# -- lottery ---------------------------------------------------------------------------


def entries_key(lottery_id: str) -> str:
    return "lottery:" + lottery_id


def _load_lottery(doc: RoomDoc, lottery_id: str) -> lottery.Lottery:
    raw = doc.features.get("lotteries", {}).get(lottery_id)
    if raw is None:
        raise OpError("not_found", f"no lottery {lottery_id} in this room")
    return msgspec.convert({**raw, "seed": base64.b64decode(raw["seed"])}, lottery.Lottery)


def _store_lottery(doc: RoomDoc, lot: lottery.Lottery) -> RoomDoc:
    # The snapshot's ``lottery`` is the public view: the seed stays secret until the draw.
    return _features(doc, "lotteries", lot.id, lot, lottery=lottery.public_view(lot))


@op("lottery.create", lottery.LotteryParams, who="staff")
async def lottery_create(ctx: OpContext, p: lottery.LotteryParams) -> dict:
    now = now_ms()
    lottery_id = creation.created_id("l-", ctx.room, ctx.user, p.cid, p)
    if p.cid is not None:  # a retry gets the lottery its first request opened
        doc = await ctx.node.require_room(ctx.room)
        if creation.already_created(doc.features.get("lotteries", {}), lottery_id):
            first = _load_lottery(doc, lottery_id)
            return {"lottery": {"id": first.id, "seed_hash": first.seed_hash, "closes_at": first.closes_at}}
    lot = lottery.open_lottery(p, lottery_id=lottery_id, now_ms=now, seed=lottery.new_seed())

    def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
        if creation.already_created(doc.features.get("lotteries", {}), lot.id):
            raise OpError(
                "unavailable", "a retry of this request is being answered; retry", retry_after_ms=100
            )
        lottery.check_none_open(doc.features.get("lottery"))
        return _store_lottery(doc, lot), [Emit("lottery.opened", lottery.open_view(lot))]

    await ctx.node.transact(ctx.room, rule)
    ctx.node.behaviour.record(ctx.room, ctx.user, "mark", {"what": "lottery", "id": lot.id})
    return {"lottery": {"id": lot.id, "seed_hash": lot.seed_hash, "closes_at": lot.closes_at}}


async def enter_lottery(ctx: OpContext, lot: lottery.Lottery) -> None:
    now = now_ms()
    joined = ctx.socket.joined_at.get(ctx.room, now)
    # The token's tier, or (only when it falls short) the higher member tier computed from points.
    tier = ctx.identity.tier if lot.min_tier <= ctx.identity.tier else await member_tier(ctx)
    lottery.check_can_enter(lot, now_ms=now, watch_s=(now - joined) / 1000, tier=tier)
    res = await ctx.node.broker.tally(ctx.room, entries_key(lot.id), ctx.user, "1", COUNTER_TTL_MS)
    if res.status == TallyStatus.EXISTS:
        raise OpError("conflict", "you have already entered this lottery")
    if res.status == TallyStatus.CLOSED:
        raise OpError("not_open", "this lottery is closed")
    ctx.node.behaviour.record(ctx.room, ctx.user, "lottery.enter", {"lottery": lot.id})


@op("lottery.enter", lottery.LotteryRef)
async def lottery_enter(ctx: OpContext, p: lottery.LotteryRef) -> dict:
    await enter_lottery(ctx, _load_lottery(await ctx.node.require_room(ctx.room), p.lottery))
    return {"entered": True}


async def keyword_entry(ctx: OpContext, doc: RoomDoc, text: str) -> None:
    """A barrage containing the open lottery's keyword enters its sender."""
    current = doc.features.get("lottery")
    if current is None or current["state"] != "open" or not current.get("keyword"):
        return
    lot = _load_lottery(doc, current["id"])
    if lottery.keyword_matches(lot, text):
        # Not eligible or already in: the barrage itself still stands.
        with contextlib.suppress(OpError):
            await enter_lottery(ctx, lot)


async def _draw(node: Node, room: str, lottery_id: str) -> dict[str, Any]:
    entrants = await node.broker.tally_close(room, entries_key(lottery_id))
    now = now_ms()
    drawn_box: list[tuple[lottery.Lottery, lottery.DrawResult]] = []

    def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
        drawn, result = lottery.draw(_load_lottery(doc, lottery_id), entrants, now_ms=now)
        drawn_box.append((drawn, result))
        return _store_lottery(doc, drawn), [Emit("lottery.drawn", lottery.drawn_view(drawn))]

    await node.transact(room, rule)
    drawn, result = drawn_box[-1]
    # Drawn is final: keep the audit document the REST endpoint will be asked for.
    _audits(node).put((room, drawn.id), lottery.drawn_audit_view(drawn, result))
    view = lottery.drawn_view(drawn)
    node.webhooks.emit("lottery.drawn", room, view)
    return view


@op("lottery.draw", lottery.LotteryRef, who="staff")
async def lottery_draw(ctx: OpContext, p: lottery.LotteryRef) -> dict:
    lot = _load_lottery(await ctx.node.require_room(ctx.room), p.lottery)
    lottery.check_drawable(lot)
    return {"lottery": await _draw(ctx.node, ctx.room, lot.id)}


@deadline
async def lottery_deadline(node: Node, room: str, doc: RoomDoc, now: int) -> None:
    current = doc.features.get("lottery")
    if current is not None and current["state"] == "open" and current["closes_at"] <= now:
        await _draw(node, room, current["id"])


async def lottery_audit(node: Node, room: str, lottery_id: str) -> dict[str, Any]:
    """``GET /v1/rooms/{room}/lotteries/{id}``: everything needed to recompute the draw."""
    lot = _load_lottery(await node.require_room(room), lottery_id)
    if lot.state is not lottery.LotteryState.DRAWN:
        view = lottery.open_view(lot)
        view["entrants_count"] = sum((await node.broker.tally_counts(room, entries_key(lot.id))).values())
        return view
    cache = _audits(node)
    audit = cache.get((room, lottery_id))
    if audit is None:
        audit = lottery.audit_view(lot, await node.broker.tally_members(room, entries_key(lot.id)))
        cache.put((room, lottery_id), audit)
    return audit


class _AuditCache:
    """The last few drawn lotteries' audit documents on this node. A drawn lottery
    never changes, and with 100,000 entrants one document costs a 100,000-member
    read from the bus and a sort: made once, by the drawing node at the draw."""

    SIZE = 8

    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self._docs.get(key)

    def put(self, key: tuple[str, str], doc: dict[str, Any]) -> None:
        self._docs.pop(key, None)
        self._docs[key] = doc
        while len(self._docs) > self.SIZE:
            del self._docs[next(iter(self._docs))]


_audits = PerNode(_AuditCache)


# -- coupons ----------------------------------------------------------------------------


def coupon_key(coupon_id: str) -> str:
    return "coupon:" + coupon_id


@op("coupon.issue", coupons.CouponParams, who="staff")
async def coupon_issue(ctx: OpContext, p: coupons.CouponParams) -> dict:
    coupon_id = creation.created_id("c-", ctx.room, ctx.user, p.cid, p)
    if p.cid is not None and await _created_before(ctx, "coupons", coupon_id):
        return {"coupon": {"id": coupon_id}}  # a retry: the coupon its first request issued
    coupon = coupons.new_coupon(p, coupon_id=coupon_id, issuer=ctx.user, now_ms=now_ms())
    await ctx.node.broker.stock_create(
        ctx.room, coupon_key(coupon.id), coupon.quantity, ttl_ms=COUNTER_TTL_MS
    )
    emit = Emit("coupon.issued", coupons.issued_view(coupon))
    await _announce_created(ctx, "coupons", coupon, emit, {"what": "coupon", "id": coupon.id})
    return {"coupon": {"id": coupon.id}}


@op("coupon.claim", coupons.ClaimParams)
async def coupon_claim(ctx: OpContext, p: coupons.ClaimParams) -> dict:
    doc = await ctx.node.require_room(ctx.room)
    coupon = _get(doc, "coupons", p.coupon, coupons.Coupon, "coupon")
    await check_tier(ctx, coupon.min_tier, "claim this coupon")
    record: dict[str, Any] = {"coupon": coupon.id, "user": ctx.user, "ts": now_ms()}
    if p.cid is not None:
        record["id"] = coupons.cid_claim_id(coupon.id, ctx.user, p.cid)
    res = await ctx.node.broker.stock_take(
        ctx.room,
        coupon_key(coupon.id),
        user=ctx.user,
        qty=1,
        per_user_limit=coupon.per_user,
        record=msgspec.json.encode(record),
        cid=p.cid or "",
        fingerprint="coupon:" + coupon.id,  # a sale.buy cid reused here is a conflict
    )
    if res.status == StockStatus.REPLAYED:
        first = msgspec.json.decode(res.record or b"{}")
        return {"claim": {"id": first.get("id", ""), "coupon": coupon.id}}
    if res.status == StockStatus.CONFLICT:
        raise OpError("conflict", "this cid was already used for another request")
    if res.status == StockStatus.SOLD_OUT:
        raise OpError("sold_out", "all coupons have been claimed")
    if res.status == StockStatus.LIMIT_REACHED:
        raise OpError("limit_reached", f"at most {coupon.per_user} per user")
    if res.status != StockStatus.OK:
        raise OpError("not_found", f"coupon {coupon.id} is no longer available")
    claim = record.get("id") or coupons.claim_id(coupon.id, ctx.user, res.user_total)
    ctx.node.behaviour.record(ctx.room, ctx.user, "coupon.claim", {"coupon": coupon.id})
    return {"claim": {"id": claim, "coupon": coupon.id}}


# -- red packets -----------------------------------------------------------------------


def packet_key(packet_id: str) -> str:
    return "redpacket:" + packet_id


@op("redpacket.send", redpacket.PacketParams, who="staff")
async def redpacket_send(ctx: OpContext, p: redpacket.PacketParams) -> dict:
    packet_id = creation.created_id("p-", ctx.room, ctx.user, p.cid, p)
    if p.cid is not None and await _created_before(ctx, "redpackets", packet_id):
        return {"packet": {"id": packet_id}}  # a retry: the packet its first request sent
    packet = redpacket.new_packet(p, packet_id=packet_id, sender=ctx.user, now_ms=now_ms())
    amounts = redpacket.split(packet.total_cents, packet.count, secrets.SystemRandom())
    # Create-if-absent: a concurrent retry keeps the first split.
    await ctx.node.broker.shares_create(ctx.room, packet_key(packet.id), amounts, ttl_ms=COUNTER_TTL_MS)
    emit = Emit("redpacket.sent", redpacket.sent_view(packet))
    await _announce_created(ctx, "redpackets", packet, emit, {"what": "redpacket", "id": packet.id})
    return {"packet": {"id": packet.id}}


@op("redpacket.grab", redpacket.GrabParams)
async def redpacket_grab(ctx: OpContext, p: redpacket.GrabParams) -> dict:
    node, room, key = ctx.node, ctx.room, packet_key(p.packet)
    grab = f"grab:{p.packet}:{ctx.user}"  # one grab per user: no attempt id needed
    try:
        res = await node.broker.shares_grab(room, key, ctx.user)
    except BrokerUnavailable as exc:
        if exc.executed is not False:
            _unconfirmed(node).add(grab)
        raise
    if res.status == GrabStatus.REPLAYED:
        if res.left == 0 and _unconfirmed(node).took_it(grab):
            # This node's earlier try grabbed but could not say so; if that grab
            # emptied the packet, nobody announced redpacket.finished yet.
            grabs = await node.broker.shares_grabs(room, key)
            if grabs and grabs[-1][0] == ctx.user:
                _announce_finished(node, room, p.packet, redpacket.best(grabs))
        raise OpError("conflict", f"you already grabbed {res.amount} cents from this red packet")
    if res.status == GrabStatus.SOLD_OUT:
        raise OpError("sold_out", "this red packet is empty")
    if res.status == GrabStatus.NOT_FOUND:
        raise OpError("not_found", f"no red packet {p.packet} in this room")
    node.behaviour.record(room, ctx.user, "redpacket.grab", {"packet": p.packet, "amount": res.amount})
    if res.finished_best is not None:
        user, amount = res.finished_best
        _announce_finished(node, room, p.packet, {"user": user, "amount_cents": amount})
    return {"amount_cents": res.amount}


def _announce_finished(node: Node, room: str, packet_id: str, best: dict[str, Any] | None) -> None:
    emit = Emit("redpacket.finished", {"id": packet_id, "best": best})
    node.spawn(_follow_up(lambda: node.publish(room, [emit]), idempotent=False))
