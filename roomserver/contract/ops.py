"""Every op's reply schema, next to the op registry (``roomserver.handlers.REGISTRY``)
that holds its params schema, role and rate-limit family.

``REPLIES`` is keyed by op name; tests/unit/test_contract.py fails when an op is
registered without a reply schema here (or a reply schema names no op), and the
gateway checks every reply against it when contract checks are on.
"""

from __future__ import annotations

from typing import Literal

from roomserver.contract import wire as w


class Pong(w.Wire):
    ts: int


class Snapshot(w.Wire):
    room: w.SnapshotRoom
    # Only when the join carried a valid ``ref`` (issue 12): "attributed" (this viewer's
    # first attribution in this show), "already" (attributed earlier in the show), "self".
    attribution: Literal["attributed", "already", "self"] | w.UnsetType = w.UNSET


class ShareLink(w.Wire):
    """A signed share link of the room naming the caller (``room.join {ref}``)."""

    ref: str
    # The server's viewer page opening the room with ``ref`` (a path: prefix the server's origin).
    url: str
    expires_at: int


class Resumed(w.Wire):
    replayed: int


class Started(w.Wire):
    room: w.RoomView


class Ended(w.Wire):
    summary: w.ShowSummary


class BarrageSent(w.Wire):
    # null with ``shed: true``: the room was over its barrage cap and dropped the message.
    seq: int | None
    shed: bool | w.UnsetType = w.UNSET


class GiftValue(w.Wire):
    value: int


class LotteryCreated(w.Wire):
    lottery: w.LotteryCreatedRef


class LotteryEntered(w.Wire):
    entered: bool


class LotteryDrawnReply(w.Wire):
    lottery: w.LotteryDrawn


class SaleCreated(w.Wire):
    sale: w.SaleView


class OrderPlaced(w.Wire):
    order: w.Order


class CouponIssuedReply(w.Wire):
    coupon: w.IdRef


class CouponClaimed(w.Wire):
    claim: w.ClaimRef


class PointsRedeemed(w.Wire):
    claim: w.ClaimRef
    points_left: int


class LayerChosen(w.Wire):
    layer: str  # "high" | "low": what the viewer gets now (after "auto": the estimate's)


class PacketSent(w.Wire):
    packet: w.IdRef


class Grabbed(w.Wire):
    amount_cents: int


class PollCreated(w.Wire):
    poll: w.PollRef


class WordCount(w.Wire):
    count: int


class CohostRequestedReply(w.Wire):
    request: w.Pending


class CohostInvitedReply(w.Wire):
    invite: w.Pending


class Cohosts(w.Wire):
    cohosts: list[w.Cohost]


class PkInvitedReply(w.Wire):
    pk: w.PkPending


class PkAccepted(w.Wire):
    pk: w.PkView


class PkEndedReply(w.Wire):
    # null when the battle had already ended (by the other host, or its time).
    pk: w.PkResult | None


class AssistantSet(w.Wire):
    assistant: w.AssistantSettings


class AssistantReplied(w.Wire):
    # null when the room shed it (over its barrage cap).
    seq: int | None


class AssistantMarkedWrong(w.Wire):
    key: str
    product: str | None
    threshold: float


REPLIES: dict[str, type[w.Wire]] = {
    "assistant.set": AssistantSet,
    "assistant.reply": AssistantReplied,
    "assistant.wrong": AssistantMarkedWrong,
    "ping": Pong,
    "room.join": Snapshot,
    "share.link": ShareLink,
    "room.leave": w.Empty,
    "room.resume": Resumed,
    "room.start": Started,
    "room.end": Ended,
    "room.announce": w.Empty,
    "barrage.send": BarrageSent,
    "like.send": w.Empty,
    "gift.send": GiftValue,
    "track": w.Empty,
    "product.pin": w.Empty,
    "product.unpin": w.Empty,
    "lottery.create": LotteryCreated,
    "lottery.enter": LotteryEntered,
    "lottery.draw": LotteryDrawnReply,
    "sale.create": SaleCreated,
    "sale.buy": OrderPlaced,
    "coupon.issue": CouponIssuedReply,
    "coupon.claim": CouponClaimed,
    "points.redeem": PointsRedeemed,
    "media.layer": LayerChosen,
    "redpacket.send": PacketSent,
    "redpacket.grab": Grabbed,
    "poll.create": PollCreated,
    "poll.vote": w.Empty,
    "mod.mute": w.Empty,
    "mod.unmute": w.Empty,
    "mod.kick": w.Empty,
    "mod.slow": w.Empty,
    "mod.words": WordCount,
    "cohost.request": CohostRequestedReply,
    "cohost.invite": CohostInvitedReply,
    "cohost.accept": Cohosts,
    "cohost.reject": w.Empty,
    "cohost.end": Cohosts,
    "pk.invite": PkInvitedReply,
    "pk.accept": PkAccepted,
    "pk.reject": w.Empty,
    "pk.end": PkEndedReply,
}
