"""Prometheus metrics (one registry per server instance, so tests can run several).

Typed as Prometheus means them: counters (``*_total``) for things counted since the
process started, gauges for levels read at scrape, histograms for durations. The
process collector adds CPU seconds, resident memory, open file descriptors and the
start time (``process_*``). Other parts register their own metrics on
``Metrics.registry`` (webhook delivery metrics do); docs/metrics.md lists them all,
generated from the registry by ``python -m roomserver.metrics``.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sockets = Gauge("roomserver_sockets", "Open client WebSockets on this node", registry=r)
        self.rooms = Gauge("roomserver_rooms", "Rooms with at least one socket on this node", registry=r)
        self.ops = OpsCollector()
        r.register(self.ops)
        self.events_out = Counter("roomserver_bus_events_total", "Events received from the bus", registry=r)
        # Fan-out totals, read from the fan-out's own counters at scrape (``fanout_stats``).
        self.fanout = FanoutCollector()
        r.register(self.fanout)
        self.shed = Counter(
            "roomserver_barrage_shed_total", "Barrage messages shed over the room cap", registry=r
        )
        self.queue_depth = Gauge(
            "roomserver_socket_buffer_bytes_max",
            "Largest unsent byte count of any socket at scrape",
            registry=r,
        )
        self.tracked = Counter(
            "roomserver_tracked_total", "Analytics track ops", ["app", "action"], registry=r
        )
        # The behaviour log (issue 12, docs/analytics.md).
        self.behaviour_recorded = Counter(
            "roomserver_behaviour_recorded_total",
            "Behaviour records this node's ops made (counted when flushed to the bus)",
            registry=r,
        )
        self.behaviour_dropped = Counter(
            "roomserver_behaviour_dropped_total",
            "Behaviour records dropped: this node's queue was full (the bus was away too long)",
            registry=r,
        )
        self.behaviour_ingested = Counter(
            "roomserver_behaviour_ingested_total",
            "Behaviour records this process's writer stored (new ones; re-deliveries not counted)",
            registry=r,
        )
        self.behaviour_claimed = Counter(
            "roomserver_behaviour_claimed_total",
            "Behaviour stream entries this process's writer claimed from a consumer that stopped",
            registry=r,
        )
        self.behaviour_write_errors = Counter(
            "roomserver_behaviour_write_errors_total",
            "Writer failures by step: read, store, ack, claim, decode (a malformed entry, dropped)",
            ["step"],
            registry=r,
        )
        self.behaviour_lag = Gauge(
            "roomserver_behaviour_lag_seconds",
            "Age of the last batch this process's writer stored (append to store commit)",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "roomserver_webhook_deliveries_total",
            "Webhook delivery attempts by result: delivered, retried (an attempt failed), failed (for good)",
            ["app", "endpoint", "result"],
            registry=r,
        )
        self.webhook_queue_depth = Gauge(
            "roomserver_webhook_queue_depth",
            "Webhooks queued for an endpoint (reported by the node delivering it)",
            ["app", "endpoint"],
            registry=r,
        )
        self.moderation_calls = Counter(
            "roomserver_moderation_callback_total",
            "Moderation callbacks by result: allow, block, replace, error (timeout, refused, bad answer), busy",
            ["app", "result"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "roomserver_flush_seconds",
            "Time the loop spent in one room flush (a room over the fan-out's slice_size sockets: its first slice)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )

        self.gc_pause = Histogram(
            "roomserver_gc_pause_seconds",
            "Time the process stood still in Python's cyclic garbage collector",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, _resident_memory_bytes, …
        PlatformCollector(registry=r)  # python_info
        self._gc_started = 0.0
        # Children made once: this runs on every collection, young ones included.
        self._gc_pause_by_generation = [self.gc_pause.labels(str(g)) for g in range(3)]

    def count_op(self, app: str, op: str, result: str) -> None:
        """``roomserver_ops_total{app, op, result}`` += 1."""
        self.ops.counts[app, op, result] += 1

    def watch_gc(self) -> None:
        """Time every collection (gc.callbacks is process-wide: pair with `unwatch_gc`)."""
        gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        self._gc_pause_by_generation[info["generation"]].observe(took)
        if took >= 0.05:  # long enough to show in end-to-end latency
            log.warning(
                "gc generation %d paused the process %.0f ms (%d collected)",
                info["generation"],
                took * 1000,
                info["collected"],
            )

    def observe_flush(self, seconds: float, frames: int) -> None:
        self.flush_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class OpsCollector(Collector):
    """``roomserver_ops_total{app, op, result}`` from a plain dict read at scrape time.

    Counted on every client op, so it stays a dict increment: a prometheus
    ``Counter`` child takes a lock per ``inc()`` (a few % of a flash sale's CPU).
    One event loop thread writes it; a scrape copies it."""

    def __init__(self) -> None:
        self.counts: Tally[tuple[str, str, str]] = Tally()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("roomserver_ops", "Client ops handled", labels=["app", "op", "result"])
        for (app, op, result), n in sorted(self.counts.copy().items()):
            family.add_metric([app, op, result], n)
        yield family


# (metric name without _total, FanoutStats attribute, help)
FANOUT_TOTALS = (
    ("roomserver_deliveries", "deliveries", "Messages written to sockets (events x sockets)"),
    ("roomserver_frames", "frames", "WebSocket frames written"),
    (
        "roomserver_ephemeral_shed",
        "shed_ephemeral",
        "Ephemeral messages skipped for sockets over the soft buffer",
    ),
    ("roomserver_slow_consumer_closes", "slow_closes", "Sockets closed with 4008 (slow consumer)"),
    (
        "roomserver_cut_connections",
        "cut_connections",
        "Connections reset because the peer did not complete a close within the close timeout",
    ),
)


class FanoutCollector(Collector):
    """The fan-out's counters (plain ints it increments on its hot path) as Prometheus
    counters, read at scrape from ``stats`` (an object with the attributes of
    ``FANOUT_TOTALS``; the /metrics route hands it the node's ``Fanout.stats``)."""

    def __init__(self) -> None:
        self.stats: object | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, attr, doc in FANOUT_TOTALS:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], getattr(self.stats, attr, 0) if self.stats is not None else 0)
            yield family


def _families(registry: CollectorRegistry) -> list[Metric]:
    return sorted(registry.collect(), key=lambda m: m.name)


def metrics_table(metrics: Metrics | None = None) -> str:
    """The Markdown table of every metric a server exposes (docs/metrics.md)."""
    m = metrics or Metrics()
    m.count_op("app", "op", "ok")  # a sample, so the collector's labels show
    m.tracked.labels(app="app", action="a")
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for family in _families(m.registry):
        labels = sorted({k for s in family.samples for k in s.labels} - {"le", "quantile"})
        name = family.name + ("_total" if family.type == "counter" else "")
        doc = family.documentation.replace("|", "\\|")
        rows.append(f"| `{name}` | {family.type} | {', '.join(labels)} | {doc} |")
    return "\n".join(rows)


DOC_BEGIN = "<!-- metrics table: generated by `python -m roomserver.metrics`; do not edit -->"
DOC_END = "<!-- end of metrics table -->"


def with_table(doc: str, table: str) -> str:
    head, _, rest = doc.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    return f"{head}{DOC_BEGIN}\n{table}\n{DOC_END}{tail}"


if __name__ == "__main__":  # regenerate the table in docs/metrics.md
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/metrics.md")
    path.write_text(with_table(path.read_text(), metrics_table()))
