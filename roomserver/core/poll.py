"""Polls and announcements (pure).

A poll's definition and state live in the room document (``features["poll"]``,
one open poll at a time); its votes are a bus tally (one vote per user,
counted atomically) because thousands of viewers vote within seconds and must
not serialise on the room document.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import msgspec

from roomserver.core.room import Emit, RoomDoc, check_future_time, with_features
from roomserver.protocol import OpError

MIN_DURATION_MS = 5_000
MAX_DURATION_MS = 24 * 3600 * 1000
ANNOUNCE_MAX = 500


class PollParams(msgspec.Struct, forbid_unknown_fields=False):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    options: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=50)]],
        msgspec.Meta(min_length=2, max_length=6),
    ]
    duration_ms: Annotated[int, msgspec.Meta(ge=MIN_DURATION_MS, le=MAX_DURATION_MS)]


class VoteParams(msgspec.Struct, forbid_unknown_fields=False):
    poll: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    option: Annotated[int, msgspec.Meta(ge=0, le=5)]


class AnnounceParams(msgspec.Struct, forbid_unknown_fields=False):
    text: Annotated[str, msgspec.Meta(max_length=ANNOUNCE_MAX)]
    countdown_to: Annotated[int, msgspec.Meta(ge=0)] | None = None


def tally_key(poll_id: str) -> str:
    return "poll:" + poll_id


def open_poll(
    doc: RoomDoc, p: PollParams, now: int, poll_id: str | None = None
) -> tuple[RoomDoc, list[Emit]]:
    if any(not o.strip() for o in p.options) or not p.question.strip():
        raise OpError("bad_request", "question and options must not be blank")
    if len(set(p.options)) != len(p.options):
        raise OpError("bad_request", "options must be distinct")
    current = doc.features.get("poll")
    if current is not None and current["state"] == "open" and current["closes_at"] > now:
        raise OpError("conflict", "a poll is already open; close it first")
    poll = {
        "id": poll_id or "p-" + secrets.token_hex(5),
        "question": p.question,
        "options": list(p.options),
        "closes_at": now + p.duration_ms,
        "state": "open",
        "counts": [0] * len(p.options),
    }
    return with_features(doc, poll=poll), [Emit("poll.opened", poll)]


def check_vote(doc: RoomDoc, p: VoteParams, now: int) -> dict[str, Any]:
    poll = doc.features.get("poll")
    if poll is None or poll["id"] != p.poll:
        raise OpError("not_found", f"no poll {p.poll} in this room")
    if poll["state"] != "open" or poll["closes_at"] <= now:
        raise OpError("not_open", "the poll is closed")
    if p.option >= len(poll["options"]):
        raise OpError("bad_request", f"option must be 0..{len(poll['options']) - 1}")
    return poll


def counts_list(poll: dict[str, Any], tally: dict[str, int]) -> list[int]:
    return [int(tally.get(str(i), 0)) for i in range(len(poll["options"]))]


def close_poll(doc: RoomDoc, poll_id: str, tally: dict[str, int]) -> tuple[RoomDoc, list[Emit]]:
    poll = doc.features.get("poll")
    if poll is None or poll["id"] != poll_id or poll["state"] != "open":
        raise OpError("not_open", "the poll is not open")
    closed = {**poll, "state": "closed", "counts": counts_list(poll, tally)}
    return with_features(doc, poll=closed), [Emit("poll.closed", {"id": poll_id, "counts": closed["counts"]})]


def announce(doc: RoomDoc, p: AnnounceParams, now: int) -> tuple[RoomDoc, list[Emit]]:
    if p.countdown_to is not None:
        check_future_time("countdown_to", p.countdown_to, now)
    data = {"text": p.text, "countdown_to": p.countdown_to}
    # An empty text clears the pinned announcement.
    return with_features(doc, announcement=data if p.text else None), [Emit("room.announcement", data)]
