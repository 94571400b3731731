"""Scheduled shows and their reminders (issue 12): pure rules, no I/O.

A room with ``scheduled_at`` gets ``room.reminder`` webhooks at the configured
offsets before it (``--reminder-offsets``, e.g. ``24h,10m``). Which one is due is
decided here; the reminder loop (``roomserver/reminders.py``) claims it on the
bus so every node agrees it was sent once.

The rule: at time ``now`` before the show, the due reminder is the one with the
SMALLEST offset whose time has come (``scheduled_at - offset <= now``). As time
passes the due offset only shrinks, so each offset is sent at most once and a
reminder whose moment passed unnoticed (a show booked 5 minutes ahead, every
node down for a while) is replaced by the nearest one, never sent as a burst.
Nothing is due once the show's time has come, nor for a live room.

A reminder is claimed under ``reminder_key(scheduled_at)``: a reschedule makes
a new key, so the new time's reminders are armed afresh and the old ones can no
longer fire (their ``scheduled_at`` is not the room's any more).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from roomserver.core.room import JS_MAX_SAFE_INTEGER, Emit, RoomDoc
from roomserver.protocol import OpError

DEFAULT_OFFSETS_MS: Final = (24 * 3600 * 1000, 10 * 60 * 1000)
MAX_OFFSETS: Final = 8
MAX_OFFSET_MS: Final = 30 * 24 * 3600 * 1000
_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """``"24h"``, ``"10m"``, ``"90s"``, ``"1.5s"``, ``"500ms"``, ``"2d"`` → ms."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 24h, 10m, 30s or 500ms")
    return round(float(m.group(1)) * _UNITS_MS[m.group(2)])


def parse_offsets(text: str) -> tuple[int, ...]:
    """``--reminder-offsets``: comma-separated durations (``24h,10m``), each 1 ms..30 d,
    at most 8, no duplicates; ``none`` (or empty) = no reminders. Largest first."""
    if text.strip().lower() in ("", "none", "off"):
        return ()
    offsets = [parse_duration_ms(part) for part in text.split(",")]
    if len(offsets) > MAX_OFFSETS:
        raise ValueError(f"at most {MAX_OFFSETS} reminder offsets")
    if len(set(offsets)) != len(offsets):
        raise ValueError("reminder offsets must differ")
    for ms in offsets:
        if not 1 <= ms <= MAX_OFFSET_MS:
            raise ValueError("a reminder offset must be between 1 ms and 30 days")
    return tuple(sorted(offsets, reverse=True))


def show_offsets(value: object) -> str:
    """How ``roomserver config`` and the docs show offsets (``24h,10m``)."""
    if not isinstance(value, tuple | list) or not value:
        return "none"
    return ",".join(format_duration(int(ms)) for ms in value)


def format_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def due_offset(doc: RoomDoc, offsets: tuple[int, ...], now: int) -> int | None:
    """The offset (ms) whose reminder is due for ``doc`` at ``now``, or None."""
    at = doc.scheduled_at
    if at is None or doc.state == "live" or now >= at:
        return None
    due = [ms for ms in offsets if at - ms <= now]
    return min(due) if due else None


def upcoming(scheduled_at: int) -> RoomDoc:
    """A stand-in document for a schedule index entry (not live, booked at ``scheduled_at``):
    which offset the index alone says is due, before the room's document is read."""
    return RoomDoc(id="", scheduled_at=scheduled_at)


def reminder_key(scheduled_at: int) -> str:
    """The tally whose one entry per offset marks that offset's reminder as sent."""
    return f"reminder:{scheduled_at}"


def reminder_payload(view: dict, offset_ms: int, now: int, followers: list[str]) -> dict:
    """The ``room.reminder`` webhook's data."""
    at = view["scheduled_at"]
    return {
        "room": view,
        "scheduled_at": at,
        "offset_s": offset_ms // 1000 if offset_ms % 1000 == 0 else offset_ms / 1000,
        "starts_in_s": max(0, at - now) // 1000,
        "followers": followers,
    }


def reschedule(doc: RoomDoc, scheduled_at: int | None) -> tuple[RoomDoc, list[Emit]]:
    """Move (or, with None, cancel) the room's next show. Not while it is live: the
    show it announced is on (``room.start`` already took it off the schedule)."""
    if doc.state == "live":
        raise OpError("conflict", "the room is live: end the show before scheduling the next one")
    if scheduled_at is not None and not 0 <= scheduled_at <= JS_MAX_SAFE_INTEGER:
        raise OpError("bad_request", "scheduled_at must be a unix time in ms within 0..2^53-1")
    return msgspec.structs.replace(doc, scheduled_at=scheduled_at), []
