"""Banned-word filtering and per-user rate limits (pure).

A message is blocked when the matching form of a banned word (``match_key``,
roomserver/core/textkey.py: invisible characters dropped, NFKC, case folded,
look-alike letters folded to one prototype, filler between Han characters
dropped) occurs in the matching form of the message. Matching is by substring,
as it always was: Chinese has no spaces to find words by, so "傻逼" must match
inside "你个傻逼吧"; the price is that a short Latin entry matches inside longer
words too (a banned "ass" blocks "class"), so Latin entries belong on the list
only as whole words that are not parts of common ones. An Aho-Corasick automaton
finds any of thousands of words in one pass. The message is shown as it was
sent: only the decision uses its matching form.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from roomserver.core.textkey import match_key, without_invisibles

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
    """How a room's banned word is stored and compared for duplicates: NFKC, case
    folded, invisible characters dropped; still readable, unlike its matching form."""
    return without_invisibles(unicodedata.normalize("NFKC", text).casefold())


class WordFilter:
    """An immutable automaton over a set of words; build once per word list."""

    def __init__(self, words: Iterable[str]) -> None:
        self._automaton = ahocorasick.Automaton()
        keys = {match_key(w): normalize(w) for w in words}
        keys.pop("", None)
        for key, word in keys.items():
            self._automaton.add_word(key, word)
        self.size = len(keys)
        if keys:
            self._automaton.make_automaton()

    def find(self, text: str) -> str | None:
        """The first banned word found in ``text`` (as listed, normalised), or None."""
        if not self.size:
            return None
        for _end, word in self._automaton.iter(match_key(text)):
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
