"""Lottery: params, eligibility, and the draw against PROTOCOL's byte-level spec."""

from __future__ import annotations

import hashlib
import hmac
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core import lottery as lt
from roomserver.protocol import OpError

SEED = bytes(range(32))
GOOD = {"prize": "Phone", "winners": 3, "duration_ms": 60_000}


def reference_draw(seed: bytes, entrants: list[str], winners: int) -> tuple[list[str], str, list[str]]:
    """PROTOCOL "Lottery verifiability", transcribed independently of the module."""
    items = sorted(set(entrants), key=lambda s: s.encode("utf-8"))
    ehash = hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()
    pool = list(items)
    n = len(pool)
    for i in range(min(winners, n)):
        mac = hmac.new(key=seed, msg=str(i).encode(), digestmod="sha256").digest()
        r = int.from_bytes(mac[:8], "big")
        j = i + r % (n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return items, ehash, pool[: min(winners, n)]


def chi2_sf(stat: float, df: int) -> float:
    """Chi-square survival function: the regularized upper incomplete gamma Q(df/2, stat/2)."""
    a, x = df / 2, stat / 2
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # series for P(a, x)
        term = total = 1 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1 - total * math.exp(log_prefix))
    tiny = 1e-300  # modified Lentz continued fraction for Q(a, x)
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return math.exp(log_prefix) * h


def chi2_uniform_p(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    stat = sum((c - expected) ** 2 / expected for c in counts)
    return chi2_sf(stat, len(counts) - 1)


# --- params ---------------------------------------------------------------------


def test_params_accept_a_minimal_and_a_full_lottery() -> None:
    p = lt.parse_params(dict(GOOD))
    assert (p.prize, p.winners, p.duration_ms, p.keyword, p.min_watch_s, p.min_tier) == (
        "Phone",
        3,
        60_000,
        None,
        0,
        0,
    )
    full = lt.parse_params(
        {**GOOD, "keyword": "666", "min_watch_s": 300, "min_tier": 2, "unknown_field": "ignored"}
    )
    assert (full.keyword, full.min_watch_s, full.min_tier) == ("666", 300, 2)
    assert lt.parse_params({**GOOD, "keyword": ""}).keyword is None


def test_params_accept_the_bounds() -> None:
    for field, value in [
        ("winners", 1),
        ("winners", 10_000),
        ("duration_ms", 1_000),
        ("duration_ms", 86_400_000),
        ("prize", "x" * 100),
        ("keyword", "k" * 20),
        ("min_tier", 10),
        ("min_watch_s", 86_400),
    ]:
        assert getattr(lt.parse_params({**GOOD, field: value}), field) == value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prize", "", "prize must be 1 to 100 characters"),
        ("prize", "   ", "prize must be 1 to 100 characters"),
        ("prize", "x" * 101, "prize must be 1 to 100 characters"),
        ("prize", 5, "Expected `str`"),
        ("prize", None, "Expected `str`"),
        ("winners", 0, "winners must be between 1 and 10000"),
        ("winners", -1, "winners must be between 1 and 10000"),
        ("winners", 10_001, "winners must be between 1 and 10000"),
        ("winners", 10**40, "winners must be between 1 and 10000"),
        ("winners", 2.0, "Expected `int`, got `float`"),
        ("winners", 2.5, "Expected `int`, got `float`"),
        ("winners", "3", "Expected `int`, got `str`"),
        ("winners", True, "Expected `int`, got `bool`"),
        ("winners", None, "Expected `int`, got `null`"),
        ("duration_ms", 999, "duration_ms must be between 1000 and 86400000"),
        ("duration_ms", 86_400_001, "duration_ms must be between 1000 and 86400000"),
        ("duration_ms", -5, "duration_ms must be between 1000 and 86400000"),
        ("duration_ms", False, "Expected `int`, got `bool`"),
        ("keyword", "k" * 21, "keyword must be at most 20 characters"),
        ("keyword", 7, "Expected `str | null`"),
        ("min_watch_s", -1, "min_watch_s must be between 0 and 86400"),
        ("min_watch_s", 10**12, "min_watch_s must be between 0 and 86400"),
        ("min_watch_s", 1.5, "Expected `int`, got `float`"),
        ("min_tier", 11, "min_tier must be between 0 and 10"),
        ("min_tier", -1, "min_tier must be between 0 and 10"),
        ("min_tier", True, "Expected `int`, got `bool`"),
    ],
)
def test_params_reject_bad_values_with_a_clear_bad_request(field: str, value: object, message: str) -> None:
    with pytest.raises(OpError) as exc:
        lt.parse_params({**GOOD, field: value})
    assert exc.value.code == "bad_request"
    assert message in exc.value.message


