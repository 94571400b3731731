"""Error messages in English and Simplified Chinese, and choosing between them.

The product is for 直播带货 teams, so every error code has a sentence in both languages.
The default stays English: a client that asks for nothing gets the replies it always got.
A Chinese reply keeps the server's specific English text as ``detail`` (it names the field
or the limit that failed, which a generic sentence cannot), so nothing is lost by asking.

Pure rules, no I/O: the gateway (``lang`` at connect) and the REST error middleware
(``Accept-Language``) call these.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from roomserver.protocol import ERROR_CODES

Lang = Literal["en", "zh-CN"]
LANGS: Final[tuple[Lang, ...]] = ("en", "zh-CN")
DEFAULT_LANG: Final[Lang] = "en"

# One sentence per code and language, written for the people who meet them: viewers,
# hosts and operators of a live sale (弹幕, 秒杀, 红包 … as they say it), not word for word.
ERROR_MESSAGES: Final[dict[str, dict[Lang, str]]] = {
    "bad_request": {"en": "The request is not valid.", "zh-CN": "请求格式不正确。"},
    "unauthorized": {
        "en": "Your sign-in token is missing, invalid or expired.",
        "zh-CN": "登录凭证缺失、无效或已过期，请重新进入。",
    },
    "forbidden": {"en": "You are not allowed to do that.", "zh-CN": "你没有权限进行此操作。"},
    "not_found": {"en": "It does not exist.", "zh-CN": "内容不存在。"},
    "not_joined": {"en": "Join the room first.", "zh-CN": "请先进入直播间。"},
    "rate_limited": {"en": "Too fast: please wait a moment.", "zh-CN": "操作太频繁，请稍后再试。"},
    "muted": {"en": "You have been muted in this room.", "zh-CN": "你已被禁言。"},
    "blocked_content": {
        "en": "The message contains words that are not allowed here.",
        "zh-CN": "消息包含违禁词，未能发送。",
    },
    "sold_out": {"en": "Sold out.", "zh-CN": "已抢光。"},
    "limit_reached": {"en": "You have reached the limit.", "zh-CN": "已达到上限。"},
    "not_open": {"en": "It is not open right now.", "zh-CN": "活动未开始或已结束。"},
    "conflict": {
        "en": "It conflicts with what is already there.",
        "zh-CN": "与当前状态冲突（可能已经操作过）。",
    },
    "history_gone": {
        "en": "The missed events are no longer kept: join again.",
        "zh-CN": "错过的消息已无法补回，请重新进入直播间。",
    },
    "too_large": {"en": "It is too large.", "zh-CN": "内容过大。"},
    "unavailable": {
        "en": "The service is briefly unavailable: try again in a moment.",
        "zh-CN": "服务暂时不可用，请稍后重试。",
    },
    "internal": {"en": "Something went wrong on the server.", "zh-CN": "服务器出错了，请稍后重试。"},
}
assert set(ERROR_MESSAGES) == ERROR_CODES, set(ERROR_MESSAGES) ^ ERROR_CODES

# RFC 9110 §12.5.4: language-range [ OWS ";" OWS "q=" qvalue ], qvalue 0..1 with at most
# three decimals. A range that does not match is skipped, never an error.
_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")
_QVALUE = re.compile(r"^[qQ]=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


def lang_of(tag: str | None) -> Lang | None:
    """The supported language a tag names: any Chinese is zh-CN (only Simplified is written),
    any English is en; None for other languages and malformed tags."""
    if not tag or not _RANGE.match(tag) or tag == "*":
        return None
    primary = tag.split("-", 1)[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """The header's ranges with their weights, best first (equal weights keep their order).
    Malformed members are dropped; ``q=0`` members are kept (they mean "not this")."""
    ranges: list[tuple[str, float]] = []
    for member in (header or "").split(","):
        parts = [p.strip() for p in member.split(";")]
        tag = parts[0]
        if not tag or not _RANGE.match(tag):
            continue
        q = 1.0
        if len(parts) > 2:
            continue
        if len(parts) == 2:
            m = _QVALUE.match(parts[1].replace(" ", ""))
            if m is None:
                continue
            q = float(m.group(1))
        ranges.append((tag, q))
    return sorted(ranges, key=lambda r: -r[1])  # sorted() is stable


def pick_lang(accept_language: str | None) -> Lang:
    """The language to answer in for an Accept-Language header (English if it names none
    we write, or refuses every one we write: an error must still be readable)."""
    ranges = parse_accept_language(accept_language)
    refused = {lang_of(tag) for tag, q in ranges if q == 0 and lang_of(tag)}
    for tag, q in ranges:
        if q == 0:
            continue
        if tag == "*":
            return next((lg for lg in LANGS if lg not in refused), DEFAULT_LANG)
        lang = lang_of(tag)
        if lang is not None and lang not in refused:
            return lang
    return DEFAULT_LANG


def error_message(code: str, lang: Lang) -> str:
    """The sentence for an error code in a language (English for an unknown code)."""
    messages = ERROR_MESSAGES.get(code) or ERROR_MESSAGES["internal"]
    return messages[lang]


def localize_error(error: dict[str, Any], lang: Lang) -> dict[str, Any]:
    """A wire error (``{"code", "message", ...}``) in ``lang``: unchanged for English; for
    Chinese the message is the code's Chinese sentence and the English text moves to
    ``detail``."""
    if lang == DEFAULT_LANG or not isinstance(error.get("code"), str):
        return error
    out = dict(error)
    out["message"] = error_message(error["code"], lang)
    if error.get("message"):
        out["detail"] = error["message"]
    return out
