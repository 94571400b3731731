"""Coupons: issue params, the atomic claim decision and claim ids.

``decide_claim`` is the specification of one atomic claim that the bus
backends mirror (``CouponLedger`` is its reference model). State per coupon:
``claimed`` (all users) and ``claimed`` per user. Checks in order:
``claimed >= quantity`` → ``sold_out``; ``claimed_by_user >= per_user`` →
``limit_reached``; otherwise both counters go up by one. A claim has no
``cid``: claiming twice is two claims (up to ``per_user``). Claim ids are
deterministic from (coupon, user, n-th claim of that user), so the caller
computes the id before the atomic step and every backend names claims alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec

from roomserver.core.creation import Cid
from roomserver.protocol import OpError, convert_params

MAX_TITLE_CHARS: Final = 50
# Money caps keep sums exact in JS and Lua numbers (< 2**53) — see flashsale.
MAX_DISCOUNT_CENTS: Final = 100_000_000
MAX_MIN_SPEND_CENTS: Final = 1_000_000_000
MAX_QUANTITY: Final = 1_000_000
MAX_ID_CHARS: Final = 64
MAX_CID_CHARS: Final = 64
MAX_TIER: Final = 10


class CouponParams(msgspec.Struct, forbid_unknown_fields=False):
    """``coupon.issue`` params (``min_spend_cents`` defaults to 0, ``per_user`` to 1)."""

    title: str
    discount_cents: int
    quantity: int
    min_spend_cents: int = 0
    per_user: int = 1
    # Member-only coupon: the lowest member tier (token ``tier`` or computed) that may claim it.
    min_tier: int = 0

    # Idempotency key: a retry with it returns what the first request created.
    cid: Cid | None = None

    def __post_init__(self) -> None:
        if not self.title.strip() or len(self.title) > MAX_TITLE_CHARS:
            raise ValueError(f"title must be 1 to {MAX_TITLE_CHARS} characters")
        if not 1 <= self.discount_cents <= MAX_DISCOUNT_CENTS:
            raise ValueError(f"discount_cents must be between 1 and {MAX_DISCOUNT_CENTS}")
        if not 0 <= self.min_spend_cents <= MAX_MIN_SPEND_CENTS:
            raise ValueError(f"min_spend_cents must be between 0 and {MAX_MIN_SPEND_CENTS}")
        if 0 < self.min_spend_cents < self.discount_cents:
            raise ValueError("discount_cents must not exceed min_spend_cents (or set min_spend_cents to 0)")
        if not 1 <= self.quantity <= MAX_QUANTITY:
            raise ValueError(f"quantity must be between 1 and {MAX_QUANTITY}")
        if not 1 <= self.per_user <= MAX_QUANTITY:
            raise ValueError(f"per_user must be between 1 and {MAX_QUANTITY}")
        if not 0 <= self.min_tier <= MAX_TIER:
            raise ValueError(f"min_tier must be between 0 and {MAX_TIER}")


class ClaimParams(msgspec.Struct, forbid_unknown_fields=False):
    """``coupon.claim`` params."""

    coupon: str
    # Optional (an addition to the protocol): a claim retried with the same cid
    # returns the first claim instead of claiming again.
    cid: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.coupon) <= MAX_ID_CHARS:
            raise ValueError(f"coupon must be a coupon id (1 to {MAX_ID_CHARS} characters)")
        if self.cid is not None and not 1 <= len(self.cid) <= MAX_CID_CHARS:
            raise ValueError(f"cid must be 1 to {MAX_CID_CHARS} characters")


def parse_params(params: dict[str, Any]) -> CouponParams:
    return convert_params(params, CouponParams)


def parse_claim(params: dict[str, Any]) -> ClaimParams:
    return convert_params(params, ClaimParams)


class Coupon(msgspec.Struct, frozen=True):
    """A coupon as kept in the room document; claim counters live in the bus."""

    id: str
    title: str
    discount_cents: int
    min_spend_cents: int
    quantity: int
    per_user: int
    issuer: str
    issued_at: int
    min_tier: int = 0


def new_coupon(params: CouponParams, *, coupon_id: str, issuer: str, now_ms: int) -> Coupon:
    return Coupon(
        id=coupon_id,
        title=params.title,
        discount_cents=params.discount_cents,
        min_spend_cents=params.min_spend_cents,
        quantity=params.quantity,
        per_user=params.per_user,
        issuer=issuer,
        issued_at=now_ms,
        min_tier=params.min_tier,
    )


def discount_for(coupon: Coupon, spend_cents: int) -> int:
    """What the coupon takes off an order of ``spend_cents`` (never below zero)."""
    if spend_cents < coupon.min_spend_cents:
        return 0
    return min(coupon.discount_cents, max(spend_cents, 0))


# --- the claim decision ------------------------------------------------------


class Claim(msgspec.Struct, frozen=True):
    id: str
    coupon: str
    user: str
    n: int  # the user's n-th claim of this coupon, from 1
    created_at: int


def claim_id(coupon_id: str, user: str, n: int) -> str:
    """The user's n-th claim of the coupon (claims without a cid)."""
    return _claim_hash([coupon_id, user, n])


