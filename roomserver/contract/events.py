"""The event registry: every event the server emits, with its ``data`` schema.

Keyed by event name. ``durable`` events carry ``seq`` and are replayed on resume;
``audience`` says who receives it ("room": every member; "staff": the room's host
and moderators; "user": one user; "staff+user": both). Events named
``custom.<ev>`` are an app's own (``POST /v1/rooms/{room}/events``): their data
is the app's.

Node.drafts (the one place events are encoded) checks every event against this
registry when contract checks are on (``roomserver.contract.check``), so an
event type emitted without an entry here fails the tests that emit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from roomserver.contract import wire as w

Audience = Literal["room", "staff", "user", "staff+user"]
CUSTOM_PREFIX = "custom."


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    data: type[w.Wire]
    durable: bool
    audience: Audience
    doc: str


class Barrage(w.Wire):
    id: str
    user: w.UserRef
    text: str
    cid: str | None


class Likes(w.Wire):
    total: int
    delta: int


class Online(w.Wire):
    count: int


class GiftSent(w.Wire):
    user: w.UserRef
    gift: w.Gift
    count: int
    value: int


class MemberJoined(w.Wire):
    user: w.UserRef


class RoomStarted(w.Wire):
    title: str
    host: str
    started_at: int
    show: int


class RoomEnded(w.Wire):
    summary: w.ShowSummary


class RoomUpdated(w.Wire):
    slow_s: int


class RoomPlayback(w.Wire):
    playback: Literal["hls"] | None


class ProductPinned(w.Wire):
    product: w.Product


class ProductUnpinned(w.Wire):
    product: w.ProductRef


class UserMuted(w.Wire):
    user: str
    until: int | None


class UserUnmuted(w.Wire):
    user: str


class Kicked(w.Wire):
    user: str
    by: str
    until: int


class SaleStock(w.Wire):
    id: str
    left: int


class SaleClosed(w.Wire):
    id: str
    sold: int
    reason: w.SaleCloseReason


class OrderCreated(w.Wire):
    order: w.Order


class RedpacketFinished(w.Wire):
    id: str
    best: w.BestGrab | None


class PollCounts(w.Wire):
    id: str
    counts: list[int]


class CohostRequested(w.Wire):
    id: str
    user: w.UserRef
    expires_at: int


class CohostInvited(w.Wire):
    id: str
    user: w.UserId
    by: w.UserRef
    expires_at: int


class CohostRejected(w.Wire):
    id: str
    kind: w.PendingKind
    user: w.UserId
    by: w.UserRef


class CohostExpired(w.Wire):
    id: str
    kind: w.PendingKind
    user: w.UserId


class CohostUpdated(w.Wire):
    cohosts: list[w.Cohost]


class PkInvited(w.Wire):
    id: str
    rooms: list[str]
    from_room: str
    to_room: str
    by: w.UserRef
    duration_s: int
    expires_at: int


class PkWithdrawn(w.Wire):
    id: str
    rooms: list[str]
    # The room whose host declined (absent when the invitation expired).
    by_room: str | w.UnsetType = w.UNSET


class PkStarted(w.Wire):
    id: str
    rooms: list[str]
    hosts: dict[str, str]
    started_at: int
    ends_at: int
    duration_s: int


class PkScore(w.Wire):
    id: str
    scores: dict[str, int]


class PkEnded(w.Wire):
    id: str
    rooms: list[str]
    scores: dict[str, int]
    winner: str | None
    reason: w.PkEndReason


class MediaPublishers(w.Wire):
    publishers: list[w.Publisher]


class AssistantQuestions(w.Wire):
    clusters: list[w.QuestionCluster]


class ReportReady(w.Wire):
    show: int
    url: str  # the report's path: GET it with an admin token (format=html for the page)
    unique_viewers: int
    peak_concurrent: int
    orders: int
    gmv: int


class Custom(w.Wire, forbid_unknown_fields=False):
    """An app's own event: any JSON object."""


def _spec(
    name: str, data: type[w.Wire], durable: bool, audience: Audience, doc: str
) -> tuple[str, EventSpec]:
    return name, EventSpec(name, data, durable, audience, doc)


