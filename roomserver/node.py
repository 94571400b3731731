"""One server process's view of the rooms: broker + fan-out + caches + timers.

Rooms are named by their room key ``<app>/<room>`` (``roomserver.tenancy``)
everywhere in here; only the events' JSON carries the public id.

Handlers talk to rooms only through ``Node``: ``room`` (cached document),
``transact`` (load → pure rule → atomic commit, retried on version conflict),
``publish`` (events without a document change) and ``ensure_channel`` (this
node subscribed and ready to fan a room out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from roomserver.bus.base import (
    Broker,
    BrokerUnavailable,
    BusEvent,
    CommitResult,
    CommitStatus,
    Delivery,
    Draft,
    HistoryGone,
    Idem,
)
from roomserver.config import Config
from roomserver.contract import check as contract_check
from roomserver.core import room as rules
from roomserver.core.behaviour import Kind
from roomserver.core.moderation import TokenBucket, WordFilters
from roomserver.core.room import Emit, RoomDoc
from roomserver.fanout import RECENT_BARRAGE, Fanout, RoomChannel
from roomserver.members_batch import MemberBatches
from roomserver.metrics import Metrics
from roomserver.moderation_hook import from_config as moderation_from_config
from roomserver.protocol import OpError, encode_event, now_ms
from roomserver.tenancy import app_of, public_room
from roomserver.webhooks import from_config as webhooks_from_config

if TYPE_CHECKING:  # the assistant is handed in (create_app), never imported here
    from roomserver.assistant.service import Assistant

log = logging.getLogger(__name__)

PRESENCE_PERIOD_S = 1.0
DEADLINE_PERIOD_S = 0.25
PRESENCE_TTL_MS = 5_000
ONLINE_INTERVAL_MS = 2_000
LIKES_INTERVAL_MS = 1_000
MAX_TRANSACT_TRIES = 20
# member.joined is sampled: at most this many per second per room per node.
JOINED_PER_S = 5.0
# How far back a node reads a room's history when it subscribes, to find the last
# RECENT_BARRAGE barrage events for join snapshots (other events are mixed in between).
RECENT_WINDOW = 200

Rule = Callable[[RoomDoc], tuple[RoomDoc, list[Emit]]]
# A periodic room check (poll close, lottery draw, sale end, PK end): (node, room, doc, now_ms).
DeadlineCheck = Callable[["Node", str, RoomDoc, int], Awaitable[None]]
# A step of ending a show (a running PK ends, co-hosts step down): (node, room).
ShowEndStep = Callable[["Node", str], Awaitable[None]]


class StageMedia(Protocol):
    """What room state asks of this node's media (``media_glue.MediaGlue``): PK
    links, co-host publishers, closing a room's media. ``NoMedia`` without one."""

    def link_pk(self, app: str, pk: dict[str, Any]) -> None: ...

    def unlink_pk(self, app: str, pk: dict[str, Any]) -> None: ...

    def sync_pk(self, app: str, doc: RoomDoc) -> None: ...

    def cohost_publishers(self, room: str) -> set[str]: ...

    async def unpublish(self, room: str, user: str) -> None: ...

    async def close_room(self, room: str) -> None: ...

    async def show_started(self, room: str, doc: RoomDoc) -> None:
        """The room went live (recording starts here if the room records)."""
        ...

    async def set_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str:
        """``media.layer``: the layer `viewer` now gets of `publisher` (OpError not_found)."""
        ...


class BehaviourSink(Protocol):
    """Where the behaviour log's records go (issue 12): ``record`` is called on the
    op's path, so it only queues (the recorder batches them into a bus stream).
    ``room`` is the room key; the sink fills app, public room, show and times.
    ``NoBehaviour`` (``--no-analytics``) drops them. ``ts`` (unix ms) when the
    thing happened at a known time other than now (a show's start and end)."""

    def record(
        self, room: str, user: str, kind: Kind, data: dict[str, Any] | None = None, *, ts: int | None = None
    ) -> None: ...


class NoBehaviour:
    def record(
        self, room: str, user: str, kind: Kind, data: dict[str, Any] | None = None, *, ts: int | None = None
    ) -> None:
        pass


