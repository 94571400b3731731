"""Co-hosting (pure): requests, invitations and the co-host list of a room.

A viewer asks to join the host on camera (a *request*, accepted or rejected by a
host), or a host asks a viewer (an *invitation*, accepted or rejected by that
viewer). An admitted co-host may publish media into the room until a host or the
co-host ends it. State lives in the room document, changed only through
``Node.transact`` (CAS), so every transition below happens once room-wide:

    features["cohosts"]         the admitted co-hosts, oldest first: the join
                                snapshot's ``cohosts`` and the payload of the
                                durable ``cohost.updated {cohosts}``:
                                ``[{id, name, tier, since}]``
    features["cohost_pending"]  open requests and invitations by id:
                                ``{id: {id, kind, user, by?, created_at, expires_at}}``

State machine of one pending entry (one way):

    request ─┬─ accept (a host) ──────────► co-host ── end (a host or the co-host) ──► gone
    invite  ─┤  accept (the invited user) ─┘
             ├─ reject ──► gone   (cohost.rejected)
             └─ 60 s   ──► gone   (cohost.expired)

Invariants: at most ``MAX_COHOSTS`` co-hosts; a user is at most one of {co-host,
subject of one pending entry}; at most ``MAX_PENDING`` pending entries (bounds
the document); an error changes nothing.

Who sees what: ``cohost.requested`` goes to the room's staff (hosts and
moderators), ``cohost.invited`` to the invited user, ``cohost.rejected`` and
``cohost.expired`` to staff and the user concerned (all ephemeral: audience
events carry no seq); ``cohost.updated`` is durable, for everyone.
"""

from __future__ import annotations

from typing import Any, Literal

from roomserver.bus.base import AUDIENCE_STAFF, audience_user
from roomserver.core.room import Emit, RoomDoc, with_features
from roomserver.protocol import OpError

MAX_COHOSTS = 8
MAX_PENDING = 50
PENDING_TTL_MS = 60_000

Kind = Literal["request", "invite"]


def cohosts(doc: RoomDoc) -> list[dict[str, Any]]:
    return list(doc.features.get("cohosts", []))


def cohost_ids(doc: RoomDoc) -> set[str]:
    return {c["id"] for c in doc.features.get("cohosts", [])}


def pending(doc: RoomDoc) -> dict[str, dict[str, Any]]:
    return dict(doc.features.get("cohost_pending", {}))


def _with(
    doc: RoomDoc, *, cohosts: list[dict[str, Any]] | None = None, pending: dict | None = None
) -> RoomDoc:
    changes: dict[str, Any] = {}
    if cohosts is not None:
        changes["cohosts"] = cohosts
    if pending is not None:
        changes["cohost_pending"] = pending or None  # an empty table is removed
    return with_features(doc, **changes)


def _live(entries: dict[str, dict[str, Any]], now: int) -> dict[str, dict[str, Any]]:
    """Pending entries not yet expired (an expired one no longer counts, whether or
    not the deadline check has removed it yet)."""
    return {k: e for k, e in entries.items() if e["expires_at"] > now}


def _check_free(doc: RoomDoc, user: str, now: int) -> None:
    if user in cohost_ids(doc):
        raise OpError("conflict", f"{user} is already a co-host")
    live = _live(pending(doc), now)
    for e in live.values():
        if e["user"]["id"] == user:
            what = "asked to join" if e["kind"] == "request" else "been invited"
            raise OpError("conflict", f"{user} has already {what} (pending {e['id']})")
    if len(cohosts(doc)) >= MAX_COHOSTS:
        raise OpError("limit_reached", f"a room has at most {MAX_COHOSTS} co-hosts")
    if len(doc.features.get("cohost_pending", {})) >= MAX_PENDING:  # expired ones too: bounds the doc
        raise OpError("limit_reached", f"at most {MAX_PENDING} requests and invitations may be pending")


def _updated(doc: RoomDoc) -> Emit:
    return Emit("cohost.updated", {"cohosts": cohosts(doc)})


def _to_both(ev: str, data: dict[str, Any], user: str) -> list[Emit]:
    """The same ephemeral event for the staff and for the user concerned."""
    return [
        Emit(ev, data, durable=False, audience=AUDIENCE_STAFF),
        Emit(ev, data, durable=False, audience=audience_user(user)),
    ]


def request(
    doc: RoomDoc, user: dict[str, Any], now: int, request_id: str, *, is_host: bool
) -> tuple[RoomDoc, list[Emit]]:
    """A viewer asks to co-host. ``user`` is the requester's public view {id, name, tier}."""
    if is_host:
        raise OpError("conflict", "hosts publish as hosts; co-host requests are for viewers")
    _check_free(doc, user["id"], now)
    entry = {
        "id": request_id,
        "kind": "request",
        "user": user,
        "created_at": now,
        "expires_at": now + PENDING_TTL_MS,
    }
    # Expired entries stay until the deadline check removes them with their event.
    entries = {**pending(doc), request_id: entry}
    data = {"id": request_id, "user": user, "expires_at": entry["expires_at"]}
    return _with(doc, pending=entries), [
        Emit("cohost.requested", data, durable=False, audience=AUDIENCE_STAFF)
    ]


