"""Share attribution (转发有礼, issue 12): ``share.link`` signs a link for the caller,
and ``room.join {ref}`` attributes the joining viewer to the sharer once per show.

Attribution is a bus tally (``share:<show>``: one entry per viewer, its option the
sharer), so the first valid ref a viewer joins with in a show wins on every node at
once; later joins of that viewer in that show (any node, any ref) change nothing.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlencode

from roomserver.bus.base import TallyStatus
from roomserver.core import share
from roomserver.core.room import RoomDoc
from roomserver.handlers import OpContext, op
from roomserver.protocol import OpError, now_ms

# An attribution outlives any show (the tally is per show number, so a new show starts
# afresh); it also keeps the room from idle expiry that long, so not much longer.
ATTRIBUTION_TTL_MS: Final = 3 * 24 * 3600 * 1000

# How a join with a valid ref ended: "attributed" (this viewer's first in this show:
# the join's behaviour record carries ``ref``), "already" (attributed earlier in this
# show, to whoever was first), "self" (the viewer's own link: never counted).
Attribution = Literal["attributed", "already", "self"]


def check_ref(ctx: OpContext, ref: str) -> str:
    """The sharer named by ``ref`` for this room, or ``bad_request`` saying why not
    (forged, damaged, expired, another room or app): checked before the join changes anything."""
    secret = ctx.node.config.app_secrets().get(ctx.app)
    if secret is None:  # the token verified, so the app is known; defensive only
        raise OpError("bad_request", share.REASON_TEXT["forged"])
    try:
        return share.verify_ref(secret, ref, app=ctx.app, room=ctx.room_id, now_ms=now_ms())
    except share.RefError as err:
        raise OpError("bad_request", str(err)) from None


async def attribute(ctx: OpContext, sharer: str, doc: RoomDoc) -> tuple[Attribution, str | None]:
    """Attribute the caller's join to ``sharer`` unless it is their own link or they were
    attributed already in this show. Returns how it ended and the sharer to record (or None)."""
    if sharer == ctx.user:
        return "self", None
    result = await ctx.node.broker.tally(
        ctx.room, share.attribution_key(doc.show), ctx.user, sharer, ATTRIBUTION_TTL_MS
    )
    if result.status is TallyStatus.ADDED:
        return "attributed", sharer
    return "already", None


@op("share.link", joined=False)
async def share_link(ctx: OpContext, p: object) -> dict:
    """A signed link to this room naming the caller as the sharer: ``ref`` for
    ``room.join``, ``url`` (the server's viewer page with it), ``expires_at`` (ms)."""
    if not ctx.identity.admits(ctx.room_id):
        raise OpError("forbidden", f"this token admits room {ctx.identity.room} only")
    if await ctx.node.room(ctx.room) is None:
        raise OpError("not_found", f"room {ctx.room_id} does not exist")
    secret = ctx.node.config.app_secrets()[ctx.app]
    expires_at = now_ms() + ctx.node.config.share_link_ttl_s * 1000
    ref = share.mint_ref(secret, app=ctx.app, room=ctx.room_id, sharer=ctx.user, expires_at=expires_at)
    url = "/viewer.html?" + urlencode({"room": ctx.room_id, "ref": ref})
    return {"ref": ref, "url": url, "expires_at": expires_at}