def cid_claim_id(coupon_id: str, user: str, cid: str) -> str:
    """A claim made with a cid: named by it, so a retry on any node names the same claim."""
    return _claim_hash([coupon_id, user, "cid", cid])


def _claim_hash(parts: list[Any]) -> str:
    return "cl_" + hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:24]


class ClaimOutcome(NamedTuple):
    claim: Claim
    claimed: int  # all users, after this claim
    claimed_by_user: int  # after this claim


def decide_claim(
    coupon: Coupon, *, user: str, claimed: int, claimed_by_user: int, now_ms: int
) -> ClaimOutcome:
    if not 0 <= claimed_by_user <= claimed <= coupon.quantity:
        raise ValueError(f"impossible counters claimed={claimed} by_user={claimed_by_user}")
    if claimed >= coupon.quantity:
        raise OpError("sold_out", "all coupons have been claimed")
    if claimed_by_user >= coupon.per_user:
        raise OpError("limit_reached", f"at most {coupon.per_user} per user")
    n = claimed_by_user + 1
    claim = Claim(id=claim_id(coupon.id, user, n), coupon=coupon.id, user=user, n=n, created_at=now_ms)
    return ClaimOutcome(claim, claimed + 1, n)


@dataclass
class CouponLedger:
    """Reference model of one coupon's atomic counters (what the bus mirrors)."""

    coupon: Coupon
    claimed: int = 0
    by_user: dict[str, int] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    def claim(self, user: str, now_ms: int) -> Claim:
        outcome = decide_claim(
            self.coupon,
            user=user,
            claimed=self.claimed,
            claimed_by_user=self.by_user.get(user, 0),
            now_ms=now_ms,
        )
        self.claimed = outcome.claimed
        self.by_user[user] = outcome.claimed_by_user
        self.claims.append(outcome.claim)
        return outcome.claim


def reconcile(coupon: Coupon, claims: Iterable[Claim], *, claimed: int) -> list[str]:
    """Problems between a coupon, its claims and the bus's ``claimed`` counter."""
    claims = list(claims)
    problems: list[str] = []
    if len(claims) != claimed:
        problems.append(f"{len(claims)} claims but counter says {claimed}")
    if len(claims) > coupon.quantity:
        problems.append(f"{len(claims)} claims exceed quantity {coupon.quantity}")
    if len({c.id for c in claims}) != len(claims):
        problems.append("duplicate claim ids")
    per_user: dict[str, int] = {}
    for c in claims:
        per_user[c.user] = per_user.get(c.user, 0) + 1
        if c.coupon != coupon.id or c.id != claim_id(c.coupon, c.user, c.n):
            problems.append(f"claim {c.id} does not match coupon {coupon.id}")
    problems += [
        f"user {u} claimed {n}, limit {coupon.per_user}" for u, n in per_user.items() if n > coupon.per_user
    ]
    return problems


# --- wire views --------------------------------------------------------------


def issued_view(coupon: Coupon) -> dict[str, Any]:
    """``coupon.issued`` data."""
    return {
        "id": coupon.id,
        "title": coupon.title,
        "discount_cents": coupon.discount_cents,
        "min_spend_cents": coupon.min_spend_cents,
        "quantity": coupon.quantity,
        "per_user": coupon.per_user,
        **({"min_tier": coupon.min_tier} if coupon.min_tier else {}),
    }


def claim_view(claim: Claim) -> dict[str, Any]:
    """``coupon.claim``'s reply ``claim``."""
    return {"id": claim.id, "coupon": claim.coupon}
