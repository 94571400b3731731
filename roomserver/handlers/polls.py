"""Polls and announcements: poll.create, poll.vote, room.announce."""

from __future__ import annotations

import msgspec

from roomserver.bus.base import TallyStatus
from roomserver.core import poll as rules
from roomserver.core.room import Emit, RoomDoc
from roomserver.handlers import OpContext, deadline, op
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms

RESULTS_INTERVAL_MS = 1_000
# Votes are kept a while after the poll closes so late readers still see counts.
TALLY_TTL_MS = 24 * 3600 * 1000


@op("poll.create", rules.PollParams, who="staff")
async def create(ctx: OpContext, p: rules.PollParams) -> dict:
    now = now_ms()
    doc, _ = await ctx.node.transact(ctx.room, lambda d: rules.open_poll(d, p, now))
    poll = doc.features["poll"]
    ctx.node.behaviour.record(ctx.room, ctx.user, "mark", {"what": "poll", "id": poll["id"]})
    return {"poll": {"id": poll["id"], "closes_at": poll["closes_at"]}}


@op("poll.vote", rules.VoteParams)
async def vote(ctx: OpContext, p: rules.VoteParams) -> dict:
    node, room = ctx.node, ctx.room
    poll = rules.check_vote(await node.require_room(room), p, now_ms())
    res = await node.broker.tally(room, rules.tally_key(p.poll), ctx.user, str(p.option), TALLY_TTL_MS)
    if res.status == TallyStatus.EXISTS:
        raise OpError("conflict", "you already voted in this poll")
    if res.status == TallyStatus.CLOSED:
        raise OpError("not_open", "the poll is closed")
    node.behaviour.record(room, ctx.user, "vote", {"poll": p.poll, "option": p.option})
    await _maybe_publish_results(node, room, poll, res.counts)
    return {}


async def _maybe_publish_results(node: Node, room: str, poll: dict, tally: dict[str, int]) -> None:
    counts = rules.counts_list(poll, tally)
    if await node.broker.gate(
        room, "poll.results", RESULTS_INTERVAL_MS, msgspec.json.encode(counts).decode()
    ):
        await node.publish(room, [Emit("poll.results", {"id": poll["id"], "counts": counts}, durable=False)])


@deadline
async def poll_deadline(node: Node, room: str, doc: RoomDoc, now: int) -> None:
    poll = doc.features.get("poll")
    if poll is None or poll["state"] != "open":
        return
    key = rules.tally_key(poll["id"])
    if poll["closes_at"] <= now:
        await node.broker.tally_close(room, key)
        tally = await node.broker.tally_counts(room, key)
        await node.transact(room, lambda d: rules.close_poll(d, poll["id"], tally))
        return
    # Votes that arrived while the results gate was shut are published here.
    await _maybe_publish_results(node, room, poll, await node.broker.tally_counts(room, key))


@op("room.announce", rules.AnnounceParams, who="staff")
async def announce(ctx: OpContext, p: rules.AnnounceParams) -> dict:
    now = now_ms()
    await ctx.node.transact(ctx.room, lambda d: rules.announce(d, p, now))
    return {}
