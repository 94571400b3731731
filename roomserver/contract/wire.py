"""The shapes that cross the wire: what op replies, events and REST answers carry.

Each is a msgspec Struct that forbids unknown fields, so a contract check (see
``roomserver.contract.check``) fails when the server sends a field the contract
does not name. A field with a default may be absent; ``UNSET`` marks one the
server omits (rather than sends as null) when it does not apply. Clients must
still ignore fields they do not know (PROTOCOL §2): the strictness is the
server's promise to itself, not a demand on clients.

The generator (``python -m roomserver.contract.generate``) turns these into
the TypeScript declarations, the Python SDK's typed methods, the OpenAPI
schemas and the reference tables of docs/protocol.md.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType


class Wire(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every contract shape."""


class Empty(Wire):
    """``{}``: the op succeeded and has nothing to report."""


# -- shared pieces ----------------------------------------------------------------------


class UserRef(Wire):
    """A user as other members see them."""

    id: str
    name: str
    tier: int


class UserId(Wire):
    """A user known only by id (an invitee before they answer)."""

    id: str
    name: str | UnsetType = UNSET
    tier: int | UnsetType = UNSET


class Product(Wire):
    id: str
    title: str
    price_cents: int
    image: str | UnsetType | None = UNSET


class ProductRef(Wire):
    id: str


class Gift(Wire):
    """A catalog entry (the join snapshot lists the catalog)."""

    id: str
    name: str
    value: int


class Track(Wire):
    kind: str
    codec: str
    # A video sent as quality layers (WHIP ``?layers=high,low``): what ``media.layer`` may ask.
    layers: list[Literal["high", "low"]] | UnsetType = UNSET


class Publisher(Wire):
    """An entry of ``media.publishers``: a stream a viewer of the room should show."""

    user: str
    role: Literal["host", "cohost", "pk", "call"]
    stream: str | UnsetType = UNSET
    tracks: list[Track] = []
    # A PK opponent's host: the room the stream comes from.
    room: str | UnsetType = UNSET


class Cohost(Wire):
    id: str
    name: str
    tier: int
    since: int


class Announcement(Wire):
    text: str
    countdown_to: int | None


class ShowSummary(Wire):
    show: int
    duration_s: int
    online: int
    likes: int


class RoomView(Wire):
    """A room as the REST API and ``room.start`` show it."""

    id: str
    title: str
    mode: Literal["live", "call"]
    state: Literal["idle", "live", "ended"]
    host: str | None
    created_at: int
    scheduled_at: int | None
    started_at: int | None
    ended_at: int | None
    barrage_cap: int
    slow_s: int


class RestRoomView(RoomView):
    """``RoomView`` plus the members online now (REST room answers) and whether its
    shows are recorded (null: the server's ``--record`` decides)."""

    online: int
    record: bool | None
    playback: Literal["hls"] | None  # issue 14: viewer pages play the live HLS (null: WebRTC)


class EventMessage(Wire):
    """An event as a client receives it: ``seq`` only for durable events."""

    ev: str
    room: str
    ts: int
    data: dict[str, Any]
    seq: int | UnsetType = UNSET


# -- commerce -----------------------------------------------------------------------------

SaleState = Literal["scheduled", "open", "closed"]
SaleCloseReason = Literal["sold_out", "ended", "cancelled"]


class SaleView(Wire):
    """``sale.opened`` data, the snapshot's ``sale`` and ``sale.create``'s reply."""

    id: str
    product: Product
    price_cents: int
    stock: int
    limit_per_user: int
    starts_at: int
    ends_at: int | None
    state: SaleState
    # Early access: members of this tier may buy ``early_ms`` before ``starts_at``.
    early_min_tier: int | UnsetType = UNSET
    early_ms: int | UnsetType = UNSET
    left: int | UnsetType = UNSET
    reason: SaleCloseReason | UnsetType = UNSET
    sold: int | UnsetType = UNSET


