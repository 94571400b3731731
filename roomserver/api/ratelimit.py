"""REST rate limits: a token bucket per bearer token and one per client IP.

The defaults are far above what an app's back end sends (50 requests/s with a
burst of 100 per token, 100/s with a burst of 200 per IP) and exist so that one
client cannot make the node serve nothing else (issue 16: 20 concurrent schedule
reads moved every socket's ping from 1 ms to 0.8 s). Health and metrics skip the
token bucket (a probe has no token) but not the IP bucket. WebSocket upgrades
are not REST: sockets are bounded by connections per user and per IP, and their
ops by the per-user op limits. The browser pages and their static files are not
limited (cheap, and a page load fetches dozens).

Buckets live in this process (like the per-user op limits): N nodes behind a
load balancer give a client N times the budget. State is bounded: keys are
hashes, and past ``max_keys`` the least recently used buckets are forgotten
(a forgotten bucket is a full one, so forgetting errs on the side of allowing).
"""

from __future__ import annotations

import math
import time

from aiohttp import web

from roomserver.api import API_PREFIXES
from roomserver.api.middleware import json_error_response

WS_PATH = "/v1/ws"
PROBE_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))


class TokenBuckets:
    """``take(key)``: 0.0 when a request may go now, else seconds until it may."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.max_keys = max_keys
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, at); oldest first

    def take(self, key: int, now: float) -> float:
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # re-inserted: the dict stays in LRU order
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def _request_token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query.get("token", "")


def rate_limits(
    per_token: tuple[float, int] | None, per_ip: tuple[float, int] | None
):  # -> aiohttp middleware
    """A middleware limiting REST requests; ``(rate per s, burst)``, None = no limit."""
    tokens = TokenBuckets(*per_token) if per_token else None
    ips = TokenBuckets(*per_ip) if per_ip else None

    @web.middleware
    async def limit(request: web.Request, handler):  # type: ignore[no-untyped-def]
        path = request.path
        if path == WS_PATH or request.method == "OPTIONS" or not path.startswith(API_PREFIXES):
            return await handler(request)  # sockets, preflights, the pages and their files
        now = time.monotonic()
        wait = ips.take(hash(request.remote or ""), now) if ips is not None else 0.0
        if not wait and tokens is not None and path not in PROBE_PATHS:
            token = _request_token(request)
            if token:
                wait = tokens.take(hash(token), now)
        if wait:
            return json_error_response(
                429,
                "too many requests",
                headers={"Retry-After": str(math.ceil(wait))},
                retry_after_ms=math.ceil(wait * 1000),
            )
        return await handler(request)

    return limit
