"""The host's question board, 观众在问 (pure): the last minute's questions, clustered.

Questions that retrieval placed on the same knowledge item (``<product>:<intent>``,
also below the answer threshold) are one cluster: "多少钱", "how much?" and
"price pls" are the same question. The others are grouped by token overlap
(Jaccard ≥ ``SAME_TOKENS``) with a cluster's first question. Bounded: at most
``MAX_ENTRIES`` questions per room are kept.

It also keeps the show's totals for the post-live report (asked, answered, and the
unanswered clusters with their counts).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from roomserver.assistant.text import tokens

WINDOW_MS = 60_000
MAX_ENTRIES = 2_000
SAME_TOKENS = 0.5
TOP = 10


@dataclass(slots=True)
class Asked:
    at_ms: int
    seq: int
    user: str
    text: str
    key: str | None  # the knowledge item retrieval placed it on (confident or not)
    answered: bool


@dataclass(slots=True)
class Cluster:
    text: str
    key: str | None
    count: int = 0
    answered: int = 0
    users: set[str] = field(default_factory=set)
    seqs: list[int] = field(default_factory=list)

    def view(self) -> dict[str, object]:
        return {
            "text": self.text,
            "key": self.key,
            "count": self.count,
            "askers": len(self.users),
            "answered": self.answered,
            "seqs": self.seqs[-20:],
        }


def _similar(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    sa, sb = set(a), set(b)
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) >= SAME_TOKENS


class Board:
    def __init__(self) -> None:
        self.entries: deque[Asked] = deque(maxlen=MAX_ENTRIES)
        self.asked = 0
        self.answered = 0
        self.unanswered: Counter[str] = Counter()  # text of the cluster -> times unanswered

    def add(self, entry: Asked) -> None:
        self.entries.append(entry)
        self.asked += 1
        if entry.answered:
            self.answered += 1
        else:
            self.unanswered[entry.key or entry.text] += 1
            if len(self.unanswered) > MAX_ENTRIES:  # keep the report's counter bounded
                for name, _ in self.unanswered.most_common()[MAX_ENTRIES // 2 :]:
                    del self.unanswered[name]

    def mark_answered(self, key: str) -> None:
        """The host answered this cluster: its questions count as answered from now on."""
        for e in self.entries:
            if e.key == key and not e.answered:
                e.answered = True
                self.answered += 1
        self.unanswered.pop(key, None)

    def clusters(self, now_ms: int) -> list[Cluster]:
        """The last minute's clusters, most asked first (at most ``TOP``)."""
        while self.entries and self.entries[0].at_ms < now_ms - WINDOW_MS:
            self.entries.popleft()
        by_key: dict[str, Cluster] = {}
        loose: list[tuple[tuple[str, ...], Cluster]] = []
        for e in self.entries:
            if e.key is not None:
                c = by_key.get(e.key)
                if c is None:
                    c = by_key[e.key] = Cluster(e.text, e.key)
            else:
                toks = tokens(e.text)
                c = next((cl for t, cl in loose if _similar(t, toks)), None)
                if c is None:
                    c = Cluster(e.text, None)
                    loose.append((toks, c))
            c.count += 1
            c.answered += e.answered
            c.users.add(e.user)
            c.seqs.append(e.seq)
        every = [*by_key.values(), *(c for _, c in loose)]
        every.sort(key=lambda c: -c.count)  # stable: ties keep their first-asked order
        return every[:TOP]

    def askers(self, key: str, now_ms: int) -> int:
        """Distinct users who asked for ``key`` in the last minute."""
        return len({e.user for e in self.entries if e.key == key and e.at_ms >= now_ms - WINDOW_MS})

    def stats(self) -> dict[str, object]:
        return {
            "asked": self.asked,
            "answered": self.answered,
            "unanswered": self.asked - self.answered,
            "top_unanswered": [{"question": q, "count": n} for q, n in self.unanswered.most_common(TOP)],
        }