@pytest.mark.parametrize("missing", ["prize", "winners", "duration_ms"])
def test_params_require_prize_winners_and_duration(missing: str) -> None:
    params = dict(GOOD)
    del params[missing]
    with pytest.raises(OpError) as exc:
        lt.parse_params(params)
    assert exc.value.code == "bad_request"
    assert missing in exc.value.message


@pytest.mark.parametrize("value", [None, "", 5, "x" * 65, True])
def test_ref_rejects_a_bad_lottery_id(value: object) -> None:
    with pytest.raises(OpError) as exc:
        lt.parse_ref({"lottery": value})
    assert exc.value.code == "bad_request"


# --- lifecycle and eligibility -----------------------------------------------


def make_lottery(**params: object) -> lt.Lottery:
    return lt.open_lottery(lt.parse_params({**GOOD, **params}), lottery_id="L1", now_ms=1_000_000, seed=SEED)


def test_open_fixes_the_seed_hash_and_the_closing_time() -> None:
    lot = make_lottery()
    assert lot.seed_hash == hashlib.sha256(SEED).hexdigest()
    assert lot.closes_at == 1_060_000
    assert lot.state is lt.LotteryState.OPEN
    with pytest.raises(ValueError):
        lt.open_lottery(lt.parse_params(GOOD), lottery_id="L", now_ms=0, seed=b"short")


def test_new_seeds_are_32_random_bytes() -> None:
    seeds = {lt.new_seed() for _ in range(5)}
    assert len(seeds) == 5 and all(len(s) == 32 for s in seeds)


def test_open_view_hides_the_seed() -> None:
    view = lt.open_view(make_lottery(keyword="go"))
    assert view == {
        "id": "L1",
        "prize": "Phone",
        "winners": 3,
        "closes_at": 1_060_000,
        "keyword": "go",
        "min_watch_s": 0,
        "min_tier": 0,
        "seed_hash": hashlib.sha256(SEED).hexdigest(),
        "state": "open",
    }
    assert SEED.hex() not in repr(view)
    assert lt.public_view(make_lottery()) == lt.open_view(make_lottery())
    with pytest.raises(ValueError):
        lt.drawn_view(make_lottery())


def test_eligibility_checks_watch_time_tier_and_window() -> None:
    lot = make_lottery(min_watch_s=60, min_tier=2)
    lt.check_can_enter(lot, now_ms=1_000_001, watch_s=60, tier=2)
    for watch_s, tier in [(59.9, 2), (600, 1), (0, 0)]:
        with pytest.raises(OpError) as exc:
            lt.check_can_enter(lot, now_ms=1_000_001, watch_s=watch_s, tier=tier)
        assert exc.value.code == "forbidden"
    assert lt.is_accepting(lot, 1_059_999) and not lt.due_for_draw(lot, 1_059_999)
    assert not lt.is_accepting(lot, 1_060_000) and lt.due_for_draw(lot, 1_060_000)
    with pytest.raises(OpError) as exc:
        lt.check_can_enter(lot, now_ms=1_060_000, watch_s=600, tier=5)
    assert exc.value.code == "not_open"
    drawn, _ = lt.draw(lot, [], now_ms=1_000_002)
    with pytest.raises(OpError) as exc:
        lt.check_can_enter(drawn, now_ms=1_000_003, watch_s=600, tier=5)
    assert exc.value.code == "not_open"
    assert not lt.due_for_draw(drawn, 2_000_000)


def test_keyword_matching_is_a_case_insensitive_substring() -> None:
    lot = make_lottery(keyword="GoGo")
    assert lt.keyword_matches(lot, "I say gogo!")
    assert not lt.keyword_matches(lot, "go go")
    assert not lt.keyword_matches(make_lottery(), "anything")


# --- the draw ---------------------------------------------------------------


GOLDEN_WINNERS = ("u9", "u2", "u3")


def test_known_answer_vector() -> None:
    """A fixed vector for SDK authors (JS/Python verifiers) to check against."""
    entrants = [f"u{i}" for i in range(10)]
    result = lt.compute_draw(SEED, entrants, 3)
    assert result.entrants == ("u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9")
    assert result.entrants_hash == hashlib.sha256(b"u0\nu1\nu2\nu3\nu4\nu5\nu6\nu7\nu8\nu9").hexdigest()
    assert result.winners == GOLDEN_WINNERS


def test_draw_matches_an_independent_reimplementation() -> None:
    rng = random.Random(7)
    for _ in range(200):
        seed = rng.randbytes(32)
        entrants = [f"user-{rng.randrange(10_000)}" for _ in range(rng.randrange(0, 60))]
        winners = rng.randrange(1, 20)
        items, ehash, picked = reference_draw(seed, entrants, winners)
        result = lt.compute_draw(seed, entrants, winners)
        assert (list(result.entrants), result.entrants_hash, list(result.winners)) == (items, ehash, picked)


