"""Webhook rules without I/O: endpoints and their event filters, signatures and
their verification, retry timing (backoff with jitter, ``Retry-After``).

The delivery machinery (queues on the bus, HTTP) is ``roomserver/webhooks.py``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import math
import random
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlparse

EVENTS: Final = frozenset(
    (
        "room.scheduled",
        "room.started",
        "room.ended",
        "room.members",
        "order.created",
        "lottery.drawn",
        "cohost.updated",
        "pk.ended",
        # issue 12: before a scheduled show, with the followers to remind (roomserver/reminders.py)
        "room.reminder",
        # issue 12: a show's post-live report is kept (roomserver/report_ready.py)
        "report.ready",
    )
)

# What ``--webhook-url`` (the endpoint from before endpoints had filters) receives:
# the events that existed then, so its receivers see nothing new unasked.
LEGACY_EVENTS: Final = tuple(sorted(EVENTS - {"room.members", "room.reminder", "report.ready"}))

# A receiver accepts a delivery whose signed timestamp is at most this far from
# its own clock (Stripe's default); older ones are refused as possible replays.
DEFAULT_TOLERANCE_S: Final = 300
ENDPOINT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
# The endpoint ``--webhook-url`` (one URL for every app and event) is called.
LEGACY_ENDPOINT_ID: Final = "default"
SIGNATURE_HEADER: Final = "X-Roomserver-Signature"
SIGNATURE_V2_HEADER: Final = "X-Roomserver-Signature-V2"


class EndpointSpecError(ValueError):
    """A ``--webhook`` value the server cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one app's webhooks go. ``events`` empty = every event; an entry
    ending in ``.*`` matches a family (``room.*``)."""

    app: str
    id: str
    url: str
    events: tuple[str, ...] = ()

    def wants(self, event: str) -> bool:
        if not self.events:
            return True
        return any(event == f or (f.endswith(".*") and event.startswith(f[:-1])) for f in self.events)


def check_http_url(url: str) -> str:
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise EndpointSpecError(f"{url!r} is not an http(s) URL")
    return url


def parse_endpoint(spec: str) -> Endpoint:
    """``APP:ID:EVENTS:URL``, e.g. ``shop:orders:order.created,lottery.drawn:https://x/hook``;
    EVENTS ``*`` = every event. The URL comes last, so it may contain colons."""
    parts = spec.strip().split(":", 3)
    if len(parts) != 4 or parts[2] in ("http", "https") or parts[1] in ("http", "https"):
        raise EndpointSpecError(
            f"--webhook takes APP:ID:EVENTS:URL (EVENTS: * for every event), got {spec!r}"
        )
    app, endpoint_id, events, url = parts
    if not ENDPOINT_ID_RE.fullmatch(endpoint_id):
        raise EndpointSpecError(f"webhook endpoint id {endpoint_id!r} must be 1..32 of [A-Za-z0-9_-]")
    filters = () if events == "*" else tuple(e.strip() for e in events.split(",") if e.strip())
    if events != "*" and not filters:
        raise EndpointSpecError(f"webhook {app}:{endpoint_id}: EVENTS is empty (use * for every event)")
    for f in filters:
        family = f[:-2] if f.endswith(".*") else None
        if f not in EVENTS and not (family and any(e.startswith(family + ".") for e in EVENTS)):
            raise EndpointSpecError(
                f"webhook {app}:{endpoint_id}: unknown event {f!r} (known: {', '.join(sorted(EVENTS))})"
            )
    return Endpoint(app, endpoint_id, check_http_url(url), filters)


def check_endpoints(endpoints: list[Endpoint], apps: set[str]) -> None:
    """Every endpoint names a configured app, and ids are unique per app."""
    seen: set[tuple[str, str]] = set()
    for e in endpoints:
        if e.app not in apps:
            raise EndpointSpecError(f"webhook {e.app}:{e.id}: no app {e.app!r} is configured (--app)")
        if (e.app, e.id) in seen:
            raise EndpointSpecError(f"webhook {e.app}:{e.id} is given twice")
        seen.add((e.app, e.id))


# -- signatures ---------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """v1 (kept for old receivers): HMAC of the body only, replayable."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_v2(secret: str, body: bytes, t: int) -> str:
    """``t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: the timestamp is signed."""
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class SignatureError(ValueError):
    """A delivery that must not be trusted: bad signature, or too old (replay)."""


def verify(
    secret: str, body: bytes, header: str, *, now_s: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> int:
    """Check an ``X-Roomserver-Signature-V2`` header: the HMAC matches and ``t`` is
    within ``tolerance_s`` of ``now_s``. Returns ``t``; raises ``SignatureError``.

    A receiver should also drop an ``id`` it has already processed (delivery is at
    least once)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            fields.setdefault(k, []).append(v)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("the signature header has no timestamp t=<unix seconds>") from None
    expected = signature_v2(secret, body, t).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise SignatureError("the signature does not match the body")
    if abs(now_s - t) > tolerance_s:
        raise SignatureError(
            f"the signature timestamp is {now_s - t:.0f}s away, over the {tolerance_s}s tolerance"
        )
    return t


# -- retry timing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0  # first retry after about this long
    max_s: float = 600.0  # no wait between attempts is longer
    # After this long since the event, a delivery is given up and marked failed.
    give_up_s: float = 24 * 3600.0

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait before retry ``attempt`` (1 = the first retry): exponential,
        capped, with "full jitter" between half and all of it (AWS's advice, so
        endpoints coming back are not hit by every sender at once)."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempt - 1, 60))
        return ceiling * (0.5 + 0.5 * (rng or random).random())


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now;
    None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = when.timestamp() - now_s
    return max(0.0, seconds) if math.isfinite(seconds) else None


def is_retryable(status: int) -> bool:
    """5xx, 429 (too many requests) and 408 (timeout) are retried; other 4xx mean
    the receiver refuses this delivery for good."""
    return status >= 500 or status in (408, 429)