class NoMedia:
    """A node without media: every hook does nothing."""

    def link_pk(self, app: str, pk: dict[str, Any]) -> None:
        pass

    def unlink_pk(self, app: str, pk: dict[str, Any]) -> None:
        pass

    def sync_pk(self, app: str, doc: RoomDoc) -> None:
        pass

    def cohost_publishers(self, room: str) -> set[str]:
        return set()

    async def unpublish(self, room: str, user: str) -> None:
        pass

    async def close_room(self, room: str) -> None:
        pass

    async def set_layer(self, room: str, viewer: str, publisher: str, layer: str) -> str:
        raise OpError("not_found", "this server has no media")

    async def show_started(self, room: str, doc: RoomDoc) -> None:
        pass


class Node:
    """The composition root (``server.create_app``) hands the node what sits above
    it: the handlers' ``deadlines`` and ``show_end`` steps, and its ``media``; the
    node imports no handler and no media code (dependencies point down)."""

    def __init__(
        self,
        config: Config,
        broker: Broker,
        metrics: Metrics | None = None,
        *,
        deadlines: Sequence[DeadlineCheck] = (),
        show_end: Sequence[ShowEndStep] = (),
    ) -> None:
        self.config = config
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.fanout = Fanout(
            flush_ms=config.flush_ms,
            frame_budget=config.frame_budget,
            buffer_soft=config.socket_buffer_soft,
            buffer_limit=config.socket_buffer_limit,
            batching=config.batching,
            history_reader=self._history_after,
            on_epoch_change=self._epoch_changed,
            on_flush=self.metrics.observe_flush,
        )
        self.words = WordFilters()
        self._docs: dict[str, tuple[int, RoomDoc]] = {}
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._subscribed: set[str] = set()
        self._online: dict[str, int] = {}
        self._likes_local: dict[str, int] = {}
        self._likes_total: dict[str, int] = {}
        self._joined_buckets: dict[str, TokenBucket] = {}
        self._local_gates: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self.deadlines = tuple(deadlines)
        self.media: StageMedia = NoMedia()
        # The behaviour log's recorder, handed in by create_app (issue 12).
        self.behaviour: BehaviourSink = NoBehaviour()
        self.hooks = ShowHooks(self, show_end)
        # Webhooks, room.members batches, the moderation callback (None = off: zero cost).
        self.webhooks = webhooks_from_config(config, broker, self.metrics)
        self.members = MemberBatches(self.webhooks, config.members_batch_s)
        self.moderation = moderation_from_config(config, self.metrics)
        # The room assistant, handed in by create_app (None: off). The barrage handler
        # offers it each published line; it answers off this path.
        self.assistant: Assistant | None = None
        self.draining = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self._on_delivery)
        self.fanout.start()
        self.webhooks.start()
        self.members.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(PRESENCE_PERIOD_S, self._report_presence), name="presence"),
            loop.create_task(self._every(LIKES_INTERVAL_MS / 1000, self._flush_likes), name="likes"),
            loop.create_task(self._every(DEADLINE_PERIOD_S, self._check_deadlines), name="deadlines"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush_likes()
        with contextlib.suppress(Exception):
            await self.broker.report_presence({}, PRESENCE_TTL_MS)
        await self.fanout.stop()
        await self.members.stop()
        await self.webhooks.stop()
        if self.moderation is not None:
            await self.moderation.close()
        await self.broker.close()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a coroutine in the background; failures are logged, not lost."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    async def _every(self, period: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
            except Exception as exc:  # the bus may be down; the loop must survive
                log.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)

    # -- bus -> fan-out ----------------------------------------------------------

    def _on_delivery(self, d: Delivery) -> None:
        cached = self._docs.get(d.room)
        if cached is not None and d.version > cached[0]:
            del self._docs[d.room]
        self.metrics.events_out.inc(len(d.events))
        self.fanout.ingest(d)

    async def _history_after(self, room: str, since: int) -> list[BusEvent]:
        return (await self.broker.history(room, since)).events

    def _epoch_changed(self, ch: RoomChannel) -> None:
        # History was lost (the fan-out closes the room's members so they resume):
        # the cached document went with it, read it again.
        self._docs.pop(ch.room, None)

    async def ensure_channel(self, room: str) -> RoomChannel:
        """Subscribe this node to ``room`` (once) and wait until it is ready."""
        ch = self.fanout.channel(room)
        if ch.is_ready:
            return ch
        lock = self._room_locks.setdefault(room, asyncio.Lock())
        async with lock:
            if room not in self._subscribed:
                await self.broker.subscribe(room)
                self._subscribed.add(room)
            if not ch.is_ready:
                rec = await self.broker.load(room)
                recent = await self._latest_events(room, rec.seq)
                self.fanout.set_ready(room, rec.epoch, rec.seq, recent)
        return self.fanout.channel(room)

    async def _latest_events(self, room: str, head: int) -> list[BusEvent]:
        """The room's last durable events up to ``head`` (a bounded window), or none.

        Only for the join snapshot's ``recent`` chat: a history trimmed by age within the
        window is read again for the last few events, and a failure costs the late
        joiner the old chat, never the join."""
        for window in (RECENT_WINDOW, RECENT_BARRAGE):
            if head == 0:
                return []
            try:
                page = await self.broker.history(room, max(0, head - window), window)
            except HistoryGone:
                continue
            except BrokerUnavailable as exc:
                log.info("room %s: recent chat not read (%s)", room, exc)
                return []
            return page.events
        return []

    async def release_channel(self, room: str) -> None:
        """Unsubscribe after the last local member left (unless one came back)."""
        lock = self._room_locks.setdefault(room, asyncio.Lock())
        async with lock:
            if room in self.fanout.channels or room not in self._subscribed:
                return
            self._subscribed.discard(room)
            self._docs.pop(room, None)
            self._likes_total.pop(room, None)
            self.words.forget(room)
            with contextlib.suppress(Exception):
                await self.broker.unsubscribe(room)

    # -- room documents ------------------------------------------------------------

    async def room(self, room: str, *, create: bool = False) -> RoomDoc | None:
        cached = self._docs.get(room)
        if cached is not None:
            return cached[1]
        loaded = await self._load(room)
        if loaded is None:
            if not create:
                return None
            doc = rules.new_room(public_room(room), now_ms(), barrage_cap=self.config.barrage_cap)
            return await self.create_room(room, doc, exist_ok=True)
        self._cache(room, *loaded)
        return loaded[1]

    async def _load(self, room: str) -> tuple[int, RoomDoc] | None:
        """The room's version and document as the bus has them (None: no such room)."""
        rec = await self.broker.load(room)
        return None if rec.doc is None else (rec.version, rules.decode_doc(rec.doc))

    async def create_room(self, room: str, doc: RoomDoc, *, exist_ok: bool = False) -> RoomDoc:
        """Create ``room`` with ``doc`` if its app is under ``max_rooms_per_app``
        (``limit_reached`` otherwise). An existing room is returned with
        ``exist_ok`` and is a ``conflict`` without. The count is read before the
        creating commit, so concurrent creators may pass the limit by their number:
        it bounds what one app can make, it is no exact quota."""
        limit = self.config.max_rooms_per_app
        if limit and await self.broker.room_count(app_of(room)) >= limit:
            raise OpError("limit_reached", f"this app has reached its limit of {limit} rooms")
        res = await self.broker.commit(room, [], expect_version=0, doc=rules.encode_doc(doc))
        if res.status == CommitStatus.OK:
            self._cache(room, res.version, doc)
            if doc.scheduled_at is not None:
                await self.broker.set_schedule(room, doc.scheduled_at)
            return doc
        if not exist_ok:
            raise OpError("conflict", f"room {doc.id} already exists")
        rec = await self.broker.load(room)
        assert rec.doc is not None
        existing = rules.decode_doc(rec.doc)
        self._cache(room, rec.version, existing)
        return existing

    def cached_doc(self, room: str) -> RoomDoc | None:
        """The room's document if this node holds a current copy (no I/O)."""
        cached = self._docs.get(room)
        return cached[1] if cached is not None else None

    def _cache(self, room: str, version: int, doc: RoomDoc) -> None:
        """Keep a room's document only while this node is subscribed to the room:
        deliveries are what invalidate the cache, and a node hears none for rooms it
        does not subscribe to (the other room of a PK, a REST call), so such a copy
        would go stale and a rule would run on it (and fail) without a version check."""
        if room in self._subscribed:
            self._docs[room] = (version, doc)

    async def room_from_bus(self, room: str) -> RoomDoc:
        """The room's document as the bus has it now. This node's copy follows the room's
        channel, so a write another node made a moment ago may not be in it yet: a rule about
        to answer ``not_found`` reads again here first (the error path only)."""
        loaded = await self._load(room)
        if loaded is None:
            raise OpError("not_found", f"room {public_room(room)} does not exist")
        cached = self._docs.get(room)
        if cached is None or cached[0] < loaded[0]:  # a delivery may have brought a newer one
            self._cache(room, *loaded)
        return loaded[1]

    async def require_room(self, room: str) -> RoomDoc:
        doc = await self.room(room)
        if doc is None:
            raise OpError("not_found", f"room {public_room(room)} does not exist")
        return doc

    async def transact(
        self, room: str, rule: Rule, *, idem: Idem | None = None, create: bool = False
    ) -> tuple[RoomDoc, CommitResult]:
        """Apply a pure rule to the room document and commit it with its events,
        atomically. On a version conflict, reload and apply the rule again."""
        cached = self._docs.get(room)
        for _ in range(MAX_TRANSACT_TRIES):
            if cached is None:
                rec = await self.broker.load(room)
                if rec.doc is None:
                    if not create:
                        raise OpError("not_found", f"room {public_room(room)} does not exist")
                    await self.room(room, create=True)
                    cached = self._docs.get(room)
                    continue
                cached = (rec.version, rules.decode_doc(rec.doc))
            version, doc = cached
            new_doc, emits = rule(doc)
            res = await self.broker.commit(
                room,
                self.drafts(room, emits),
                expect_version=version,
                doc=rules.encode_doc(new_doc),
                idem=idem,
            )
            if res.status == CommitStatus.VERSION_CONFLICT:
                cached = None
                continue
            if res.status == CommitStatus.IDEM_CONFLICT:
                raise OpError("conflict", "this cid was used with other parameters")
            if res.status == CommitStatus.OK:
                self._cache(room, res.version, new_doc)
            return new_doc, res
        raise OpError("unavailable", "the room is too busy, retry", retry_after_ms=100)

    async def publish(
        self,
        room: str,
        emits: Iterable[Emit],
        *,
        idem: Idem | None = None,
        capped: bool = False,
        barrage_cap: int = 0,
    ) -> CommitResult:
        drafts = self.drafts(room, emits, capped=capped)
        res = await self.broker.commit(room, drafts, idem=idem, barrage_cap=barrage_cap)
        if res.status == CommitStatus.IDEM_CONFLICT:
            raise OpError("conflict", "this cid was used with other parameters")
        return res

    @staticmethod
    def drafts(room: str, emits: Iterable[Emit], *, capped: bool = False) -> list[Draft]:
        if contract_check.ENABLED:  # tests: every event against roomserver/contract/events.py
            emits = list(emits)
            for e in emits:
                contract_check.check_event(e.ev, e.data, durable=e.durable)
        return [
            Draft(
                encode_event(e.ev, public_room(room), e.data),
                durable=e.durable,
                capped=capped,
                coalesce=e.ev if not e.durable and not e.audience else "",
                audience=e.audience,
                close_code=e.close_code,
            )
            for e in emits
        ]

    async def _check_deadlines(self) -> None:
        now = now_ms()
        for room in list(self.fanout.channels):
            doc = await self.room(room)
            if doc is None or not doc.features:
                continue
            for check in self.deadlines:
                # OpError: another node got there first (not_open / conflict).
                with contextlib.suppress(OpError):
                    await check(self, room, doc, now)

    # -- presence, online, likes ------------------------------------------------------

    def online(self, room: str) -> int:
        local = len(self.fanout.channels[room].members) if room in self.fanout.channels else 0
        return max(self._online.get(room, 0), local)

    async def _report_presence(self) -> None:
        counts = self.fanout.local_counts()
        self.metrics.rooms.set(len(counts))
        self.metrics.sockets.set(len(self.fanout.connections))
        totals = await self.broker.report_presence(counts, PRESENCE_TTL_MS)
        self._online = totals
        for room, total in totals.items():
            if await self.broker.gate(room, "online", ONLINE_INTERVAL_MS, str(total)):
                await self.publish(room, [Emit("online", {"count": total}, durable=False)])
        # Rooms with sockets here are in use: they must not expire as idle (the
        # broker refreshes each at most once a minute).
        await self.broker.touch(list(counts))

    def add_likes(self, room: str, count: int) -> None:
        self._likes_local[room] = self._likes_local.get(room, 0) + count

    def likes_total(self, room: str) -> int:
        return self._likes_total.get(room, 0) + self._likes_local.get(room, 0)

    async def _flush_likes(self) -> None:
        pending, self._likes_local = self._likes_local, {}
        # Also poll rooms with nothing new here: another node's pending delta is
        # flushed by whoever calls first after the interval.
        for room in set(pending) | set(self.fanout.channels):
            delta = pending.get(room, 0)
            if not delta and room not in self._likes_total:
                continue
            try:
                total, flushed = await self.broker.accumulate(room, "likes", delta, LIKES_INTERVAL_MS)
            except Exception:
                self._likes_local[room] = self._likes_local.get(room, 0) + delta
                raise
            self._likes_total[room] = total
            if flushed:
                await self.publish(room, [Emit("likes", {"total": total, "delta": flushed}, durable=False)])

    async def load_likes(self, room: str) -> int:
        """The room's likes total; read from the bus once, then kept fresh by the likes loop."""
        if room not in self._likes_total:
            total, _ = await self.broker.accumulate(room, "likes", 0, 10**12)
            self._likes_total[room] = total
        return self.likes_total(room)

    def local_gate(self, name: str, interval_ms: int) -> bool:
        """Node-local throttle in front of a room-wide ``Broker.gate``: at most one
        bus call per interval per node, not one per op."""
        now = now_ms()
        if now - self._local_gates.get(name, 0) < interval_ms:
            return False
        self._local_gates[name] = now
        return True

    def sample_joined(self, room: str) -> bool:
        bucket = self._joined_buckets.get(room)
        if bucket is None:
            bucket = self._joined_buckets[room] = TokenBucket(JOINED_PER_S, JOINED_PER_S)
        return bucket.take(now_ms()) == 0


