"""Banned-word filter and token buckets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from roomserver.core.moderation import TokenBucket, UserLimits, WordFilter, WordFilters, normalize


def test_normalisation_folds_width_case_and_zero_width():
    assert normalize("ＦＵＣＫ") == "fuck"
    assert normalize("Fu\u200bck") == "fuck"
    assert normalize("加\ufeff微信") == "加微信"


def test_filter_finds_words_in_any_form():
    f = WordFilter(["spam", "加微信"])
    assert f.find("buy SPAM now") == "spam"
    assert f.find("ｓｐａｍ") == "spam"
    assert f.find("请加微信123") == "加微信"
    assert f.find("all good") is None
    assert WordFilter([]).find("anything") is None


def test_room_filters_extend_the_defaults_and_are_cached():
    filters = WordFilters(["base"])
    assert filters.for_room("r1", []) is filters.base
    f1 = filters.for_room("r1", ["extra"])
    assert f1.find("EXTRA") == "extra" and f1.find("base") == "base"
    assert filters.for_room("r1", ["extra"]) is f1
    assert filters.for_room("r1", ["other"]) is not f1


@given(st.text(max_size=40), st.text(min_size=1, max_size=5))
def test_a_word_inserted_anywhere_is_found(text, word):
    if not normalize(word):
        return
    f = WordFilter([word])
    assert f.find(text + word.upper() + text) is not None


def test_token_bucket_refills_at_rate():
    b = TokenBucket(rate=2, burst=2)
    assert b.take(0) == 0 and b.take(0) == 0
    wait = b.take(0)
    assert 400 <= wait <= 501
    assert b.take(500) == 0
    assert b.take(500) > 0


def test_user_limits_are_per_family():
    limits = UserLimits()
    results = [limits.check("barrage", 0) for _ in range(11)]
    assert results[:10] == [0] * 10 and results[10] > 0
    assert limits.check("like", 0) == 0
