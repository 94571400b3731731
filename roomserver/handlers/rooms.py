"""Room lifecycle ops: ping, join, leave, resume, start, end."""

from __future__ import annotations

from typing import Annotated

import msgspec

from roomserver.auth import Identity
from roomserver.bus.base import HistoryGone
from roomserver.config import AutoCreate
from roomserver.core import room as rules
from roomserver.core.room import Emit
from roomserver.handlers import OpContext, op
from roomserver.handlers.commerce import current_sale_view
from roomserver.handlers.pk import current_pk_view
from roomserver.handlers.share import Attribution, attribute, check_ref
from roomserver.protocol import OpError, now_ms, reply_ok

TITLE = Annotated[str, msgspec.Meta(max_length=rules.TITLE_MAX)]
RESUME_PAGE = 1000


@op("ping", joined=False, needs_room=False)
async def ping(ctx: OpContext, p: object) -> dict:
    return {"ts": now_ms()}


def _admit(ctx: OpContext, doc: rules.RoomDoc) -> None:
    rules.check_admitted(doc, ctx.identity, now_ms())


def may_auto_create(identity: Identity, policy: AutoCreate) -> bool:
    """Whether joining a room that does not exist creates it (``--auto-create``).

    ``named`` (the default) lets staff create rooms, and anyone whose token names the
    room: the app minted a token for that very room, so it means the room to exist
    (LiveKit's tokens always name the room). A viewer with a wildcard token cannot
    make rooms by joining made-up ids: that was unbounded state any viewer could create."""
    if policy == "any":
        return True
    if policy == "off":
        return False
    return identity.is_staff or identity.room is not None


class JoinParams(msgspec.Struct, forbid_unknown_fields=False):
    # A share link's signed token (``share.link``): the user whose link brought this viewer.
    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None


@op("room.join", JoinParams, joined=False)
async def join(ctx: OpContext, p: JoinParams) -> dict:
    node, conn = ctx.node, ctx.socket.conn
    if not ctx.identity.admits(ctx.room_id):
        raise OpError("forbidden", f"this token admits room {ctx.identity.room} only")
    # issue 12 (share): a bad ref fails the join before anything changes.
    sharer = check_ref(ctx, p.ref) if p.ref is not None else None
    doc = await node.room(ctx.room, create=may_auto_create(ctx.identity, node.config.room_auto_create))
    if doc is None:
        raise OpError("not_found", f"room {ctx.room_id} does not exist")
    _admit(ctx, doc)
    attribution: Attribution | None = None
    if sharer is not None:
        attribution, sharer = await attribute(ctx, sharer, doc)
    ch = await node.ensure_channel(ctx.room)
    likes = await node.load_likes(ctx.room)
    sale = await current_sale_view(node, ctx.room, doc)
    pk = await current_pk_view(node, ctx.app, doc)
    # No await from here on: the member goes live at exactly the snapshot's seq.
    seq = node.fanout.join(conn, ctx.room)
    if ctx.room not in ctx.socket.joined_at:  # a new session (a second join is not)
        joined = ctx.socket.joined_at[ctx.room] = now_ms()
        # The session's behaviour record, with the sharer when this join was attributed
        # to a share link (once per viewer per show, decided by ``attribute`` above).
        node.behaviour.record(ctx.room, ctx.user, "join", {"ref": sharer} if sharer else None, ts=joined)
    node.members.joined(ctx.room, ctx.user)  # room.members webhook batch
    if node.sample_joined(ctx.room):
        node.spawn(
            node.publish(ctx.room, [Emit("member.joined", {"user": ctx.identity.public()}, durable=False)])
        )
    snap = rules.snapshot(
        doc, online=node.online(ctx.room), likes=likes, seq=seq, epoch=ch.epoch, gifts=node.config.gifts
    )
    snap["room"]["sale"] = sale
    snap["room"]["pk"] = pk
    # Already-encoded event objects, the same bytes members were sent (seq <= the snapshot's).
    snap["room"]["recent"] = [msgspec.Raw(b) for b in node.fanout.channels[ctx.room].recent]
    if attribution is not None:
        snap["attribution"] = attribution
    return snap


