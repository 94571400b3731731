"""The fan-out's values: sockets and room channels as the stream sees them, the
actions it returns, and the WebSocket framing of its frames (``roomserver.core.fanout``
is the stream that uses them)."""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from roomserver.bus.base import BusEvent, Delivery

# The join snapshot's ``recent``: the room's last barrage events, so a late joiner sees the chat.
RECENT_BARRAGE = 20
# Durable event bodies are spliced as {"seq":N,"ev":"barrage",...} (protocol.encode_event and
# with_seq): a bounded byte search tells a barrage without decoding every event.
_BARRAGE_MARK = b',"ev":"barrage",'


def is_barrage(body: bytes) -> bool:
    return body.find(_BARRAGE_MARK, 0, 40) > 0


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (server -> client, RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def json_array(bodies: list[bytes]) -> bytes:
    return b"[" + b",".join(bodies) + b"]"


class Transport(Protocol):
    """What the fan-out needs of a socket's transport (``asyncio.Transport`` is one).
    The pure stream only reads the buffer size; the shell writes, aborts and reads
    the socket for a cut."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class Connection:
    """One client WebSocket on this node, as the fan-out sees it."""

    __slots__ = ("closed", "closer", "conn_id", "personal", "rooms", "staff", "transport", "user")

    def __init__(
        self,
        conn_id: int,
        user: str,
        staff: bool,
        transport: Transport,
        closer: Callable[[int, str], Awaitable[object]],
    ) -> None:
        self.conn_id = conn_id
        self.user = user
        self.staff = staff
        self.transport = transport
        # The WebSocket closing handshake: called by the shell, never by the stream.
        self.closer = closer
        self.personal: list[bytes] = []
        self.rooms: set[str] = set()
        self.closed = False

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def __hash__(self) -> int:
        return self.conn_id

    def __eq__(self, other: object) -> bool:
        return self is other


@dataclass(slots=True, eq=False)
class Member:
    conn: Connection
    # Not None while the member is syncing (resume): what arrives meanwhile.
    held: list[BusEvent] | None = None


@dataclass(slots=True, eq=False)
class RoomChannel:
    room: str
    members: dict[Connection, Member] = field(default_factory=dict)
    by_user: dict[str, set[Connection]] = field(default_factory=dict)
    epoch: str = ""
    last_seq: int = -1  # highest seq ingested; -1 = not ready (waiting for the first load)
    flushed_seq: int = 0  # highest seq handed to members
    pending: list[BusEvent] = field(default_factory=list)
    # Deliveries held while not ready or while a gap is being repaired.
    held: list[Delivery] = field(default_factory=list)
    repairing: bool = False
    repair_reads: int = 0  # history reads of the repair under way
    # Bodies of the last barrage events handed to members (seq <= flushed_seq), oldest first.
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT_BARRAGE))

    @property
    def is_ready(self) -> bool:
        """Its starting point is known (``set_ready``): members may join."""
        return self.last_seq >= 0

    def has_user(self, user: str) -> bool:
        return bool(self.by_user.get(user))


@dataclass(slots=True)
class FanoutStats:
    frames: int = 0
    deliveries: int = 0  # messages delivered (events x sockets)
    events_in: int = 0
    shed_ephemeral: int = 0
    slow_closes: int = 0
    cut_connections: int = 0  # closes that timed out: the transport was aborted


# -- actions: what the shell performs, in the order returned ------------------------------


@dataclass(slots=True)
class Frame:
    """Write ``data`` (``messages`` messages) to one socket."""

    conn: Connection
    data: bytes
    messages: int


@dataclass(slots=True)
class Broadcast:
    """Write the same ``data`` (``messages`` messages) to each of ``conns``."""

    data: bytes
    messages: int
    conns: list[Connection]


@dataclass(slots=True)
class Close:
    """Close a socket. The stream already treats it as closed: no later action writes to
    it, while the frames returned before this action are still to be written."""

    conn: Connection
    code: int
    reason: str


@dataclass(slots=True)
class ReadHistory:
    """Read ``channel``'s durable events after ``after`` and hand them to
    ``history_read`` (or report ``history_failed``)."""

    channel: RoomChannel
    after: int


@dataclass(slots=True)
class EpochChanged:
    """The room's history was reset (its members are closed by the actions that follow):
    for the node's caches, which went with the history."""

    channel: RoomChannel
    old: str
    new: str


Action = Frame | Broadcast | Close | ReadHistory | EpochChanged