class Order(Wire):
    id: str
    sale: str
    user: str
    qty: int
    price_cents: int
    amount_cents: int
    cid: str
    ts: int


class SaleOrders(Wire):
    """``GET /v1/rooms/{room}/sales/{sale}/orders``: the reconciliation view."""

    sale: SaleView
    sold: int
    orders: list[Order]
    problems: list[str]


class LotteryOpened(Wire):
    id: str
    prize: str
    winners: int
    closes_at: int
    keyword: str | None
    min_watch_s: int
    min_tier: int
    seed_hash: str
    state: Literal["open"]


class LotteryDrawn(Wire):
    """A drawn lottery: ``winners`` is the list of ids, ``max_winners`` the prize count."""

    id: str
    prize: str
    winners: list[str]
    max_winners: int
    closes_at: int
    keyword: str | None
    min_watch_s: int
    min_tier: int
    seed_hash: str
    state: Literal["drawn"]
    entrants: int
    seed: str
    entrants_hash: str
    drawn_at: int | None


class LotteryView(Wire):
    """The snapshot's ``lottery``: ``LotteryOpened`` while open, ``LotteryDrawn`` after."""

    id: str
    prize: str
    winners: int | list[str]
    closes_at: int
    keyword: str | None
    min_watch_s: int
    min_tier: int
    seed_hash: str
    state: Literal["open", "drawn"]
    max_winners: int | UnsetType = UNSET
    entrants: int | UnsetType = UNSET
    seed: str | UnsetType = UNSET
    entrants_hash: str | UnsetType = UNSET
    drawn_at: int | UnsetType | None = UNSET


class LotteryAudit(Wire):
    """``GET /v1/rooms/{room}/lotteries/{id}``: what recomputing the draw needs."""

    id: str
    prize: str
    winners: int | list[str]
    closes_at: int
    keyword: str | None
    min_watch_s: int
    min_tier: int
    seed_hash: str
    state: Literal["open", "drawn"]
    entrants: list[str]
    entrants_count: int
    max_winners: int | UnsetType = UNSET
    seed: str | UnsetType = UNSET
    entrants_hash: str | UnsetType = UNSET
    drawn_at: int | UnsetType | None = UNSET


class CouponIssued(Wire):
    id: str
    title: str
    discount_cents: int
    min_spend_cents: int
    quantity: int
    per_user: int
    # Member-only: the lowest member tier that may claim it (absent: anyone).
    min_tier: int | UnsetType = UNSET


class RedpacketSent(Wire):
    id: str
    sender: str
    total_cents: int
    count: int
    message: str


class BestGrab(Wire):
    user: str
    amount_cents: int


class Poll(Wire):
    id: str
    question: str
    options: list[str]
    closes_at: int
    state: Literal["open", "closed"]
    counts: list[int]


# -- co-hosting and PK --------------------------------------------------------------------

PendingKind = Literal["request", "invite"]
PkEndReason = Literal["ended", "time", "room_ended", "cancelled"]


class PkView(Wire):
    """A running PK (snapshot's ``pk``, ``pk.accept``'s reply); ``scores`` so far in a snapshot."""

    id: str
    rooms: list[str]
    hosts: dict[str, str]
    state: Literal["started"]
    duration_s: int
    started_at: int
    ends_at: int
    scores: dict[str, int] | UnsetType = UNSET


class PkResult(Wire):
    """An ended PK (``pk.end``'s reply)."""

    id: str
    rooms: list[str]
    hosts: dict[str, str]
    state: Literal["ended"]
    scores: dict[str, int]
    winner: str | None
    reason: PkEndReason
    ended_at: int


class Pending(Wire):
    """A pending co-host request or invitation, as its reply names it."""

    id: str
    expires_at: int


class PkPending(Wire):
    id: str
    rooms: list[str]
    expires_at: int


class IdRef(Wire):
    id: str


class ClaimRef(Wire):
    id: str
    coupon: str


class LotteryCreatedRef(Wire):
    id: str
    seed_hash: str
    closes_at: int