FOLLOWERS_KEY = "followers"
FOLLOWERS_TTL_MS = 10 * 365 * 24 * 3600 * 1000


class ShowHooks:
    """What happens around a show besides its events: webhooks, the summary.
    Analytics attach here."""

    def __init__(self, node: Node, show_end: Sequence[ShowEndStep] = ()) -> None:
        self.node = node
        self.show_end = tuple(show_end)
        # What the room.ended webhook's data gains (e.g. the report's URL), handed in
        # by create_app like the show-end steps.
        self.ended_data: list[Callable[[str, RoomDoc], dict[str, Any]]] = []

    async def followers(self, room: str) -> list[str]:
        return sorted(await self.node.broker.tally_members(room, FOLLOWERS_KEY))

    async def follow(self, room: str, user: str) -> None:
        await self.node.broker.tally(room, FOLLOWERS_KEY, user, "1", FOLLOWERS_TTL_MS)

    async def unfollow(self, room: str, user: str) -> None:
        """issue 12: ``track unfollow``; following again later adds the user anew."""
        await self.node.broker.tally_remove(room, FOLLOWERS_KEY, user)

    async def room_scheduled(self, room: str, doc: RoomDoc) -> None:
        view = rules.public_view(doc)
        self.node.webhooks.emit(
            "room.scheduled", room, {"room": view, "followers": await self.followers(room)}
        )

    async def room_started(self, room: str, doc: RoomDoc) -> None:
        if doc.scheduled_at is not None:  # the show it announced is on: no longer upcoming
            await self.node.broker.set_schedule(room, None)
        host = doc.host or ""
        self.node.behaviour.record(
            room, host, "show.start", {"title": doc.title, "host": host}, ts=doc.started_at
        )
        view = rules.public_view(doc)
        self.node.webhooks.emit("room.started", room, {"room": view, "followers": await self.followers(room)})
        await self.node.media.show_started(room, doc)

    async def show_summary(self, room: str) -> dict[str, Any]:
        doc = await self.node.require_room(room)
        started = doc.started_at or now_ms()
        return {
            "show": doc.show,
            "duration_s": max(0, now_ms() - started) // 1000,
            "online": self.node.online(room),
            "likes": self.node.likes_total(room),
        }

    async def room_ended(self, room: str, doc: RoomDoc, summary: dict[str, Any]) -> None:
        """After ``room.end`` or ``DELETE /v1/rooms/{room}``: the stage ends with the
        show (a running PK ends, co-hosts step down, the room's media closes)."""
        self.node.behaviour.record(room, doc.host or "", "show.end", ts=doc.ended_at)
        data = {"room": rules.public_view(doc), "summary": summary}
        for extra in self.ended_data:
            data.update(extra(room, doc))
        self.node.webhooks.emit("room.ended", room, data)
        try:
            for step in self.show_end:
                await step(self.node, room)
        finally:
            await self.node.media.close_room(room)
