"""PK battles (pure): two rooms' hosts face off; gifts in each room are its points.

A PK spans two room documents, each changed only through its own CAS commit, so
every transition here is applied to each room separately and is idempotent per
room: applying it to a room already past that step raises ``not_open`` (another
node or an earlier attempt got there first) and changes nothing.

    features["pk_invite"]  the pending invitation, in BOTH rooms while it is open:
                           it reserves them (a room with one is busy)
                           {id, rooms:[from, to], from_room, to_room, by, duration_s, created_at, expires_at}
    features["pk"]         the running battle (the join snapshot's ``pk``)
                           {id, rooms, hosts:{room: user}, state:"started", duration_s, started_at, ends_at}
    features["pk_last"]    the last ended battle {id, rooms, hosts, state:"ended", scores, winner, reason, ended_at}

Lifecycle of one PK (one way):

    invited ──accept──► started ──pk.end / ends_at / room ended──► ended
       ├──reject (either host) ──► gone (pk.rejected)
       └──60 s ──────────────────► gone (pk.expired)

Points: the value of gifts sent in each room while the battle runs (counted in a
bus accumulator per room and PK, see ``score_key``); the winner is the room with
more points, ``None`` on a draw.
"""

from __future__ import annotations

import enum
from typing import Any

from roomserver.bus.base import AUDIENCE_STAFF
from roomserver.core.room import Emit, RoomDoc, with_features
from roomserver.protocol import OpError

INVITE_TTL_MS = 60_000
DEFAULT_DURATION_S = 300
MIN_DURATION_S = 1
MAX_DURATION_S = 3600


class State(enum.StrEnum):
    INVITED = "invited"
    STARTED = "started"
    ENDED = "ended"


class EndReason(enum.StrEnum):
    ENDED = "ended"  # a host pressed pk.end
    TIME = "time"  # ends_at passed
    ROOM_ENDED = "room_ended"  # one of the rooms' show ended
    CANCELLED = "cancelled"  # the start could not be completed in both rooms


def score_key(pk_id: str) -> str:
    """Name of the per-room bus accumulator holding a room's points in this PK."""
    return "pk:" + pk_id


def new_invite(
    pk_id: str, from_room: str, to_room: str, by: dict[str, Any], duration_s: int, now: int
) -> dict[str, Any]:
    if from_room == to_room:
        raise OpError("bad_request", "a room cannot PK itself")
    if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
        raise OpError("bad_request", f"duration_s must be between {MIN_DURATION_S} and {MAX_DURATION_S}")
    return {
        "id": pk_id,
        "state": State.INVITED.value,
        "rooms": [from_room, to_room],
        "from_room": from_room,
        "to_room": to_room,
        "by": by,
        "duration_s": duration_s,
        "created_at": now,
        "expires_at": now + INVITE_TTL_MS,
    }


def busy(doc: RoomDoc, now: int) -> str | None:
    """Why the room cannot take part in a new PK (None = free)."""
    pk = doc.features.get("pk")
    if pk is not None and pk["state"] == State.STARTED:
        return f"room {doc.id} is in PK {pk['id']}"
    invite = doc.features.get("pk_invite")
    if invite is not None and invite["expires_at"] > now:
        return f"room {doc.id} has a pending PK invitation {invite['id']}"
    return None


def reserve(doc: RoomDoc, invite: dict[str, Any], now: int) -> tuple[RoomDoc, list[Emit]]:
    """Store the invitation in one of its two rooms; the target's staff get ``pk.invited``."""
    if doc.id not in invite["rooms"]:
        raise OpError("bad_request", f"room {doc.id} is not part of PK {invite['id']}")
    reason = busy(doc, now)
    if reason is not None:
        raise OpError("conflict", reason)
    emits = []
    if doc.id == invite["to_room"]:
        data = {
            k: invite[k] for k in ("id", "rooms", "from_room", "to_room", "by", "duration_s", "expires_at")
        }
        emits.append(Emit("pk.invited", data, durable=False, audience=AUDIENCE_STAFF))
    return with_features(doc, pk_invite=invite), emits


