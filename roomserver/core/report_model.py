"""The post-live report's shape: what ``GET /v1/rooms/{room}/report`` answers
(``Report``), its per-user table (``UserRow``) and a viewer's timeline
(``UserTimeline``). Plain values; every figure is defined and computed in
``core/report.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Audience(msgspec.Struct, frozen=True):
    peak_concurrent: int
    peak_at_s: float
    avg_concurrent: float
    unique_viewers: int
    views: int
    avg_watch_s: float
    new_viewers: int
    returning_viewers: int


class Engagement(msgspec.Struct, frozen=True):
    interacting_viewers: int
    interaction_rate: float
    barrage: int
    barrage_senders: int
    likes: int
    likers: int
    gifts: int
    gift_items: int
    gift_value: int
    gifters: int
    votes: int
    lottery_entries: int
    coupon_claims: int
    redpacket_grabs: int
    shares: int
    favorites: int
    follows: int


class FunnelStep(msgspec.Struct, frozen=True):
    step: str  # viewers | clicked | carted | ordered
    users: int
    rate: float | None  # ÷ the step before (null for the first, or after an empty step)


class Sales(msgspec.Struct, frozen=True):
    orders: int
    units: int
    gmv: int
    buyers: int
    avg_order_value: int
    gpm: int
    funnel: list[FunnelStep]


class Ranked(msgspec.Struct, frozen=True):
    user: str
    value: int  # cents
    count: int


class Perf(msgspec.Struct, frozen=True):
    clicks: int
    cart_adds: int
    orders: int
    units: int
    gmv: int
    clickers: int
    buyers: int
    conversion: float | None


class PinWindow(msgspec.Struct, frozen=True):
    start_s: float
    end_s: float
    during: Perf
    after: Perf


class ProductReport(msgspec.Struct, frozen=True):
    product: str
    pins: list[PinWindow]
    total: Perf


class Retention(msgspec.Struct, frozen=True):
    previous_show: int | None
    previous_viewers: int
    returned: int
    returned_rate: float | None
    previous_buyers: int
    returned_buyers: int
    repeat_buyers: int


class Curves(msgspec.Struct, frozen=True):
    minutes: int
    online: list[int]
    barrage: list[int]
    likes: list[int]
    orders: list[int]
    gmv: list[int]


class Mark(msgspec.Struct, frozen=True):
    t: float
    what: str
    id: str | None
    product: str | None


class Sharer(msgspec.Struct, frozen=True):
    user: str
    viewers: int
    new_viewers: int
    orders: int
    gmv: int
    shares: int


class UnansweredCluster(msgspec.Struct, frozen=True):
    cluster: str  # the assistant's cluster key, or the question itself when it had none
    questions: int  # unanswered questions of it in the show
    example: str  # one of them, as asked


class AssistantCounts(msgspec.Struct, frozen=True):
    questions: int
    answered: int
    unanswered: int
    # The show's most asked unanswered clusters, most questions first (reports kept
    # before this field have none).
    top_unanswered: list[UnansweredCluster] = []


class Report(msgspec.Struct, frozen=True):
    app: str
    room: str
    show: int
    title: str
    host: str
    started_at: int
    ended_at: int | None  # null: the show is live, figures up to ``until``
    until: int
    duration_s: float
    records: int
    audience: Audience
    engagement: Engagement
    sales: Sales
    top_gifters: list[Ranked]
    top_buyers: list[Ranked]
    products: list[ProductReport]
    retention: Retention
    curves: Curves
    marks: list[Mark]
    shares: list[Sharer]
    attributed_viewers: int
    assistant: AssistantCounts


class UserRow(msgspec.Struct, frozen=True):
    """One line of the per-user table (CSV ``table=users``)."""

    user: str
    first_join_s: float | None
    last_leave_s: float | None
    watch_s: float
    sessions: int
    new: bool
    ref: str | None
    barrage: int
    likes: int
    gifts: int
    gift_value: int
    clicks: int
    cart_adds: int
    orders: int
    gmv: int


class TimelineEntry(msgspec.Struct, frozen=True):
    t: float
    kind: str
    data: dict[str, Any]


class UserTimeline(msgspec.Struct, frozen=True):
    app: str
    room: str
    show: int
    user: str
    watch_s: float
    sessions: list[tuple[float, float]]
    entries: list[TimelineEntry]
