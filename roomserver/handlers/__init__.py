"""Op handlers: one registry, one decorator; each module registers its ops.

A handler receives an ``OpContext`` and its params already validated against
the op's msgspec schema, and returns the reply's ``data`` (a dict). Errors are
raised as ``OpError`` and become error replies in the gateway.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec

from roomserver.auth import Identity
from roomserver.core.i18n import DEFAULT_LANG, Lang
from roomserver.core.moderation import UserLimits
from roomserver.core.room import validate_room_id
from roomserver.fanout import Connection
from roomserver.node import DeadlineCheck, Node
from roomserver.protocol import OpError
from roomserver.tenancy import public_room, room_key

# Who may call an op (PROTOCOL §3 roles): "any" role, "staff" (host,
# moderator, admin: H,M), "host" (host or admin: H).
Who = Literal["any", "staff", "host"]


T = TypeVar("T")


class PerNode(Generic[T]):
    """State a handler module keeps for each node (tests run several nodes in one
    process); ``table(node)`` makes it on first use, and it goes with the node."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_node: weakref.WeakKeyDictionary[Node, T] = weakref.WeakKeyDictionary()

    def __call__(self, node: Node) -> T:
        value = self._by_node.get(node)
        if value is None:
            value = self._by_node[node] = self._factory()
        return value


@dataclass(slots=True, eq=False)
class Session:
    """Per-socket state kept by the gateway."""

    conn: Connection
    identity: Identity
    limits: UserLimits = field(default_factory=UserLimits)
    joined_at: dict[str, int] = field(default_factory=dict)
    last_barrage: dict[str, int] = field(default_factory=dict)
    # Public room id -> room key, for the rooms this socket names (validated once):
    # bounded, a socket naming more distinct ids than this starts over.
    room_keys: dict[str, str] = field(default_factory=dict)
    # The language of this socket's error messages (``lang`` at connect; English by default).
    lang: Lang = DEFAULT_LANG
    # The member tier computed from the store's points, and when it was looked up
    # (handlers/loyalty.py ``member_tier``: read on the first tier-gated op, kept a minute).
    computed_tier: tuple[int, int] | None = None

    def room_key(self, room: str) -> str:
        """The frame's room as a room of this socket's app (``bad_request`` if invalid)."""
        key = self.room_keys.get(room)
        if key is None:
            validate_room_id(room)
            if len(self.room_keys) >= 64:
                self.room_keys.clear()
            key = self.room_keys[room] = room_key(self.identity.app, room)
        return key


@dataclass(slots=True)
class OpContext:
    node: Node
    # Who acts: the socket's token, or the admin (or its ``as`` user) of a server API call.
    identity: Identity
    # The room key ``<app>/<room>`` (roomserver.tenancy): what the node and the bus
    # are called with. ``room_id`` is the public id the client sent.
    room: str
    req_id: int | str | None
    # The WebSocket's session; None for a server API call (REST), which has no socket.
    session: Session | None = None
    # Set by handlers that queue their own reply (room.resume: reply, then replay).
    replied: bool = False

    @property
    def socket(self) -> Session:
        """The caller's socket session, for ops that only make sense on one (join,
        barrage slow mode, lottery watch time); the server API does not offer them."""
        if self.session is None:
            raise OpError("bad_request", "this op needs a WebSocket")
        return self.session

    @property
    def user(self) -> str:
        return self.identity.user

    @property
    def app(self) -> str:
        return self.identity.app

    @property
    def room_id(self) -> str:
        return public_room(self.room)

    def room_key(self, room_id: str) -> str:
        """Another room of this app (a PK's opponent), by its public id."""
        return room_key(self.app, room_id)


Handler = Callable[[OpContext, Any], Awaitable[dict[str, Any] | None]]


class NoParams(msgspec.Struct, forbid_unknown_fields=False):
    pass


@dataclass(slots=True, frozen=True)
class OpSpec:
    name: str
    handler: Handler
    schema: type[msgspec.Struct]
    who: Who
    # Must the socket have joined the room first (not_joined otherwise)?
    joined: bool
    # Token-bucket family for per-user rate limits.
    family: str
    needs_room: bool


REGISTRY: dict[str, OpSpec] = {}

# Periodic room checks (deadlines: poll close, lottery draw, sale end, PK end).
# Every node runs them for the rooms it serves, every DEADLINE_PERIOD_S; the
# transitions they commit are CAS-guarded, so a deadline fires exactly once
# however many nodes notice it. ``server.create_app`` hands them to the node.
DEADLINES: list[DeadlineCheck] = []


def deadline(fn: DeadlineCheck) -> DeadlineCheck:
    DEADLINES.append(fn)
    return fn


def op(
    name: str,
    schema: type[msgspec.Struct] = NoParams,
    *,
    who: Who = "any",
    joined: bool = True,
    family: str = "default",
    needs_room: bool = True,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        assert name not in REGISTRY, f"op {name} registered twice"
        REGISTRY[name] = OpSpec(name, fn, schema, who, joined, family, needs_room)
        return fn

    return register


# The server API (``POST /v1/rooms/{room}/ops/{op}``, PROTOCOL §5) runs the ops that run
# a room: every host/moderator op, and the host's side of co-hosting (whose rule decides
# who may act from the identity, so their ``who`` is "any").
HOST_SIDE_OF_ANY_OPS = frozenset({"cohost.accept", "cohost.reject", "cohost.end"})


def server_api_ops() -> list[str]:
    return sorted(n for n, spec in REGISTRY.items() if spec.who != "any" or n in HOST_SIDE_OF_ANY_OPS)


def check_role(identity: Identity, who: Who) -> None:
    if who == "staff" and not identity.is_staff:
        raise OpError("forbidden", "only the host or a moderator may do this")
    if who == "host" and identity.role not in ("host", "admin"):
        raise OpError("forbidden", "only the host may do this")
