"""The behaviour log's record: one thing one user did in one show (issue 12).

A show is one ``room.started`` → ``room.ended`` of a room (``RoomDoc.show``
counts them), so a record names ``app``, public ``room`` and ``show``; ``ts``
is wall time (unix ms) and ``show_ms`` the time since the show started (the
report and the per-user timeline are drawn in show seconds). Records are
written by the node that accepted the op, travel in batches through a bus
stream, and are stored by a writer that may see a batch twice (at-least-once
delivery): ``id`` is unique per record and the store ignores one it holds.

``data`` carries what the kind needs, always with these names:

==================  ==========================================================
kind                data
==================  ==========================================================
``join``            ``ref?`` (attributed sharer), ``new?``
``leave``           ``joined_at`` (wall ms of the matching join: the session)
``barrage``         ``seq?``, ``question?`` (the assistant took it as one)
``like``            ``count``
``gift``            ``gift``, ``count``, ``value`` (cents, the whole gift)
``vote``            ``poll``, ``option``
``track``           ``action`` (product.click, cart.add, share, favorite,
                    follow, unfollow), ``product?``
``lottery.enter``   ``lottery``
``coupon.claim``    ``coupon``
``redpacket.grab``  ``packet``, ``amount`` (cents)
``order``           ``order``, ``sale``, ``product``, ``qty``, ``amount``
                    (cents, price × qty)
``mark``            staff actions drawn on the report's curves: ``what``
                    (``pin``, ``unpin``, ``sale``, ``lottery``, ``poll``,
                    ``redpacket``, ``coupon``), ``id?``, ``product?``
``show.start``      ``title``, ``host``
``show.end``        (nothing)
``assistant``       ``question_seq``, ``answered``, ``cluster?``
==================  ==========================================================

Pure: no I/O. Encoding is msgspec JSON (one bus entry per batch).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

Kind = Literal[
    "join",
    "leave",
    "barrage",
    "like",
    "gift",
    "vote",
    "track",
    "lottery.enter",
    "coupon.claim",
    "redpacket.grab",
    "order",
    "mark",
    "show.start",
    "show.end",
    "assistant",
]
KINDS: Final[frozenset[str]] = frozenset(Kind.__args__)  # type: ignore[attr-defined]
TRACK_ACTIONS: Final = ("product.click", "cart.add", "share", "favorite", "follow", "unfollow")
MARKS: Final = ("pin", "unpin", "sale", "lottery", "poll", "redpacket", "coupon")
# An erased user's records stay under an id that names nobody and links to nothing (a new
# random one per erasure). "~" cannot start a user id (auth.USER_ID_RE), so no real user
# is ever taken for one; profiles and points are never kept for them.
ANONYMOUS_START: Final = "~"
ANONYMOUS_PREFIX: Final = ANONYMOUS_START + "erased-"
# What of a record's data outlives its user's erasure. The words they wrote are theirs (a
# barrage's text, kept for the replay; a question's text, and its cluster, which is the
# text when it has none); the counts the reports need are the show's. Kinds not listed carry no free text.
ERASED_KEEP: Final[dict[str, tuple[str, ...]]] = {
    "barrage": ("seq",),
    "assistant": ("question_seq", "answered", "host_answered"),
}


def erased_data(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of a ``kind`` record as it is kept once its user is erased."""
    keep = ERASED_KEEP.get(kind)
    return data if keep is None else {k: data[k] for k in keep if k in data}


class BehaviourEvent(msgspec.Struct, frozen=True, array_like=True):
    """One record. ``array_like``: a 10,000-record batch is a JSON array of
    arrays, not of objects repeating every field name."""

    id: str  # unique per record: "<node>-<boot>-<counter>"
    app: str
    room: str  # public room id
    show: int  # RoomDoc.show of the show it happened in (0: before any show)
    user: str
    kind: Kind
    ts: int  # wall time, unix ms
    show_ms: int  # ms since the show started (negative: before it started)
    data: dict[str, Any] = {}


_ENCODER: Final = msgspec.json.Encoder()
_BATCH_DECODER: Final = msgspec.json.Decoder(list[BehaviourEvent])


def encode_batch(events: list[BehaviourEvent]) -> bytes:
    return _ENCODER.encode(events)


def decode_batch(raw: bytes) -> list[BehaviourEvent]:
    """Raises ``msgspec.ValidationError`` / ``DecodeError`` on a malformed batch."""
    return _BATCH_DECODER.decode(raw)


def show_ms(started_at: int | None, ts: int) -> int:
    """Time into the show; 0 for a room that never started (pre-show activity)."""
    return ts - started_at if started_at is not None else 0
