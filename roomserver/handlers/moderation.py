"""Moderation ops: mute, unmute, kick, slow mode, banned words."""

from __future__ import annotations

from typing import Annotated

import msgspec

from roomserver.auth import USER_ID_RE
from roomserver.core import room as rules
from roomserver.handlers import OpContext, op
from roomserver.protocol import OpError, now_ms

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class TargetParams(msgspec.Struct, forbid_unknown_fields=False):
    user: UserId
    duration_s: Annotated[int, msgspec.Meta(ge=0, le=rules.MAX_MUTE_S)] | None = None


async def _target(ctx: OpContext, user: str) -> None:
    if not USER_ID_RE.fullmatch(user):
        raise OpError("bad_request", "user must be a user id")
    rules.check_target(await ctx.node.require_room(ctx.room), actor=ctx.user, target=user)


@op("mod.mute", TargetParams, who="staff")
async def mute(ctx: OpContext, p: TargetParams) -> dict:
    await _target(ctx, p.user)
    now = now_ms()
    await ctx.node.transact(ctx.room, lambda d: rules.mute(d, p.user, now, p.duration_s))
    return {}


@op("mod.unmute", TargetParams, who="staff")
async def unmute(ctx: OpContext, p: TargetParams) -> dict:
    now = now_ms()
    await ctx.node.transact(ctx.room, lambda d: rules.unmute(d, p.user, now))
    return {}


@op("mod.kick", TargetParams, who="staff")
async def kick(ctx: OpContext, p: TargetParams) -> dict:
    await _target(ctx, p.user)
    now = now_ms()
    await ctx.node.transact(ctx.room, lambda d: rules.kick(d, p.user, now, p.duration_s, ctx.user))
    return {}


class SlowParams(msgspec.Struct, forbid_unknown_fields=False):
    interval_s: Annotated[int, msgspec.Meta(ge=0, le=300)]


@op("mod.slow", SlowParams, who="staff")
async def slow(ctx: OpContext, p: SlowParams) -> dict:
    await ctx.node.transact(ctx.room, lambda d: rules.slow(d, p.interval_s))
    return {}


Word = Annotated[str, msgspec.Meta(min_length=1, max_length=rules.MAX_WORD_LEN)]


class WordsParams(msgspec.Struct, forbid_unknown_fields=False):
    add: Annotated[list[Word], msgspec.Meta(max_length=rules.MAX_ROOM_WORDS)] = []
    remove: Annotated[list[Word], msgspec.Meta(max_length=rules.MAX_ROOM_WORDS)] = []


@op("mod.words", WordsParams, who="staff")
async def words(ctx: OpContext, p: WordsParams) -> dict:
    doc, _ = await ctx.node.transact(ctx.room, lambda d: rules.words(d, p.add, p.remove))
    return {"count": len(doc.words)}
