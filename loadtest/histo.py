"""HDR histograms of latencies in microseconds, shipped between processes encoded."""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is a failed run anyway
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def encode(h: HdrHistogram) -> bytes:
    return h.encode()


def merge(encoded: list[bytes]) -> HdrHistogram:
    total = new()
    for blob in encoded:
        if blob:
            total.decode_and_add(blob)
    return total


def summary_ms(h: HdrHistogram) -> dict[str, Any]:
    """count, p50/p90/p99/p999/max and mean in milliseconds (None when empty)."""
    n = h.get_total_count()
    if not n:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "p999": None, "max": None, "mean": None}
    out: dict[str, Any] = {"count": n}
    for p in PERCENTILES:
        key = "p999" if p == 99.9 else f"p{int(p)}"
        out[key] = round(h.get_value_at_percentile(p) / 1000, 2)
    out["max"] = round(h.get_max_value() / 1000, 2)
    out["mean"] = round(h.get_mean_value() / 1000, 2)
    return out
