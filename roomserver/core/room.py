"""The room document and its pure transitions.

A room's shared state is one small document (``RoomDoc``) stored by the bus with
a version. Handlers load it, call a transition here, and commit the new
document together with the events the transition returns in one atomic step
(``Broker.commit`` with ``expect_version``); on a version conflict they reload
and re-apply. So every rule below is plain Python, tested without I/O, and
holds identically on both bus backends.

State machine (one way, except that an ended room may go live again as a new
show):  idle ──start──► live ──end──► ended ──start──► live …
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from roomserver.protocol import OpError

if TYPE_CHECKING:
    from roomserver.auth import Identity

RoomState = Literal["idle", "live", "ended"]
RoomMode = Literal["live", "call"]
ROOM_ID_MAX = 64
TITLE_MAX = 100
MAX_MUTE_S = 30 * 24 * 3600


class Product(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    title: str
    price_cents: int
    image: str | None = None


class RoomDoc(msgspec.Struct, omit_defaults=True):
    id: str
    title: str = ""
    mode: RoomMode = "live"
    state: RoomState = "idle"
    host: str | None = None
    created_at: int = 0
    scheduled_at: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    show: int = 0  # number of times the room went live: a show id within the room
    barrage_cap: int = 100
    slow_s: int = 0
    pinned: Product | None = None
    # user -> until (unix ms); 0 = until lifted.
    mutes: dict[str, int] = {}
    kicks: dict[str, int] = {}
    words: list[str] = []
    # Extension point for features that keep small state in the room (lottery,
    # sale, poll, pk, cohosts, publishers, announcement): name -> wire view.
    features: dict[str, Any] = {}


_doc_decoder = msgspec.json.Decoder(RoomDoc)
_encoder = msgspec.json.Encoder()


def decode_doc(raw: bytes) -> RoomDoc:
    return _doc_decoder.decode(raw)


def encode_doc(doc: RoomDoc) -> bytes:
    return _encoder.encode(doc)


@dataclass(slots=True, frozen=True)
class Emit:
    """An event a transition asks to publish (the handler encodes it)."""

    ev: str
    data: dict[str, Any]
    durable: bool = True
    audience: str = ""
    close_code: int = 0


# Times are unix milliseconds and cross into JavaScript clients: a time a client may
# set is in the future, at most this far ahead, which also keeps it exact as a JS number.
MAX_AHEAD_MS: Final = 366 * 24 * 3600 * 1000
# A scheduled time is only listed (a past one is simply not upcoming): it need only be exact in JS.
JS_MAX_SAFE_INTEGER: Final = 2**53 - 1


def check_future_time(name: str, value: int, now: int) -> None:
    if not now < value <= now + MAX_AHEAD_MS:
        raise OpError("bad_request", f"{name} must be a future unix time in ms, at most 366 days ahead")


def new_room(
    room_id: str,
    now: int,
    *,
    title: str = "",
    mode: RoomMode = "live",
    barrage_cap: int = 100,
    scheduled_at: int | None = None,
) -> RoomDoc:
    validate_room_id(room_id)
    if len(title) > TITLE_MAX:
        raise OpError("bad_request", f"title must be at most {TITLE_MAX} chars")
    if mode not in ("live", "call"):
        raise OpError("bad_request", "mode must be live or call")
    if not 1 <= barrage_cap <= 100_000:
        raise OpError("bad_request", "barrage_cap must be between 1 and 100000")
    if scheduled_at is not None and not 0 <= scheduled_at <= JS_MAX_SAFE_INTEGER:
        raise OpError("bad_request", "scheduled_at must be a unix time in ms within 0..2^53-1")
    return RoomDoc(
        id=room_id,
        title=title,
        mode=mode,
        created_at=now,
        barrage_cap=barrage_cap,
        scheduled_at=scheduled_at,
    )


def validate_room_id(room_id: str) -> None:
    from roomserver.auth import USER_ID_RE  # same alphabet as user ids

    if not isinstance(room_id, str) or not USER_ID_RE.fullmatch(room_id) or len(room_id) > ROOM_ID_MAX:
        raise OpError("bad_request", "room id must be 1..64 chars of [A-Za-z0-9_.:@-]")


def start(doc: RoomDoc, host: str, now: int, title: str | None) -> tuple[RoomDoc, list[Emit]]:
    if doc.state == "live":
        raise OpError("conflict", "the room is already live")
    if title is not None and len(title) > TITLE_MAX:
        raise OpError("bad_request", f"title must be at most {TITLE_MAX} chars")
    doc = msgspec.structs.replace(
        doc,
        state="live",
        host=host,
        title=doc.title if title is None else title,
        started_at=now,
        ended_at=None,
        show=doc.show + 1,
    )
    return doc, [
        Emit("room.started", {"title": doc.title, "host": host, "started_at": now, "show": doc.show})
    ]


def end(doc: RoomDoc, now: int, summary: dict[str, Any]) -> tuple[RoomDoc, list[Emit]]:
    if doc.state != "live":
        raise OpError("conflict", "the room is not live")
    doc = msgspec.structs.replace(doc, state="ended", ended_at=now, pinned=None)
    return doc, [Emit("room.ended", {"summary": summary})]


def pin(doc: RoomDoc, product: Product) -> tuple[RoomDoc, list[Emit]]:
    validate_product(product)
    doc = msgspec.structs.replace(doc, pinned=product)
    return doc, [Emit("product.pinned", {"product": msgspec.to_builtins(product)})]


def unpin(doc: RoomDoc, product_id: str | None) -> tuple[RoomDoc, list[Emit]]:
    if doc.pinned is None:
        raise OpError("not_found", "no product is pinned")
    if product_id is not None and product_id != doc.pinned.id:
        raise OpError("not_found", f"product {product_id} is not the pinned one")
    unpinned = doc.pinned
    doc = msgspec.structs.replace(doc, pinned=None)
    return doc, [Emit("product.unpinned", {"product": {"id": unpinned.id}})]


def validate_product(p: Product) -> None:
    if not 1 <= len(p.id) <= 64:
        raise OpError("bad_request", "product.id must be 1..64 chars")
    if not 1 <= len(p.title) <= 200:
        raise OpError("bad_request", "product.title must be 1..200 chars")
    if not 0 <= p.price_cents <= 10**10:
        raise OpError("bad_request", "product.price_cents must be between 0 and 10^10")
    if p.image is not None and len(p.image) > 1000:
        raise OpError("bad_request", "product.image must be at most 1000 chars")


# -- moderation ---------------------------------------------------------------


def _until(now: int, duration_s: int | None) -> int:
    if duration_s is None or duration_s == 0:
        return 0
    if not 1 <= duration_s <= MAX_MUTE_S:
        raise OpError("bad_request", f"duration_s must be between 1 and {MAX_MUTE_S}")
    return now + duration_s * 1000


def is_restricted(table: dict[str, int], user: str, now: int) -> bool:
    until = table.get(user)
    return until is not None and (until == 0 or until > now)


def _prune(table: dict[str, int], now: int) -> dict[str, int]:
    return {u: t for u, t in table.items() if t == 0 or t > now}


def check_admitted(doc: RoomDoc, identity: Identity, now: int) -> None:
    """Whether ``identity`` may join (or resume in) the room: its token admits the
    room, and it is staff or not kicked (``forbidden`` otherwise)."""
    if not identity.admits(doc.id):
        raise OpError("forbidden", f"this token admits room {identity.room} only")
    if not identity.is_staff and is_restricted(doc.kicks, identity.user, now):
        raise OpError("forbidden", "you were removed from this room")


def check_target(doc: RoomDoc, *, actor: str, target: str) -> None:
    """Whom staff may mute or kick: not themselves, not the room's host."""
    if target == actor:
        raise OpError("forbidden", "you cannot do this to yourself")
    if target == doc.host:
        raise OpError("forbidden", "the room's host cannot be muted or kicked")


