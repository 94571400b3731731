"""What a run reports: the progress line, per-second series and the result dict."""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest import histo
from loadtest.client import SendStats


class Progress:
    """One line a second to stderr: elapsed, viewers, deliveries/s, p99 so far."""

    def __init__(self, label: str, total_s: float) -> None:
        self.label = label
        self.total_s = total_s
        self.tty = sys.stderr.isatty()

    def show(
        self, elapsed: float, joined: int, viewers: int, rate: float, p99_ms: float | None, phase: str
    ) -> None:
        width = 20
        filled = min(width, int(width * elapsed / self.total_s)) if self.total_s else 0
        bar = "#" * filled + "-" * (width - filled)
        p99 = f"{p99_ms:.0f} ms" if p99_ms is not None else "-"
        line = (
            f"{self.label} [{bar}] {phase} {elapsed:5.1f}/{self.total_s:.0f}s viewers {joined}/{viewers} "
            f"delivered {rate / 1000:8.1f}k/s p99 {p99}"
        )
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


@dataclass
class Series:
    """Per-second buckets (seconds since the window start)."""

    deliveries: dict[int, int] = field(default_factory=dict)
    latency: dict[int, HdrHistogram] = field(default_factory=dict)
    server_cores: dict[int, float] = field(default_factory=dict)
    loadgen_lag_ms: dict[int, float] = field(default_factory=dict)  # worst event-loop lag of any worker
    viewers: dict[int, int] = field(default_factory=dict)  # joined viewers at the second's end (ramps)

    def add(self, second: int, deliveries: int, hist_blob: bytes) -> None:
        self.deliveries[second] = self.deliveries.get(second, 0) + deliveries
        if hist_blob:
            h = self.latency.get(second)
            if h is None:
                h = self.latency[second] = histo.new()
            h.decode_and_add(hist_blob)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for s in sorted(set(self.deliveries) | set(self.latency)):
            h = self.latency.get(s)
            row: dict[str, Any] = {"t": s, "deliveries": self.deliveries.get(s, 0)}
            if s in self.server_cores:
                row["server_cores"] = self.server_cores[s]
            if s in self.loadgen_lag_ms:
                row["loadgen_lag_ms"] = self.loadgen_lag_ms[s]
            if s in self.viewers:
                row["viewers"] = self.viewers[s]
            row.update({k: v for k, v in histo.summary_ms(h or histo.new()).items() if k != "mean"})
            out.append(row)
        return out


