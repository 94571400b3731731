"""Flash-sale rules: params, the sale's state machine, and the buy decision.

``decide_buy`` is the executable specification of one atomic buy. The bus
backends implement it for real (a Lua script on Redis, a synchronous function
in memory) and the contract tests check both against ``SaleLedger``, the
in-memory reference model built from it. What the backends must mirror:

* state kept per sale: ``stock_left`` (starts at ``stock``), ``bought`` per
  user, and per ``(user, cid)`` the first successful ``Order``. Keep the cid
  records as long as the sale's orders (longer than the protocol's 5 minutes):
  the order id is a hash of (sale, user, cid), so forgetting a cid early would
  let a late retry mint a second order with the same id. Scope the lookup by
  room (not by sale) so a cid reused for another sale is seen as a conflict.
* the checks, in this order (the first that fails decides the error):
  1. a cid record exists: same sale and qty → replay that order (even if the
     sale has closed since); otherwise ``conflict``;
  2. closed because sold out → ``sold_out``; closed otherwise or past
     ``ends_at`` → ``not_open``; before ``starts_at`` → ``not_open`` with
     ``retry_after_ms`` = time to start;
  3. ``stock_left == 0`` → ``sold_out``;
  4. ``bought + qty > limit_per_user`` → ``limit_reached``;
  5. ``qty > stock_left`` → ``sold_out`` (all or nothing, never a partial fill);
  6. otherwise take ``qty``: ``stock_left -= qty``, ``bought += qty``, store
     the order under its cid.
  Failures change nothing and are not remembered: a retry decides afresh.
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec

from roomserver.core.creation import Cid
from roomserver.protocol import OpError, convert_params

MAX_STOCK: Final = 10_000_000
# 1,000,000.00 per unit; with MAX_STOCK units every money sum stays below
# 2**53, so JavaScript clients and Lua (doubles) count cents exactly.
MAX_PRICE_CENTS: Final = 100_000_000
MAX_ID_CHARS: Final = 64
MAX_TITLE_CHARS: Final = 100
MAX_IMAGE_CHARS: Final = 2048
MAX_CID_CHARS: Final = 64
MIN_DURATION_MS: Final = 1_000
MAX_DURATION_MS: Final = 86_400_000
# A sale belongs to a show: it may be scheduled at most a day ahead.
MAX_START_AHEAD_MS: Final = 86_400_000
MAX_TIER: Final = 10


class Product(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True, frozen=True):
    """A product as shown in the room (also what ``product.pin`` carries)."""

    id: str
    title: str
    price_cents: int
    image: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.id) <= MAX_ID_CHARS:
            raise ValueError(f"product.id must be 1 to {MAX_ID_CHARS} characters")
        if not self.title.strip() or len(self.title) > MAX_TITLE_CHARS:
            raise ValueError(f"product.title must be 1 to {MAX_TITLE_CHARS} characters")
        if not 0 <= self.price_cents <= MAX_PRICE_CENTS:
            raise ValueError(f"product.price_cents must be between 0 and {MAX_PRICE_CENTS}")
        if self.image is not None and len(self.image) > MAX_IMAGE_CHARS:
            raise ValueError(f"product.image must be at most {MAX_IMAGE_CHARS} characters")


class SaleParams(msgspec.Struct, forbid_unknown_fields=False):
    """``sale.create`` params."""

    product: Product
    price_cents: int
    stock: int
    limit_per_user: int
    starts_at: int | None = None
    duration_ms: int | None = None
    # Early access (优先购买权): members of this tier or higher may buy ``early_ms``
    # before ``starts_at`` (both or neither).
    early_min_tier: int | None = None
    early_ms: int | None = None

    # Idempotency key: a retry with it returns what the first request created.
    cid: Cid | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.price_cents <= MAX_PRICE_CENTS:
            raise ValueError(f"price_cents must be between 0 and {MAX_PRICE_CENTS}")
        if not 1 <= self.stock <= MAX_STOCK:
            raise ValueError(f"stock must be between 1 and {MAX_STOCK}")
        if not 1 <= self.limit_per_user <= MAX_STOCK:
            raise ValueError(f"limit_per_user must be between 1 and {MAX_STOCK}")
        if self.starts_at is not None and self.starts_at < 0:
            raise ValueError("starts_at must be a unix time in milliseconds")
        if self.duration_ms is not None and not MIN_DURATION_MS <= self.duration_ms <= MAX_DURATION_MS:
            raise ValueError(f"duration_ms must be between {MIN_DURATION_MS} and {MAX_DURATION_MS}")
        if (self.early_min_tier is None) != (self.early_ms is None):
            raise ValueError(
                "early_min_tier and early_ms go together (members of that tier buy early_ms early)"
            )
        if self.early_min_tier is not None and not 1 <= self.early_min_tier <= MAX_TIER:
            raise ValueError(f"early_min_tier must be between 1 and {MAX_TIER}")
        if self.early_ms is not None and not MIN_DURATION_MS <= self.early_ms <= MAX_START_AHEAD_MS:
            raise ValueError(f"early_ms must be between {MIN_DURATION_MS} and {MAX_START_AHEAD_MS}")


class BuyParams(msgspec.Struct, forbid_unknown_fields=False):
    """``sale.buy`` params (``qty`` against the sale's limit is checked by ``decide_buy``)."""

    sale: str
    qty: int
    cid: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.sale) <= MAX_ID_CHARS:
            raise ValueError(f"sale must be a sale id (1 to {MAX_ID_CHARS} characters)")
        if not 1 <= self.qty <= MAX_STOCK:
            raise ValueError(f"qty must be between 1 and {MAX_STOCK}")
        if not 1 <= len(self.cid) <= MAX_CID_CHARS:
            raise ValueError(f"cid must be 1 to {MAX_CID_CHARS} characters")


