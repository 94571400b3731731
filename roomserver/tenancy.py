"""Tenancy (PROTOCOL §1): every app (a token's ``iss``) is a tenant.

A room id or a user id is unique only within its app. Inside the server a room
is therefore named by its *room key* ``"<app>/<room>"``: the node, the fan-out,
the bus and the analytics side only ever see keys, so two apps can never share
a room, its history, its idempotency keys, its commerce records or its users.
On Redis the key is the hash tag (``rs:{app/room}:…``): a room's keys stay in
one Cluster slot and two apps never share one.

Public ids are what crosses the wire (frames, events, REST paths and bodies,
webhooks): the gateway and the REST layer turn a public id into a key with the
caller's app, and events are encoded with the public id (``public_room``).
``/`` separates the two because neither app keys nor room ids may contain it,
so a key splits one way only.
"""

from __future__ import annotations

import re
from typing import Final

# App keys appear in every bus key and in metrics labels: keep them short and plain.
APP_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
SEP: Final = "/"


def room_key(app: str, room: str) -> str:
    """The internal name of ``app``'s room ``room`` (both already validated)."""
    return app + SEP + room


def split_room_key(key: str) -> tuple[str, str]:
    """``(app, public room id)`` of a room key."""
    app, sep, room = key.partition(SEP)
    if not sep:
        raise ValueError(f"not a room key: {key!r}")
    return app, room


def public_room(key: str) -> str:
    """The room id as the app knows it (what events and replies carry)."""
    return key.partition(SEP)[2]


def app_of(key: str) -> str:
    return key.partition(SEP)[0]


def app_prefix(app: str) -> str:
    """Every room key of ``app`` starts with this."""
    return app + SEP