class PollRef(Wire):
    id: str
    closes_at: int


class SnapshotRoom(Wire):
    id: str
    title: str
    mode: Literal["live", "call"]
    state: Literal["idle", "live", "ended"]
    host: str | None
    online: int
    likes: int
    seq: int
    epoch: str
    pinned: Product | None
    lottery: LotteryView | None
    sale: SaleView | None
    pk: PkView | None
    cohosts: list[Cohost]
    publishers: list[Publisher]
    gifts: list[Gift]
    slow_s: int
    started_at: int | None
    scheduled_at: int | None  # the next show (unix ms), issue 12
    announcement: Announcement | None
    poll: Poll | None
    playback: Literal["hls"] | None  # issue 14: play the live HLS, not WebRTC (null: WebRTC)
    # The last barrage events, oldest first (the same bytes members were sent).
    recent: list[EventMessage]


# -- REST answers -------------------------------------------------------------------------


class Health(Wire):
    ok: bool


class RoomReply(Wire):
    room: RestRoomView


class ReplayEntry(Wire):
    """One recording (issue 14): a publisher's file of a show; ``offset_s`` is where the
    file starts on the show's clock (seconds after ``show_started_at``)."""

    show: int
    file: str
    url: str
    user: str
    role: str
    codecs: dict[str, str]
    show_started_at: int
    started_at: int
    offset_s: float
    ended_at: int | None  # null while recording
    duration_s: float | None


class ReplayList(Wire):
    replays: list[ReplayEntry]


class ReplayBarrage(Wire):
    t: float  # seconds since the show started
    user: str
    text: str


class ReplayProduct(Wire):
    id: str
    title: str
    price_cents: int | None


class ReplayChapter(Wire):
    t: float
    product: ReplayProduct


class ReplayTimeline(Wire):
    """A show's barrage and product pins on its clock (GET …/replays/{show}/timeline);
    ``truncated`` when the show had more records than one answer carries."""

    show: int
    started_at: int
    barrage: list[ReplayBarrage]
    chapters: list[ReplayChapter]
    truncated: bool


class NodeEntry(Wire):
    """One live node (GET /v1/nodes): what it last announced on the bus."""

    node: str
    address: str | None
    sockets: int | None
    rooms: int | None
    media_viewers: int | None
    cpu: float | None
    draining: bool | None
    started_at: int | None
    announced_at: int | None
    expires_in_ms: int


class NodeList(Wire):
    nodes: list[NodeEntry]


class RoomPage(Wire):
    rooms: list[RestRoomView]
    next: str | None


class SchedulePage(Wire):
    shows: list[RoomView]
    next: str | None


class FollowerPage(Wire):
    """A room's followers (``track follow``), in user-id order, a page at a time (issue 12)."""

    followers: list[str]
    count: int  # all followers of the room
    next: str | None  # ``after`` of the next page; null on the last


class Published(Wire):
    seq: int


class HistoryPage(Wire):
    epoch: str
    seq: int
    events: list[EventMessage]


# -- the room assistant (docs/assistant.md) ------------------------------------------


class AssistantSettings(Wire):
    """The room's assistant settings (room document feature ``assistant``)."""

    enabled: bool | UnsetType = UNSET
    products: list[str] | UnsetType = UNSET


class AnswerTo(Wire):
    id: str
    name: str


class AssistantAnswer(Wire):
    # null: the whole room (many asked the same, or the host answered a cluster).
    to: AnswerTo | None
    question_seq: int | None
    text: str
    product: str | None
    # "faq", "fact", "llm", … or "host" for the host's one-click reply.
    source: str
    question: str | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET
    by: UserRef | UnsetType = UNSET


class QuestionCluster(Wire):
    text: str
    # The matched product and intent ("jacket:sizes"); null when nothing matched.
    key: str | None
    count: int  # questions in the cluster
    askers: int
    answered: int  # how many of them were answered
    seqs: list[int]  # the questions' seqs (the last 20)
