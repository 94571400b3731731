"""Composition: config -> broker -> node -> aiohttp application."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from roomserver import media_glue
from roomserver.announce import Announcer
from roomserver.api import add_routes
from roomserver.api.middleware import cors, error_language, errors
from roomserver.api.ratelimit import rate_limits
from roomserver.appkeys import (
    CONFIG_KEY,
    GATEWAY_KEY,
    NODE_KEY,
    RECORDER_KEY,
    STORE_KEY,
    VERIFIER_KEY,
    WRITER_KEY,
)
from roomserver.auth import TokenVerifier
from roomserver.behaviour_log import BehaviourRecorder
from roomserver.behaviour_writer import BehaviourWriter
from roomserver.bus.base import Broker, HistoryLimits
from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.buswatch import BusWatch
from roomserver.config import Config
from roomserver.gateway import Gateway
from roomserver.gcpolicy import GcPolicy
from roomserver.handlers import loyalty as loyalty_ops
from roomserver.handlers.catalog import SHOW_END, deadline_checks
from roomserver.metrics import Metrics
from roomserver.node import Node
from roomserver.reminders import Reminders
from roomserver.report_ready import ReportReady, ended_links
from roomserver.store.store import AnalyticsStore
from roomserver.web import add_web_routes

log = logging.getLogger(__name__)

# At shutdown, how long the behaviour log waits for closed sockets' leave records.
LEAVES_WAIT_S = 2.0

__all__ = ["CONFIG_KEY", "GATEWAY_KEY", "NODE_KEY", "VERIFIER_KEY", "create_app", "make_broker"]


def make_broker(config: Config) -> Broker:
    limits = HistoryLimits(max_events=config.history_events, max_age_ms=config.history_age_s * 1000)
    if config.redis_cluster or config.redis_url:
        from roomserver.bus.redis import RedisBroker

        options: dict[str, Any] = {
            "node_id": config.node_id,
            "limits": limits,
            "prefix": config.redis_prefix,
            "durable_wait_ms": config.durable_wait_ms,
            "durable_events": config.redis_durable_events,
            "idle_ttl_ms": config.room_idle_ttl_s * 1000,
            "ca_file": config.redis_ca_file,
        }
        if config.redis_cluster:
            return RedisBroker.from_cluster(config.redis_cluster, **options)
        assert config.redis_url is not None
        return RedisBroker.from_url(config.redis_url, **options)
    return MemoryBroker(MemoryHub(limits), node_id=config.node_id, idle_ttl_ms=config.room_idle_ttl_s * 1000)


def _middlewares(config: Config) -> list:
    """Outermost first: CORS headers on every answer, errors in the client's language,
    errors as JSON, then limits."""

    def limit(rate: float, burst: int) -> tuple[float, int] | None:
        return (rate, burst) if rate > 0 else None

    return [
        cors(config.cors_origins),
        error_language,
        errors,
        rate_limits(
            limit(config.rest_rate_per_token, config.rest_burst_per_token),
            limit(config.rest_rate_per_ip, config.rest_burst_per_ip),
        ),
    ]


def create_app(config: Config, broker: Broker | None = None) -> web.Application:
    verifier = TokenVerifier(config.app_secrets())
    # The post-live report after each show (issue 12), once the store is open.
    reports = ReportReady(lambda: app.get(STORE_KEY)) if config.analytics else None
    # The node is handed its handlers' deadline checks and show-end steps (and, below,
    # its media): it imports none of them.
    node = Node(
        config,
        broker or make_broker(config),
        Metrics(),
        deadlines=deadline_checks(),
        show_end=SHOW_END + ((reports.show_ended,) if reports else ()),
    )
    if reports is not None:
        node.hooks.ended_data.append(ended_links)
    gateway = Gateway(node, verifier)
    app = web.Application(client_max_size=256 * 1024, middlewares=_middlewares(config))
    app[NODE_KEY] = node
    app[GATEWAY_KEY] = gateway
    app[CONFIG_KEY] = config
    app[VERIFIER_KEY] = verifier
    add_routes(app, ws_handler=gateway.handle)
    add_web_routes(app, config)

    gc_policy = GcPolicy(
        freeze_s=config.gc_freeze_s,
        reclaim_s=config.gc_reclaim_s,
        young_threshold=config.gc_young_threshold,
    )

    bus_watch = BusWatch(node.broker, config.bus_name) if config.redis_url or config.redis_cluster else None

    async def on_startup(app: web.Application) -> None:
        node.metrics.watch_gc()
        gc_policy.start()
        await node.start()
        if bus_watch is not None:
            bus_watch.start()

    async def on_shutdown(app: web.Application) -> None:
        await gateway.drain()

    async def on_cleanup(app: web.Application) -> None:
        if bus_watch is not None:
            await bus_watch.stop()
        await node.stop()
        await gc_policy.stop()
        node.metrics.unwatch_gc()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    # WHIP/WHEP and the media backend (started after the node, closed before it stops).
    glue = node.media = media_glue.install(app, node, verifier, config)
    _install_announcer(app, Announcer(node, config, glue.viewer_count))
    _install_assistant(app, node, config)
    _install_store(app, node, config, reports)
    _install_reminders(app, node, config)
    return app


REMINDERS_KEY = web.AppKey("reminders", Reminders)


def _run_beside_node(
    app: web.Application, start: Callable[[], None], stop: Callable[[], Awaitable[None]]
) -> None:
    """A background loop started after the node (startup hooks run in order) and
    stopped before it (cleanup hooks inserted first run first)."""

    async def on_startup(app: web.Application) -> None:
        start()

    async def on_cleanup(app: web.Application) -> None:
        await stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.insert(0, on_cleanup)


def _install_reminders(app: web.Application, node: Node, config: Config) -> None:
    """``room.reminder`` webhooks before scheduled shows (issue 12)."""
    reminders = app[REMINDERS_KEY] = Reminders(node, config.reminder_offsets)
    _run_beside_node(app, reminders.start, reminders.stop)


def _install_announcer(app: web.Application, announcer: Announcer) -> None:
    """Announced once the node serves; withdrawn before it stops (GET /v1/nodes)."""
    _run_beside_node(app, announcer.start, announcer.stop)


def _install_store(app: web.Application, node: Node, config: Config, reports: ReportReady | None) -> None:
    """The analytics store (issue 12): opened and migrated before the node serves;
    the behaviour log's recorder (ops → bus stream) and writer (stream → store)
    run from after the node starts until before it stops."""
    if not config.analytics:
        return
    recorder = BehaviourRecorder(
        node.broker, node.metrics, node_id=config.node_id, cached_doc=node.cached_doc, load_doc=node.room
    )
    node.behaviour = recorder
    app[RECORDER_KEY] = recorder

    async def open_store(app: web.Application) -> None:
        app[STORE_KEY] = await AnalyticsStore.open(url=config.database_url, data_dir=Path(config.data_dir))
        # Loyalty: the configured points rules and tiers; the handlers' member tier and points.redeem.
        app[STORE_KEY].loyalty.rules = config.loyalty_rules()
        loyalty_ops.attach(app[NODE_KEY], app[STORE_KEY].loyalty)

    async def start_log(app: web.Application) -> None:
        recorder.start()
        writer = app[WRITER_KEY] = BehaviourWriter(
            node.broker,
            app[STORE_KEY],
            node.metrics,
            node_id=config.node_id,
            retention_days=config.retention_days,
        )
        writer.start()

    async def stop_log(app: web.Application) -> None:
        # The drain closed every socket; their handlers record the sessions' leaves as
        # they finish: wait for them (bounded), then the last records go out.
        gateway = app[GATEWAY_KEY]
        deadline = time.monotonic() + LEAVES_WAIT_S
        while gateway.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await recorder.stop()
        if WRITER_KEY in app:
            await app[WRITER_KEY].stop(drain_s=LEAVES_WAIT_S)

    async def close_store(app: web.Application) -> None:
        if reports is not None:
            await reports.stop()
        if STORE_KEY in app:
            await app[STORE_KEY].close()

    app.on_startup.insert(0, open_store)
    app.on_startup.append(start_log)
    app.on_cleanup.insert(0, stop_log)
    app.on_cleanup.append(close_store)


def _install_assistant(app: web.Application, node: Node, config: Config) -> None:
    """The room assistant (issue 18): handed to the node, started after it."""
    if config.assistant == "off":
        return
    from roomserver.assistant.api import add_assistant_routes
    from roomserver.assistant.embed import load_embedder
    from roomserver.assistant.llm import Phraser
    from roomserver.assistant.service import Assistant

    phraser = None
    if config.assistant_llm_url:
        phraser = Phraser(config.assistant_llm_url, config.assistant_llm_model, config.assistant_llm_key)
    assistant = Assistant(load_embedder("use") if config.assistant == "hybrid" else None, phraser)
    node.assistant = assistant
    add_assistant_routes(app, assistant)

    async def start(app: web.Application) -> None:
        await assistant.start(node)

    async def stop(app: web.Application) -> None:
        await assistant.stop()

    app.on_startup.append(start)
    app.on_cleanup.insert(0, stop)
