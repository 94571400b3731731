"""Outgoing webhooks (PROTOCOL §5): durable queues on the bus, one worker per
endpoint, signed POSTs retried with backoff until a give-up bound.

Path of an event
----------------
1. ``emit(event, room_key, data)`` (sync, from the node that performed the
   transition: exactly one per commit, so a cluster sends each webhook once)
   encodes the payload ``{id, event, app, room, ts, data}`` once and queues it,
   in this process, for every endpoint of the room's app whose filter wants it.
2. A pump appends it to the endpoint's stream on the bus
   (``Broker.stream_append``, stream ``wh:<app>:<endpoint>``): on Redis it is
   now durable; a restarted or killed server process loses none of it, and with
   ``--redis-durable-wait-ms`` (the default on a cluster) neither does a killed
   Redis primary: the append is acknowledged once a replica has it. (What is
   lost: events emitted in the milliseconds before a kill, not appended yet;
   and everything on the embedded memory bus when its process ends.)
3. Per endpoint, the node holding the stream's lease (``stream_lease``; every
   node runs a worker per endpoint, one of them holds it, another takes over
   within the lease's TTL, 10 s, of its death) delivers the entries one at a time in
   stream order, so deliveries are **ordered per endpoint**, hence per room.
   Entries a dead holder had read are claimed first (``stream_claim``), then
   new ones are read. A slow or down endpoint holds up only its own queue.
4. Each delivery is POSTed with both signatures (``core/webhooks.py``); 2xx =
   delivered; 5xx, 408, 429, a timeout or a refused connection = retried after
   ``Retry-After`` if the endpoint sent one, else exponential backoff with
   jitter (``RetryPolicy``); any other 4xx = failed at once. An event older
   than ``give_up_s`` (24 h by default) is given up: marked failed.
5. The outcome goes to the app's delivery log (stream ``whlog:<app>``, the last
   ``log_retention`` outcomes), read by ``GET /v1/webhooks/deliveries``; the
   entry is then acknowledged and deleted from the queue.

Delivery is at least once: a holder that dies after the POST but before the
acknowledgement, or loses its lease in a long pause, leaves the entry to be
sent again by the next holder. Receivers dedupe by ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from roomserver.bus.base import Broker, BrokerUnavailable
from roomserver.bus.streams import StreamEntry
from roomserver.config import Config
from roomserver.core.webhooks import (
    EVENTS,
    LEGACY_ENDPOINT_ID,
    LEGACY_EVENTS,
    SIGNATURE_HEADER,
    SIGNATURE_V2_HEADER,
    Endpoint,
    RetryPolicy,
    is_retryable,
    retry_after_s,
    signature,
    signature_v2,
)
from roomserver.metrics import Metrics
from roomserver.protocol import encode, now_ms
from roomserver.tenancy import split_room_key

__all__ = ["EVENTS", "Webhooks", "endpoints_for", "from_config", "log_stream", "queue_stream"]

log = logging.getLogger(__name__)

GROUP = "delivery"
# An endpoint's lease; at least twice the POST timeout, so that one slow POST
# never outlives the lease of the node making it.
LEASE_TTL_MS = 10_000
BATCH = 50
# Events queued in this process but not yet on the bus (the bus is down): beyond
# this the oldest are dropped (counted in ``dropped``).
MAX_LOCAL = 100_000
PUMP_BATCH = 500


def queue_stream(app: str, endpoint: str) -> str:
    return f"wh:{app}:{endpoint}"


def log_stream(app: str) -> str:
    return f"whlog:{app}"


def endpoints_for(url: str | None, endpoints: Sequence[Endpoint], apps: Sequence[str]) -> list[Endpoint]:
    """The configured endpoints plus, for ``--webhook-url``, endpoint ``default``
    of every app with the events it had before endpoints existed (``LEGACY_EVENTS``)."""
    out = list(endpoints)
    if url:
        taken = {(e.app, e.id) for e in endpoints}
        out += [
            Endpoint(app, LEGACY_ENDPOINT_ID, url, LEGACY_EVENTS)
            for app in apps
            if (app, LEGACY_ENDPOINT_ID) not in taken
        ]
    return out


class LogRecord(msgspec.Struct, omit_defaults=True):
    """One delivery outcome as kept in the log (and listed by the REST API)."""

    id: str  # the webhook's id (the payload's ``id``)
    endpoint: str
    event: str
    room: str
    status: str  # "delivered" | "failed"
    attempts: int
    created: int  # when the event was queued, unix ms
    finished: int  # when the outcome was known, unix ms
    code: int | None = None  # the last HTTP status, if any answered
    error: str | None = None  # why the last attempt failed


@dataclass(slots=True)
class _Outcome:
    status: str
    attempts: int
    code: int | None
    error: str | None


class _LeaseLost(Exception):
    """Another node holds the endpoint now: stop without acknowledging."""


class Webhooks:
    def __init__(
        self,
        broker: Broker,
        app_secrets: dict[str, str],
        endpoints: Sequence[Endpoint],
        *,
        node_id: str,
        metrics: Metrics | None = None,
        policy: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        poll_s: float = 1.0,
        queue_maxlen: int = 1_000_000,
        log_retention: int = 10_000,
    ) -> None:
        self.broker = broker
        self.app_secrets = dict(app_secrets)
        self.endpoints = list(endpoints)
        self.node_id = node_id
        self.metrics = metrics
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.queue_maxlen = queue_maxlen
        self.log_retention = log_retention
        self.lease_ttl_ms = max(LEASE_TTL_MS, int(timeout_s * 2000) + 1000)
        self._by_app: dict[str, list[Endpoint]] = {}
        for e in self.endpoints:
            self._by_app.setdefault(e.app, []).append(e)
        self._local: deque[tuple[Endpoint, bytes]] = deque()
        self._local_ready = asyncio.Event()
        self._wake: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self.endpoints)

    def endpoint(self, app: str, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self._by_app.get(app, ()) if e.id == endpoint_id), None)

    def app_endpoints(self, app: str) -> list[Endpoint]:
        return list(self._by_app.get(app, ()))

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if not self.endpoints:
            return
        loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._tasks.append(loop.create_task(self._pump(), name="webhooks-pump"))
        for e in self.endpoints:
            self._wake[(e.app, e.id)] = asyncio.Event()
            self._tasks.append(loop.create_task(self._worker(e), name=f"webhooks-{e.app}-{e.id}"))

    async def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Put what is still queued in this process on the bus (bounded), then stop
        the workers and give their leases up (another node goes on at once)."""
        if not self._tasks:
            return
        deadline = time.monotonic() + flush_timeout_s
        while self._local and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for e in self.endpoints:
            with contextlib.suppress(Exception):
                await self.broker.stream_release(queue_stream(e.app, e.id), self.node_id)
        if self._session is not None:
            await self._session.close()

    # -- emitting ----------------------------------------------------------------

    def emit(self, event: str, room_key: str, data: dict[str, Any]) -> None:
        """Queue ``event`` of the room ``room_key`` (``<app>/<room>``) for every
        endpoint of its app that wants it."""
        assert event in EVENTS, event
        app, room = split_room_key(room_key)
        targets = [e for e in self._by_app.get(app, ()) if e.wants(event)]
        if not targets:
            return
        body = encode(
            {
                "id": secrets.token_hex(8),
                "event": event,
                "app": app,
                "room": room,
                "ts": now_ms(),
                "data": data,
            }
        )
        for e in targets:
            if len(self._local) >= MAX_LOCAL:
                self._local.popleft()
                self.dropped += 1
            self._local.append((e, body))
        self._local_ready.set()

    async def _pump(self) -> None:
        """Append queued events to their endpoints' streams: up to ``PUMP_BATCH`` at
        a time, one pipeline per endpoint, in order. While the bus is down, keep
        them and retry (an append whose outcome is unknown may then be doubled:
        receivers dedupe by id)."""
        backoff = 0.05
        while True:
            await self._local_ready.wait()
            self._local_ready.clear()
            while self._local:
                batch = [self._local.popleft() for _ in range(min(PUMP_BATCH, len(self._local)))]
                groups: dict[Endpoint, list[bytes]] = {}
                for e, body in batch:
                    groups.setdefault(e, []).append(body)
                results = await asyncio.gather(
                    *(
                        self.broker.stream_append_many(
                            queue_stream(e.app, e.id), bodies, maxlen=self.queue_maxlen
                        )
                        for e, bodies in groups.items()
                    ),
                    return_exceptions=True,
                )
                failed: list[tuple[Endpoint, bytes]] = []
                for (e, bodies), result in zip(groups.items(), results, strict=True):
                    if isinstance(result, BaseException):
                        if not isinstance(result, BrokerUnavailable):
                            raise result
                        log.warning("webhook queue append failed (%s); retrying", result)
                        failed += [(e, b) for b in bodies]
                    else:
                        self._wake[(e.app, e.id)].set()
                if failed:
                    self._local.extendleft(reversed(failed))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                else:
                    backoff = 0.05

    # -- delivering --------------------------------------------------------------

    async def _worker(self, e: Endpoint) -> None:
        stream = queue_stream(e.app, e.id)
        wake = self._wake[(e.app, e.id)]
        while True:
            try:
                if not await self.broker.stream_lease(stream, self.node_id, self.lease_ttl_ms):
                    # Another node delivers this endpoint; try again within a quarter
                    # of the lease's TTL (our appends need no wake-up: it polls).
                    self._set_depth(e, None)
                    await asyncio.sleep(self.lease_ttl_ms / 4000)
                    continue
                await self._drain(e, stream, wake)
            except _LeaseLost:
                log.info("webhook endpoint %s/%s: lease lost to another node", e.app, e.id)
            except BrokerUnavailable as exc:
                log.warning("webhook endpoint %s/%s: bus unavailable (%s)", e.app, e.id, exc)
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook worker %s/%s failed; restarting it", e.app, e.id)
                await asyncio.sleep(1.0)

    async def _drain(self, e: Endpoint, stream: str, wake: asyncio.Event) -> None:
        """While holding the lease: deliver what a previous holder left pending,
        then new entries, in stream order."""
        lease = _Lease(self.broker, stream, self.node_id, self.lease_ttl_ms)
        while True:
            wake.clear()
            await lease.renew()
            info = await self.broker.stream_info(stream, GROUP)
            self._set_depth(e, info.length)
            entries: list[StreamEntry] = []
            if info.pending:  # read by a holder that died or lost its lease: first
                claim = await self.broker.stream_claim(
                    stream, GROUP, self.node_id, min_idle_ms=0, count=BATCH
                )
                entries = claim.entries
            if not entries:
                entries = await self.broker.stream_read(stream, GROUP, self.node_id, count=BATCH)
            if not entries:
                await self._wait(wake, self.poll_s)
                continue
            # Logging and acknowledging a delivery overlaps the next POST (two bus round
            # trips off the critical path); acknowledgements stay in order.
            finishing: asyncio.Future[None] | None = None
            try:
                for entry in entries:
                    outcome = await self._deliver(e, entry, lease)
                    if finishing is not None:
                        await finishing
                    finishing = asyncio.ensure_future(self._finish(e, stream, entry, outcome))
                if finishing is not None:
                    await finishing
            finally:
                if finishing is not None and not finishing.done():
                    finishing.cancel()

    async def _finish(self, e: Endpoint, stream: str, entry: StreamEntry, outcome: _Outcome) -> None:
        await self._record(e, entry, outcome)
        await self.broker.stream_ack(stream, GROUP, [entry.id], delete=True)

    async def _wait(self, wake: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)

    async def _deliver(self, e: Endpoint, entry: StreamEntry, lease: _Lease) -> _Outcome:
        assert self._session is not None
        secret = self.app_secrets[e.app]
        body = entry.data
        attempts = 0
        code: int | None = None
        error: str | None = None
        while True:
            age_s = (now_ms() - entry.ms) / 1000
            if age_s > self.policy.give_up_s:
                self._count(e, "failed")
                return _Outcome(
                    "failed", attempts, code, f"gave up after {self.policy.give_up_s:g}s: {error}"
                )
            await lease.renew()
            attempts += 1
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(secret, body),
                SIGNATURE_V2_HEADER: signature_v2(secret, body, int(time.time())),
            }
            wait: float | None = None
            try:
                async with self._session.post(e.url, data=body, headers=headers) as resp:
                    code = resp.status
                    if 200 <= resp.status < 300:
                        self._count(e, "delivered")
                        return _Outcome("delivered", attempts, code, None)
                    error = f"HTTP {resp.status}"
                    if not is_retryable(resp.status):
                        self._count(e, "failed")
                        return _Outcome("failed", attempts, code, error + " (not retried)")
                    wait = retry_after_s(resp.headers.get("Retry-After"), time.time())
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._count(e, "retried")
            if wait is None:
                wait = self.policy.backoff_s(attempts, self._rng)
            # Never wait past the give-up moment (then try once more and give up).
            wait = min(wait, max(0.0, self.policy.give_up_s - age_s) + 0.001)
            log.info(
                "webhook %s/%s: attempt %d failed (%s); next in %.1fs", e.app, e.id, attempts, error, wait
            )
            await lease.sleep(wait)

    async def _record(self, e: Endpoint, entry: StreamEntry, outcome: _Outcome) -> None:
        head = msgspec.json.decode(entry.data)
        if outcome.status == "delivered":
            self.sent += 1
        else:
            self.failed += 1
            log.warning("webhook %s to %s/%s failed: %s", head.get("id"), e.app, e.id, outcome.error)
        record = LogRecord(
            id=str(head.get("id")),
            endpoint=e.id,
            event=str(head.get("event")),
            room=str(head.get("room")),
            status=outcome.status,
            attempts=outcome.attempts,
            created=entry.ms,
            finished=now_ms(),
            code=outcome.code,
            error=outcome.error,
        )
        await self.broker.stream_append(
            log_stream(e.app), msgspec.json.encode(record), maxlen=self.log_retention
        )

    def _count(self, e: Endpoint, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(app=e.app, endpoint=e.id, result=result).inc()

    def _set_depth(self, e: Endpoint, depth: int | None) -> None:
        """Queue depth is reported by the node delivering the endpoint only."""
        if self.metrics is None:
            return
        gauge = self.metrics.webhook_queue_depth
        if depth is None:
            with contextlib.suppress(KeyError):
                gauge.remove(e.app, e.id)
        else:
            gauge.labels(app=e.app, endpoint=e.id).set(depth)

    # -- the delivery log -----------------------------------------------------------

    async def deliveries(
        self, app: str, *, endpoint: str = "", status: str = "", after: str = "", limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The app's delivery log, oldest first, filtered; at most ``limit``
        records, reading at most ``SCAN_PAGES`` pages of the log. Returns the
        records (each with its ``cursor``) and the cursor to page on from (None:
        the end of the log)."""
        out: list[dict[str, Any]] = []
        cursor = after
        for _ in range(SCAN_PAGES):
            page = await self.broker.stream_range(log_stream(app), after=cursor, limit=1000)
            for entry in page:
                cursor = entry.id
                rec = msgspec.json.decode(entry.data)
                if (endpoint and rec.get("endpoint") != endpoint) or (status and rec.get("status") != status):
                    continue
                rec["cursor"] = entry.id
                out.append(rec)
                if len(out) == limit:
                    return out, entry.id
            if len(page) < 1000:
                return out, None
        return out, cursor or None


SCAN_PAGES = 10


def from_config(config: Config, broker: Broker, metrics: Metrics | None) -> Webhooks:
    secrets_ = config.app_secrets()
    return Webhooks(
        broker,
        secrets_,
        endpoints_for(config.webhook_url, config.webhooks, sorted(secrets_)),
        node_id=config.node_id,
        metrics=metrics,
        policy=RetryPolicy(config.webhook_backoff_s, config.webhook_backoff_max_s, config.webhook_give_up_s),
        timeout_s=config.webhook_timeout_s,
        poll_s=config.webhook_poll_s,
        log_retention=config.webhook_log_retention,
    )


class _Lease:
    """The worker's hold on its endpoint: renewed once a third of its TTL passed,
    before every attempt and while a retry waits."""

    def __init__(self, broker: Broker, stream: str, holder: str, ttl_ms: int) -> None:
        self.broker = broker
        self.stream = stream
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.renewed = 0.0

    async def renew(self) -> None:
        now = time.monotonic()
        if now - self.renewed >= self.ttl_ms / 3000:
            if not await self.broker.stream_lease(self.stream, self.holder, self.ttl_ms):
                raise _LeaseLost()
            self.renewed = now

    async def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            await self.renew()
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.ttl_ms / 3000))
