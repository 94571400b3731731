"""Audience interaction ops: barrage, likes, gifts, analytics tracking, pinned products."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Literal

import msgspec

from roomserver.bus.base import CommitStatus, Idem
from roomserver.core import barrage as barrage_rules
from roomserver.core import gifts
from roomserver.core import room as rules
from roomserver.core.room import Emit, Product
from roomserver.handlers import OpContext, op, pk
from roomserver.handlers.commerce import keyword_entry
from roomserver.protocol import OpError, now_ms

CID = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def fingerprint(*parts: object) -> str:
    """A digest of an op's parameters, stored with its cid (same cid + other params = conflict)."""
    return hashlib.sha1(msgspec.json.encode(parts)).hexdigest()[:16]


def idem_for(ctx: OpContext, op_name: str, cid: str | None, *params: object) -> Idem | None:
    if cid is None:
        return None
    return Idem(user=ctx.user, cid=f"{op_name}:{cid}", fingerprint=fingerprint(*params))


class BarrageParams(msgspec.Struct, forbid_unknown_fields=False):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    cid: CID | None = None


@op("barrage.send", BarrageParams, family="barrage")
async def barrage(ctx: OpContext, p: BarrageParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    if not p.text.strip():  # before the room is read: blank text costs no bus call
        raise OpError("bad_request", "text must not be blank")
    doc = await node.require_room(room)
    staff = ctx.identity.is_staff
    barrage_rules.check_send(
        doc,
        user=ctx.user,
        staff=staff,
        text=p.text,
        now_ms=now,
        # Slow mode needs the socket only when it applies (the server API has none).
        last_sent_ms=ctx.socket.last_barrage.get(room, 0) if doc.slow_s and not staff else 0,
        words=node.words.for_room(room, doc.words),
    )
    text = p.text
    if node.moderation is not None and node.moderation.wants(ctx.app):  # the app's callback
        text = await node.moderation.screen(ctx.app, ctx.room_id, ctx.identity.public(), text)
    data = {"id": secrets.token_hex(8), "user": ctx.identity.public(), "text": text, "cid": p.cid}
    res = await node.publish(
        room,
        [Emit("barrage", data)],
        idem=idem_for(ctx, "barrage", p.cid, p.text),
        capped=not staff,
        barrage_cap=doc.barrage_cap,
    )
    seq = res.seqs[0] if res.seqs else None
    if res.status == CommitStatus.OK:
        ctx.socket.last_barrage[room] = now
        # The text is kept for the replay (issue 14: the barrage at its show second).
        record: dict = {"text": text} if seq is None else {"seq": seq, "text": text}
        node.behaviour.record(room, ctx.user, "barrage", record)
        await keyword_entry(ctx, doc, p.text)
        # The room assistant (issue 18) reads its questions later, off this path: a queue put.
        if node.assistant is not None and seq is not None:
            node.assistant.offer(room, doc, ctx.identity.public(), text, seq)
    if seq is None:
        node.metrics.shed.inc()
        return {"seq": None, "shed": True}
    return {"seq": seq}


class LikeParams(msgspec.Struct, forbid_unknown_fields=False):
    count: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


@op("like.send", LikeParams, family="like")
async def like(ctx: OpContext, p: LikeParams) -> dict:
    # Aggregated: the node sums likes and the room emits `likes {total, delta}` at most once a second.
    ctx.node.add_likes(ctx.room, p.count)
    ctx.node.behaviour.record(ctx.room, ctx.user, "like", {"count": p.count})
    return {}


class GiftParams(msgspec.Struct, forbid_unknown_fields=False):
    gift: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    count: Annotated[int, msgspec.Meta(ge=1, le=999)] = 1
    cid: CID | None = None


@op("gift.send", GiftParams, family="gift")
async def gift(ctx: OpContext, p: GiftParams) -> dict:
    node = ctx.node
    item, value = gifts.price(node.config.gifts, p.gift, p.count)
    data = {"user": ctx.identity.public(), "gift": item, "count": p.count, "value": value}
    doc = await node.require_room(ctx.room)
    res = await node.publish(
        ctx.room, [Emit("gift", data)], idem=idem_for(ctx, "gift", p.cid, p.gift, p.count)
    )
    if res.status == CommitStatus.OK:  # not for a replayed cid: a gift counts once
        node.behaviour.record(ctx.room, ctx.user, "gift", {"gift": item, "count": p.count, "value": value})
        await pk.gift_sent(node, ctx.room, doc, value)
    return {"value": value}


# "unfollow" (issue 12) takes a follow back: the user leaves the room's followers.
TrackAction = Literal["product.click", "cart.add", "share", "favorite", "follow", "unfollow"]


class TrackParams(msgspec.Struct, forbid_unknown_fields=False):
    action: TrackAction
    product: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


@op("track", TrackParams)
async def track(ctx: OpContext, p: TrackParams) -> dict:
    if p.action in ("product.click", "cart.add") and p.product is None:
        raise OpError("bad_request", f"{p.action} needs a product")
    ctx.node.metrics.tracked.labels(app=ctx.app, action=p.action).inc()
    data = {"action": p.action} if p.product is None else {"action": p.action, "product": p.product}
    ctx.node.behaviour.record(ctx.room, ctx.user, "track", data)
    if p.action == "follow":
        await ctx.node.hooks.follow(ctx.room, ctx.user)
    elif p.action == "unfollow":
        await ctx.node.hooks.unfollow(ctx.room, ctx.user)
    return {}


class PinProduct(msgspec.Struct, forbid_unknown_fields=False):
    """The product to pin: a whole product, or the id of one in the app's catalogue
    (PROTOCOL §7: the fields left out come from the catalogue; those given win)."""

    id: str
    title: str | None = None
    price_cents: int | None = None
    image: str | None = None


class PinParams(msgspec.Struct, forbid_unknown_fields=False):
    product: PinProduct


async def pinned_product(ctx: OpContext, p: PinProduct) -> Product:
    if not 1 <= len(p.id) <= 64:
        raise OpError("bad_request", "product.id must be 1..64 chars")
    if p.title is not None and p.price_cents is not None:
        return Product(p.id, p.title, p.price_cents, p.image)
    assistant = ctx.node.assistant
    if assistant is None:
        raise OpError(
            "bad_request",
            "product.pin needs title and price_cents: this server has no catalogue (--assistant off)",
        )
    known = (await assistant.bus().catalog(ctx.app)).products.get(p.id)
    if known is None:
        raise OpError(
            "not_found", f"product {p.id!r} is not in this app's catalogue: pin it with title and price_cents"
        )
    return Product(
        p.id,
        known.title if p.title is None else p.title,
        known.price_cents if p.price_cents is None else p.price_cents,
        p.image if p.image is not None else known.image,
    )


class UnpinParams(msgspec.Struct, forbid_unknown_fields=False):
    product: dict | None = None


@op("product.pin", PinParams, who="staff")
async def pin(ctx: OpContext, p: PinParams) -> dict:
    product = await pinned_product(ctx, p.product)
    await ctx.node.transact(ctx.room, lambda d: rules.pin(d, product))
    mark = {"what": "pin", "product": product.id, "title": product.title, "price_cents": product.price_cents}
    ctx.node.behaviour.record(ctx.room, ctx.user, "mark", mark)  # replay chapters (issue 14)
    return {}


@op("product.unpin", UnpinParams, who="staff")
async def unpin(ctx: OpContext, p: UnpinParams) -> dict:
    product_id = None
    if p.product is not None:
        product_id = p.product.get("id")
        if not isinstance(product_id, str):
            raise OpError("bad_request", "product.id must be a string")
    unpinned: list[str] = []  # the product the committed rule took down

    def rule(doc: rules.RoomDoc) -> tuple[rules.RoomDoc, list[Emit]]:
        unpinned[:] = [doc.pinned.id] if doc.pinned is not None else []
        return rules.unpin(doc, product_id)

    await ctx.node.transact(ctx.room, rule)
    mark = {"what": "unpin", "product": unpinned[0]} if unpinned else {"what": "unpin"}
    ctx.node.behaviour.record(ctx.room, ctx.user, "mark", mark)
    return {}
