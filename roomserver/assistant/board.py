"""The host's question board, 观众在问 (pure): the last minute's questions, clustered.

Questions that retrieval placed on the same knowledge item (``<product>:<intent>``,
also below the answer threshold) are one cluster: "多少钱", "how much?" and
"price pls" are the same question. The others are grouped by token overlap
(Jaccard ≥ ``SAME_TOKENS``) with a cluster's first question. Bounded: at most
``MAX_ENTRIES`` questions per room are kept.

Kept up to date as questions come and go (not recomputed from every entry each
second: at a 200 lines/s barrage that pass was most of the assistant's CPU): each
question joins its cluster when added (a text seen before joins at once; a new text
is compared only with clusters sharing a token) and leaves it when it ages out of
the window; a cluster lives while it has questions in the window (its first
question may have aged out before it).

It also keeps the show's totals for the post-live report (asked, answered, and the
unanswered clusters with their counts).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass, field

from roomserver.assistant.text import tokens

WINDOW_MS = 60_000
MAX_ENTRIES = 2_000
SAME_TOKENS = 0.5
TOP = 10
SEQS_SHOWN = 20
TOKEN_CACHE = 4096


@dataclass(slots=True)
class Cluster:
    text: str
    key: str | None
    count: int = 0
    answered: int = 0
    users: Counter[str] = field(default_factory=Counter)  # asker -> questions in the window
    seqs: deque[int] = field(default_factory=lambda: deque(maxlen=SEQS_SHOWN))
    tokens: frozenset[str] = frozenset()
    serial: int = 0  # creation order: ties in count keep it

    def view(self) -> dict[str, object]:
        return {
            "text": self.text,
            "key": self.key,
            "count": self.count,
            "askers": len(self.users),
            "answered": self.answered,
            "seqs": list(self.seqs),
        }


@dataclass(slots=True)
class Asked:
    at_ms: int
    seq: int
    user: str
    text: str
    key: str | None  # the knowledge item retrieval placed it on (confident or not)
    answered: bool
    cluster: Cluster | None = field(default=None, repr=False, compare=False)  # set by Board.add


def _similar(sa: frozenset[str], sb: frozenset[str]) -> bool:
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) >= SAME_TOKENS


class Board:
    def __init__(self) -> None:
        self.entries: deque[Asked] = deque()  # at most MAX_ENTRIES (add drops the oldest)
        self.asked = 0
        self.answered = 0
        self.unanswered: Counter[str] = Counter()  # text of the cluster -> times unanswered
        self._keyed: dict[str, Cluster] = {}
        self._loose: dict[int, Cluster] = {}  # serial -> cluster, in creation order
        self._loose_text: dict[str, Cluster] = {}  # a text -> the loose cluster it joined
        self._with_token: dict[str, set[int]] = {}  # token -> loose clusters whose first text has it
        self._tokens: dict[str, frozenset[str]] = {}  # text -> token set (the barrage repeats)
        self._serials = itertools.count(1)

    def _token_set(self, text: str) -> frozenset[str]:
        toks = self._tokens.get(text)
        if toks is None:
            if len(self._tokens) >= TOKEN_CACHE:
                self._tokens.clear()
            toks = self._tokens[text] = frozenset(tokens(text))
        return toks

    def _cluster_for(self, entry: Asked) -> Cluster:
        if entry.key is not None:
            c = self._keyed.get(entry.key)
            if c is None:
                c = self._keyed[entry.key] = Cluster(entry.text, entry.key, serial=next(self._serials))
            return c
        found = self._loose_text.get(entry.text)
        if found is not None and found.count:
            return found
        toks = self._token_set(entry.text)
        # Only clusters sharing a token can be similar; the oldest similar one wins.
        near = sorted({i for t in toks for i in self._with_token.get(t, ())})
        c = next((self._loose[i] for i in near if _similar(self._loose[i].tokens, toks)), None)
        if c is None:
            c = Cluster(entry.text, None, tokens=toks, serial=next(self._serials))
            self._loose[c.serial] = c
            for t in toks:
                self._with_token.setdefault(t, set()).add(c.serial)
        if len(self._loose_text) >= 2 * MAX_ENTRIES:  # texts of clusters gone: forget them
            self._loose_text = {t: cl for t, cl in self._loose_text.items() if cl.count}
        self._loose_text[entry.text] = c
        return c

    def add(self, entry: Asked) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self._leave(self.entries.popleft())
        c = entry.cluster = self._cluster_for(entry)
        c.count += 1
        c.answered += entry.answered
        c.users[entry.user] += 1
        c.seqs.append(entry.seq)
        self.entries.append(entry)
        self.asked += 1
        if entry.answered:
            self.answered += 1
        else:
            self.unanswered[entry.key or entry.text] += 1
            if len(self.unanswered) > MAX_ENTRIES:  # keep the report's counter bounded
                for name, _ in self.unanswered.most_common()[MAX_ENTRIES // 2 :]:
                    del self.unanswered[name]

    def _leave(self, entry: Asked) -> None:
        """``entry`` ages out: its cluster counts it no more (and goes when empty)."""
        c = entry.cluster
        if c is None:
            return
        c.count -= 1
        c.answered -= entry.answered
        c.users[entry.user] -= 1
        if c.users[entry.user] <= 0:
            del c.users[entry.user]
        if c.seqs and c.seqs[0] == entry.seq:
            c.seqs.popleft()
        if c.count > 0:
            return
        if c.key is not None:
            del self._keyed[c.key]
        else:
            del self._loose[c.serial]
            for t in c.tokens:
                serials = self._with_token.get(t)
                if serials is not None:
                    serials.discard(c.serial)
                    if not serials:
                        del self._with_token[t]

    def _expire(self, now_ms: int) -> None:
        while self.entries and self.entries[0].at_ms < now_ms - WINDOW_MS:
            self._leave(self.entries.popleft())

    def mark_answered(self, key: str) -> list[int]:
        """The host answered this cluster: its questions count as answered from now on.
        Returns the seqs of the questions it answered (those not answered before)."""
        seqs = []
        for e in self.entries:
            if e.key == key and not e.answered:
                e.answered = True
                self.answered += 1
                seqs.append(e.seq)
                if e.cluster is not None:
                    e.cluster.answered += 1
        self.unanswered.pop(key, None)
        return seqs

    def clusters(self, now_ms: int) -> list[Cluster]:
        """The last minute's clusters, most asked first (at most ``TOP``; ties: the
        one made first)."""
        self._expire(now_ms)
        every = [*self._keyed.values(), *self._loose.values()]
        every.sort(key=lambda c: (-c.count, c.serial))
        return every[:TOP]

    def askers(self, key: str, now_ms: int) -> int:
        """Distinct users who asked for ``key`` in the last minute."""
        self._expire(now_ms)
        c = self._keyed.get(key)
        return len(c.users) if c else 0

    def stats(self) -> dict[str, object]:
        return {
            "asked": self.asked,
            "answered": self.answered,
            "unanswered": self.asked - self.answered,
            "top_unanswered": [{"question": q, "count": n} for q, n in self.unanswered.most_common(TOP)],
        }
