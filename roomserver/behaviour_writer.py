"""The behaviour log's writer (issue 12, docs/analytics.md): bus stream → store.

Every server process runs one, a consumer of group ``store`` on each partition
stream (``behaviour.<k>``, see ``behaviour_log``). Each round it reads entries
from every partition, stores all their records (``EventLog.ingest``: one
transaction, idempotent by record id) and acknowledges + deletes the entries
only AFTER that commit. A process killed
between read and ack leaves its entries pending in the group; every writer
claims entries idle longer than ``CLAIM_IDLE_MS`` (a dead consumer's, or its
own after a store failure) and stores them: at least once on the bus, exactly
once in the store.

Failures never stop it: a read or store error backs off (up to
``BACKOFF_MAX_S``) and the entries stay pending until stored; a malformed
entry (it cannot be decoded, so it never will be) is acknowledged, dropped and
counted. The same loop purges records older than ``--retention-days``.

``wait_show_stored`` tells a reader (the post-live report, tests) when a
show's records are all in the store.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Final

import msgspec

from roomserver.background import BackgroundTask
from roomserver.behaviour_log import FLUSH_MS, PARTITIONS, partition_of, streams
from roomserver.bus.base import Broker
from roomserver.bus.streams import StreamEntry
from roomserver.core.behaviour import BehaviourEvent, decode_batch
from roomserver.metrics import Metrics
from roomserver.protocol import now_ms
from roomserver.store.events import ShowInfo
from roomserver.store.store import AnalyticsStore
from roomserver.tenancy import room_key

log = logging.getLogger(__name__)

GROUP: Final = "store"
READ_COUNT: Final = 20  # entries per read of a partition (each up to BATCH_MAX records)
# A round reads the partitions again while they are backlogged and it holds fewer records
# than this: one ingest transaction of up to this + 4 partitions x READ_COUNT x BATCH_MAX.
ROUND_RECORDS: Final = 100_000
# Pause after a round that found every partition empty: from POLL_S, doubling while
# idle up to IDLE_POLL_MAX_S (an idle writer costs little; a busy one never waits).
POLL_S: Final = 0.05
IDLE_POLL_MAX_S: Final = 0.4
CLAIM_EVERY_S: Final = 1.0
CLAIM_IDLE_MS: Final = 5_000
STORE_TRIES: Final = 3  # then the entries stay pending and are claimed later
BACKOFF_MAX_S: Final = 5.0
PURGE_EVERY_S: Final = 3600.0
DAY_MS: Final = 24 * 3600 * 1000


class BehaviourWriter:
    def __init__(
        self,
        broker: Broker,
        store: AnalyticsStore,
        metrics: Metrics,
        *,
        node_id: str,
        retention_days: int,
        partitions: int = PARTITIONS,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.broker = broker
        self.store = store
        self.metrics = metrics
        # One consumer name per process start: a restarted process does not inherit
        # pending entries by name, it claims them like anyone else.
        self.consumer = f"{node_id}-{secrets.token_hex(4)}"
        self.retention_days = retention_days
        self.streams = streams(partitions)
        self.claim_idle_ms = claim_idle_ms
        self._claim_from = dict.fromkeys(self.streams, "0-0")
        self._loop = BackgroundTask("behaviour-writer")
        self._backoff = 0.0

    def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self, *, drain_s: float = 0.0) -> None:
        """Stop; first store what is on the bus for up to ``drain_s`` seconds (a
        process's last records, flushed at shutdown: on the memory bus nobody else
        will)."""
        await self._loop.stop()
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            try:
                if not await self.drain_once():
                    break
            except Exception as exc:
                log.warning("behaviour writer: last drain failed: %r", exc)
                break

    async def _run(self) -> None:
        claim_due = purge_due = time.monotonic()
        idle = POLL_S
        while True:
            try:
                busy = await self.drain_once()
                now = time.monotonic()
                if now >= claim_due:
                    claim_due = now + CLAIM_EVERY_S
                    busy = await self.claim_once() or busy
                if now >= purge_due:
                    purge_due = now + PURGE_EVERY_S
                    await self.purge()
            except Exception as exc:  # never die: the next round tries again
                log.warning("behaviour writer: %r", exc)
                busy = False
                self._backoff = min(max(self._backoff * 2, 0.1), BACKOFF_MAX_S)
            if self._backoff:
                await asyncio.sleep(self._backoff)
            elif busy:
                idle = POLL_S
            else:
                await asyncio.sleep(idle)
                idle = min(idle * 2, IDLE_POLL_MAX_S)

    async def drain_once(self) -> bool:
        """Read every partition (again, while a backlog is left and the round holds
        fewer than ``ROUND_RECORDS``), store it all in one transaction, then acknowledge;
        True if any had entries. One transaction per round, not per partition: the
        rollups upsert a row per user (and day, and show) of a transaction whatever its
        size, and each commit writes every page it dirtied, so a backlog costs far less
        per record stored in large transactions (docs/benchmarks.md, issue 12)."""
        read: dict[str, list[StreamEntry]] = {}
        events: list[BehaviourEvent] = []
        backlog = True
        while backlog and len(events) < ROUND_RECORDS:
            backlog = False
            for stream in self.streams:
                try:
                    entries = await self.broker.stream_read(stream, GROUP, self.consumer, count=READ_COUNT)
                except Exception as exc:
                    self._failed("read", exc)
                    continue
                if entries:
                    read.setdefault(stream, []).extend(entries)
                    events.extend(self._decode(entries))
                    backlog = backlog or len(entries) == READ_COUNT
        if read:
            await self._store(list(read.items()), events)
        return bool(read)

    async def claim_once(self) -> bool:
        """Take over entries pending too long (their consumer died) and store them."""
        claimed: list[tuple[str, list[StreamEntry]]] = []
        for stream in self.streams:
            try:
                claim = await self.broker.stream_claim(
                    stream,
                    GROUP,
                    self.consumer,
                    min_idle_ms=self.claim_idle_ms,
                    count=READ_COUNT,
                    start=self._claim_from[stream],
                )
            except Exception as exc:
                self._failed("claim", exc)
                continue
            self._claim_from[stream] = claim.next
            if claim.entries:
                self.metrics.behaviour_claimed.inc(len(claim.entries))
                log.info("behaviour writer: claimed %d idle entries of %s", len(claim.entries), stream)
                claimed.append((stream, claim.entries))
        if claimed:
            await self._store(claimed, [e for _, entries in claimed for e in self._decode(entries)])
        return bool(claimed)

    def _decode(self, entries: list[StreamEntry]) -> list[BehaviourEvent]:
        events: list[BehaviourEvent] = []
        for entry in entries:
            try:
                events.extend(decode_batch(entry.data))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._failed("decode", exc)  # acknowledged with the rest: it never decodes
        return events

    async def _store(self, read: list[tuple[str, list[StreamEntry]]], events: list[BehaviourEvent]) -> bool:
        """Store ``events`` (the records of ``read``: entries per stream) in one ingest,
        then acknowledge each stream's entries; nothing is acknowledged unless stored."""
        for attempt in range(STORE_TRIES):
            try:
                new = await self.store.events.ingest(events)
                break
            except Exception as exc:
                self._failed("store", exc)
                await asyncio.sleep(min(0.1 * 2**attempt, BACKOFF_MAX_S))
        else:
            return False  # pending in the group: claimed again once idle
        self._backoff = 0.0
        self.metrics.behaviour_ingested.inc(len(new))
        oldest_last = min(entries[-1].ms for _, entries in read)
        self.metrics.behaviour_lag.set(max(0, now_ms() - oldest_last) / 1000)
        for stream, entries in read:
            try:
                await self.broker.stream_ack(stream, GROUP, [e.id for e in entries], delete=True)
            except Exception as exc:  # stored: a re-delivery is ignored by the store
                self._failed("ack", exc)
        return True

    async def purge(self) -> int:
        """Drop records older than ``--retention-days``; how many went."""
        gone = await self.store.events.purge_before(now_ms() - self.retention_days * DAY_MS)
        if gone:
            log.info("behaviour log: purged %d records older than %d days", gone, self.retention_days)
        return gone

    def _failed(self, step: str, exc: BaseException) -> None:
        self.metrics.behaviour_write_errors.labels(step=step).inc()
        log.warning("behaviour writer: %s failed: %r", step, exc)
        if step != "decode":
            self._backoff = min(max(self._backoff * 2, 0.1), BACKOFF_MAX_S)


