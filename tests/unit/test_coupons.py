"""Coupons: issue params, the claim decision and its reference model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core import coupons as cp
from roomserver.protocol import OpError

GOOD = {
    "title": "10 off 100",
    "discount_cents": 1000,
    "min_spend_cents": 10_000,
    "quantity": 5,
    "per_user": 2,
}


def make_coupon(**params: object) -> cp.Coupon:
    return cp.new_coupon(cp.parse_params({**GOOD, **params}), coupon_id="C1", issuer="host", now_ms=7)


def test_params_accept_a_coupon_and_default_the_optional_fields() -> None:
    p = cp.parse_params({**GOOD, "color": "red"})
    assert (p.title, p.discount_cents, p.min_spend_cents, p.quantity, p.per_user) == (
        "10 off 100",
        1000,
        10_000,
        5,
        2,
    )
    p = cp.parse_params({"title": "t", "discount_cents": 1, "quantity": 1_000_000})
    assert (p.min_spend_cents, p.per_user) == (0, 1)
    assert cp.parse_params({**GOOD, "min_spend_cents": 1000}).min_spend_cents == 1000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "", "title must be 1 to 50 characters"),
        ("title", "  ", "title must be 1 to 50 characters"),
        ("title", "t" * 51, "title must be 1 to 50 characters"),
        ("title", None, "Expected `str`, got `null`"),
        ("title", 3, "Expected `str`, got `int`"),
        ("discount_cents", 0, "discount_cents must be between 1 and 100000000"),
        ("discount_cents", -5, "discount_cents must be between 1 and 100000000"),
        ("discount_cents", 10**18, "discount_cents must be between 1 and 100000000"),
        ("discount_cents", 10.0, "Expected `int`, got `float`"),
        ("discount_cents", True, "Expected `int`, got `bool`"),
        ("discount_cents", "10", "Expected `int`, got `str`"),
        ("min_spend_cents", -1, "min_spend_cents must be between 0 and 1000000000"),
        ("min_spend_cents", 10**12, "min_spend_cents must be between 0 and 1000000000"),
        ("min_spend_cents", 999, "discount_cents must not exceed min_spend_cents"),
        ("min_spend_cents", None, "Expected `int`, got `null`"),
        ("quantity", 0, "quantity must be between 1 and 1000000"),
        ("quantity", 1_000_001, "quantity must be between 1 and 1000000"),
        ("quantity", 1.5, "Expected `int`, got `float`"),
        ("quantity", False, "Expected `int`, got `bool`"),
        ("per_user", 0, "per_user must be between 1 and 1000000"),
        ("per_user", -2, "per_user must be between 1 and 1000000"),
        ("per_user", 10**9, "per_user must be between 1 and 1000000"),
        ("per_user", "1", "Expected `int`, got `str`"),
    ],
)
def test_params_reject_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(OpError) as exc:
        cp.parse_params({**GOOD, field: value})
    assert exc.value.code == "bad_request"
    assert message in exc.value.message


@pytest.mark.parametrize("missing", ["title", "discount_cents", "quantity"])
def test_params_require_title_discount_and_quantity(missing: str) -> None:
    params = dict(GOOD)
    del params[missing]
    with pytest.raises(OpError) as exc:
        cp.parse_params(params)
    assert exc.value.code == "bad_request" and missing in exc.value.message


@pytest.mark.parametrize("value", [None, "", "x" * 65, 1, False])
def test_claim_params_reject_a_bad_coupon_id(value: object) -> None:
    with pytest.raises(OpError) as exc:
        cp.parse_claim({"coupon": value})
    assert exc.value.code == "bad_request"


def test_discount_applies_from_min_spend_and_never_exceeds_the_order() -> None:
    coupon = make_coupon()
    assert cp.discount_for(coupon, 9_999) == 0
    assert cp.discount_for(coupon, 10_000) == 1000
    no_threshold = make_coupon(min_spend_cents=0)
    assert cp.discount_for(no_threshold, 300) == 300
    assert cp.discount_for(no_threshold, 0) == 0


def test_claims_until_limit_then_sold_out() -> None:
    ledger = cp.CouponLedger(make_coupon(quantity=3, per_user=2))
    a1 = ledger.claim("a", 10)
    a2 = ledger.claim("a", 11)
    assert (a1.n, a2.n) == (1, 2) and a1.id != a2.id
    assert a1.id == cp.claim_id("C1", "a", 1)
    with pytest.raises(OpError) as exc:
        ledger.claim("a", 12)
    assert exc.value.code == "limit_reached"
    ledger.claim("b", 13)
    for user in ("a", "b", "c"):
        with pytest.raises(OpError) as exc:
            ledger.claim(user, 14)
        assert exc.value.code == "sold_out"  # sold out is decided before the user's limit
    assert ledger.claimed == 3 and len(ledger.claims) == 3
    assert cp.reconcile(ledger.coupon, ledger.claims, claimed=3) == []
    assert cp.claim_view(a1) == {"id": a1.id, "coupon": "C1"}


def test_decide_claim_rejects_impossible_counters() -> None:
    coupon = make_coupon()
    for claimed, mine in [(-1, 0), (1, 2), (6, 0)]:
        with pytest.raises(ValueError):
            cp.decide_claim(coupon, user="a", claimed=claimed, claimed_by_user=mine, now_ms=0)


def test_reconcile_reports_problems() -> None:
    coupon = make_coupon(quantity=2, per_user=1)
    forged = cp.Claim(id="cl_x", coupon="C9", user="a", n=1, created_at=0)
    real = cp.Claim(id=cp.claim_id("C1", "a", 1), coupon="C1", user="a", n=1, created_at=0)
    problems = cp.reconcile(coupon, [real, real, forged], claimed=2)
    assert any("3 claims but counter says 2" in p for p in problems)
    assert any("exceed quantity 2" in p for p in problems)
    assert any("duplicate claim ids" in p for p in problems)
    assert any("claim cl_x does not match" in p for p in problems)
    assert any("user a claimed 3, limit 1" in p for p in problems)


def test_issued_view() -> None:
    assert cp.issued_view(make_coupon()) == {
        "id": "C1",
        "title": "10 off 100",
        "discount_cents": 1000,
        "min_spend_cents": 10_000,
        "quantity": 5,
        "per_user": 2,
    }


@given(
    quantity=st.integers(1, 30),
    per_user=st.integers(1, 4),
    users=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=80),
)
def test_any_claim_sequence_respects_quantity_and_per_user(
    quantity: int, per_user: int, users: list[str]
) -> None:
    ledger = cp.CouponLedger(make_coupon(quantity=quantity, per_user=per_user))
    mine: dict[str, int] = {}
    for t, user in enumerate(users):
        taken = sum(mine.values())
        expected = (
            "sold_out" if taken >= quantity else "limit_reached" if mine.get(user, 0) >= per_user else None
        )
        try:
            claim = ledger.claim(user, t)
        except OpError as err:
            assert err.code == expected
            continue
        assert expected is None
        mine[user] = mine.get(user, 0) + 1
        assert claim.n == mine[user]
    assert ledger.claimed == sum(mine.values()) <= quantity
    assert cp.reconcile(ledger.coupon, ledger.claims, claimed=ledger.claimed) == []