def mute(doc: RoomDoc, user: str, now: int, duration_s: int | None) -> tuple[RoomDoc, list[Emit]]:
    until = _until(now, duration_s)
    mutes = _prune(doc.mutes, now)
    mutes[user] = until
    doc = msgspec.structs.replace(doc, mutes=mutes)
    return doc, [Emit("user.muted", {"user": user, "until": until or None})]


def unmute(doc: RoomDoc, user: str, now: int) -> tuple[RoomDoc, list[Emit]]:
    if not is_restricted(doc.mutes, user, now):
        raise OpError("not_found", f"user {user} is not muted")
    mutes = _prune(doc.mutes, now)
    mutes.pop(user, None)
    return msgspec.structs.replace(doc, mutes=mutes), [Emit("user.unmuted", {"user": user})]


def kick(doc: RoomDoc, user: str, now: int, duration_s: int | None, by: str) -> tuple[RoomDoc, list[Emit]]:
    from roomserver.bus.base import audience_user
    from roomserver.protocol import CLOSE_KICKED

    # A kick without duration bars the user for an hour: kicked viewers come back
    # otherwise at once, which is not what a host pressing "kick" expects.
    until = _until(now, duration_s if duration_s else 3600)
    kicks = _prune(doc.kicks, now)
    kicks[user] = until
    doc = msgspec.structs.replace(doc, kicks=kicks)
    return doc, [
        Emit(
            "kicked",
            {"user": user, "by": by, "until": until},
            durable=False,
            audience=audience_user(user),
            close_code=CLOSE_KICKED,
        )
    ]


