"""PK ops: pk.invite, pk.accept, pk.reject, pk.end; scores from gifts; deadlines.

A PK touches two rooms, each one CAS commit at a time (``core/pk.py``), and
everything goes through the bus, so the two rooms may be served by different
nodes. Cross-room steps and what happens when the second one fails:

- invite: reserve the inviting room, then the target; if the target refuses
  (busy: conflict, missing: not_found) the inviting room's reservation is
  rolled back.
- accept: start the inviting room, then the target; if the target's commit fails
  (its invitation vanished meanwhile: rejected or expired at the same instant)
  the inviting room's battle is ended at once with reason "cancelled".
- end (op, ``ends_at`` deadline, room ended): end each room; a room already
  ended is skipped (``not_open``), so two nodes noticing ``ends_at`` together
  end each room once. The ``pk.ended`` webhook is sent by whoever ends the
  inviting room (exactly one commit).

Scores: each room's points are a bus accumulator (``core.pk.score_key``) fed by
``gift.send`` while the battle runs; ``pk.score`` (ephemeral, to both rooms) is
throttled to 2/s per PK by a node-local gate in front of a room-wide
``Broker.gate``; the deadline check publishes what the gate held back.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Annotated, Any

import msgspec

from roomserver.core import pk as rules
from roomserver.core.room import Emit, RoomDoc, validate_room_id
from roomserver.handlers import OpContext, PerNode, deadline, op
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms
from roomserver.tenancy import app_of, public_room, room_key

ROOM_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PK_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
SCORE_INTERVAL_MS = 500  # pk.score at most 2/s
# Accumulators are read and added to without ever "flushing" (we only need totals).
NO_FLUSH_MS = 10**12


class InviteParams(msgspec.Struct, forbid_unknown_fields=False):
    target_room: ROOM_ID
    duration_s: Annotated[int, msgspec.Meta(ge=rules.MIN_DURATION_S, le=rules.MAX_DURATION_S)] = (
        rules.DEFAULT_DURATION_S
    )


class PkParams(msgspec.Struct, forbid_unknown_fields=False):
    pk: PK_ID


@op("pk.invite", InviteParams, who="host")
async def invite(ctx: OpContext, p: InviteParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    validate_room_id(p.target_room)
    invitation = rules.new_invite(
        "pk-" + secrets.token_hex(6), ctx.room_id, p.target_room, ctx.identity.public(), p.duration_s, now
    )
    pk_id = invitation["id"]
    await node.transact(room, lambda d: rules.reserve(d, invitation, now))
    try:
        # The opponent is a room of the same app: another app's room of that id is not reachable.
        await node.transact(ctx.room_key(p.target_room), lambda d: rules.reserve(d, invitation, now))
    except BaseException:
        with contextlib.suppress(Exception):
            await node.transact(room, lambda d: rules.withdraw(d, pk_id, event=None))
        raise
    return {"pk": {"id": pk_id, "rooms": invitation["rooms"], "expires_at": invitation["expires_at"]}}


@op("pk.accept", PkParams, who="host")
async def accept(ctx: OpContext, p: PkParams) -> dict:
    node, room, now = ctx.node, ctx.room, now_ms()
    invitation = await _invitation(node, room, p.pk, now)
    rules.check_accepter(invitation, ctx.room_id)
    from_room = invitation["from_room"]
    from_key = ctx.room_key(from_room)
    hosts = {from_room: invitation["by"]["id"], ctx.room_id: ctx.user}
    ends_at = now + invitation["duration_s"] * 1000
    try:
        await node.transact(from_key, lambda d: rules.start(d, p.pk, hosts, now, ends_at))
    except OpError as exc:
        if exc.code == "not_found":  # the inviting side is gone (withdrawn, expired, room deleted)
            await _withdraw(node, ctx.app, invitation, "pk.expired")
        raise
    try:
        doc, _ = await node.transact(room, lambda d: rules.start(d, p.pk, hosts, now, ends_at))
    except BaseException:
        with contextlib.suppress(Exception):
            await node.transact(
                from_key, lambda d: rules.finish(d, p.pk, {}, now_ms(), rules.EndReason.CANCELLED)
            )
        raise
    pk = doc.features["pk"]
    node.media.link_pk(ctx.app, pk)
    return {"pk": pk}


@op("pk.reject", PkParams, who="host")
async def reject(ctx: OpContext, p: PkParams) -> dict:
    """The target's host declines; the inviting room's host may withdraw the same way."""
    node, room = ctx.node, ctx.room
    invitation = await _invitation(node, room, p.pk, now_ms())
    await _withdraw(node, ctx.app, invitation, "pk.rejected", by_room=ctx.room_id)
    return {}


async def _invitation(node: Node, room: str, pk_id: str, now: int) -> dict[str, Any]:
    """The pending invitation ``pk_id`` of ``room``. The invitation was written by the inviting
    room's node, maybe a moment ago: on a miss the document is read again from the bus before
    answering ``not_found`` (a CI run's host accepted on another node before that node's copy
    of the room had the invitation)."""
    try:
        return rules.invitation(await node.require_room(room), pk_id, now)
    except OpError as exc:
        if exc.code != "not_found":
            raise
    return rules.invitation(await node.room_from_bus(room), pk_id, now)


# A PK's document copy names its two rooms by public id (what events show); both
# rooms belong to the app of the room the PK was found in.


async def _withdraw(
    node: Node, app: str, invitation: dict[str, Any], event: str, by_room: str | None = None
) -> None:
    for r in invitation["rooms"]:
        with contextlib.suppress(OpError):  # this room's side is gone already
            await node.transact(
                room_key(app, r), lambda d: rules.withdraw(d, invitation["id"], event=event, by_room=by_room)
            )


@op("pk.end", PkParams, who="host")
async def end(ctx: OpContext, p: PkParams) -> dict:
    node, room = ctx.node, ctx.room
    pk = rules.active(await node.require_room(room), p.pk)
    last = await end_battle(node, ctx.app, pk, rules.EndReason.ENDED)
    return {"pk": last}


async def end_battle(
    node: Node, app: str, pk: dict[str, Any], reason: rules.EndReason
) -> dict[str, Any] | None:
    """End ``pk`` in both rooms (each at most once); returns the ended view."""
    now = now_ms()
    scores = await read_scores(node, app, pk)
    last = None
    for room in pk["rooms"]:
        key = room_key(app, room)
        try:
            doc, _ = await node.transact(key, lambda d: rules.finish(d, pk["id"], scores, now, reason))
        except OpError as exc:
            if exc.code in ("not_open", "not_found"):  # ended already (here or by another node)
                continue
            raise
        last = doc.features["pk_last"]
        if room == pk["rooms"][0]:
            node.webhooks.emit(
                "pk.ended", key, {k: last[k] for k in ("id", "rooms", "scores", "winner", "reason")}
            )
    node.media.unlink_pk(app, pk)
    return last


async def read_scores(node: Node, app: str, pk: dict[str, Any]) -> dict[str, int]:
    """Points per room, keyed by the rooms' public ids (as ``pk.score`` shows them)."""
    name = rules.score_key(pk["id"])
    return {
        room: (await node.broker.accumulate(room_key(app, room), name, 0, NO_FLUSH_MS))[0]
        for room in pk["rooms"]
    }


