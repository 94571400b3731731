"""The pages' message catalogues (web_client/app/locales/*.json): both languages have the
same keys, every key a page uses exists, and every protocol error code has a text."""

from __future__ import annotations

import json
import re
from pathlib import Path

from roomserver.config import DEFAULT_GIFTS
from roomserver.protocol import ERROR_CODES

WEB = Path(__file__).resolve().parents[2] / "web_client"
LOCALES = WEB / "app" / "locales"
LANGS = ("en", "zh-CN")
# The first segment of every key; a literal "x.y" in a page's script whose x is one of these
# is a key (event and op names such as "poll.opened" are passed to on()/track(), skipped).
NAMESPACES = [
    *("landing", "call", "viewer", "host", "stage", "chat", "product", "lottery", "packet", "coupon"),
    *("poll", "pk", "media", "shell", "conn", "close", "fatal", "error", "ctx", "common", "role", "gift"),
    "report",  # the post-live report page
    "replay",  # the replay page (issue 14)
]
# Keys a page builds at run time (`error.${code}` …), listed here so that they are checked too.
DYNAMIC = {
    *(f"error.{code}" for code in ERROR_CODES),
    *(f"gift.{g['id']}" for g in DEFAULT_GIFTS),
    *(f"host.mod.done.{kind}" for kind in ("mute", "unmute", "kick")),
    *(f"lottery.check.{c}" for c in ("seed", "seed_hash", "sorted", "entrants_hash", "winners")),
    *(f"close.{code}" for code in (1001, 1006, 1009, 4001, 4003, 4008, 4029)),
}


def catalogue(lang: str) -> dict[str, object]:
    return json.loads((LOCALES / f"{lang}.json").read_text("utf-8"))


def used_keys() -> set[str]:
    keys: set[str] = set()
    for page in WEB.glob("*.html"):
        keys |= set(
            re.findall(
                r'data-i18n(?:-placeholder|-title|-aria-label|-value)?="([^"]+)"', page.read_text("utf-8")
            )
        )
    literal = re.compile('"((?:' + "|".join(NAMESPACES) + r')\.[a-z0-9_.]+)"')
    for script in (WEB / "app").glob("*.js"):
        text = script.read_text("utf-8")
        text = re.sub(r'\bon\(\s*"[^"]*"', "on(", text)
        text = re.sub(r'track\([^,]+,\s*"[^"]*"', "track(", text)
        keys |= set(literal.findall(text))
    return keys


def test_both_catalogues_have_the_same_keys() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    assert sorted(set(en) - set(zh)) == [], "missing in zh-CN"
    assert sorted(set(zh) - set(en)) == [], "missing in en"


def test_every_message_is_text_or_plural_forms_with_the_same_placeholders() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    for key, value in en.items():
        other = zh[key]
        forms = [value] if isinstance(value, str) else list(value.values())  # type: ignore[union-attr]
        if not isinstance(value, str):
            assert set(value) <= {"zero", "one", "two", "few", "many", "other"} and "other" in value, key
        placeholders = {p for f in forms for p in re.findall(r"\{(\w+)\}", f)}
        zh_forms = [other] if isinstance(other, str) else list(other.values())  # type: ignore[union-attr]
        zh_placeholders = {p for f in zh_forms for p in re.findall(r"\{(\w+)\}", f)}
        assert zh_placeholders <= placeholders | {"n"}, key  # no text the page does not give
        assert all(f.strip() or key.endswith(".after") for f in forms + zh_forms), key


def test_every_key_the_pages_use_exists() -> None:
    en = catalogue("en")
    used = used_keys() | DYNAMIC
    assert sorted(used - set(en)) == []
    assert len(used) > 300  # the scan found the pages' keys (a broken pattern finds none)


def test_the_pages_use_every_key() -> None:
    """No dead texts: a key nobody uses is a typo's twin or a removed feature."""
    assert sorted(set(catalogue("en")) - used_keys() - DYNAMIC - context_keys()) == []


def context_keys() -> set[str]:
    """`ctx.<op>.<code>`: looked up by the failed op and its code (shell.js errorText)."""
    return {k for k in catalogue("en") if k.startswith("ctx.")}


def test_context_messages_name_real_codes() -> None:
    for key in context_keys():
        code = key.split(".")[3] if key.count(".") >= 3 else ""
        assert code in ERROR_CODES, key


def test_the_chinese_is_chinese() -> None:
    zh = catalogue("zh-CN")
    # the same text in both is fine only without words ("{user} · PK", "{n} s")
    words = lambda v: re.search(r"[a-z]{3}", re.sub(r"\{\w+\}", "", str(v)))  # noqa: E731
    same = [k for k, v in catalogue("en").items() if zh[k] == v and words(v)]
    assert same == [], "untranslated"