def test_sorting_is_by_utf8_bytes() -> None:
    # Code-point order and UTF-16 order disagree here; UTF-8 byte order is the spec.
    ids = ["\uff5e", "\U0001f600", "b", "B", "é", "a"]
    assert lt.sort_entrants(ids) == ["B", "a", "b", "é", "\uff5e", "\U0001f600"]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8), max_size=30))
def test_sorting_agrees_with_sorting_the_utf8_bytes(ids: list[str]) -> None:
    assert lt.sort_entrants(ids) == sorted(ids, key=lambda user: user.encode())


def test_draw_is_deterministic_and_records_the_result() -> None:
    lot = make_lottery(winners=2)
    entrants = ["carol", "alice", "bob", "dave"]
    drawn, result = lt.draw(lot, entrants, now_ms=1_030_000)
    again, _ = lt.draw(lot, list(reversed(entrants)), now_ms=1_030_000)
    assert drawn == again
    assert drawn.state is lt.LotteryState.DRAWN
    assert drawn.winner_ids == result.winners and len(result.winners) == 2
    assert drawn.entrants == 4
    view = lt.drawn_view(drawn)
    assert view["winners"] == list(result.winners)
    assert view["max_winners"] == 2
    assert view["entrants"] == 4
    assert view["seed"] == SEED.hex()
    assert view["entrants_hash"] == lt.entrants_hash(["alice", "bob", "carol", "dave"])
    assert view["state"] == "drawn" and view["drawn_at"] == 1_030_000
    assert lt.verify_draw(view["seed"], view["seed_hash"], ["alice", "bob", "carol", "dave"], view["winners"])
    with pytest.raises(OpError) as exc:
        lt.draw(drawn, entrants, now_ms=1_040_000)
    assert exc.value.code == "not_open"


def test_draw_with_no_entrants_has_no_winners() -> None:
    drawn, result = lt.draw(make_lottery(), [], now_ms=1_070_000)
    assert result.winners == () and drawn.entrants == 0
    assert drawn.entrants_hash == hashlib.sha256(b"").hexdigest()
    assert lt.verify_draw(SEED.hex(), drawn.seed_hash, [], [])


def test_fewer_entrants_than_prizes_all_win() -> None:
    _, result = lt.draw(make_lottery(winners=5), ["b", "a"], now_ms=1_000_500)
    assert sorted(result.winners) == ["a", "b"]


def test_audit_view_lists_sorted_entrants_and_detects_a_changed_set() -> None:
    lot = make_lottery(winners=1)
    before = lt.audit_view(lot, {"b", "a"})
    assert before["entrants"] == ["a", "b"] and "seed" not in before
    drawn, _ = lt.draw(lot, ["b", "a"], now_ms=1_000_500)
    after = lt.audit_view(drawn, ["a", "b"])
    assert after["entrants"] == ["a", "b"] and after["entrants_count"] == 2
    assert lt.verify_draw(after["seed"], after["seed_hash"], after["entrants"], after["winners"])
    with pytest.raises(ValueError):
        lt.audit_view(drawn, ["a", "b", "late"])


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6), max_size=40))
def test_the_draws_own_audit_is_the_audit_read_back_from_the_bus(entrants: list[str]) -> None:
    drawn, result = lt.draw(make_lottery(winners=3), entrants, now_ms=1_000_500)
    assert lt.drawn_audit_view(drawn, result) == lt.audit_view(drawn, reversed(entrants))


def test_verify_draw_rejects_tampering_and_garbage() -> None:
    entrants = [f"u{i}" for i in range(10)]
    result = lt.compute_draw(SEED, entrants, 3)
    good_hash = hashlib.sha256(SEED).hexdigest()
    winners = list(result.winners)
    assert lt.verify_draw(SEED.hex(), good_hash, entrants, winners)
    assert lt.verify_draw(SEED.hex().upper(), good_hash.upper(), entrants, winners)
    other = next(u for u in entrants if u not in winners)
    assert not lt.verify_draw(SEED.hex(), good_hash, entrants, [other, *winners[1:]])
    assert not lt.verify_draw(SEED.hex(), good_hash, entrants, winners[::-1])
    assert not lt.verify_draw(SEED.hex(), good_hash, [*entrants, "u99"], winners)
    assert not lt.verify_draw(SEED.hex(), good_hash, [*entrants, "u1"], winners)
    assert not lt.verify_draw(bytes(32).hex(), good_hash, entrants, winners)
    assert not lt.verify_draw(bytes(32).hex(), hashlib.sha256(bytes(32)).hexdigest(), entrants, winners)
    assert not lt.verify_draw(SEED.hex()[:-2], good_hash, entrants, winners)
    assert not lt.verify_draw("zz" * 32, good_hash, entrants, winners)
    assert not lt.verify_draw(SEED.hex(), good_hash, ["a"], ["a", "b"])
    assert lt.verify_draw(SEED.hex(), good_hash, entrants, winners, max_winners=3)
    assert lt.verify_draw(SEED.hex(), good_hash, entrants, winners[:2])  # a prefix is a valid draw of 2
    assert not lt.verify_draw(SEED.hex(), good_hash, entrants, winners[:2], max_winners=3)
    assert not lt.verify_draw(None, good_hash, entrants, winners)  # type: ignore[arg-type]
    assert not lt.verify_draw(SEED.hex(), None, entrants, winners)  # type: ignore[arg-type]
    assert not lt.verify_draw(SEED.hex(), good_hash, [1, 2], [1])  # type: ignore[list-item]