@op("room.leave")
async def leave(ctx: OpContext, p: object) -> dict:
    node = ctx.node
    joined_at = ctx.socket.joined_at.pop(ctx.room, None)
    if joined_at is not None:
        node.behaviour.record(ctx.room, ctx.user, "leave", {"joined_at": joined_at})
    if ctx.room in ctx.socket.conn.rooms:
        node.members.left(ctx.room, ctx.user)  # room.members webhook batch
    if node.fanout.leave(ctx.socket.conn, ctx.room):
        node.spawn(node.release_channel(ctx.room))
    return {}


class ResumeParams(msgspec.Struct, forbid_unknown_fields=False):
    since: Annotated[int, msgspec.Meta(ge=0)]
    epoch: str = ""


@op("room.resume", ResumeParams, joined=False)
async def resume(ctx: OpContext, p: ResumeParams) -> dict | None:
    node, conn, room = ctx.node, ctx.socket.conn, ctx.room
    doc = await node.room(room)
    if doc is None:
        raise OpError("history_gone", f"room {ctx.room_id} has no history")
    _admit(ctx, doc)
    ch = await node.ensure_channel(room)
    if p.epoch != ch.epoch:
        raise OpError("history_gone", "the room's history was reset (epoch changed): join again")
    was_member = room in conn.rooms
    node.fanout.begin_sync(conn, room)
    history = []
    since = p.since
    try:
        while True:
            page = await node.broker.history(room, since, RESUME_PAGE)
            if page.epoch and page.epoch != p.epoch:
                raise HistoryGone("epoch changed")
            history.extend(page.events)
            if len(page.events) < RESUME_PAGE:
                break
            since = page.events[-1].seq
    except HistoryGone as exc:
        _abandon_sync(ctx, was_member)
        raise OpError("history_gone", f"cannot resume from seq {p.since}: {exc}") from None
    except BaseException:
        _abandon_sync(ctx, was_member)
        raise
    if room not in ctx.socket.joined_at:  # a socket resuming after a reconnect: a new session
        joined = ctx.socket.joined_at[room] = now_ms()
        node.behaviour.record(room, ctx.user, "join", ts=joined)
    req_id = ctx.req_id
    node.fanout.end_sync(
        conn, room, history, None if req_id is None else lambda n: reply_ok(req_id, {"replayed": n})
    )
    ctx.replied = True
    return None


def _abandon_sync(ctx: OpContext, was_member: bool) -> None:
    """A failed resume changes nothing: a new member is removed again."""
    fanout = ctx.node.fanout
    if was_member:
        fanout.end_sync(ctx.socket.conn, ctx.room, [], None)
    elif fanout.leave(ctx.socket.conn, ctx.room):
        ctx.node.spawn(ctx.node.release_channel(ctx.room))


class StartParams(msgspec.Struct, forbid_unknown_fields=False):
    title: TITLE | None = None


@op("room.start", StartParams, who="host")
async def start(ctx: OpContext, p: StartParams) -> dict:
    now = now_ms()
    doc, _ = await ctx.node.transact(ctx.room, lambda d: rules.start(d, ctx.user, now, p.title))
    await ctx.node.hooks.room_started(ctx.room, doc)
    return {"room": rules.public_view(doc)}


@op("room.end", who="host")
async def end(ctx: OpContext, p: object) -> dict:
    node = ctx.node
    now = now_ms()
    summary = await node.hooks.show_summary(ctx.room)
    doc, _ = await node.transact(ctx.room, lambda d: rules.end(d, now, summary))
    await node.hooks.room_ended(ctx.room, doc, summary)
    return {"summary": summary}
