"""Co-hosting ops: cohost.request, cohost.invite, cohost.accept, cohost.reject, cohost.end.

The rules are in ``core/cohost.py``; here: who is acting, ids, the membership
check of an invitation, webhooks, the expiry deadline and the media side
(a co-host who is no longer admitted stops publishing).

"Host" below means a token with role host or admin that admits the room
(PROTOCOL §1: a host may act as host of any room its token admits).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from typing import Annotated

import msgspec

from roomserver.core import cohost as rules
from roomserver.core.room import Emit, RoomDoc, decode_doc, is_restricted
from roomserver.handlers import OpContext, deadline, op
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms

USER_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ENTRY_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class InviteParams(msgspec.Struct, forbid_unknown_fields=False):
    user: USER_ID


class AnswerParams(msgspec.Struct, forbid_unknown_fields=False):
    user: USER_ID | None = None
    request: ENTRY_ID | None = None


class EndParams(msgspec.Struct, forbid_unknown_fields=False):
    user: USER_ID | None = None  # default: the caller (a co-host leaving the stage)


def is_host(ctx: OpContext) -> bool:
    return ctx.identity.role in ("host", "admin")


def _new_id() -> str:
    return "co-" + secrets.token_hex(6)


@op("cohost.request")
async def request(ctx: OpContext, p: object) -> dict:
    now, request_id = now_ms(), _new_id()
    await ctx.node.transact(
        ctx.room, lambda d: rules.request(d, ctx.identity.public(), now, request_id, is_host=is_host(ctx))
    )
    return {"request": {"id": request_id, "expires_at": now + rules.PENDING_TTL_MS}}


@op("cohost.invite", InviteParams, who="host")
async def invite(ctx: OpContext, p: InviteParams) -> dict:
    node, room = ctx.node, ctx.room
    if not _may_be_in_room(node, room, p.user):
        raise OpError("not_found", f"{p.user} is not in room {ctx.room_id}")
    now, invite_id = now_ms(), _new_id()
    await node.transact(room, lambda d: rules.invite(d, p.user, ctx.identity.public(), now, invite_id))
    return {"invite": {"id": invite_id, "expires_at": now + rules.PENDING_TTL_MS}}


def _may_be_in_room(node: Node, room: str, user: str) -> bool:
    """Membership is known exactly only for this node's sockets. When the room has
    members on other nodes too (presence total above the local count), the user may
    be one of them: the invitation is accepted and simply expires if nobody answers."""
    ch = node.fanout.channels.get(room)
    local = len(ch.members) if ch is not None else 0
    if ch is not None and ch.has_user(user):
        return True
    return node.online(room) > local


async def _answered(ctx: OpContext, p: AnswerParams, now: int) -> dict:
    """The pending request or invitation that ``cohost.accept``/``reject`` answers."""
    return rules.find(
        await ctx.node.require_room(ctx.room),
        now,
        actor=ctx.user,
        is_host=is_host(ctx),
        request_id=p.request,
        user=p.user,
    )


@op("cohost.accept", AnswerParams)
async def accept(ctx: OpContext, p: AnswerParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    entry = await _answered(ctx, p, now)
    doc, _ = await node.transact(
        room, lambda d: rules.accept(d, entry["id"], now, accepter=ctx.identity.public())
    )
    node.webhooks.emit("cohost.updated", room, {"cohosts": rules.cohosts(doc)})
    return {"cohosts": rules.cohosts(doc)}


@op("cohost.reject", AnswerParams)
async def reject(ctx: OpContext, p: AnswerParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    entry = await _answered(ctx, p, now)
    await node.transact(room, lambda d: rules.reject(d, entry["id"], now, by=ctx.identity.public()))
    return {}


@op("cohost.end", EndParams)
async def end(ctx: OpContext, p: EndParams) -> dict:
    node, room = ctx.node, ctx.room
    user = p.user or ctx.user
    doc, _ = await node.transact(room, lambda d: rules.end(d, user, actor=ctx.user, is_host=is_host(ctx)))
    node.webhooks.emit("cohost.updated", room, {"cohosts": rules.cohosts(doc)})
    await node.media.unpublish(room, user)
    return {"cohosts": rules.cohosts(doc)}


async def clear(node: Node, room: str) -> None:
    """The show ended: co-hosting ends with it (called by the room.end hook)."""
    with contextlib.suppress(OpError):
        _, res = await node.transact(room, rules.clear)
        if res.seqs:  # there were co-hosts
            node.webhooks.emit("cohost.updated", room, {"cohosts": []})


@deadline
async def cohost_deadline(node: Node, room: str, doc: RoomDoc, now: int) -> None:
    if rules.due(doc, now):
        await node.transact(room, lambda d: rules.expire(d, now))
    for user in rules.cohost_ids(doc):
        if is_restricted(doc.kicks, user, now):  # a kicked co-host leaves the stage too
            with contextlib.suppress(OpError):
                doc, _ = await node.transact(room, functools.partial(_leave, user=user))
                node.webhooks.emit("cohost.updated", room, {"cohosts": rules.cohosts(doc)})
    await _stop_dismissed_publishers(node, room, doc)


def _leave(doc: RoomDoc, *, user: str) -> tuple[RoomDoc, list[Emit]]:
    return rules.end(doc, user, actor=user, is_host=True)


async def _stop_dismissed_publishers(node: Node, room: str, doc: RoomDoc) -> None:
    """A co-host ended on another node (or whose cohost.end hook failed) still
    publishing into this node's media: stop it. Confirmed on a fresh read, so a
    co-host admitted a moment ago is never cut on a stale cached document."""
    publishing = node.media.cohost_publishers(room)
    if not publishing or publishing <= rules.cohost_ids(doc):
        return
    rec = await node.broker.load(room)
    if rec.doc is None:
        return
    admitted = rules.cohost_ids(decode_doc(rec.doc))
    for user in publishing - admitted:
        await node.media.unpublish(room, user)
