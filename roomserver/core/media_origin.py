"""Where a room's publishers send their media, as recorded on the bus (pure).

A node that accepts a WHIP publisher writes one entry per publisher of the room
(``Broker.set_media_origin``): its node id, the address other nodes reach it at and the
publisher's role, refreshed every ``REFRESH_S`` with a TTL of ``TTL_MS`` and removed when
the publisher leaves. A node asked to play a publisher it does not hold reads the entries
(``pick``) and relays the publisher from that node (media/cascade.py), calling its WHEP
endpoint as the service user ``node_user(its node id)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from roomserver.core import bus_entry

REFRESH_S = 5.0
TTL_MS = 15_000  # three refreshes: one lost write does not drop a live publisher
NODE_USER_PREFIX = "node:"
MAX_USER_LEN = 64  # auth.USER_ID_RE


@dataclass(frozen=True, slots=True)
class Origin:
    node: str
    address: str  # http(s)://host:port of the node (its --advertise-url)
    role: str  # host | cohost | call


def encode(origin: Origin) -> bytes:
    return bus_entry.encode(origin)


def decode(blob: bytes) -> Origin | None:
    """None for an entry this version cannot read (another version's, or damaged)."""
    data = bus_entry.decode_object(blob)
    if data is None:
        return None
    fields = (data.get("node"), data.get("address"), data.get("role"))
    if not all(isinstance(f, str) and f for f in fields):
        return None
    return Origin(*fields)  # type: ignore[arg-type]


def pick(entries: dict[str, bytes], user: str | None) -> tuple[str, Origin] | None:
    """The publisher to play and where it publishes: ``user``'s entry, or with None
    the room's host (what WHEP without ``?publisher=`` plays)."""
    for publisher, blob in sorted(entries.items()):
        origin = decode(blob)
        if origin is None:
            continue
        if publisher == user or (user is None and origin.role == "host"):
            return publisher, origin
    return None


ROLE_ORDER = {"host": 0, "cohost": 1, "call": 2, "pk": 3}


def others(entries: dict[str, bytes], node: str) -> set[str]:
    """Publishers of the room whose live origin is another node than ``node``."""
    return {user for user, blob in entries.items() if (o := decode(blob)) is not None and o.node != node}


def merge_publishers(local: list[dict], stored: list[dict], elsewhere: set[str]) -> list[dict]:
    """The room's ``media.publishers`` as one node writes it: its own publishers, plus the
    stored entries of publishers live on other nodes (``elsewhere``): two origins of one
    room (a co-host on another node than the host) must not erase each other's entries.
    PK entries come from the writer's own links only. Stable order: by role."""
    mine = {p["user"] for p in local}
    kept = [
        p
        for p in stored
        if isinstance(p, dict)
        and p.get("user") in elsewhere
        and p["user"] not in mine
        and p.get("role") != "pk"
    ]
    return sorted([*local, *kept], key=lambda p: ROLE_ORDER.get(p.get("role", ""), len(ROLE_ORDER)))


def node_user(node_id: str) -> str:
    """The user a node plays another node's publishers as (never a client's id: clients'
    tokens are minted by apps, which are told not to use the ``node:`` prefix)."""
    return (NODE_USER_PREFIX + node_id)[:MAX_USER_LEN]


def whep_url(address: str, public_room: str, publisher: str) -> str:
    return f"{address.rstrip('/')}/v1/rooms/{quote(public_room, safe='')}/whep?publisher={quote(publisher, safe='')}"