EVENTS: dict[str, EventSpec] = dict(
    [
        _spec("barrage", Barrage, True, "room", "a chat message (shed beyond the room's barrage cap)"),
        _spec("likes", Likes, False, "room", "likes so far and since the last one (at most 1/s)"),
        _spec("online", Online, False, "room", "members online (at most every 2 s, when changed)"),
        _spec("gift", GiftSent, True, "room", "a gift was sent"),
        _spec("member.joined", MemberJoined, False, "room", "a member joined (sampled in big rooms)"),
        _spec("room.started", RoomStarted, True, "room", "the show started"),
        _spec("room.ended", RoomEnded, True, "room", "the show ended"),
        _spec("room.updated", RoomUpdated, True, "room", "room settings changed (slow mode)"),
        _spec(
            "room.playback",
            RoomPlayback,
            True,
            "room",
            "issue 14: the room's `playback` changed; viewer pages switch to the live HLS or back to WebRTC",
        ),
        _spec("room.announcement", w.Announcement, True, "room", "the pinned announcement changed"),
        _spec("product.pinned", ProductPinned, True, "room", "a product is pinned"),
        _spec("product.unpinned", ProductUnpinned, True, "room", "the pinned product was removed"),
        _spec("user.muted", UserMuted, True, "room", "a user was muted (`until` null: until lifted)"),
        _spec("user.unmuted", UserUnmuted, True, "room", "a user's mute was lifted"),
        _spec("kicked", Kicked, False, "user", "you were kicked; the socket closes with 4003"),
        _spec("lottery.opened", w.LotteryOpened, True, "room", "a lottery opened"),
        _spec("lottery.drawn", w.LotteryDrawn, True, "room", "a lottery was drawn"),
        _spec("sale.opened", w.SaleView, True, "room", "a flash sale was created"),
        _spec("sale.stock", SaleStock, False, "room", "stock left (at most 4/s)"),
        _spec("sale.closed", SaleClosed, True, "room", "a flash sale closed"),
        _spec("order.created", OrderCreated, False, "staff", "an order was placed"),
        _spec("coupon.issued", w.CouponIssued, True, "room", "a coupon was issued"),
        _spec("redpacket.sent", w.RedpacketSent, True, "room", "a red packet was sent"),
        _spec(
            "redpacket.finished", RedpacketFinished, True, "room", "every share of a red packet is grabbed"
        ),
        _spec("poll.opened", w.Poll, True, "room", "a poll opened"),
        _spec("poll.results", PollCounts, False, "room", "vote counts so far (at most 1/s)"),
        _spec("poll.closed", PollCounts, True, "room", "a poll closed with its final counts"),
        _spec("cohost.requested", CohostRequested, False, "staff", "a viewer asks to co-host"),
        _spec("cohost.invited", CohostInvited, False, "user", "you are invited to co-host"),
        _spec("cohost.rejected", CohostRejected, False, "staff+user", "a request or invitation was declined"),
        _spec("cohost.expired", CohostExpired, False, "staff+user", "a request or invitation expired"),
        _spec("cohost.updated", CohostUpdated, True, "room", "the co-host list changed"),
        _spec("pk.invited", PkInvited, False, "staff", "another room invites this one to a PK"),
        _spec("pk.rejected", PkWithdrawn, False, "staff", "a PK invitation was declined or withdrawn"),
        _spec("pk.expired", PkWithdrawn, False, "staff", "a PK invitation expired"),
        _spec("pk.started", PkStarted, True, "room", "a PK battle started (both rooms)"),
        _spec("pk.score", PkScore, False, "room", "PK points so far (at most 2/s)"),
        _spec("pk.ended", PkEnded, True, "room", "a PK battle ended (`winner` null: a draw)"),
        _spec("media.publishers", MediaPublishers, True, "room", "the streams to show changed"),
        _spec(
            "assistant.answer",
            w.AssistantAnswer,
            True,
            "room",
            "the room assistant (or the host) answers a question: to the asker, or room-wide (`to` null)",
        ),
        _spec(
            "assistant.questions",
            AssistantQuestions,
            False,
            "staff",
            "what the audience asked in the last minute, clustered (at most 1/s)",
        ),
        _spec(
            "assistant.settings", w.AssistantSettings, True, "room", "the room's assistant settings changed"
        ),
        _spec(
            "report.ready",
            ReportReady,
            False,
            "staff",
            "the ended show's post-live report is computed (within 5 s of room.ended), with headline figures",
        ),
    ]
)


def event_spec(name: str) -> EventSpec | None:
    """The registry entry of event ``name`` (``custom.*`` share one)."""
    spec = EVENTS.get(name)
    if spec is None and name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
        return CUSTOM
    return spec


CUSTOM = EventSpec("custom.*", Custom, True, "room", "an app's own event (server API)")


def data_type(name: str) -> type[Any] | None:
    spec = event_spec(name)
    return None if spec is None else spec.data
