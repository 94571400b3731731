"""Hybrid ranking of knowledge items for a question (pure; the embedder is passed in).

Lexical: BM25 over the items' phrasings (``text.tokens``: jieba words, character
bigrams, English stems and trigrams). A raw BM25 score has no scale, so it is
divided by the score the question would get from a phrasing of average length
that holds every one of its tokens once: ``lex`` in 0..1 says how much of what the
question says (weighted by rarity) a phrasing covers. A question whose rare words
appear in no phrasing ("主播几岁了") scores low everywhere: that is what keeps
out-of-scope questions unanswered.

Semantic (optional): cosine between the question's embedding and each phrasing's,
mapped from ``SEM_FLOOR..SEM_CEIL`` to 0..1. The item's score is the weighted sum;
without an embedder it is ``lex`` alone (docs/assistant.md has both evaluations).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from roomserver.assistant.intents import Knowledge
from roomserver.assistant.text import tokens

K1 = 1.2
B = 0.5
# Semantic weight in the hybrid score, and the cosine range mapped onto 0..1: below
# SEM_FLOOR two sentences of the multilingual encoder are unrelated in practice.
SEM_WEIGHT = 0.3
SEM_FLOOR = 0.35
SEM_CEIL = 0.85

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """A sentence encoder: L2-normalised rows, one per text."""

    name: str

    def encode(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True, slots=True)
class Hit:
    item: Knowledge
    lex: float
    sem: float
    score: float


class Index:
    """BM25 (and embeddings) over a fixed set of knowledge items; built when the
    room's products or the catalogue change, then read for every question."""

    def __init__(self, items: Sequence[Knowledge], embedder: Embedder | None = None) -> None:
        self.items = list(items)
        self._doc_item: list[int] = []
        self._doc_tf: list[Counter[str]] = []
        self._doc_len: list[int] = []
        texts: list[str] = []
        for i, item in enumerate(self.items):
            for phrasing in item.phrasings:
                toks = tokens(phrasing)
                self._doc_item.append(i)
                self._doc_tf.append(Counter(toks))
                self._doc_len.append(len(toks))
                texts.append(phrasing)
        n = len(self._doc_tf)
        df: Counter[str] = Counter()
        for tf in self._doc_tf:
            df.update(tf.keys())
        self._n = n
        self._avgdl = (sum(self._doc_len) / n) if n else 1.0
        self._idf = {t: self._idf_of(c) for t, c in df.items()}
        self._postings: dict[str, list[int]] = {}
        for d, tf in enumerate(self._doc_tf):
            for t in tf:
                self._postings.setdefault(t, []).append(d)
        self._item_sets: dict[frozenset[str | None] | None, npt.NDArray[np.intp]] = {}
        self.embedder = embedder
        self._vectors: Vectors | None = embedder.encode(texts) if embedder is not None and texts else None

    def _idf_of(self, df: int) -> float:
        return math.log((self._n - df + 0.5) / (df + 0.5) + 1.0)

    def lexical(self, question: str) -> npt.NDArray[np.float64]:
        """``lex`` per item (0..1)."""
        scores = np.zeros(len(self.items))
        q = Counter(tokens(question))
        if not q or not self._n:
            return scores
        unknown = self._idf_of(0)
        ideal = sum(self._idf.get(t, unknown) for t in q)
        per_doc: dict[int, float] = {}
        for t in q:
            idf = self._idf.get(t)
            if idf is None:
                continue
            for d in self._postings[t]:
                tf = self._doc_tf[d][t]
                norm = K1 * (1 - B + B * self._doc_len[d] / self._avgdl)
                per_doc[d] = per_doc.get(d, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
        for d, s in per_doc.items():
            i = self._doc_item[d]
            scores[i] = max(scores[i], min(1.0, s / ideal))
        return scores

    def semantic(self, question_vec: Vectors) -> npt.NDArray[np.float64]:
        """``sem`` per item (0..1): the best phrasing's cosine, rescaled."""
        scores = np.zeros(len(self.items))
        if self._vectors is None:
            return scores
        cos = self._vectors @ question_vec
        for d, c in enumerate(cos):
            i = self._doc_item[d]
            scores[i] = max(scores[i], float(c))
        return np.clip((scores - SEM_FLOOR) / (SEM_CEIL - SEM_FLOOR), 0.0, 1.0)

    def rank(
        self,
        question: str,
        question_vec: Vectors | None = None,
        *,
        products: set[str | None] | None = None,
        limit: int = 40,
    ) -> list[Hit]:
        """The ``limit`` best items, best first, restricted to ``products`` (None in it:
        room-wide items)."""
        lex = self.lexical(question)
        if question_vec is not None and self._vectors is not None:
            sem = self.semantic(question_vec)
            score = (1 - SEM_WEIGHT) * lex + SEM_WEIGHT * sem
        else:
            sem = np.zeros(len(self.items))
            score = lex
        allowed = self._allowed(products)
        # Stable, as before: among equal scores the items keep the index's order.
        best = allowed[np.argsort(-score[allowed], kind="stable")[:limit]]
        rows = zip(best.tolist(), lex[best].tolist(), sem[best].tolist(), score[best].tolist(), strict=True)
        return [Hit(self.items[i], lx, sm, sc) for i, lx, sm, sc in rows]

    def _allowed(self, products: set[str | None] | None) -> npt.NDArray[np.intp]:
        """The items of ``products`` (all without it), ascending (kept per product set:
        every question of a room asks with the same one)."""
        key = frozenset(products) if products is not None else None
        found = self._item_sets.get(key)
        if found is None:
            if len(self._item_sets) >= 64:
                self._item_sets.clear()
            found = self._item_sets[key] = np.array(
                [i for i, item in enumerate(self.items) if products is None or item.product in products],
                dtype=np.intp,
            )
        return found
