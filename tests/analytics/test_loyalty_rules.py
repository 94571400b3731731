"""The pure loyalty rules: the points spec, day points and caps, tiers, tags, RFM."""

from __future__ import annotations

import msgspec
import pytest

from roomserver.core import loyalty as L
from roomserver.core.loyalty import DAY_MS, LoyaltyRules, LoyaltySpecError, Rule, Stats

NOW = 20_000 * DAY_MS


def stats(**kw: int | None) -> Stats:
    base: dict[str, int | None] = dict(
        first_seen=NOW - 100 * DAY_MS,
        last_seen=NOW,
        shows=1,
        order_shows=0,
        watch_ms=0,
        interactions=1,
        orders=0,
        gmv=0,
        gift_value=0,
    )
    base.update(kw)
    return Stats(**base)  # type: ignore[arg-type]


def test_default_spec_parses_to_the_documented_rules() -> None:
    rules = L.parse_points_rules(L.DEFAULT_POINTS_RULES)
    assert rules == {
        "watch": Rule(1, 1, 60),
        "barrage": Rule(1, 1, 20),
        "like": Rule(1, 10, 10),
        "gift": Rule(1, 1, 1000),
        "order": Rule(1, 1, 5000),
        "share": Rule(20, 1, 200),
    }
    assert L.parse_tiers(L.DEFAULT_TIERS) == (100, 500, 2000, 10000, 50000)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("watch=1:60,watch=2", "given twice"),
        ("dance=1", "the rules are"),
        ("like=1/0", "PER must be at least 1"),
        ("like=-1", "RULE=POINTS"),
        ("like", "RULE=POINTS"),
    ],
)
def test_bad_points_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(LoyaltySpecError, match=message):
        L.parse_points_rules(spec)


@pytest.mark.parametrize(
    "spec", ["100,100", "500,100", "0,10", "a,b", ",".join(str(i) for i in range(1, 13))]
)
def test_bad_tier_lists_are_refused(spec: str) -> None:
    with pytest.raises(LoyaltySpecError):
        L.parse_tiers(spec)


def test_day_points_count_the_days_units_with_fractions_and_caps() -> None:
    r = LoyaltyRules()
    assert r.day_points("watch", 59_999) == 0
    assert r.day_points("watch", 60_000 * 61) == 60  # capped
    assert r.day_points("like", 9) == 0 and r.day_points("like", 15) == 1 and r.day_points("like", 215) == 10
    assert r.day_points("gift", 50) == 0 and r.day_points("gift", 100) == 1  # two 0.50 gifts make a point
    assert r.day_points("order", 12_345) == 123
    assert r.day_points("share", 11) == 200
    uncapped = LoyaltyRules(rules=L.parse_points_rules("barrage=2"))
    assert uncapped.day_points("barrage", 1_000) == 2_000 and uncapped.day_points("like", 1_000) == 0


def test_the_day_turns_at_local_midnight() -> None:
    r = LoyaltyRules(day_offset_min=480)
    midnight_cn = 20_000 * DAY_MS - 8 * 3_600_000  # 00:00 at +08:00 is 16:00 UTC the day before
    assert r.day(midnight_cn - 1) == 19_999 and r.day(midnight_cn) == 20_000
    assert LoyaltyRules(day_offset_min=0).day(midnight_cn) == 19_999


def test_tiers_from_points_earned_and_the_higher_of_token_and_computed() -> None:
    r = LoyaltyRules(tiers=(100, 500))
    assert [r.tier(p) for p in (0, 99, 100, 499, 500, 10**9)] == [0, 0, 1, 1, 2, 2]
    assert (r.min_points(0), r.min_points(1), r.min_points(2), r.min_points(3)) == (0, 100, 500, -1)
    assert L.tier_of(r, 120, token_tier=0) == 1 and L.tier_of(r, 120, token_tier=5) == 5


def test_each_tag_at_its_boundary() -> None:
    assert L.tags(stats(first_seen=NOW - 7 * DAY_MS), NOW) == ["new"]
    assert L.tags(stats(first_seen=NOW - 7 * DAY_MS - 1), NOW) == []
    assert L.tags(stats(orders=1, order_shows=1), NOW) == ["buyer"]
    assert L.tags(stats(orders=5, order_shows=1), NOW) == ["buyer"]  # one show: not a repeat buyer
    assert L.tags(stats(orders=2, order_shows=2), NOW) == ["buyer", "repeat buyer"]
    assert L.tags(stats(gift_value=1), NOW) == ["gifter"]
    assert L.tags(stats(interactions=0, watch_ms=600_000), NOW) == ["lurker"]
    assert L.tags(stats(interactions=0, watch_ms=599_999), NOW) == []
    assert L.tags(stats(interactions=1, watch_ms=600_000), NOW) == []
    # at risk: a buyer (or a viewer of 3+ shows) not seen for more than 30 days
    gone = NOW - 30 * DAY_MS - 1
    assert L.tags(stats(orders=1, order_shows=1, last_seen=gone), NOW) == ["buyer", "at risk"]
    assert L.tags(stats(shows=3, last_seen=gone), NOW) == ["at risk"]
    assert L.tags(stats(shows=2, last_seen=gone), NOW) == []
    assert L.tags(stats(orders=1, order_shows=1, last_seen=NOW - 30 * DAY_MS), NOW) == ["buyer"]


def test_rfm_scores() -> None:
    assert L.rfm(stats(last_seen=NOW, shows=1, gmv=0), NOW) == {"r": 5, "f": 1, "m": 1, "score": 7}
    assert L.rfm(stats(last_seen=NOW - 10 * DAY_MS, shows=5, gmv=1), NOW) == {
        "r": 4,
        "f": 3,
        "m": 2,
        "score": 9,
    }
    top = stats(last_seen=NOW - 100 * DAY_MS, shows=20, gmv=100_000)
    assert L.rfm(top, NOW) == {"r": 1, "f": 5, "m": 5, "score": 11}
    assert L.rfm(stats(last_seen=None, shows=10, gmv=30_000), NOW) == {"r": 1, "f": 4, "m": 4, "score": 9}


def test_a_sales_early_window_admits_members_only() -> None:
    from roomserver.core import flashsale
    from roomserver.protocol import OpError

    params = flashsale.SaleParams(
        product=flashsale.Product("p", "Tea", 100),
        price_cents=100,
        stock=5,
        limit_per_user=1,
        starts_at=10_000,
        early_min_tier=2,
        early_ms=3_000,
    )
    sale = flashsale.new_sale(params, sale_id="s", now_ms=0)
    assert sale.opens_at == 7_000
    flashsale.check_started(sale, 7_000, tier=2)
    flashsale.check_started(sale, 9_999, tier=5)
    flashsale.check_started(sale, 10_000, tier=0)
    for now, tier, wait in ((6_999, 2, 1), (7_000, 1, 3_000), (9_000, 0, 1_000)):
        with pytest.raises(OpError) as err:
            flashsale.check_started(sale, now, tier=tier)
        assert (err.value.code, err.value.retry_after_ms) == ("not_open", wait)
    view = flashsale.sale_view(sale, 8_000)
    assert (view["state"], view["early_min_tier"], view["early_ms"]) == ("scheduled", 2, 3_000)
    plain = flashsale.new_sale(
        msgspec.structs.replace(params, early_min_tier=None, early_ms=None), sale_id="t", now_ms=0
    )
    assert plain.opens_at == 10_000 and "early_ms" not in flashsale.sale_view(plain, 0)