entrant_ids = st.lists(st.text(min_size=1, max_size=12), max_size=40, unique=True)


@given(seed=st.binary(min_size=32, max_size=32), entrants=entrant_ids, winners=st.integers(1, 50))
def test_draw_properties(seed: bytes, entrants: list[str], winners: int) -> None:
    lot = lt.open_lottery(
        lt.LotteryParams(prize="p", winners=winners, duration_ms=1_000), lottery_id="L", now_ms=0, seed=seed
    )
    assert lot.seed_hash == hashlib.sha256(seed).hexdigest()
    drawn, result = lt.draw(lot, entrants, now_ms=1)
    assert len(result.winners) == min(winners, len(entrants))
    assert len(set(result.winners)) == len(result.winners)
    assert set(result.winners) <= set(entrants)
    assert drawn.winner_ids == result.winners
    assert lt.verify_draw(seed.hex(), lot.seed_hash, result.entrants, result.winners, max_winners=winners)
    # The first k picks do not depend on the number of prizes (what verify_draw relies on).
    more = lt.pick_winners(seed, result.entrants, winners + 3)
    assert more[: len(result.winners)] == list(result.winners)
    # Input order never matters: the draw sorts.
    shuffled = list(entrants)
    random.Random(len(entrants)).shuffle(shuffled)
    assert lt.compute_draw(seed, shuffled, winners) == result


# --- uniformity -------------------------------------------------------------

N_ENTRANTS = 20
N_DRAWS = 20_000


def seeded_draws(rng_seed: int, winners: int) -> list[list[int]]:
    rng = random.Random(rng_seed)
    entrants = [f"user{i:02d}" for i in range(N_ENTRANTS)]  # already in byte order
    index = {user: i for i, user in enumerate(entrants)}
    return [[index[u] for u in lt.pick_winners(rng.randbytes(32), entrants, winners)] for _ in range(N_DRAWS)]


def test_chi2_sf_matches_known_values() -> None:
    for x in [0.1, 1.0, 3.0, 10.0, 40.0]:
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9)
    # Table critical values of chi-square with 19 degrees of freedom.
    assert chi2_sf(30.144, 19) == pytest.approx(0.05, abs=1e-4)
    assert chi2_sf(36.191, 19) == pytest.approx(0.01, abs=1e-4)
    assert chi2_sf(11.651, 19) == pytest.approx(0.90, abs=1e-3)


def test_chi2_detects_a_biased_picker() -> None:
    # The statistic the draw tests rely on must flag a visibly skewed picker (the minimum of two
    # uniform picks), or a passing uniformity test would mean nothing.
    rng = random.Random(3)
    counts = [0] * N_ENTRANTS
    for _ in range(N_DRAWS):
        counts[min(rng.randrange(N_ENTRANTS), rng.randrange(N_ENTRANTS))] += 1
    assert chi2_uniform_p(counts) < 1e-6


def test_first_pick_is_uniform() -> None:
    counts = [0] * N_ENTRANTS
    for picks in seeded_draws(11, 1):
        counts[picks[0]] += 1
    p = chi2_uniform_p(counts)
    print(f"first pick: chi-square p = {p:.4f}")
    assert p > 0.01


def test_every_pick_slot_and_the_winner_set_are_uniform() -> None:
    draws = seeded_draws(12, 5)
    slot_counts = [[0] * N_ENTRANTS for _ in range(5)]
    won = [0] * N_ENTRANTS
    for picks in draws:
        assert len(set(picks)) == 5
        for slot, entrant in enumerate(picks):
            slot_counts[slot][entrant] += 1
            won[entrant] += 1
    p_values = [chi2_uniform_p(c) for c in slot_counts]
    p_won = chi2_uniform_p(won)
    print("pick slots: chi-square p =", [f"{p:.4f}" for p in p_values], f"winner set p = {p_won:.4f}")
    assert all(p > 0.01 for p in p_values)
    assert p_won > 0.01