# pk id -> (read at, scores): a join storm in a PK room reads the bus once per
# SCORE_INTERVAL_MS per node, not twice per join.
_recent_scores: PerNode[dict[str, tuple[int, dict[str, int]]]] = PerNode(dict)


async def current_pk_view(node: Node, app: str, doc: RoomDoc) -> dict[str, Any] | None:
    """The join snapshot's ``pk`` with the scores so far while the battle runs
    (the document's copy gets them only at the end): a late joiner sees the
    score bar at once, not at the next ``pk.score``."""
    view = doc.features.get("pk")
    if view is None or view.get("state") != rules.State.STARTED:
        return view
    recent = _recent_scores(node)
    now = now_ms()
    hit = recent.get(view["id"])
    if hit is None or now - hit[0] >= SCORE_INTERVAL_MS:
        hit = recent[view["id"]] = (now, await read_scores(node, app, view))
        for pk_id in [k for k, (at, _) in recent.items() if now - at >= 60_000]:
            del recent[pk_id]
    return {**view, "scores": hit[1]}


async def gift_sent(node: Node, room: str, doc: RoomDoc, value: int) -> None:
    """gift.send hook: a gift in a room that is in a running PK adds to its points."""
    pk = doc.features.get("pk")
    if pk is None or pk["state"] != rules.State.STARTED or now_ms() >= pk["ends_at"] or value <= 0:
        return
    await node.broker.accumulate(room, rules.score_key(pk["id"]), value, NO_FLUSH_MS)
    await publish_scores(node, app_of(room), pk)


async def publish_scores(node: Node, app: str, pk: dict[str, Any]) -> None:
    """``pk.score`` to both rooms when the scores changed, at most every 500 ms per PK."""
    if not node.local_gate("pk.score:" + pk["id"], SCORE_INTERVAL_MS):
        return
    scores = await read_scores(node, app, pk)
    value = msgspec.json.encode(scores).decode()
    first = room_key(app, pk["rooms"][0])
    if not await node.broker.gate(first, "pk.score:" + pk["id"], SCORE_INTERVAL_MS, value):
        return
    emit = Emit("pk.score", {"id": pk["id"], "scores": scores}, durable=False)
    for room in pk["rooms"]:
        await node.publish(room_key(app, room), [emit])


async def room_ended(node: Node, room: str) -> None:
    """room.end hook: a running PK ends with the show; a pending invitation is withdrawn."""
    doc = await node.room(room)
    if doc is None:
        return
    app = app_of(room)
    pk = doc.features.get("pk")
    if pk is not None and pk["state"] == rules.State.STARTED:
        await end_battle(node, app, pk, rules.EndReason.ROOM_ENDED)
    invitation = doc.features.get("pk_invite")
    if invitation is not None:
        await _withdraw(node, app, invitation, "pk.rejected", by_room=public_room(room))


@deadline
async def pk_deadline(node: Node, room: str, doc: RoomDoc, now: int) -> None:
    app = app_of(room)
    invitation = doc.features.get("pk_invite")
    if invitation is not None and invitation["expires_at"] <= now:
        await _withdraw(node, app, invitation, "pk.expired")
    # The battle may have been started or ended by another node: this node's media follows.
    node.media.sync_pk(app, doc)
    pk = doc.features.get("pk")
    if pk is None or pk["state"] != rules.State.STARTED:
        return
    if pk["ends_at"] <= now:
        await end_battle(node, app, pk, rules.EndReason.TIME)
        return
    await publish_scores(node, app, pk)
