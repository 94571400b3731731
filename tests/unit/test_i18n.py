"""Error messages in two languages (roomserver/core/i18n.py): every code has both, and
Accept-Language is negotiated by its q-values, never failing on a malformed header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core.i18n import (
    ERROR_MESSAGES,
    LANGS,
    error_message,
    lang_of,
    localize_error,
    parse_accept_language,
    pick_lang,
)
from roomserver.protocol import ERROR_CODES


def test_every_error_code_has_a_message_in_every_language() -> None:
    assert set(ERROR_MESSAGES) == ERROR_CODES
    for code in ERROR_CODES:
        for lang in LANGS:
            assert error_message(code, lang).strip(), (code, lang)
        # the Chinese is Chinese, not the English again
        assert error_message(code, "zh-CN") != error_message(code, "en")
        assert any("\u4e00" <= c <= "\u9fff" for c in error_message(code, "zh-CN")), code


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("ZH-cn", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en;q=0.5, zh;q=0.8", "zh-CN"),  # weights, not order, decide
        ("en;q=0.8, zh;q=0.8", "en"),  # equal weights: the header's order
        ("fr-FR, de;q=0.9, zh;q=0.1", "zh-CN"),  # the best language we write
        ("fr, de", "en"),  # none we write: the default
        ("zh;q=0, *", "en"),  # q=0 refuses Chinese; * takes what is left
        ("en;q=0, *;q=0.5", "zh-CN"),
        ("en;q=0", "en"),  # refusing everything still gets a readable error
        ("zh;q=1.0", "zh-CN"),
        ("zh;q=1.5, en", "en"),  # an invalid weight drops that member, not the header
        ("zh;q=0.1234, en;q=0.1", "en"),  # at most three decimals
        ("zh;foo=bar, en;q=0.1", "en"),
        ("zh-CN;Q=0.9", "zh-CN"),
        ("zh-CN ; q = 0.9", "zh-CN"),
        (",,;;==, zh", "zh-CN"),
        ("x" * 5000, "en"),
    ],
)
def test_pick_lang(header: str | None, lang: str) -> None:
    assert pick_lang(header) == lang


def test_parse_accept_language_orders_by_weight_stably() -> None:
    assert parse_accept_language("a;q=0.5, b, c;q=0.5, d;q=0") == [
        ("b", 1.0),
        ("a", 0.5),
        ("c", 0.5),
        ("d", 0.0),
    ]


@given(st.text(max_size=200))
def test_any_header_picks_a_language(header: str) -> None:
    assert pick_lang(header) in LANGS


def test_lang_of() -> None:
    assert lang_of("zh-TW") == "zh-CN"  # Chinese readers get the Chinese we write
    assert lang_of("en-GB") == "en"
    assert lang_of("fr") is None
    assert lang_of("*") is None
    assert lang_of("zh CN") is None
    assert lang_of(None) is None


def test_localize_error() -> None:
    wire = {"code": "sold_out", "message": "the sale sold out", "retry_after_ms": 5}
    assert localize_error(wire, "en") is wire
    zh = localize_error(wire, "zh-CN")
    assert zh == {
        "code": "sold_out",
        "message": "已抢光。",
        "detail": "the sale sold out",
        "retry_after_ms": 5,
    }
    assert wire["message"] == "the sale sold out"  # not changed in place
