"""Red packets: params, the double-average split, grabs and the luckiest grab.

Split (PROTOCOL "Flash-sale and money rules"): with ``remaining`` cents and
``left`` shares, a grab is uniform in ``[1, 2 × remaining // left]``, capped so
every later share still gets at least 1 cent; the last share takes the rest.
Each grab's expectation is about remaining/left, so early and late grabbers
fare the same on average, while single grabs vary (the fun part).

Recommended shape for the bus: draw every amount at send time with ``split``
(a CSPRNG in production) and store them as a list; a grab is then one atomic
"not grabbed yet? pop the next amount, remember the user" step, which Lua can
do without any randomness of its own. ``PacketLedger`` is that step's
reference model. Drawing all amounts up front has exactly the distribution of
drawing each at grab time, since each draw depends only on what was drawn
before.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from roomserver.core.creation import Cid
from roomserver.protocol import OpError, convert_params

MAX_COUNT: Final = 10_000
# 1,000,000.00: money sums stay far below 2**53 (exact in JS and Lua numbers).
MAX_TOTAL_CENTS: Final = 100_000_000
MAX_MESSAGE_CHARS: Final = 50
MAX_ID_CHARS: Final = 64

# ``randint(lo, hi)``: uniform integer with both ends included (random.Random.randint).
RandInt = Callable[[int, int], int]


class PacketParams(msgspec.Struct, forbid_unknown_fields=False):
    """``redpacket.send`` params."""

    total_cents: int
    count: int
    message: str = ""

    # Idempotency key: a retry with it returns what the first request created.
    cid: Cid | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be between 1 and {MAX_COUNT}")
        if self.total_cents < self.count:
            raise ValueError("total_cents must be at least count (every share gets 1 cent or more)")
        if self.total_cents > MAX_TOTAL_CENTS:
            raise ValueError(f"total_cents must be at most {MAX_TOTAL_CENTS}")
        if len(self.message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message must be at most {MAX_MESSAGE_CHARS} characters")


class GrabParams(msgspec.Struct, forbid_unknown_fields=False):
    """``redpacket.grab`` params."""

    packet: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.packet) <= MAX_ID_CHARS:
            raise ValueError(f"packet must be a packet id (1 to {MAX_ID_CHARS} characters)")


def parse_params(params: dict[str, Any]) -> PacketParams:
    return convert_params(params, PacketParams)


def parse_grab(params: dict[str, Any]) -> GrabParams:
    return convert_params(params, GrabParams)


class Packet(msgspec.Struct, frozen=True):
    """A red packet as kept in the room document (amounts live in the bus)."""

    id: str
    sender: str
    total_cents: int
    count: int
    message: str
    created_at: int


def new_packet(params: PacketParams, *, packet_id: str, sender: str, now_ms: int) -> Packet:
    return Packet(
        id=packet_id,
        sender=sender,
        total_cents=params.total_cents,
        count=params.count,
        message=params.message,
        created_at=now_ms,
    )


# --- the split ---------------------------------------------------------------


def _randint(rng: random.Random | RandInt) -> RandInt:
    return rng.randint if isinstance(rng, random.Random) else rng


def grab_bounds(remaining: int, left: int) -> tuple[int, int]:
    """Inclusive range of the next grab with ``left`` shares sharing ``remaining``."""
    if left < 1 or remaining < left:
        raise ValueError(f"cannot split {remaining} cents into {left} shares of at least 1")
    if left == 1:
        return remaining, remaining
    # 2 × remaining // left ≥ 2 as remaining ≥ left; the cap keeps 1 cent per later share.
    return 1, min(2 * remaining // left, remaining - (left - 1))


def grab_amount(remaining: int, left: int, rng: random.Random | RandInt) -> int:
    lo, hi = grab_bounds(remaining, left)
    if lo == hi:
        return lo
    amount = _randint(rng)(lo, hi)
    if not lo <= amount <= hi:  # a faulty random source must not break the money rules
        raise ValueError(f"random source returned {amount} outside {lo}..{hi}")
    return amount


def split(total_cents: int, count: int, rng: random.Random | RandInt) -> list[int]:
    """All ``count`` amounts in grab order; production passes ``random.SystemRandom()``."""
    amounts: list[int] = []
    remaining = total_cents
    for left in range(count, 0, -1):
        amount = grab_amount(remaining, left, rng)
        amounts.append(amount)
        remaining -= amount
    return amounts


# --- grabs -------------------------------------------------------------------


@dataclass
class PacketLedger:
    """Reference model of one packet's atomic grab step (what the bus mirrors).

    Check order: already grabbed → ``conflict`` (even once empty, so a retry
    of the last grab is not told "sold out"); no amounts left → ``sold_out``.
    """

    packet: Packet
    amounts: list[int]  # not yet grabbed, next first
    grabs: list[tuple[str, int]] = field(default_factory=list)  # (user, amount) in grab order
    _by_user: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.amounts) != self.packet.count or sum(self.amounts) != self.packet.total_cents:
            raise ValueError(f"amounts do not split packet {self.packet.id}")
        self.amounts = list(self.amounts)

    @property
    def finished(self) -> bool:
        return not self.amounts

    def grab(self, user: str) -> int:
        if user in self._by_user:
            raise OpError("conflict", f"you already grabbed {self._by_user[user]} cents from this packet")
        if not self.amounts:
            raise OpError("sold_out", "this red packet is empty")
        amount = self.amounts.pop(0)
        self._by_user[user] = amount
        self.grabs.append((user, amount))
        return amount


def best(grabs: Iterable[tuple[str, int]]) -> dict[str, Any] | None:
    """The luckiest grab: the largest amount, the earliest grabber on a tie."""
    top: tuple[str, int] | None = None
    for user, amount in grabs:
        if top is None or amount > top[1]:
            top = (user, amount)
    return None if top is None else {"user": top[0], "amount_cents": top[1]}


# --- wire views --------------------------------------------------------------


def sent_view(packet: Packet) -> dict[str, Any]:
    """``redpacket.sent`` data."""
    return {
        "id": packet.id,
        "sender": packet.sender,
        "total_cents": packet.total_cents,
        "count": packet.count,
        "message": packet.message,
    }


def finished_view(packet: Packet, grabs: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """``redpacket.finished`` data, once every share is grabbed."""
    return {"id": packet.id, "best": best(grabs)}
