"""The loyalty REST answers (issue 12): profiles, segments, the reward catalog.
Shapes of ``roomserver.contract.wire`` kept in their own module."""

from __future__ import annotations

from msgspec import UNSET, UnsetType

from roomserver.contract.wire import Wire


class Interactions(Wire):
    """Interactions across shows by kind (one op = one: a like.send of 30 likes is one)."""

    total: int
    barrage: int
    like: int
    gift: int
    vote: int
    track: int
    lottery: int
    coupon: int
    redpacket: int


class Rfm(Wire):
    """RFM-style scores 1..5 (recency, frequency, monetary) and their sum."""

    r: int
    f: int
    m: int
    score: int


class Profile(Wire):
    user: str
    shows_attended: int
    watch_ms: int
    watch_minutes: int
    interactions: Interactions
    orders: int
    order_shows: int
    gmv_cents: int
    gift_value_cents: int
    referrals: int  # viewers new to the app who joined through this user's share link
    points: int  # balance: earned − spent
    points_earned: int
    points_spent: int
    first_seen: int | None
    last_seen: int | None
    last_order: int | None
    tier: int  # computed from points earned (the token's own tier is the app's)
    tags: list[str]
    rfm: Rfm


class ProfileReply(Wire):
    profile: Profile


class UserPage(Wire):
    """A page of a segment; ``next`` is the ``cursor`` of the next page (null: the last)."""

    users: list[Profile]
    next: str | None


class RewardCoupon(Wire):
    """The coupon a reward grants: the app's coupon id (what its shop redeems) and how it reads."""

    id: str
    title: str | UnsetType = UNSET
    discount_cents: int | UnsetType = UNSET
    min_spend_cents: int | UnsetType = UNSET


class Reward(Wire):
    id: str
    title: str
    cost: int  # points
    coupon: RewardCoupon
    updated_at: int


class RewardReply(Wire):
    reward: Reward


class RewardList(Wire):
    rewards: list[Reward]


class RewardDeleted(Wire):
    deleted: str
