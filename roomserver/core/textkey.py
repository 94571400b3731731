"""The matching form of text: what the banned-word filter compares (pure).

``match_key(text)`` is what a message *looks like*, not what it says: invisible
and look-alike characters that a reader's eye skips or confuses do not change
it. Display always uses the original text; only the filter's decision uses this.

In order:

1. NFKC: fullwidth and compatibility forms fold (ｆｕｃｋ → fuck, ﬁ → fi).
2. Between two Han characters, a run of anything but letters, digits and clause
   delimiters (spaces, symbols, emoji, punctuation, invisibles) is dropped:
   "傻 逼", "傻*逼", "傻😀逼" → "傻逼". A clause or sentence delimiter (Unicode
   Terminal_Punctuation: ，。、；：！？ and their ASCII forms) stays, since
   "他真傻，逼得我…" is ordinary Chinese; so "傻，逼" and "傻.逼" are not joined.
   Between Latin letters nothing is joined: "push it" must not become "pushit".
3. Per code point, one ``str.translate`` table:
   - Unicode default-ignorable code points are dropped (zero-width characters,
     joiners, soft hyphen, combining grapheme joiner, invisible operators,
     variation selectors, Hangul fillers, tag characters, bidi controls...);
   - full case folding; a letter that looks like an ASCII letter in either case
     folds to it (Т and т → t, Χ and χ → x): the match is case-blind, so
     capitals of another script must not spell a Latin word ("SHIΤ");
   - diacritics (combining marks of no script of their own) are dropped from
     Latin, Greek and Cyrillic letters and wherever they stand alone (fück,
     Zalgo text), but kept on kana and other scripts where they change the
     letter;
   - UTS #39 confusables fold to their prototype (Cyrillic е о а р с х, Greek ο
     ν, Kangxi radicals...), except that a class holding an ASCII character is
     represented by that character and ASCII is never remapped: pure TR39
     skeletons map m → rn and 0 → O, which would make a banned "porn" block
     "pomelo". So "рorn" (Cyrillic р) matches "porn", "pom" does not.

Not covered, on purpose: digits or letters inserted as filler ("傻1逼"),
leetspeak (sh1t), letter-spaced Latin ("f u c k"), homophones and pinyin.

The rule data is Unicode's: the default-ignorable set, scripts, categories and
TR39 confusable skeletons come from ICU (its SpoofChecker is the reference
implementation of UTS #39), but not at run time. textkey_build.py (``python -m
roomserver.core.textkey_build``, PyICU) derives the sets and the per-code-point
fold ahead of time into textkey_table.json, shipped as package data and checked
against a fresh build by the tests; this module reads only that file, so running
the server needs neither ICU nor a compiler. It is read once per process, on first
use (a few milliseconds); the per-message work is NFKC, a regex over non-ASCII
text and one translate, all in C.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from importlib.resources import files
from typing import NamedTuple


def match_key(text: str) -> str:
    """The form of ``text`` that banned words are matched against."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _han_filler().sub("", text)
    return text.translate(fold_table())


def without_invisibles(text: str) -> str:
    """``text`` less its invisible characters (default-ignorable code points and controls)."""
    return text.translate(_invisible_table())


def fold_table() -> dict[int, str | None]:
    """code point -> its replacement (None: dropped), for every code point that changes."""
    return _data().fold


def _invisible_table() -> dict[int, None]:
    return _data().invisible


@cache
def _han_filler() -> re.Pattern[str]:
    """A run of filler between two Han characters: anything but a letter, a digit, a
    Han character or a clause delimiter, and invisible letters (Hangul fillers).
    What folds to an ideograph counts as Han: radicals and strokes (⺦, ㇟) are
    symbols, look-alikes (⎜ for 丨, ロ for 口) of other scripts."""
    data = _data()
    all_han = re.compile(f"[{_re_class(data.han)}]+")
    like_han = [(cp, cp) for cp, folded in data.fold.items() if folded and all_han.fullmatch(folded)]
    ideograph = _re_class(_merged([*data.han, *like_han]))
    delimiters = _re_class(data.terminal_punctuation)
    invisible_letters = "".join(c for c in map(chr, data.invisible) if re.fullmatch(r"\w", c))
    # Written as "not a word character" rather than as the union of spaces, symbols
    # and punctuation: sre tests \w in one step but walks a long range list.
    return re.compile(
        f"(?<=[{ideograph}])(?:[^\\w{ideograph}{delimiters}]|[_{invisible_letters}])+(?=[{ideograph}])"
    )


class _Data(NamedTuple):
    fold: dict[int, str | None]
    invisible: dict[int, None]
    han: list[tuple[int, int]]
    terminal_punctuation: list[tuple[int, int]]


@cache
def _data() -> _Data:
    raw = json.loads(files(__package__).joinpath("textkey_table.json").read_bytes())
    invisible = dict.fromkeys(cp for lo, hi in _ranges(raw["invisible"]) for cp in range(lo, hi + 1))
    fold: dict[int, str | None] = dict(invisible)
    fold.update((int(cp, 16), key) for cp, key in raw["fold"].items())
    return _Data(fold, invisible, _ranges(raw["han"]), _ranges(raw["terminal_punctuation"]))


def _ranges(ucd: list[str]) -> list[tuple[int, int]]:
    """Code point ranges from UCD notation ("00AD", "0600..0605")."""
    out = []
    for r in ucd:
        lo, _, hi = r.partition("..")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return out


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _re_class(ranges: list[tuple[int, int]]) -> str:
    return "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
