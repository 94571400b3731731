"""Red packets: params, the double-average split, grabs and the luckiest grab."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core import redpacket as rp
from roomserver.protocol import OpError

GOOD = {"total_cents": 1000, "count": 10}


def test_params_accept_a_packet() -> None:
    p = rp.parse_params({**GOOD, "message": "恭喜发财", "extra": 1})
    assert (p.total_cents, p.count, p.message) == (1000, 10, "恭喜发财")
    assert rp.parse_params({"total_cents": 10_000, "count": 10_000}).message == ""
    assert rp.parse_params({"total_cents": 1, "count": 1, "message": "m" * 50}).count == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", 0, "count must be between 1 and 10000"),
        ("count", -1, "count must be between 1 and 10000"),
        ("count", 10_001, "count must be between 1 and 10000"),
        ("count", 10**25, "count must be between 1 and 10000"),
        ("count", 2.0, "Expected `int`, got `float`"),
        ("count", "2", "Expected `int`, got `str`"),
        ("count", True, "Expected `int`, got `bool`"),
        ("count", None, "Expected `int`, got `null`"),
        ("total_cents", 9, "total_cents must be at least count"),
        ("total_cents", 0, "total_cents must be at least count"),
        ("total_cents", -100, "total_cents must be at least count"),
        ("total_cents", 100_000_001, "total_cents must be at most 100000000"),
        ("total_cents", 10.5, "Expected `int`, got `float`"),
        ("total_cents", False, "Expected `int`, got `bool`"),
        ("total_cents", {}, "Expected `int`, got `object`"),
        ("message", "m" * 51, "message must be at most 50 characters"),
        ("message", None, "Expected `str`, got `null`"),
        ("message", 5, "Expected `str`, got `int`"),
    ],
)
def test_params_reject_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(OpError) as exc:
        rp.parse_params({**GOOD, field: value})
    assert exc.value.code == "bad_request"
    assert message in exc.value.message


@pytest.mark.parametrize("value", [None, "", "x" * 65, 3, True])
def test_grab_params_reject_a_bad_packet_id(value: object) -> None:
    with pytest.raises(OpError) as exc:
        rp.parse_grab({"packet": value})
    assert exc.value.code == "bad_request"


def test_grab_bounds_are_double_average_capped_to_leave_a_cent_each() -> None:
    assert rp.grab_bounds(1000, 10) == (1, 200)
    assert rp.grab_bounds(3, 2) == (1, 2)  # 2*3//2 = 3 would leave the last share nothing
    assert rp.grab_bounds(5, 5) == (1, 1)
    assert rp.grab_bounds(7, 1) == (7, 7)
    for remaining, left in [(0, 1), (4, 5), (5, 0)]:
        with pytest.raises(ValueError):
            rp.grab_bounds(remaining, left)


def test_split_follows_the_bounds_with_extreme_random_sources() -> None:
    highest = rp.split(100, 4, lambda lo, hi: hi)
    # 2*100//4 = 50; 2*50//3 = 33; 2*17//2 = 17 is capped to 16 so the last share gets 1.
    assert highest == [50, 33, 16, 1]
    lowest = rp.split(100, 4, lambda lo, hi: lo)
    assert lowest == [1, 1, 1, 97]
    assert rp.split(4, 4, random.Random(1)) == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        rp.split(100, 4, lambda lo, hi: hi + 1)


def test_split_is_deterministic_for_a_seeded_source() -> None:
    assert rp.split(10_000, 50, random.Random(42)) == rp.split(10_000, 50, random.Random(42))
    assert rp.split(10_000, 50, random.Random(42)) != rp.split(10_000, 50, random.Random(43))


def test_each_position_gets_the_average_in_expectation() -> None:
    # Double average: grab i's mean is total/count whatever i is (within noise).
    rng = random.Random(5)
    runs, count, total = 4_000, 5, 500
    sums = [0] * count
    for _ in range(runs):
        for i, amount in enumerate(rp.split(total, count, rng)):
            sums[i] += amount
    means = [s / runs for s in sums]
    assert all(abs(m - total / count) < 4 for m in means), means


@given(
    count=st.integers(1, 400),
    extra=st.integers(0, 200_000),
    seed=st.integers(0, 2**32),
)
def test_split_sums_exactly_with_every_share_at_least_one_cent(count: int, extra: int, seed: int) -> None:
    total = count + extra
    amounts = rp.split(total, count, random.Random(seed))
    assert len(amounts) == count
    assert sum(amounts) == total
    assert min(amounts) >= 1
    remaining = total
    for left, amount in zip(range(count, 0, -1), amounts, strict=True):
        if left == 1:
            assert amount == remaining
        else:
            assert 1 <= amount <= 2 * remaining // left
            assert remaining - amount >= left - 1
        remaining -= amount


@given(count=st.sampled_from([1, 2, 9_999, 10_000]), extra=st.sampled_from([0, 1, 99_990_000]))
def test_split_at_the_limits(count: int, extra: int) -> None:
    amounts = rp.split(count + extra, count, random.Random(count))
    assert len(amounts) == count and sum(amounts) == count + extra and min(amounts) >= 1


def make_ledger(total: int = 300, count: int = 3) -> rp.PacketLedger:
    packet = rp.new_packet(
        rp.parse_params({"total_cents": total, "count": count}), packet_id="R1", sender="host", now_ms=5
    )
    return rp.PacketLedger(packet, rp.split(total, count, random.Random(0)))


def test_grabs_until_empty_then_sold_out_and_repeat_grabs_conflict() -> None:
    ledger = make_ledger()
    got = [ledger.grab(u) for u in ("a", "b", "c")]
    assert sum(got) == 300 and ledger.finished
    assert ledger.grabs == list(zip("abc", got, strict=True))
    for user, code in [("d", "sold_out"), ("a", "conflict"), ("c", "conflict")]:
        with pytest.raises(OpError) as exc:
            ledger.grab(user)
        assert exc.value.code == code
    ledger2 = make_ledger()
    first = ledger2.grab("a")
    with pytest.raises(OpError) as exc:
        ledger2.grab("a")
    assert exc.value.code == "conflict" and str(first) in exc.value.message
    assert len(ledger2.amounts) == 2


def test_ledger_refuses_amounts_that_do_not_split_the_packet() -> None:
    packet = make_ledger().packet
    for amounts in ([100, 100], [100, 100, 99], [100, 100, 101]):
        with pytest.raises(ValueError):
            rp.PacketLedger(packet, amounts)


def test_best_is_the_largest_grab_earliest_on_a_tie() -> None:
    assert rp.best([]) is None
    assert rp.best([("a", 5), ("b", 9), ("c", 9), ("d", 1)]) == {"user": "b", "amount_cents": 9}
    packet = make_ledger().packet
    assert rp.finished_view(packet, [("a", 1), ("b", 299)]) == {
        "id": "R1",
        "best": {"user": "b", "amount_cents": 299},
    }
    assert rp.sent_view(packet) == {
        "id": "R1",
        "sender": "host",
        "total_cents": 300,
        "count": 3,
        "message": "",
    }