def parse_params(params: dict[str, Any]) -> SaleParams:
    return convert_params(params, SaleParams)


def parse_buy(params: dict[str, Any]) -> BuyParams:
    return convert_params(params, BuyParams)


class SaleState(enum.StrEnum):
    """One-way: SCHEDULED → OPEN → CLOSED (a sale may also close while scheduled).

    SCHEDULED/OPEN follow from the clock (``starts_at``, ``ends_at``); CLOSED
    with a reason is recorded by ``close_sale`` and is final.
    """

    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"


class CloseReason(enum.StrEnum):
    SOLD_OUT = "sold_out"
    ENDED = "ended"
    CANCELLED = "cancelled"


class Sale(msgspec.Struct, frozen=True):
    """A sale as kept in the room document; live counters live in the bus."""

    id: str
    product: Product
    price_cents: int
    stock: int
    limit_per_user: int
    created_at: int
    starts_at: int
    ends_at: int | None  # None: until sold out or cancelled
    closed_reason: CloseReason | None = None
    closed_at: int | None = None
    sold: int = 0  # final once closed
    early_min_tier: int = 0  # 0: no early access
    early_ms: int = 0

    @property
    def opens_at(self) -> int:
        """When the first buyer may buy: members with early access, else everyone."""
        return self.starts_at - self.early_ms if self.early_min_tier else self.starts_at

    def early_for(self, tier: int, now_ms: int) -> bool:
        """Is ``now_ms`` in the early window, and ``tier`` one it admits?"""
        return bool(self.early_min_tier) and tier >= self.early_min_tier and self.opens_at <= now_ms

    def state_at(self, now_ms: int) -> SaleState:
        if self.closed_reason is not None or (self.ends_at is not None and now_ms >= self.ends_at):
            return SaleState.CLOSED
        return SaleState.SCHEDULED if now_ms < self.starts_at else SaleState.OPEN


def check_started(sale: Sale, now_ms: int, tier: int = 0) -> None:
    """A buy before ``starts_at`` is ``not_open`` with the wait, unless ``tier`` has
    early access and its window is open; the end of the window is the stock's own
    check (the bus's clock decides it atomically)."""
    if sale.state_at(now_ms) is SaleState.SCHEDULED and not sale.early_for(tier, now_ms):
        early = sale.early_min_tier and tier >= sale.early_min_tier
        opens = sale.opens_at if early else sale.starts_at
        raise OpError("not_open", "this sale has not started yet", retry_after_ms=opens - now_ms)


