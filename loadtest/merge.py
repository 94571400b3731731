"""``roomserver-loadtest merge``: one report from the JSON results of several shards.

Each shard (``roomserver-loadtest worker --shard I/N ...``, one per machine) loads the same room
of the same deployment with its part of the viewers and of the rate, verifies its own viewers
and writes its result with the raw HDR histograms (``raw``). Merging adds the counters, adds the
histograms (so percentiles are those of all samples, not an average of percentiles) and lines
the per-second series up by unix second (shards started with the same ``--start-at`` on
machines with synchronised clocks share their seconds).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest import histo

COUNTS = (
    "viewers",
    "ok",
    "with_gaps",
    "missing_events",
    "with_duplicates",
    "incomplete",
    "not_joined",
    "left",
)
SEND_COUNTS = ("sent", "accepted", "shed", "unanswered")


def _hist(blob: str) -> HdrHistogram:
    return histo.merge([base64.b64decode(blob)])


def _add_maps(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def load(paths: list[Path]) -> list[dict[str, Any]]:
    reports = []
    for p in paths:
        try:
            r = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p}: not a result file ({exc})") from None
        if not isinstance(r, dict) or "raw" not in r or "shard" not in r:
            raise ValueError(f"{p}: not a shard's result (run `roomserver-loadtest worker --shard I/N ...`)")
        reports.append(r)
    return reports


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    if not reports:
        raise ValueError("nothing to merge")
    counts = reports[0]["shard"]["count"]
    if any(r["shard"]["count"] != counts for r in reports):
        raise ValueError("the shards were started with different shard counts")
    indexes = sorted(r["shard"]["index"] for r in reports)
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"a shard is given twice: {indexes}")
    rooms = {r["params"]["room"] for r in reports}
    if len(rooms) != 1:
        raise ValueError(f"the shards loaded different rooms: {sorted(rooms)}")
    verification: dict[str, Any] = {k: 0 for k in COUNTS}
    join_failures: dict[str, int] = {}
    closed: dict[str, int] = {}
    sends: dict[str, Any] = {k: 0 for k in SEND_COUNTS}
    errors: dict[str, int] = {}
    latency, ack = histo.new(), histo.new()
    joins = {k: histo.new() for k in ("connect", "join", "connect_to_snapshot")}
    per_second: dict[int, dict[str, Any]] = {}
    for r in reports:
        v, raw = r["verification"], r["raw"]
        for k in COUNTS:
            verification[k] += v.get(k, 0)
        _add_maps(join_failures, v.get("join_failures", {}))
        _add_maps(closed, v.get("closed_by_server", {}))
        for k in SEND_COUNTS:
            sends[k] += r["sends"].get(k, 0)
        _add_maps(errors, r["sends"].get("errors", {}))
        ack.add(_hist(raw["ack"]))
        for k, h in joins.items():
            h.add(_hist(raw[k]))
        for sec, blob in raw["latency"].items():
            row = per_second.setdefault(int(sec), {"deliveries": 0, "viewers": 0, "hist": histo.new()})
            h = _hist(blob)
            row["hist"].add(h)
            latency.add(h)
        for key in ("deliveries", "viewers"):
            for sec, n in raw[key].items():
                row = per_second.setdefault(int(sec), {"deliveries": 0, "viewers": 0, "hist": histo.new()})
                row[key] += n
    verification["join_failures"] = join_failures
    verification["closed_by_server"] = closed
    verification["final_seq"] = max(r["verification"]["final_seq"] for r in reports)
    sends["errors"] = errors
    sends["ack_ms"] = histo.summary_ms(ack)
    first = min(per_second, default=0)
    series = [
        {
            "t": sec - first,
            "unix": sec,
            "deliveries": row["deliveries"],
            "viewers": row["viewers"],
            **{k: val for k, val in histo.summary_ms(row["hist"]).items() if k != "mean"},
        }
        for sec, row in sorted(per_second.items())
    ]
    deliveries = sum(r["deliveries"] for r in reports)
    starts = [r["raw"]["window_start"] for r in reports]
    return {
        "scenario": "merged",
        "label": reports[0].get("label"),
        "shards": {"count": counts, "merged": indexes, "missing": sorted(set(range(counts)) - set(indexes))},
        "room": rooms.pop(),
        "passed": all(r.get("passed") for r in reports) and len(indexes) == counts,
        "verification": verification,
        "sends": sends,
        "deliveries": deliveries,
        "frames": sum(r.get("frames", 0) for r in reports),
        "sockets": sum(r.get("sockets", 0) for r in reports),
        # Shards run side by side: their rates add up.
        "deliveries_per_s": sum(r.get("deliveries_per_s") or 0 for r in reports),
        "window_start_spread_s": round(max(starts) - min(starts), 3),
        "latency_ms": histo.summary_ms(latency),
        "join_ms": {k: histo.summary_ms(h) for k, h in joins.items()},
        "series": series,
        "per_shard": [
            {
                "index": r["shard"]["index"],
                "passed": r.get("passed"),
                "viewers": r["verification"]["viewers"],
                "deliveries": r["deliveries"],
                "deliveries_per_s": r.get("deliveries_per_s"),
                "p99_ms": (r.get("latency_ms") or {}).get("p99"),
                "start_late_s": r["shard"].get("start_late_s"),
                "loadgen_cores": r.get("loadgen_cores"),
            }
            for r in sorted(reports, key=lambda r: r["shard"]["index"])
        ],
    }