def invitation(doc: RoomDoc, pk_id: str, now: int) -> dict[str, Any]:
    """The open invitation ``pk_id`` of this room (not_found if none, answered or expired)."""
    invite = doc.features.get("pk_invite")
    if invite is None or invite["id"] != pk_id or invite["expires_at"] <= now:
        raise OpError("not_found", f"no pending PK invitation {pk_id} in room {doc.id}")
    return invite


def check_accepter(invite: dict[str, Any], room_id: str) -> None:
    """Only the invited room accepts a PK (the inviting one may withdraw it)."""
    if invite["to_room"] != room_id:
        raise OpError("forbidden", "only the invited room's host may accept a PK")


def withdraw(
    doc: RoomDoc, pk_id: str, *, event: str | None, by_room: str | None = None
) -> tuple[RoomDoc, list[Emit]]:
    """Remove the invitation: rejected (``pk.rejected``), expired (``pk.expired``) or
    rolled back after a failed invite (``event`` None: no event)."""
    invite = doc.features.get("pk_invite")
    if invite is None or invite["id"] != pk_id:
        raise OpError("not_open", f"PK invitation {pk_id} is not pending in room {doc.id}")
    emits = []
    if event is not None:
        data: dict[str, Any] = {"id": pk_id, "rooms": invite["rooms"]}
        if by_room is not None:
            data["by_room"] = by_room
        emits.append(Emit(event, data, durable=False, audience=AUDIENCE_STAFF))
    return with_features(doc, pk_invite=None), emits


def start(
    doc: RoomDoc, pk_id: str, hosts: dict[str, str], now: int, ends_at: int
) -> tuple[RoomDoc, list[Emit]]:
    """Turn the reservation into a running battle (both rooms get the same view)."""
    invite = doc.features.get("pk_invite")
    if invite is None or invite["id"] != pk_id:
        raise OpError("not_found", f"no pending PK invitation {pk_id} in room {doc.id}")
    pk = {
        "id": pk_id,
        "rooms": invite["rooms"],
        "hosts": hosts,
        "state": State.STARTED.value,
        "duration_s": invite["duration_s"],
        "started_at": now,
        "ends_at": ends_at,
    }
    data = {k: pk[k] for k in ("id", "rooms", "hosts", "started_at", "ends_at", "duration_s")}
    return with_features(doc, pk_invite=None, pk=pk), [Emit("pk.started", data)]


def active(doc: RoomDoc, pk_id: str | None = None) -> dict[str, Any]:
    pk = doc.features.get("pk")
    if pk is None or pk["state"] != State.STARTED or (pk_id is not None and pk["id"] != pk_id):
        raise OpError("not_found", f"no running PK {pk_id or ''} in room {doc.id}".replace("  ", " "))
    return pk


def winner(scores: dict[str, int]) -> str | None:
    """The room with the most points; None on a draw (or with fewer than two rooms)."""
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    if len(ranked) < 2 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def finish(
    doc: RoomDoc, pk_id: str, scores: dict[str, int], now: int, reason: EndReason
) -> tuple[RoomDoc, list[Emit]]:
    pk = doc.features.get("pk")
    if pk is None or pk["id"] != pk_id or pk["state"] != State.STARTED:
        raise OpError("not_open", f"PK {pk_id} is not running in room {doc.id}")
    scores = {room: int(scores.get(room, 0)) for room in pk["rooms"]}
    last = {
        "id": pk_id,
        "rooms": pk["rooms"],
        "hosts": pk["hosts"],
        "state": State.ENDED.value,
        "scores": scores,
        "winner": winner(scores),
        "reason": reason.value,
        "ended_at": now,
    }
    data = {k: last[k] for k in ("id", "rooms", "scores", "winner", "reason")}
    return with_features(doc, pk=None, pk_last=last), [Emit("pk.ended", data)]


def other_room(pk: dict[str, Any], room: str) -> str:
    a, b = pk["rooms"]
    return b if room == a else a
