"""Loyalty ops and the member tier the room enforces (issue 12).

The tier a tier-gated op checks (a sale's early access, a member-only coupon, a
lottery's ``min_tier``) is the higher of the token's ``tier`` claim (the app's
own membership) and the tier computed from the points in the store. The
computed one is read lazily, by the first gated op a socket makes, and kept on
the socket for ``TIER_TTL_MS``: a join storm costs the store nothing, a gated op
one primary-key read per socket per minute, and points earned during a show
count within a minute. A server API call (no socket) reads it each time.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Final

import msgspec

from roomserver.core.creation import Cid
from roomserver.handlers import OpContext, op
from roomserver.node import Node
from roomserver.protocol import OpError, now_ms
from roomserver.store.loyalty import LoyaltyStore

TIER_TTL_MS: Final = 60_000
_stores: weakref.WeakKeyDictionary[Node, LoyaltyStore] = weakref.WeakKeyDictionary()


def attach(node: Node, store: LoyaltyStore) -> None:
    """Give ``node``'s handlers the loyalty store (``server.create_app`` at startup)."""
    _stores[node] = store


def store_of(node: Node) -> LoyaltyStore | None:
    return _stores.get(node)


async def member_tier(ctx: OpContext) -> int:
    """The tier gated ops check: max(token ``tier``, computed tier)."""
    token_tier = ctx.identity.tier
    store = _stores.get(ctx.node)
    if store is None:
        return token_tier
    session, now = ctx.session, now_ms()
    if session is not None and session.computed_tier is not None:
        tier, at = session.computed_tier
        if now - at < TIER_TTL_MS:
            return max(token_tier, tier)
    tier = await store.tier(ctx.app, ctx.user)
    if session is not None:
        session.computed_tier = (tier, now)
    return max(token_tier, tier)


async def check_tier(ctx: OpContext, min_tier: int, what: str) -> None:
    """``forbidden`` unless the caller's tier reaches ``min_tier`` (free when it is 0
    or the token's claim already reaches it)."""
    if min_tier <= ctx.identity.tier:
        return
    if await member_tier(ctx) < min_tier:
        raise OpError("forbidden", f"member tier {min_tier} or higher is required to {what}")


RewardId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class RedeemParams(msgspec.Struct, forbid_unknown_fields=False):
    """``points.redeem`` params: a reward of the app's catalog, and the idempotency key."""

    reward: RewardId
    cid: Cid


@op("points.redeem", RedeemParams, joined=False, needs_room=False, family="buy")
async def points_redeem(ctx: OpContext, p: RedeemParams) -> dict:
    store = _stores.get(ctx.node)
    if store is None:
        raise OpError("unavailable", "points need the analytics store (this server runs --no-analytics)")
    return await store.redeem(ctx.app, ctx.user, p.reward, p.cid, now_ms())
