"""The host's question board, 观众在问 (pure): the last minute's questions, clustered.

Questions that retrieval placed on the same knowledge item (``<product>:<intent>``,
also below the answer threshold) are one cluster: "多少钱", "how much?" and
"price pls" are the same question. The others are grouped by token overlap
(Jaccard ≥ ``SAME_TOKENS``) with a cluster's first question. Bounded: at most
``MAX_ENTRIES`` questions per room are kept.

Cheap enough to run every second over a full minute of a 200 lines/s barrage: a
text's token set is computed once (the barrage repeats itself), a text seen before
in this pass joins its cluster without comparing, and the askers of a key are
indexed by key.

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


TOKEN_CACHE = 4096


def _similar(sa: frozenset[str], sb: frozenset[str]) -> bool:
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) >= SAME_TOKENS


class Board:
    def __init__(self) -> None:
        self.entries: deque[Asked] = deque(maxlen=MAX_ENTRIES)
        self.asked = 0
        self.answered = 0
        self.unanswered: Counter[str] = Counter()  # text of the cluster -> times unanswered
        self._keyed: dict[str, deque[Asked]] = {}  # key -> its entries (for ``askers``)
        self._tokens: dict[str, frozenset[str]] = {}  # text -> token set

    def _token_set(self, text: str) -> frozenset[str]:
        toks = self._tokens.get(text)
        if toks is None:
            if len(self._tokens) >= TOKEN_CACHE:
                self._tokens.clear()
            toks = self._tokens[text] = frozenset(tokens(text))
        return toks

    def add(self, entry: Asked) -> None:
        self.entries.append(entry)
        if entry.key is not None:
            keyed = self._keyed.get(entry.key)
            if keyed is None:
                keyed = self._keyed[entry.key] = deque(maxlen=MAX_ENTRIES)
            keyed.append(entry)
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
        for key in [k for k, d in self._keyed.items() if not self._recent(d, now_ms)]:
            del self._keyed[key]
        by_key: dict[str, Cluster] = {}
        by_text: dict[str, Cluster] = {}  # loose texts already placed in this pass
        loose: list[tuple[frozenset[str], Cluster]] = []
        with_token: dict[str, list[int]] = {}  # token -> the loose clusters whose first text has it
        for e in self.entries:
            if e.key is not None:
                c = by_key.get(e.key)
                if c is None:
                    c = by_key[e.key] = Cluster(e.text, e.key)
            else:
                found = by_text.get(e.text)
                if found is None:
                    toks = self._token_set(e.text)
                    # Only clusters sharing a token can be similar; the first one (in the
                    # order they were made) wins, as a scan of them all would choose.
                    near = sorted({i for t in toks for i in with_token.get(t, ())})
                    found = next((loose[i][1] for i in near if _similar(loose[i][0], toks)), None)
                    if found is None:
                        found = Cluster(e.text, None)
                        for t in toks:
                            with_token.setdefault(t, []).append(len(loose))
                        loose.append((toks, found))
                    by_text[e.text] = found
                c = found
            c.count += 1
            c.answered += e.answered
            c.users.add(e.user)
            c.seqs.append(e.seq)
        every = [*by_key.values(), *(c for _, c in loose)]
        every.sort(key=lambda c: -c.count)  # stable: ties keep their first-asked order
        return every[:TOP]

    @staticmethod
    def _recent(keyed: deque[Asked], now_ms: int) -> deque[Asked]:
        """``keyed`` without its entries older than the window (dropped)."""
        while keyed and keyed[0].at_ms < now_ms - WINDOW_MS:
            keyed.popleft()
        return keyed

    def askers(self, key: str, now_ms: int) -> int:
        """Distinct users who asked for ``key`` in the last minute."""
        keyed = self._keyed.get(key)
        if not keyed:
            return 0
        horizon = now_ms - WINDOW_MS
        return len({e.user for e in self._recent(keyed, now_ms) if e.at_ms >= horizon})

    def stats(self) -> dict[str, object]:
        return {
            "asked": self.asked,
            "answered": self.answered,
            "unanswered": self.asked - self.answered,
            "top_unanswered": [{"question": q, "count": n} for q, n in self.unanswered.most_common(TOP)],
        }