def new_sale(params: SaleParams, *, sale_id: str, now_ms: int) -> Sale:
    """A start time in the past means now; too far ahead is a bad request."""
    starts_at = now_ms if params.starts_at is None else max(params.starts_at, now_ms)
    if starts_at - now_ms > MAX_START_AHEAD_MS:
        raise OpError("bad_request", f"starts_at must be within {MAX_START_AHEAD_MS // 3_600_000} h from now")
    return Sale(
        id=sale_id,
        product=params.product,
        price_cents=params.price_cents,
        stock=params.stock,
        limit_per_user=params.limit_per_user,
        created_at=now_ms,
        starts_at=starts_at,
        ends_at=None if params.duration_ms is None else starts_at + params.duration_ms,
        early_min_tier=params.early_min_tier or 0,
        early_ms=params.early_ms or 0,
    )


def due_to_end(sale: Sale, now_ms: int) -> bool:
    """True when a timed sale ran out of time but ``sale.closed`` is not recorded yet."""
    return sale.closed_reason is None and sale.ends_at is not None and now_ms >= sale.ends_at


def close_sale(sale: Sale, reason: CloseReason, *, sold: int, now_ms: int) -> Sale:
    if sale.closed_reason is not None:
        raise OpError("conflict", f"sale {sale.id} is already closed ({sale.closed_reason.value})")
    if not 0 <= sold <= sale.stock:
        raise ValueError(f"sold {sold} outside 0..{sale.stock} for sale {sale.id}")
    return msgspec.structs.replace(sale, closed_reason=reason, closed_at=now_ms, sold=sold)


# --- orders and the buy decision ---------------------------------------------


class Order(msgspec.Struct, frozen=True):
    id: str
    sale: str
    user: str
    qty: int
    price_cents: int  # unit price
    cid: str
    created_at: int

    @property
    def amount_cents(self) -> int:
        return self.qty * self.price_cents


def order_id(sale_id: str, user: str, cid: str) -> str:
    """Deterministic, so a retry (on any node, any backend) names the same order.

    Hashes the JSON array ``[sale, user, cid]`` so no separator can be forged.
    The caller computes it and passes it to the backend's atomic script.
    """
    digest = hashlib.sha256(msgspec.json.encode([sale_id, user, cid])).hexdigest()
    return "o_" + digest[:24]


class BuyOutcome(NamedTuple):
    order: Order
    replayed: bool  # True: the cid's earlier order, nothing taken now
    stock_left: int  # after this decision
    bought_by_user: int  # after this decision


def decide_buy(
    sale: Sale,
    *,
    user: str,
    qty: int,
    cid: str,
    now_ms: int,
    stock_left: int,
    bought_by_user: int,
    existing: Order | None,
) -> BuyOutcome:
    """One atomic buy (see the module docstring for the rules backends mirror)."""
    if not 0 <= stock_left <= sale.stock or bought_by_user < 0:
        raise ValueError(f"impossible counters stock_left={stock_left} bought={bought_by_user}")
    if existing is not None:
        if existing.user != user or existing.cid != cid:
            raise ValueError("existing must be the order recorded for this user's cid")
        if existing.sale != sale.id or existing.qty != qty:
            raise OpError("conflict", f"cid {cid!r} was already used for another order")
        return BuyOutcome(existing, True, stock_left, bought_by_user)
    state = sale.state_at(now_ms)
    if state is SaleState.CLOSED:
        if sale.closed_reason is CloseReason.SOLD_OUT:
            raise OpError("sold_out", "sold out")
        raise OpError("not_open", "this sale has ended")
    if state is SaleState.SCHEDULED:
        raise OpError("not_open", "this sale has not started yet", retry_after_ms=sale.starts_at - now_ms)
    if stock_left == 0:
        raise OpError("sold_out", "sold out")
    if bought_by_user + qty > sale.limit_per_user:
        room_left = sale.limit_per_user - bought_by_user
        raise OpError(
            "limit_reached", f"at most {sale.limit_per_user} per user; you can buy {room_left} more"
        )
    if qty > stock_left:
        raise OpError("sold_out", f"only {stock_left} left")
    order = Order(
        id=order_id(sale.id, user, cid),
        sale=sale.id,
        user=user,
        qty=qty,
        price_cents=sale.price_cents,
        cid=cid,
        created_at=now_ms,
    )
    return BuyOutcome(order, False, stock_left - qty, bought_by_user + qty)


