"""``media.layer`` (PROTOCOL §3, issue 14): a viewer pins the quality layer it gets of a
layered publisher's video (``high``/``low``), or hands the choice back to the server's
estimate (``auto``). It acts on the caller's WHEP sessions of that publisher in the room
held by this node's media, or else by another node's (``StageMedia.set_layer``,
media_peers.py): ``not_found`` if there are none anywhere (not playing it, or the
publisher sends no layers).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from roomserver.handlers import OpContext, op

LayerChoice = Literal["high", "low", "auto"]


class LayerParams(msgspec.Struct, forbid_unknown_fields=False):
    publisher: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    layer: LayerChoice


@op("media.layer", LayerParams)
async def media_layer(ctx: OpContext, p: LayerParams) -> dict:
    return {"layer": await ctx.node.media.set_layer(ctx.room, ctx.user, p.publisher, p.layer)}