# The recorders' flush period plus an append's time: a record made before a
# show's end is on the bus by ``ended_at`` + this (unless the bus was away).
SETTLE_MS: Final = 3 * FLUSH_MS + 200


async def wait_show_stored(
    store: AnalyticsStore,
    broker: Broker,
    app: str,
    room: str,
    show: int,
    *,
    timeout: float,
    partitions: int = PARTITIONS,
) -> ShowInfo:
    """Wait until show ``show`` of ``app``'s room ``room`` (public id) has ended
    and its records are stored: its ``show.end`` record is in the store, and the
    room's partition stream holds no entry appended before ``ended_at`` +
    ``SETTLE_MS`` (entries are deleted when stored, so what is left is unstored).
    Returns the show; raises ``TimeoutError`` after ``timeout`` seconds."""
    stream = partition_of(room_key(app, room), partitions)
    deadline = time.monotonic() + timeout
    while True:
        info = await store.events.show(app, room, show)
        if info is not None and info.ended_at is not None:
            settled = info.ended_at + SETTLE_MS
            if now_ms() >= settled:
                oldest = await broker.stream_range(stream, limit=1)
                if not oldest or oldest[0].ms > settled:
                    return info
        if time.monotonic() >= deadline:
            raise TimeoutError(f"show {show} of room {room} not stored within {timeout} s")
        await asyncio.sleep(0.05)
