"""An independent recomputation of a published lottery draw, written from
PROTOCOL "Lottery verifiability" alone (not from ``roomserver.core.lottery``),
as an app or a viewer would, to check the server against the text."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any


def recompute_winners(audit: dict[str, Any]) -> list[str]:
    """Check ``audit`` (``GET /v1/rooms/{room}/lotteries/{id}``) and return the winners it implies.

    Raises AssertionError when the seed does not match its hash, the entrants are
    not sorted by UTF-8 bytes, or their hash does not match."""
    seed = bytes.fromhex(audit["seed"])
    assert len(seed) == 32, "the seed is 32 bytes"
    assert hashlib.sha256(seed).hexdigest() == audit["seed_hash"], "seed does not match seed_hash"
    entrants = list(audit["entrants"])
    assert entrants == sorted(entrants, key=lambda user: user.encode("utf-8")), "entrants not sorted"
    assert len(set(entrants)) == len(entrants), "an entrant twice"
    assert hashlib.sha256("\n".join(entrants).encode("utf-8")).hexdigest() == audit["entrants_hash"]
    n = len(entrants)
    k = min(audit["max_winners"], n)
    for i in range(k):
        r = int.from_bytes(hmac.new(seed, str(i).encode(), hashlib.sha256).digest()[:8], "big")
        j = i + r % (n - i)
        entrants[i], entrants[j] = entrants[j], entrants[i]
    return entrants[:k]
