"""Generates textkey_table.json, the data behind textkey.py's matching form, from ICU.

    python -m roomserver.core.textkey_build      # rewrites roomserver/core/textkey_table.json

Needs PyICU (the ``test`` extra; it compiles against the system ICU: libicu-dev,
pkg-config and g++, see the Makefile's system-deps). Only this generator and the
test that checks the shipped file is current use ICU: a deployment reads the
file, so ``pip install`` needs no compiler and no system library.

The table also depends on Python's own Unicode data (NFKC, NFD, case mappings),
which is why requires-python stays on one minor version: the test
(tests/unit/test_textkey_table.py) regenerates the file and fails when the ICU,
the Python or this code has moved away from what was shipped.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from string import printable

try:
    import icu
except ImportError as e:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "textkey_build needs PyICU: pip install -e '.[test]' "
        "(it builds against the system ICU: apt-get install libicu-dev pkg-config g++)"
    ) from e

TABLE_PATH = Path(__file__).with_name("textkey_table.json")
COMMAND = "python -m roomserver.core.textkey_build"

# Invisible in any rendering: what a reader's eye skips.
_INVISIBLE = "[[:Default_Ignorable_Code_Point:][[:Cc:]-[:White_Space:]]]"


def build() -> dict:
    """The table's content: the sets textkey.py needs from Unicode, and the fold."""
    fold = _Fold()
    return {
        "generated_by": COMMAND,
        "do_not_edit": "generated from ICU; a test regenerates it and compares",
        "icu_version": icu.ICU_VERSION,
        "icu_unicode_version": icu.UNICODE_VERSION,
        "python_unicode_version": unicodedata.unidata_version,
        # Unicode default-ignorable code points and controls (not white space): dropped.
        "invisible": _ranges(_uset(_INVISIBLE)),
        # Script=Han, and the clause and sentence delimiters (Terminal_Punctuation).
        "han": _ranges(_uset("[:Han:]")),
        "terminal_punctuation": _ranges(_uset("[:Terminal_Punctuation:]")),
        # Visible code point (hex) -> its matching form (null: dropped).
        "fold": {f"{ord(c):04X}": k or None for c, k in fold.changed()},
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=1) + "\n"


class _Fold:
    """Works out the per-code-point fold described in textkey.py's module doc."""

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
        # A letter whose case folding is several letters (ᾐ → ἠι, ß → ss) folds as
        # those letters one by one, as its capitals (ἨΙ) do: otherwise the upper-case
        # path below sees the capitals together and ᾐ and ἨΙ get different keys.
        folded = ch.casefold()
        if len(folded) > 1:
            return "".join(map(self.fold_char, folded))
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

    def changed(self) -> Iterator[tuple[str, str]]:
        """(code point, its matching form) for every visible code point the fold changes."""
        for c in self.candidates():
            k = self.key(c)
            if k != c:
                yield c, k


def _uset(pattern: str) -> icu.UnicodeSet:
    s = icu.UnicodeSet(pattern)
    s.freeze()
    return s


def _chars(s: icu.UnicodeSet) -> Iterator[str]:
    for lo, hi in s.ranges():
        yield from map(chr, range(ord(lo), ord(hi) + 1))


def _ranges(s: icu.UnicodeSet) -> list[str]:
    # UCD notation: "00AD" or "0600..0605".
    return [f"{ord(lo):04X}" if lo == hi else f"{ord(lo):04X}..{ord(hi):04X}" for lo, hi in s.ranges()]


def _rep_rank(a: str) -> tuple[int, str]:
    # Letters name a class before digits, digits before punctuation: l for {l 1 |}.
    return (0 if a.isalpha() else 1 if a.isdigit() else 2, a)


def main() -> None:
    text = render(build())
    TABLE_PATH.write_text(text, encoding="ascii")
    print(f"wrote {TABLE_PATH} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