def invite(
    doc: RoomDoc, user: str, by: dict[str, Any], now: int, invite_id: str
) -> tuple[RoomDoc, list[Emit]]:
    """A host invites ``user`` (an id) to co-host; ``by`` is the host's public view."""
    if user == by["id"]:
        raise OpError("bad_request", "a host cannot invite themselves")
    _check_free(doc, user, now)
    entry = {
        "id": invite_id,
        "kind": "invite",
        "user": {"id": user},
        "by": by,
        "created_at": now,
        "expires_at": now + PENDING_TTL_MS,
    }
    entries = {**pending(doc), invite_id: entry}
    data = {"id": invite_id, "user": {"id": user}, "by": by, "expires_at": entry["expires_at"]}
    return _with(doc, pending=entries), [
        Emit("cohost.invited", data, durable=False, audience=audience_user(user))
    ]


def find(
    doc: RoomDoc, now: int, *, actor: str, is_host: bool, request_id: str | None, user: str | None
) -> dict[str, Any]:
    """The pending entry an accept/reject by ``actor`` refers to.

    Hosts answer *requests* (named by ``request`` id or by the requester's ``user``
    id); a viewer answers the *invitation* addressed to them (``user``, if given,
    must be themselves)."""
    live = _live(pending(doc), now)
    if is_host:
        if request_id is None and user is None:
            raise OpError("bad_request", "name the request (request) or the requester (user)")
        for e in live.values():
            if e["kind"] != "request":
                continue
            if (request_id is None or e["id"] == request_id) and (user is None or e["user"]["id"] == user):
                return e
        raise OpError("not_found", "no such pending co-host request (answered or expired?)")
    if user is not None and user != actor:
        raise OpError("forbidden", "only a host may answer another user's request")
    for e in live.values():
        if e["kind"] == "invite" and e["user"]["id"] == actor and request_id in (None, e["id"]):
            return e
    raise OpError("not_found", "you have no pending co-host invitation (answered or expired?)")


def accept(
    doc: RoomDoc,
    entry_id: str,
    now: int,
    *,
    accepter: dict[str, Any],
) -> tuple[RoomDoc, list[Emit]]:
    """Admit the subject of pending entry ``entry_id``. ``accepter`` is the caller's
    public view: for an invitation it is the invited user, whose full view (name,
    tier) is known only now."""
    entries = pending(doc)
    entry = _live(entries, now).get(entry_id)
    if entry is None:
        raise OpError("not_found", f"no pending co-host request or invitation {entry_id}")
    if len(cohosts(doc)) >= MAX_COHOSTS:
        raise OpError("limit_reached", f"a room has at most {MAX_COHOSTS} co-hosts")
    who = entry["user"] if entry["kind"] == "request" else accepter
    del entries[entry_id]
    cohost = {"id": who["id"], "name": who.get("name", who["id"]), "tier": who.get("tier", 0), "since": now}
    doc = _with(doc, cohosts=[*cohosts(doc), cohost], pending=entries)
    return doc, [_updated(doc)]


def reject(doc: RoomDoc, entry_id: str, now: int, *, by: dict[str, Any]) -> tuple[RoomDoc, list[Emit]]:
    entries = pending(doc)
    entry = _live(entries, now).get(entry_id)
    if entry is None:
        raise OpError("not_found", f"no pending co-host request or invitation {entry_id}")
    del entries[entry_id]
    data = {"id": entry_id, "kind": entry["kind"], "user": entry["user"], "by": by}
    return _with(doc, pending=entries), _to_both("cohost.rejected", data, entry["user"]["id"])


def end(doc: RoomDoc, user: str, *, actor: str, is_host: bool) -> tuple[RoomDoc, list[Emit]]:
    """A host removes a co-host, or a co-host leaves the stage."""
    if not is_host and user != actor:
        raise OpError("forbidden", "only a host or the co-host may end co-hosting")
    current = cohosts(doc)
    kept = [c for c in current if c["id"] != user]
    if len(kept) == len(current):
        raise OpError("not_found", f"{user} is not a co-host")
    doc = _with(doc, cohosts=kept)
    return doc, [_updated(doc)]


def due(doc: RoomDoc, now: int) -> bool:
    """Has any pending entry expired (the deadline check's cheap test)?"""
    return any(e["expires_at"] <= now for e in doc.features.get("cohost_pending", {}).values())


def expire(doc: RoomDoc, now: int) -> tuple[RoomDoc, list[Emit]]:
    entries = pending(doc)
    gone = [e for e in entries.values() if e["expires_at"] <= now]
    if not gone:
        raise OpError("not_open", "nothing to expire")  # another node got there first
    emits: list[Emit] = []
    for e in gone:
        del entries[e["id"]]
        data = {"id": e["id"], "kind": e["kind"], "user": e["user"]}
        emits += _to_both("cohost.expired", data, e["user"]["id"])
    return _with(doc, pending=entries), emits


def clear(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
    """The show ended: nobody stays on stage, nothing stays pending."""
    had = cohosts(doc)
    if not had and not doc.features.get("cohost_pending"):
        raise OpError("not_open", "no co-hosts")
    doc = _with(doc, cohosts=[], pending={})
    return doc, [_updated(doc)] if had else []
