"""The room assistant's ops (PROTOCOL §7): settings, the host's reply, "wrong" marks.

The node carries the assistant only when ``create_app`` made one
(``node.assistant``); without it these ops answer ``bad_request``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from roomserver.handlers import OpContext, op
from roomserver.protocol import OpError

ProductIds = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=100)
]


def _assistant(ctx: OpContext) -> Any:
    assistant = getattr(ctx.node, "assistant", None)
    if assistant is None:
        raise OpError("bad_request", "the room assistant is off on this server (--assistant off)")
    return assistant


class SetParams(msgspec.Struct, forbid_unknown_fields=False):
    enabled: bool | None = None
    # The room's products (catalogue ids) besides the pinned one and those on sale.
    products: ProductIds | None = None


@op("assistant.set", SetParams, who="staff")
async def assistant_set(ctx: OpContext, p: SetParams) -> dict:
    from roomserver.assistant.service import settings_rule

    _assistant(ctx)
    if p.enabled is None and p.products is None:
        raise OpError("bad_request", "give enabled, products or both")
    doc, _ = await ctx.node.transact(ctx.room, settings_rule(p.enabled, p.products))
    return {"assistant": doc.features.get("assistant", {})}


class ReplyParams(msgspec.Struct, forbid_unknown_fields=False):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    # The cluster answered (its `key` in assistant.questions), if any.
    key: Annotated[str, msgspec.Meta(max_length=200)] | None = None


@op("assistant.reply", ReplyParams, who="staff")
async def assistant_reply(ctx: OpContext, p: ReplyParams) -> dict:
    assistant = _assistant(ctx)
    doc = await ctx.node.require_room(ctx.room)
    if ctx.node.words.for_room(ctx.room, doc.words).find(p.text) is not None:
        raise OpError("blocked_content", "the reply contains a blocked word")
    seq = await assistant.host_reply(ctx.room, p.key, p.text, ctx.identity.public())
    return {"seq": seq}


class FeedbackParams(msgspec.Struct, forbid_unknown_fields=False):
    question_seq: Annotated[int, msgspec.Meta(ge=1)]
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


@op("assistant.wrong", FeedbackParams, who="staff")
async def assistant_wrong(ctx: OpContext, p: FeedbackParams) -> dict:
    result: dict = await _assistant(ctx).mark_wrong(ctx.room, p.question_seq, ctx.user, p.note)
    return result
