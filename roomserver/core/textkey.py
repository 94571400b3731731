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

The rule data is Unicode's, read from ICU (via PyICU): the default-ignorable
set, scripts, categories and TR39 confusable skeletons (ICU's SpoofChecker is
the reference implementation of UTS #39). The table is built once per process,
on first use (a fraction of a second); the per-message work is NFKC, a regex over non-ASCII
text and one translate, all in C.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache
from string import printable

import icu

# Invisible in any rendering: what a reader's eye skips.
_INVISIBLE = "[[:Default_Ignorable_Code_Point:][[:Cc:]-[:White_Space:]]]"


def match_key(text: str) -> str:
    """The form of ``text`` that banned words are matched against."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _han_filler().sub("", text)
    return text.translate(fold_table())


def without_invisibles(text: str) -> str:
    """``text`` less its invisible characters (default-ignorable code points and controls)."""
    return text.translate(_invisible_table())


@cache
def fold_table() -> dict[int, str | None]:
    """code point -> its replacement (None: dropped), for every code point that changes."""
    return _Fold().table()


@cache
def _invisible_table() -> dict[int, None]:
    return dict.fromkeys(map(ord, _chars(_uset(_INVISIBLE))))


@cache
def _han_filler() -> re.Pattern[str]:
    """A run of filler between two Han characters: anything but a letter, a digit, a
    Han character or a clause delimiter, and invisible letters (Hangul fillers).
    What folds to an ideograph counts as Han: radicals and strokes (⺦, ㇟) are
    symbols, look-alikes (⎜ for 丨, ロ for 口) of other scripts."""
    han = _uset("[:Han:]")
    like_han = icu.UnicodeSet("[:Han:]")
    for cp, folded in fold_table().items():
        if folded and all(han.contains(c) for c in folded):
            like_han.add(chr(cp))
    ideograph = _re_class(like_han)
    delimiters = _re_class(_uset("[:Terminal_Punctuation:]"))
    invisible_letters = "".join(c for c in _chars(_uset(_INVISIBLE)) if re.fullmatch(r"\w", c))
    # Written as "not a word character" rather than as the union of spaces, symbols
    # and punctuation: sre tests \w in one step but walks a long range list.
    return re.compile(
        f"(?<=[{ideograph}])(?:[^\\w{ideograph}{delimiters}]|[_{invisible_letters}])+(?=[{ideograph}])"
    )


class _Fold:
    """Works out the per-code-point fold described in the module doc, from ICU's data."""

    def __init__(self) -> None:
        self.loose_marks = frozenset(_chars(_uset("[[:Mn:]&[:Script=Inherited:]]")))
        # Scripts whose diacritics do not tell banned words apart (and whose letters
        # are the ones confusable with ASCII): marks on them are dropped.
        self.stripped = frozenset(_chars(_uset("[[:Latin:][:Greek:][:Cyrillic:][:Common:][:Inherited:]]")))
        self.checker = icu.SpoofChecker()
        # A confusable class that holds a (case-folded) ASCII character is named by it.
        self.ascii_rep: dict[str, str] = {}
        for a in sorted(set(printable.casefold()) - set("\t\n\r\x0b\x0c"), key=_rep_rank):
            self.ascii_rep.setdefault(self.skeleton(a), a)

    def skeleton(self, s: str) -> str:
        return str(self.checker.getSkeleton(0, s))

    def prototype(self, ch: str) -> str:
        if ch.isascii():
            return ch
        sk = self.skeleton(ch)
        if sk == unicodedata.normalize("NFD", ch):
            return ch
        return self.ascii_rep.get(sk) or "".join(self.ascii_rep.get(x, x) for x in sk.casefold())

    def step(self, text: str) -> str:
        return "".join(map(self.fold_char, unicodedata.normalize("NFKC", text)))

    def fold_char(self, ch: str) -> str:
        # Case-blind like the rest of the match: a letter that looks like an ASCII
        # letter in either case folds to it (Т and т → t, Χ and χ → x), so that
        # capitals from another script cannot spell a Latin word ("SHIΤ").
        lower = self.fold_letters(ch.casefold())
        if lower.isascii():
            return lower
        upper = self.fold_letters(ch.upper()).casefold()
        return upper if upper.isascii() else lower

    def fold_letters(self, text: str) -> str:
        out = []
        for ch in text:
            parts = unicodedata.normalize("NFD", ch)
            if parts[0] in self.stripped:
                parts = "".join(p for p in parts if p not in self.loose_marks)
            elif parts != ch:
                # A precomposed letter of another script (が, 한) is one glyph: kept whole.
                out.append(ch)
                continue
            out.extend(map(self.prototype, parts))
        return "".join(out)

    def key(self, c: str) -> str:
        # A prototype can bring marks of its own (¢ → c + U+0338): fold to a fixed point.
        k = self.step(c)
        for _ in range(4):
            again = self.step(k)
            if again == k:
                break
            k = again
        return k

    def candidates(self) -> Iterator[str]:
        """The visible code points that the fold may change. Those that NFKC replaces
        never reach the table. Skeletons are asked for 64 code points at once: most
        blocks (CJK ideographs above all) have no confusable and pass in one call."""
        nfd = unicodedata.normalize
        for lo, hi in _uset(f"[[^[:Cn:][:Cs:][:Co:]]-{_INVISIBLE}]").ranges():
            for start in range(ord(lo), ord(hi) + 1, 64):
                chunk = "".join(map(chr, range(start, min(start + 64, ord(hi) + 1))))
                decomposed = nfd("NFD", chunk)
                confusable = self.skeleton(chunk) != decomposed
                plain = decomposed == chunk == chunk.casefold() == chunk.upper()
                if plain and not confusable and self.loose_marks.isdisjoint(chunk):
                    continue
                for c in chunk:
                    if nfd("NFKC", c) != c:
                        continue
                    d = nfd("NFD", c)
                    if (
                        c in self.loose_marks
                        or c.casefold() != c
                        or c.upper() != c
                        or (c in self.stripped and d != c)
                        or (confusable and (c in self.stripped or d == c) and self.skeleton(c) != d)
                    ):
                        yield c

    def table(self) -> dict[int, str | None]:
        table: dict[int, str | None] = dict(_invisible_table())
        for c in self.candidates():
            k = self.key(c)
            if k != c:
                table[ord(c)] = k or None
        return table


def _uset(pattern: str) -> icu.UnicodeSet:
    s = icu.UnicodeSet(pattern)
    s.freeze()
    return s


def _chars(s: icu.UnicodeSet) -> Iterator[str]:
    for lo, hi in s.ranges():
        yield from map(chr, range(ord(lo), ord(hi) + 1))


def _re_class(s: icu.UnicodeSet) -> str:
    return "".join(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}" for lo, hi in s.ranges())


def _rep_rank(a: str) -> tuple[int, str]:
    # Letters name a class before digits, digits before punctuation: l for {l 1 |}.
    return (0 if a.isalpha() else 1 if a.isdigit() else 2, a)
