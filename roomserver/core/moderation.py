"""Banned-word filtering and per-user rate limits (pure).

Text is normalised before matching so that simple evasions do not pass:
NFKC folds full-width forms to half-width (ＡＢＣ → ABC, ｆｕｃｋ → fuck) and
compatibility characters, ``casefold`` removes case, and zero-width
characters are dropped. Matching is substring matching with an Aho-Corasick
automaton over the normalised text, so one pass finds any of thousands of words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))

# A small default list; deployments extend it with --banned-words FILE (one per line).
DEFAULT_BANNED_WORDS: tuple[str, ...] = (
    "fuck",
    "shit",
    "傻逼",
    "操你",
    "草泥马",
    "法轮",
    "代开发票",
    "加微信",
    "刷单",
)


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(_ZERO_WIDTH)


class WordFilter:
    """An immutable automaton over a set of words; build once per word list."""

    def __init__(self, words: Iterable[str]) -> None:
        self._automaton = ahocorasick.Automaton()
        count = 0
        for w in {normalize(w) for w in words}:
            if w:
                self._automaton.add_word(w, w)
                count += 1
        self.size = count
        if count:
            self._automaton.make_automaton()

    def find(self, text: str) -> str | None:
        """The first banned word in ``text``, or None."""
        if not self.size:
            return None
        for _end, word in self._automaton.iter(normalize(text)):
            return word
        return None


class WordFilters:
    """Default words + per-room words, one automaton per room word list (cached)."""

    def __init__(self, base_words: Iterable[str] = DEFAULT_BANNED_WORDS) -> None:
        self.base_words = tuple(base_words)
        self.base = WordFilter(self.base_words)
        self._per_room: dict[str, tuple[tuple[str, ...], WordFilter]] = {}

    def for_room(self, room: str, room_words: list[str]) -> WordFilter:
        if not room_words:
            return self.base
        key = tuple(room_words)
        cached = self._per_room.get(room)
        if cached is None or cached[0] != key:
            cached = (key, WordFilter((*self.base_words, *room_words)))
            self._per_room[room] = cached
        return cached[1]

    def forget(self, room: str) -> None:
        self._per_room.pop(room, None)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = -1.0
    at_ms: int = 0

    def take(self, now_ms: int, cost: float = 1.0) -> int:
        """Take ``cost`` tokens; returns 0 if allowed, else ms until it would be."""
        if self.tokens < 0:
            self.tokens, self.at_ms = self.burst, now_ms
        elapsed = max(0, now_ms - self.at_ms) / 1000.0
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.at_ms = now_ms
        if self.tokens >= cost:
            self.tokens -= cost
            return 0
        return max(1, int((cost - self.tokens) / self.rate * 1000) + 1)


# Per-user limits by op family: (rate per second, burst).
RATE_LIMITS: dict[str, tuple[float, float]] = {
    "barrage": (5.0, 10.0),
    "like": (20.0, 40.0),
    "gift": (10.0, 20.0),
    "buy": (20.0, 40.0),
    "default": (30.0, 60.0),
}


class UserLimits:
    """The token buckets of one user on this node (by op family)."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, family: str, now_ms: int) -> int:
        bucket = self.buckets.get(family)
        if bucket is None:
            rate, burst = RATE_LIMITS.get(family, RATE_LIMITS["default"])
            bucket = self.buckets[family] = TokenBucket(rate, burst)
        return bucket.take(now_ms)
