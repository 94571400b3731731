"""Flash sale: params, state machine, the buy decision and its reference model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from roomserver.core import flashsale as fs
from roomserver.protocol import OpError

PRODUCT = {"id": "p1", "title": "Lipstick", "price_cents": 9900}
GOOD = {"product": PRODUCT, "price_cents": 4900, "stock": 10, "limit_per_user": 2}
T0 = 1_000_000


def make_sale(now_ms: int = T0, sale_id: str = "s1", **params: object) -> fs.Sale:
    return fs.new_sale(fs.parse_params({**GOOD, **params}), sale_id=sale_id, now_ms=now_ms)


def error_of(fn, *args, **kwargs) -> OpError:
    with pytest.raises(OpError) as exc:
        fn(*args, **kwargs)
    return exc.value


# --- params ---------------------------------------------------------------------


def test_params_accept_a_sale_and_keep_the_product() -> None:
    p = fs.parse_params({**GOOD, "product": {**PRODUCT, "image": "https://x/y.png", "sku": "ignored"}})
    assert p.product == fs.Product(id="p1", title="Lipstick", price_cents=9900, image="https://x/y.png")
    assert (p.price_cents, p.stock, p.limit_per_user, p.starts_at, p.duration_ms) == (4900, 10, 2, None, None)
    assert fs.parse_params({**GOOD, "price_cents": 0, "stock": 10_000_000}).stock == 10_000_000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stock", 0, "stock must be between 1 and 10000000"),
        ("stock", -3, "stock must be between 1 and 10000000"),
        ("stock", 10_000_001, "stock must be between 1 and 10000000"),
        ("stock", 10**30, "stock must be between 1 and 10000000"),
        ("stock", 5.0, "Expected `int`, got `float`"),
        ("stock", "5", "Expected `int`, got `str`"),
        ("stock", True, "Expected `int`, got `bool`"),
        ("stock", None, "Expected `int`, got `null`"),
        ("price_cents", -1, "price_cents must be between 0 and 100000000"),
        ("price_cents", 100_000_001, "price_cents must be between 0 and 100000000"),
        ("price_cents", 1.5, "Expected `int`, got `float`"),
        ("price_cents", False, "Expected `int`, got `bool`"),
        ("limit_per_user", 0, "limit_per_user must be between 1 and 10000000"),
        ("limit_per_user", -1, "limit_per_user must be between 1 and 10000000"),
        ("limit_per_user", [1], "Expected `int`, got `array`"),
        ("starts_at", -1, "starts_at must be a unix time in milliseconds"),
        ("starts_at", "soon", "Expected `int | null`, got `str`"),
        ("duration_ms", 999, "duration_ms must be between 1000 and 86400000"),
        ("duration_ms", 10**20, "duration_ms must be between 1000 and 86400000"),
        ("duration_ms", True, "Expected `int | null`, got `bool`"),
        ("product", None, "Expected `object`, got `null`"),
        ("product", "p1", "Expected `object`, got `str`"),
        ("product", {"id": "p1", "title": "t"}, "missing required field `price_cents`"),
        ("product", {**PRODUCT, "id": ""}, "product.id must be 1 to 64 characters"),
        ("product", {**PRODUCT, "id": "x" * 65}, "product.id must be 1 to 64 characters"),
        ("product", {**PRODUCT, "title": " "}, "product.title must be 1 to 100 characters"),
        ("product", {**PRODUCT, "title": "t" * 101}, "product.title must be 1 to 100 characters"),
        ("product", {**PRODUCT, "price_cents": -1}, "product.price_cents must be between 0 and"),
        ("product", {**PRODUCT, "price_cents": True}, "Expected `int`, got `bool`"),
        ("product", {**PRODUCT, "image": "u" * 2049}, "product.image must be at most 2048 characters"),
        ("product", {**PRODUCT, "image": 3}, "Expected `str | null`, got `int`"),
    ],
)
def test_params_reject_bad_values(field: str, value: object, message: str) -> None:
    err = error_of(fs.parse_params, {**GOOD, field: value})
    assert err.code == "bad_request"
    assert message in err.message


@pytest.mark.parametrize("missing", ["product", "price_cents", "stock", "limit_per_user"])
def test_params_require_fields(missing: str) -> None:
    params = dict(GOOD)
    del params[missing]
    err = error_of(fs.parse_params, params)
    assert err.code == "bad_request" and missing in err.message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sale": "s1", "qty": 0, "cid": "c"}, "qty must be between 1 and 10000000"),
        ({"sale": "s1", "qty": -1, "cid": "c"}, "qty must be between 1 and 10000000"),
        ({"sale": "s1", "qty": 10**9, "cid": "c"}, "qty must be between 1 and 10000000"),
        ({"sale": "s1", "qty": 1.0, "cid": "c"}, "Expected `int`, got `float`"),
        ({"sale": "s1", "qty": True, "cid": "c"}, "Expected `int`, got `bool`"),
        ({"sale": "s1", "qty": "1", "cid": "c"}, "Expected `int`, got `str`"),
        ({"sale": "s1", "qty": 1}, "missing required field `cid`"),
        ({"sale": "s1", "qty": 1, "cid": ""}, "cid must be 1 to 64 characters"),
        ({"sale": "s1", "qty": 1, "cid": "c" * 65}, "cid must be 1 to 64 characters"),
        ({"sale": "s1", "qty": 1, "cid": None}, "Expected `str`, got `null`"),
        ({"sale": "s1", "qty": 1, "cid": 7}, "Expected `str`, got `int`"),
        ({"sale": "", "qty": 1, "cid": "c"}, "sale must be a sale id"),
        ({"qty": 1, "cid": "c"}, "missing required field `sale`"),
    ],
)
def test_buy_params_reject_bad_values(params: dict, message: str) -> None:
    err = error_of(fs.parse_buy, params)
    assert err.code == "bad_request"
    assert message in err.message


def test_buy_params_accept_a_buy() -> None:
    assert fs.parse_buy({"sale": "s1", "qty": 2, "cid": "c" * 64}) == fs.BuyParams("s1", 2, "c" * 64)


# --- state machine ------------------------------------------------------------


def test_new_sale_starts_now_or_at_starts_at() -> None:
    now = make_sale()
    assert (now.starts_at, now.ends_at, now.state_at(T0)) == (T0, None, fs.SaleState.OPEN)
    past = make_sale(starts_at=5)
    assert past.starts_at == T0
    later = make_sale(starts_at=T0 + 5_000, duration_ms=60_000)
    assert (later.starts_at, later.ends_at) == (T0 + 5_000, T0 + 65_000)
    assert later.state_at(T0 + 4_999) is fs.SaleState.SCHEDULED
    assert later.state_at(T0 + 5_000) is fs.SaleState.OPEN
    assert later.state_at(T0 + 64_999) is fs.SaleState.OPEN
    assert later.state_at(T0 + 65_000) is fs.SaleState.CLOSED
    assert not fs.due_to_end(later, T0 + 64_999) and fs.due_to_end(later, T0 + 65_000)
    err = error_of(make_sale, starts_at=T0 + 86_400_001)
    assert err.code == "bad_request" and "starts_at" in err.message


def test_close_is_one_way() -> None:
    sale = make_sale(duration_ms=1_000)
    closed = fs.close_sale(sale, fs.CloseReason.ENDED, sold=3, now_ms=T0 + 1_000)
    assert closed.state_at(T0) is fs.SaleState.CLOSED  # final whatever the clock says
    assert not fs.due_to_end(closed, T0 + 5_000)
    assert fs.closed_view(closed) == {"id": "s1", "sold": 3, "reason": "ended"}
    assert error_of(fs.close_sale, closed, fs.CloseReason.CANCELLED, sold=3, now_ms=T0).code == "conflict"
    with pytest.raises(ValueError):
        fs.close_sale(sale, fs.CloseReason.SOLD_OUT, sold=11, now_ms=T0)
    with pytest.raises(ValueError):
        fs.closed_view(sale)


def test_views() -> None:
    sale = make_sale(starts_at=T0 + 10, duration_ms=1_000)
    assert fs.sale_view(sale, T0, stock_left=10) == {
        "id": "s1",
        "product": PRODUCT,
        "price_cents": 4900,
        "stock": 10,
        "limit_per_user": 2,
        "starts_at": T0 + 10,
        "ends_at": T0 + 1_010,
        "state": "scheduled",
        "left": 10,
    }
    closed = fs.close_sale(sale, fs.CloseReason.SOLD_OUT, sold=10, now_ms=T0 + 20)
    view = fs.sale_view(closed, T0 + 30)
    assert (view["state"], view["reason"], view["sold"]) == ("closed", "sold_out", 10)
    assert "left" not in view
    assert fs.stock_view("s1", 4) == {"id": "s1", "left": 4}


# --- the buy decision ---------------------------------------------------------


def buy(sale: fs.Sale, *, qty: int = 1, left: int = 10, bought: int = 0, existing=None, now=T0, user="u1"):
    return fs.decide_buy(
        sale,
        user=user,
        qty=qty,
        cid="c1",
        now_ms=now,
        stock_left=left,
        bought_by_user=bought,
        existing=existing,
    )


def test_a_buy_takes_stock_and_counts_the_user() -> None:
    out = buy(make_sale(), qty=2, left=7, bought=0)
    assert (out.replayed, out.stock_left, out.bought_by_user) == (False, 5, 2)
    assert out.order == fs.Order(
        id=fs.order_id("s1", "u1", "c1"),
        sale="s1",
        user="u1",
        qty=2,
        price_cents=4900,
        cid="c1",
        created_at=T0,
    )
    assert out.order.amount_cents == 9800
    assert fs.order_view(out.order)["amount_cents"] == 9800


def test_errors_in_rule_order() -> None:
    sale = make_sale(starts_at=T0 + 100, duration_ms=1_000)
    err = error_of(buy, sale, now=T0)
    assert (err.code, err.retry_after_ms) == ("not_open", 100)
    assert error_of(buy, sale, now=T0 + 1_100).code == "not_open"
    assert error_of(buy, sale, now=T0 + 100, left=0, bought=2).code == "sold_out"
    assert error_of(buy, sale, now=T0 + 100, left=5, bought=2).code == "limit_reached"
    assert error_of(buy, sale, now=T0 + 100, qty=3, left=5).code == "limit_reached"
    err = error_of(buy, sale, now=T0 + 100, qty=2, left=1)
    assert (err.code, err.message) == ("sold_out", "only 1 left")
    sold_out = fs.close_sale(sale, fs.CloseReason.SOLD_OUT, sold=10, now_ms=T0 + 200)
    assert error_of(buy, sold_out, now=T0 + 300, left=0).code == "sold_out"
    cancelled = fs.close_sale(sale, fs.CloseReason.CANCELLED, sold=0, now_ms=T0 + 200)
    assert error_of(buy, cancelled, now=T0 + 300).code == "not_open"


def test_a_retry_replays_and_other_params_conflict() -> None:
    sale = make_sale()
    first = buy(sale, qty=2).order
    again = buy(sale, qty=2, left=0, bought=2, existing=first, now=T0 + 9_999_999)
    assert again == (first, True, 0, 2)
    closed = fs.close_sale(sale, fs.CloseReason.SOLD_OUT, sold=10, now_ms=T0 + 1)
    assert buy(closed, qty=2, left=0, bought=2, existing=first).order is first
    assert error_of(buy, sale, qty=1, bought=2, existing=first).code == "conflict"
    other_sale = make_sale(sale_id="s2")
    assert error_of(buy, other_sale, qty=2, existing=first).code == "conflict"
    with pytest.raises(ValueError):
        buy(sale, qty=2, existing=first, user="u2")


def test_impossible_counters_are_a_bug_not_a_reply() -> None:
    with pytest.raises(ValueError):
        buy(make_sale(), left=11)
    with pytest.raises(ValueError):
        buy(make_sale(), bought=-1)


def test_order_ids_are_deterministic_and_unambiguous() -> None:
    assert fs.order_id("s1", "u1", "c1") == fs.order_id("s1", "u1", "c1")
    assert fs.order_id("s1", "u1", "c1") != fs.order_id("s1", "u1", "c2")
    assert fs.order_id("s", "1u", "c") != fs.order_id("s1", "u", "c")
    assert fs.order_id("s", 'u","c', "d") != fs.order_id("s", "u", 'c","d')


def test_reconcile_finds_each_kind_of_problem() -> None:
    sale = make_sale(stock=3, limit_per_user=2)
    ledger = fs.SaleLedger(sale)
    ledger.buy("a", 2, "c1", T0)
    ledger.buy("b", 1, "c1", T0)
    assert fs.reconcile(sale, ledger.orders, sold=3) == []
    closed = ledger.close(fs.CloseReason.SOLD_OUT, T0 + 1)
    assert fs.reconcile(closed, ledger.orders) == []
    a, b = ledger.orders
    forged = fs.Order(fs.order_id("s1", "a", "c9"), "s1", "a", 1, 4900, "c9", T0)
    problems = fs.reconcile(closed, [a, b, forged, a])
    assert any("exceeds stock 3" in p for p in problems)
    assert any("but 3 sold" in p for p in problems)
    assert any("user a bought 5, limit 2" in p for p in problems)
    assert any(f"order id {a.id} appears 2 times" in p for p in problems)
    wrong = fs.Order("o_x", "s9", "a", 0, 1, "c", T0)
    problems = fs.reconcile(closed, [wrong])
    assert len(problems) == 5  # other sale, id mismatch, qty, price, total != sold


# --- stateful: any interleaving of buyers, retries, clock and closing -----------

USERS = ["ann", "bob", "cat", "dan"]


class SaleMachine(RuleBasedStateMachine):
    """Drives two sales of one room (shared cid records) and checks the money rules.

    Besides the invariants, each buy's result is predicted here from the
    test's own bookkeeping, so a wrong decision (not just a broken invariant)
    fails.
    """

    bought = Bundle("bought")

    @initialize(
        stock=st.integers(1, 8),
        limit=st.integers(1, 3),
        start_in=st.integers(0, 3_000),
        duration=st.none() | st.integers(1_000, 60_000),
    )
    def setup(self, stock: int, limit: int, start_in: int, duration: int | None) -> None:
        self.now = T0
        cids: dict[tuple[str, str], fs.Order] = {}
        self.ledgers = {
            sid: fs.SaleLedger(
                make_sale(
                    sale_id=sid,
                    stock=stock,
                    limit_per_user=limit,
                    starts_at=T0 + start_in,
                    duration_ms=duration,
                ),
                cids=cids,
            )
            for sid in ("s1", "s2")
        }
        self.cid_owner: dict[tuple[str, str], fs.Order] = {}
        self.next_cid = 0

    def expected_error(self, ledger: fs.SaleLedger, user: str, qty: int) -> str | None:
        sale = ledger.sale
        mine = sum(o.qty for o in ledger.orders if o.user == user)
        left = sale.stock - sum(o.qty for o in ledger.orders)
        if sale.closed_reason is fs.CloseReason.SOLD_OUT:
            return "sold_out"
        if sale.closed_reason is not None or self.now < sale.starts_at:
            return "not_open"
        if sale.ends_at is not None and self.now >= sale.ends_at:
            return "not_open"
        if left == 0:
            return "sold_out"
        if mine + qty > sale.limit_per_user:
            return "limit_reached"
        if qty > left:
            return "sold_out"
        return None

    @rule(
        target=bought, sid=st.sampled_from(["s1", "s2"]), user=st.sampled_from(USERS), qty=st.integers(1, 4)
    )
    def buy_new(self, sid: str, user: str, qty: int):
        ledger = self.ledgers[sid]
        self.next_cid += 1
        cid = f"c{self.next_cid}"
        expected = self.expected_error(ledger, user, qty)
        try:
            out = ledger.buy(user, qty, cid, self.now)
        except OpError as err:
            assert err.code == expected, (err.code, expected)
            return multiple()
        assert expected is None
        assert not out.replayed and out.order.qty == qty
        self.cid_owner[(user, cid)] = out.order
        return out.order

    @rule(order=bought)
    def retry_same(self, order: fs.Order) -> None:
        ledger = self.ledgers[order.sale]
        before = (ledger.stock_left, len(ledger.orders))
        out = ledger.buy(order.user, order.qty, order.cid, self.now)
        assert out.replayed and out.order == order
        assert (ledger.stock_left, len(ledger.orders)) == before

    @rule(order=bought, qty_delta=st.integers(1, 3), other_sale=st.booleans())
    def retry_with_other_params(self, order: fs.Order, qty_delta: int, other_sale: bool) -> None:
        sid = ("s2" if order.sale == "s1" else "s1") if other_sale else order.sale
        qty = order.qty if other_sale else order.qty + qty_delta
        ledger = self.ledgers[sid]
        before = (ledger.stock_left, len(ledger.orders))
        with pytest.raises(OpError) as exc:
            ledger.buy(order.user, qty, order.cid, self.now)
        assert exc.value.code == "conflict"
        assert (ledger.stock_left, len(ledger.orders)) == before

    @rule(order=consumes(bought))
    def forget(self, order: fs.Order) -> None:
        """Lets the bundle shrink so new buys stay likely."""

    @rule(ms=st.integers(0, 2_000))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule()
    def handler_closes_when_due(self) -> None:
        """What the room handler does: close on sold out or at ends_at."""
        for ledger in self.ledgers.values():
            if ledger.sale.closed_reason is not None:
                continue
            if ledger.stock_left == 0:
                ledger.close(fs.CloseReason.SOLD_OUT, self.now)
            elif fs.due_to_end(ledger.sale, self.now):
                ledger.close(fs.CloseReason.ENDED, self.now)

    @rule(sid=st.sampled_from(["s1", "s2"]))
    def cancel(self, sid: str) -> None:
        ledger = self.ledgers[sid]
        if ledger.sale.closed_reason is None:
            ledger.close(fs.CloseReason.CANCELLED, self.now)

    @invariant()
    def money_rules_hold(self) -> None:
        for ledger in self.ledgers.values():
            sale = ledger.sale
            total = sum(o.qty for o in ledger.orders)
            assert ledger.stock_left >= 0 and total + ledger.stock_left == sale.stock
            per_user = Counter()
            for o in ledger.orders:
                per_user[o.user] += o.qty
            assert all(n <= sale.limit_per_user for n in per_user.values())
            assert fs.reconcile(sale, ledger.orders, sold=ledger.sold) == []
            if sale.closed_reason is not None:
                assert fs.reconcile(sale, ledger.orders) == []


SaleMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSaleMachine = SaleMachine.TestCase