def barrage_result(
    before: dict[str, Any],
    after: dict[str, Any],
    finals: list[dict[str, Any]],
    *,
    final_seq: int,
    t_joined: float,
    sockets: int,
    series: Series,
    sends: SendStats,
) -> dict[str, Any]:
    """The result of a barrage run from the two snapshots around the window and the workers' verdicts."""
    wall = after["wall"] - before["wall"]
    deliveries = after["deliveries"] - before["deliveries"]
    server_cpu = after["server_cpu"] - before["server_cpu"]
    loadgen_cpu = after["loadgen_cpu"] - before["loadgen_cpu"]
    latency = histo.merge([b""])
    for h in series.latency.values():
        latency.add(h)
    counts = {
        k: sum(f[k] for f in finals)
        for k in ("viewers", "ok", "with_gaps", "missing_events", "with_duplicates", "incomplete")
    }
    join_failures: dict[str, int] = {}
    closed: dict[str, int] = {}
    for f in finals:
        for k, v in f["join_failures"].items():
            join_failures[k] = join_failures.get(k, 0) + v
        for k, v in f["closed"].items():
            closed[k] = closed.get(k, 0) + v
    counts["not_joined"] = sum(join_failures.values())
    counts["left"] = sum(f.get("left", 0) for f in finals)  # closed by a ramp going down
    counts["join_failures"] = join_failures
    counts["closed_by_server"] = closed
    counts["max_lag"] = max((f["max_lag"] for f in finals), default=0)
    counts["final_seq"] = final_seq
    verified = counts["ok"] == counts["viewers"] and counts["not_joined"] == 0
    return {
        "passed": verified,
        "verification": counts,
        "sends": {
            "sent": sends.sent,
            "accepted": sends.accepted,
            "shed": sends.shed,
            "errors": sends.errors,
            "unanswered": sends.unanswered,
            "ack_ms": histo.summary_ms(sends.ack),
        },
        "window_s": round(wall, 3),
        "deliveries": deliveries,
        "frames": after["frames"] - before["frames"],
        # Fan-out cost is per frame written: these two explain deliveries per CPU-second.
        "msgs_per_frame": round(deliveries / frames, 2)
        if (frames := after["frames"] - before["frames"])
        else None,
        "server_us_per_frame": round(server_cpu * 1e6 / frames, 2) if frames else None,
        "deliveries_per_s": round(deliveries / wall) if wall > 0 else None,
        "server_cpu_s": round(server_cpu, 2),
        "server_cores": round(server_cpu / wall, 3) if wall > 0 else None,
        "server_cores_each": [
            round((a - b) / wall, 3) for a, b in zip(after["server_each"], before["server_each"], strict=True)
        ],
        "deliveries_per_server_cpu_s": round(deliveries / server_cpu) if server_cpu > 0 else None,
        "redis_cpu_s": round(after["redis_cpu"] - before["redis_cpu"], 2),
        "redis_cores": round((after["redis_cpu"] - before["redis_cpu"]) / wall, 3) if wall > 0 else None,
        "loadgen_cpu_s": round(loadgen_cpu, 2),
        "loadgen_cores": round(loadgen_cpu / wall, 3) if wall > 0 else None,
        "loadgen_worker_cores": [
            round((a - b) / wall, 3) for a, b in zip(after["worker_cpu"], before["worker_cpu"], strict=True)
        ],
        "machine_busy_cores": round((after["machine_busy"] - before["machine_busy"]) / wall, 3),
        "machine_softirq_cores": round((after["machine_softirq"] - before["machine_softirq"]) / wall, 3),
        "other_tenants_cores": round(
            (
                after["machine_busy"]
                - before["machine_busy"]
                - server_cpu
                - loadgen_cpu
                - (after["redis_cpu"] - before["redis_cpu"])
            )
            / wall,
            3,
        ),
        "latency_ms": histo.summary_ms(latency),
        "join_ms": join_summary(finals),
        "connect_phase_s": round(t_joined - min(f["first_start"] for f in finals), 2),
        "series": series.rows(),
        "sockets": sockets,
    }


def join_summary(finals: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "connect": histo.summary_ms(histo.merge([f["connect_hist"] for f in finals])),
        "join": histo.summary_ms(histo.merge([f["join_hist"] for f in finals])),
        "connect_to_snapshot": histo.summary_ms(histo.merge([f["total_hist"] for f in finals])),
    }


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def shard_raw(
    window_start: float, series: Series, sends: SendStats, finals: list[dict[str, Any]]
) -> dict[str, Any]:
    """What ``merge`` needs beyond the summary: the histograms themselves (HDR, encoded) and
    the series by unix second, so shards on machines with synchronised clocks line up."""
    base = int(window_start)
    return {
        "window_start": window_start,
        "latency": {str(base + t): b64(histo.encode(h)) for t, h in series.latency.items()},
        "deliveries": {str(base + t): n for t, n in series.deliveries.items()},
        "viewers": {str(base + t): n for t, n in series.viewers.items()},
        "ack": b64(histo.encode(sends.ack)),
        "connect": b64(histo.merge([f["connect_hist"] for f in finals]).encode()),
        "join": b64(histo.merge([f["join_hist"] for f in finals]).encode()),
        "connect_to_snapshot": b64(histo.merge([f["total_hist"] for f in finals]).encode()),
    }
