"""Prometheus metrics (one registry per server instance, so tests can run several)."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
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
        self.deliveries = Gauge(
            "roomserver_deliveries", "Messages written to sockets since start (events x sockets)", registry=r
        )
        self.frames = Gauge("roomserver_frames", "WebSocket frames written since start", registry=r)
        self.shed = Counter(
            "roomserver_barrage_shed_total", "Barrage messages shed over the room cap", registry=r
        )
        self.shed_ephemeral = Gauge(
            "roomserver_ephemeral_shed",
            "Ephemeral messages skipped for sockets over the soft buffer",
            registry=r,
        )
        self.slow_closes = Gauge("roomserver_slow_consumer_closes", "Sockets closed with 4008", registry=r)
        self.cut_connections = Gauge(
            "roomserver_cut_connections",
            "Connections reset because the peer did not complete a close within the close timeout",
            registry=r,
        )
        self.queue_depth = Gauge(
            "roomserver_socket_buffer_bytes_max",
            "Largest unsent byte count of any socket at scrape",
            registry=r,
        )
        self.tracked = Counter(
            "roomserver_tracked_total", "Analytics track ops", ["app", "action"], registry=r
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