@dataclass
class SaleLedger:
    """The reference model: one sale's atomic counters, applied one buy at a time.

    ``cids`` may be shared by the ledgers of one room, as the backends scope
    cid records by room. A backend that settles a micro-batch of attempts in
    one call must give the same results as calling ``buy`` in arrival order.
    """

    sale: Sale
    cids: dict[tuple[str, str], Order] = field(default_factory=dict)
    stock_left: int = -1
    bought: dict[str, int] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stock_left < 0:
            self.stock_left = self.sale.stock

    @property
    def sold(self) -> int:
        return self.sale.stock - self.stock_left

    def buy(self, user: str, qty: int, cid: str, now_ms: int) -> BuyOutcome:
        outcome = decide_buy(
            self.sale,
            user=user,
            qty=qty,
            cid=cid,
            now_ms=now_ms,
            stock_left=self.stock_left,
            bought_by_user=self.bought.get(user, 0),
            existing=self.cids.get((user, cid)),
        )
        if not outcome.replayed:
            self.stock_left = outcome.stock_left
            self.bought[user] = outcome.bought_by_user
            self.cids[(user, cid)] = outcome.order
            self.orders.append(outcome.order)
        return outcome

    def close(self, reason: CloseReason, now_ms: int) -> Sale:
        self.sale = close_sale(self.sale, reason, sold=self.sold, now_ms=now_ms)
        return self.sale


def reconcile(sale: Sale, orders: Iterable[Order], *, sold: int | None = None) -> list[str]:
    """Problems found between a sale and its order list (empty = reconciled).

    ``sold`` defaults to the sale's recorded ``sold`` once closed; for an open
    sale pass the bus's ``stock - stock_left``.
    """
    orders = list(orders)
    problems: list[str] = []
    if sold is None:
        sold = sale.sold if sale.closed_reason is not None else None
    per_user: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    for o in orders:
        ids[o.id] += 1
        per_user[o.user] += o.qty
        if o.sale != sale.id:
            problems.append(f"order {o.id} belongs to sale {o.sale}")
        if o.id != order_id(o.sale, o.user, o.cid):
            problems.append(f"order {o.id} does not match its (sale, user, cid)")
        if o.qty < 1:
            problems.append(f"order {o.id} has qty {o.qty}")
        if o.price_cents != sale.price_cents:
            problems.append(f"order {o.id} priced {o.price_cents}, sale price is {sale.price_cents}")
    problems += [f"order id {oid} appears {n} times" for oid, n in ids.items() if n > 1]
    total = sum(o.qty for o in orders)
    if total > sale.stock:
        problems.append(f"orders total {total} exceeds stock {sale.stock}")
    if sold is not None and total != sold:
        problems.append(f"orders total {total} but {sold} sold")
    problems += [
        f"user {user} bought {n}, limit {sale.limit_per_user}"
        for user, n in per_user.items()
        if n > sale.limit_per_user
    ]
    return problems


# --- wire views -------------------------------------------------------------


def sale_view(sale: Sale, now_ms: int, stock_left: int | None = None) -> dict[str, Any]:
    """``sale.opened`` data, the join snapshot's ``sale`` and ``sale.create``'s reply."""
    view: dict[str, Any] = {
        "id": sale.id,
        "product": msgspec.to_builtins(sale.product),
        "price_cents": sale.price_cents,
        "stock": sale.stock,
        "limit_per_user": sale.limit_per_user,
        "starts_at": sale.starts_at,
        "ends_at": sale.ends_at,
        "state": sale.state_at(now_ms).value,
    }
    if sale.early_min_tier:
        view["early_min_tier"] = sale.early_min_tier
        view["early_ms"] = sale.early_ms
    if stock_left is not None:
        view["left"] = stock_left
    if sale.closed_reason is not None:
        view["reason"] = sale.closed_reason.value
        view["sold"] = sale.sold
    return view


def stock_view(sale_id: str, stock_left: int) -> dict[str, Any]:
    """``sale.stock`` data (ephemeral)."""
    return {"id": sale_id, "left": stock_left}


def closed_view(sale: Sale) -> dict[str, Any]:
    """``sale.closed`` data."""
    if sale.closed_reason is None:
        raise ValueError(f"sale {sale.id} is not closed")
    return {"id": sale.id, "sold": sale.sold, "reason": sale.closed_reason.value}


def order_view(order: Order) -> dict[str, Any]:
    """``sale.buy``'s reply ``order`` (and the orders REST listing)."""
    return {
        "id": order.id,
        "sale": order.sale,
        "user": order.user,
        "qty": order.qty,
        "price_cents": order.price_cents,
        "amount_cents": order.amount_cents,
        "cid": order.cid,
        "ts": order.created_at,
    }