def slow(doc: RoomDoc, interval_s: int) -> tuple[RoomDoc, list[Emit]]:
    if not 0 <= interval_s <= 300:
        raise OpError("bad_request", "interval_s must be between 0 and 300")
    doc = msgspec.structs.replace(doc, slow_s=interval_s)
    return doc, [Emit("room.updated", {"slow_s": interval_s})]


MAX_ROOM_WORDS = 1000
MAX_WORD_LEN = 50


def words(doc: RoomDoc, add: list[str], remove: list[str]) -> tuple[RoomDoc, list[Emit]]:
    from roomserver.core.moderation import normalize

    for w in (*add, *remove):
        if not 1 <= len(w) <= MAX_WORD_LEN or not normalize(w).strip():
            raise OpError("bad_request", f"words must be 1..{MAX_WORD_LEN} chars of visible text")
    current = dict.fromkeys(doc.words)
    for w in remove:
        current.pop(normalize(w), None)
    for w in add:
        current[normalize(w)] = None
    if len(current) > MAX_ROOM_WORDS:
        raise OpError("limit_reached", f"a room may have at most {MAX_ROOM_WORDS} banned words")
    return msgspec.structs.replace(doc, words=list(current)), []


def with_settings(doc: RoomDoc, **changes: Any) -> tuple[RoomDoc, list[Emit]]:
    """The room's REST settings (`record`, `playback`) changed; a changed `playback` is
    announced (`room.playback`) so pages already open switch between WebRTC and the HLS."""
    before = doc.features.get("playback")
    doc = with_features(doc, **changes)
    after = doc.features.get("playback")
    return doc, [Emit("room.playback", {"playback": after})] if after != before else []


def with_features(doc: RoomDoc, **changes: Any) -> RoomDoc:
    """A copy of ``doc`` with feature entries set, or removed where the value is None."""
    features = dict(doc.features)
    for key, value in changes.items():
        if value is None:
            features.pop(key, None)
        else:
            features[key] = value
    return msgspec.structs.replace(doc, features=features)


def snapshot(doc: RoomDoc, *, online: int, likes: int, seq: int, epoch: str, gifts: list) -> dict[str, Any]:
    """The ``room.join`` snapshot (PROTOCOL §3)."""
    f = doc.features
    return {
        "room": {
            "id": doc.id,
            "title": doc.title,
            "mode": doc.mode,
            "state": doc.state,
            "host": doc.host,
            "online": online,
            "likes": likes,
            "seq": seq,
            "epoch": epoch,
            "pinned": msgspec.to_builtins(doc.pinned) if doc.pinned else None,
            "lottery": f.get("lottery"),
            "sale": f.get("sale"),
            "pk": f.get("pk"),
            "cohosts": f.get("cohosts", []),
            "publishers": f.get("publishers", []),
            "gifts": gifts,
            "slow_s": doc.slow_s,
            "started_at": doc.started_at,
            # issue 12 (share): the next show, for the viewer page's countdown card.
            "scheduled_at": doc.scheduled_at,
            "announcement": f.get("announcement"),
            "poll": f.get("poll"),
            # issue 14: "hls" when viewers are to play the live HLS rather than WebRTC.
            "playback": f.get("playback"),
        }
    }


def public_view(doc: RoomDoc) -> dict[str, Any]:
    """The REST view of a room."""
    return {
        "id": doc.id,
        "title": doc.title,
        "mode": doc.mode,
        "state": doc.state,
        "host": doc.host,
        "created_at": doc.created_at,
        "scheduled_at": doc.scheduled_at,
        "started_at": doc.started_at,
        "ended_at": doc.ended_at,
        "barrage_cap": doc.barrage_cap,
        "slow_s": doc.slow_s,
    }
