"""The assistant of one server process (the I/O shell around the pure parts).

The barrage handler hands each accepted line to ``offer``, which queues the lines of
rooms with the assistant on (a list append, no await): the barrage's commit and flush
never wait for the assistant. One task drains the queue every ``DRAIN_MS``: it keeps
the lines that ask something (``is_question``); per room of the batch it reads the
room's settings, scope and index once (``context``); per question retrieval, the live
facts an answer states (stock and coupon counters), the decision, the answer as a
durable ``assistant.answer`` event. Another publishes each room's question board
to hosts and moderators (``assistant.questions``, ephemeral, at most once a second,
only when it changed). A full queue drops lines (counted in ``dropped``) rather than
grow without bound, and one app's storm cannot fill it for the others (``APP_QUEUE_MAX``).

Each process answers the questions its own sockets sent, so every question is
answered once in a cluster of nodes. The catalogue, the feedback and the questions
asked are on the bus (``shared.py``), so every node answers from the same catalogue
and thresholds and every node's board shows the questions all nodes handled; what
stays in the process: the per-user rate limit (a user's questions reach one node; the
per-room limit is on the bus), the retrieval index built from the cached catalogue, and the
board folded from the bus.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from roomserver.assistant import facts as live
from roomserver.assistant import shared as bus_state
from roomserver.assistant.answer import (
    DEFAULT_THRESHOLD,
    HYBRID_THRESHOLD,
    Choice,
    Decision,
    RoomScope,
    choose,
    render,
)
from roomserver.assistant.board import Asked, Board
from roomserver.assistant.catalog import Catalog, CatalogProduct
from roomserver.assistant.intents import knowledge_of, room_knowledge
from roomserver.assistant.llm import Phraser
from roomserver.assistant.retrieval import Embedder, Index
from roomserver.assistant.text import is_question, jieba_ready
from roomserver.bus.base import AUDIENCE_STAFF
from roomserver.bus.streams import id_key
from roomserver.core.moderation import WordFilter
from roomserver.core.room import Emit, RoomDoc
from roomserver.protocol import OpError, now_ms
from roomserver.tenancy import app_of

log = logging.getLogger("roomserver.assistant")

QUEUE_MAX = 10_000
# One app's lines waiting between two batches: the process's queue is shared by every
# tenant, and a storm in one app's rooms must not drop the others' questions. 2,000 lines
# in 250 ms is 8,000 a second, far past one app's real barrage.
APP_QUEUE_MAX = 2_000
BOARD_PERIOD_S = 1.0
# An answer to one asker at most every USER_ANSWER_S; a room at most ROOM_ANSWERS a
# second across the cluster: the room's answer slots are ROOM_ANSWERS bus gates
# (``Broker.gate``, room-wide) each passing at most once a second, so any second holds at
# most ROOM_ANSWERS answers whichever nodes gave them. After every slot refused, this
# node asks again no sooner than ROOM_FULL_RECHECK_MS later (a storm of questions is
# not ROOM_ANSWERS bus calls each).
USER_ANSWER_S = 10.0
ROOM_ANSWERS = 5
ROOM_SLOT_MS = 1000
ROOM_FULL_RECHECK_MS = 100
# This many askers of the same thing within a minute: answer the room, not each one,
# and not again for ROOM_WIDE_REPEAT_MS.
ROOM_WIDE_ASKERS = 3
ROOM_WIDE_REPEAT_MS = 30_000
WIDE_RECHECK_MS = 5_000
THRESHOLD_STEP = 0.05  # raised per "wrong" mark on a product's answer
THRESHOLD_MAX = 0.95
# Bounds on what the assistant keeps in this process: a room's state is dropped a day
# after its last question or action here, and a room forgets askers whose answer
# spacing has passed.
ROOM_STATE_KEEP_MS = 24 * 3600 * 1000
USER_LAST_MAX = 10_000
CHOICE_CACHE = 2048
# A room's board is folded and published while questions came in this long ago.
BOARD_ACTIVE_MS = 65_000
# The bus writes of handled questions (board entry, show total) go out once per batch of
# the worker (DRAIN_MS: one stream append and one coalesced tally per room, not two
# round trips per question); a question answered now is written before its answer is
# published, so a "wrong" mark always finds it. Other nodes' askers are folded in before
# an answer at most every FOLD_BEFORE_ANSWER_MS.
FOLD_BEFORE_ANSWER_MS = 250
TRIM_EVERY_TICKS = 60
# The worker wakes at most this often and takes every line queued meanwhile. Each
# wake-up walks the assistant's tables and code (classifier, index, caches), which
# pushes the fan-out's own data out of the CPU caches: woken per question (40 a second
# in the benchmark's storm), the barrage's own flushes cost measurably more, and
# classifying each line in the barrage handler did the same (docs/benchmarks.md, "The
# room assistant in batches"). An answer waits up to this much longer (target 500 ms).
DRAIN_MS = 250


@dataclass(slots=True)
class Question:
    room: str
    user: str
    name: str
    text: str
    seq: int
    at_ms: int


@dataclass(slots=True)
class RoomContext:
    """What every question of one room in one batch is decided with: read once per
    batch, after the batch was taken, so it is at least as new as each question in it
    (a price changed before a question was asked is the price its answer states)."""

    doc: RoomDoc
    st: RoomState
    scope: RoomScope
    index: Index
    thresholds: dict[str, float]


@dataclass(slots=True)
class RoomState:
    board: Board = field(default_factory=Board)
    room_full_until: int = 0  # every answer slot refused: none asked before this (ms)
    next_slot: int = 0  # the slot asked first next time (the one after the last passed)
    user_last: dict[str, int] = field(default_factory=dict)
    scope_key: tuple[Any, ...] = ()
    scope: RoomScope | None = None
    index_key: tuple[Any, ...] = ()
    index: Index | None = None
    # question text -> what retrieval chose, for the current index and thresholds
    choices: dict[str, Choice] = field(default_factory=dict)
    # question text -> its rendered decision, for choices that state no live fact (a
    # FAQ, an attribute, or no answer): their text depends on the scope alone, so this
    # is cleared with the scope and the index; a live fact is rendered per question.
    rendered: dict[str, Decision] = field(default_factory=dict)
    # The word filter the room's answers were checked with, and each answer text's
    # verdict under it (a new filter object, after a change of the words, starts over).
    words: WordFilter | None = None
    blocked: dict[str, bool] = field(default_factory=dict)
    published_board: list[dict[str, Any]] = field(default_factory=list)
    # The room's question stream (shared.py) folded into ``board`` up to ``cursor``
    # (this node's own entries are on the board already: the fold skips them).
    cursor: str = ""
    folded_ms: int = 0
    wide_until: dict[str, int] = field(default_factory=dict)  # key -> no room-wide answer before
    # Entries not written to the bus yet (the worker's batch): (entry, question seq or None).
    pending: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    touched_ms: int = 0  # the last question or host action (see ROOM_STATE_KEEP_MS)
    asked_ms: int = 0  # the last question handled here (see BOARD_ACTIVE_MS)


class Assistant:
    def __init__(self, embedder: Embedder | None = None, phraser: Phraser | None = None) -> None:
        self.embedder = embedder
        self.phraser = phraser
        self.threshold = DEFAULT_THRESHOLD if embedder is None else HYBRID_THRESHOLD
        self.shared: bus_state.Shared | None = None  # the bus state (attach)
        self.rooms: dict[str, RoomState] = {}
        self.queue: list[Question] = []  # lines offered, not classified yet (QUEUE_MAX)
        self._offered = asyncio.Event()  # set when the queue gets its first line
        self._queued: Counter[str] = Counter()  # lines in ``queue`` per app
        # Per app: a room's stats show its own app's counts, never another tenant's.
        self.dropped: Counter[str] = Counter()
        self.processed: Counter[str] = Counter()
        self.cpu_s = 0.0
        self.latencies_ms: deque[float] = deque(maxlen=10_000)
        self.node: Any = None
        self.origin = ""  # this node's name in the entries it writes (its fold skips them)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle (create_app calls these) --------------------------------------------

    def attach(self, broker: Any) -> bus_state.Shared:
        """Read and write the shared state through ``broker`` (start does it)."""
        self.shared = bus_state.Shared(broker, self.threshold, THRESHOLD_STEP, THRESHOLD_MAX)
        self.origin = broker.node_id
        return self.shared

    def bus(self) -> bus_state.Shared:
        if self.shared is None:
            raise RuntimeError("the assistant is not attached to a bus")
        return self.shared

    async def start(self, node: Any) -> None:
        self.node = node
        self.attach(node.broker)
        self._tasks = [
            asyncio.create_task(self._drain(), name="assistant"),
            asyncio.create_task(self._boards(), name="assistant-board"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.phraser is not None:
            await self.phraser.close()

    # -- the hot path's only call ----------------------------------------------------

    def offer(self, room: str, doc: RoomDoc, user: dict[str, Any], text: str, seq: int) -> None:
        """An accepted barrage line (called by the barrage handler; never blocks).

        Only lines of rooms with the assistant on (and an app with a catalogue) are
        queued: a room with it off costs nothing more. The worker classifies them, in
        a batch (see DRAIN_MS)."""
        if self.shared is None or not self.settings(doc).get("enabled", True):
            return
        if not self.shared.maybe_answerable(app_of(room)):
            return
        app = app_of(room)
        if len(self.queue) >= QUEUE_MAX or self._queued[app] >= APP_QUEUE_MAX:
            self.dropped[app] += 1
            return
        if not self.queue:
            self._offered.set()
        self._queued[app] += 1
        self.queue.append(Question(room, user["id"], user.get("name", ""), text, seq, now_ms()))

    # -- the worker -------------------------------------------------------------------

    async def _drain(self) -> None:
        # jieba's dictionary takes 1-5 s to load: in a thread, so the server's start
        # does not wait for it; questions wait in the queue meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, jieba_ready)
        while True:
            await self._offered.wait()
            await asyncio.sleep(DRAIN_MS / 1000)
            await self.handle_batch(self.take_questions())

    def take_questions(self) -> list[Question]:
        """The queued lines that ask something; the queue starts over."""
        batch, self.queue = self.queue, []
        self._queued.clear()
        self._offered.clear()
        return [q for q in batch if is_question(q.text)]

    async def handle_batch(self, questions: list[Question]) -> None:
        """Decide every question (each room's context read once), then write them all."""
        contexts: dict[str, RoomContext | None] = {}
        for q in questions:
            try:
                if q.room not in contexts:
                    contexts[q.room] = await self.context(q.room)
                ctx = contexts[q.room]
                if ctx is not None:
                    await self.decide(q, ctx)
            except Exception:  # one bad question must not stop the assistant
                log.exception("assistant: question in %s failed", q.room)
        await self.write_pending()

    def room_state(self, room: str) -> RoomState:
        st = self.rooms.get(room)
        if st is None:
            st = self.rooms[room] = RoomState()
        st.touched_ms = now_ms()
        return st

    def _forget_idle_rooms(self, now: int) -> None:
        for room in [r for r, st in self.rooms.items() if now - st.touched_ms > ROOM_STATE_KEEP_MS]:
            del self.rooms[room]

    @staticmethod
    def settings(doc: RoomDoc) -> dict[str, Any]:
        return doc.features.get("assistant") or {}

    async def handle(self, q: Question, classified: bool = False) -> Decision | None:
        """Answer one question (or not), outside a batch. ``classified``: it is known to
        ask something (the classifier is not run twice on a queued line)."""
        if not classified and not is_question(q.text):
            return None
        ctx = await self.context(q.room)
        return None if ctx is None else await self.decide(q, ctx)

    async def context(self, room: str) -> RoomContext | None:
        """The room's context now; None if the assistant is off in it, or its app has no
        products. The scope and the index are rebuilt only when what they are made of
        changed (a catalogue of 1,000 products: not per question)."""
        doc = await self.node.room(room)
        if doc is None or not self.settings(doc).get("enabled", True):
            return None
        shared = self.bus()
        catalog = await shared.catalog(app_of(room), bus_state.CHECK_MS)
        if not catalog.products:
            return None
        thresholds = await shared.thresholds(app_of(room), bus_state.CHECK_MS)
        st = self.room_state(room)
        sales = frozenset(raw["product"]["id"] for raw in doc.features.get("sales", {}).values())
        pin = doc.pinned
        scope_key = (
            catalog.version,
            tuple(self.settings(doc).get("products", ())),
            sales,
            (pin.id, pin.title, pin.price_cents) if pin else None,
        )
        if st.scope is None or st.scope_key != scope_key:
            st.scope, st.scope_key = self.scope(catalog, doc), scope_key
            st.rendered.clear()
        index = self._index(st, catalog, st.scope, sales, thresholds)
        return RoomContext(doc, st, st.scope, index, thresholds)

    async def decide(self, q: Question, ctx: RoomContext) -> Decision:
        """Answer one question of the room ``ctx`` is of (or not), and record it."""
        node, st, scope, doc = self.node, ctx.st, ctx.scope, ctx.doc
        self.processed[app_of(q.room)] += 1
        st.asked_ms = st.touched_ms = now_ms()
        # Time of the decision itself (synchronous: no other task runs in between, so on
        # a core of its own this is its CPU); reading counters and publishing are the
        # node's usual costs. perf_counter, not a CPU clock: in the server a read of
        # time.process_time() or time.thread_time() (a system call) cost more than the
        # cached decision it timed (py-spy: half the assistant's samples on those lines).
        started = time.perf_counter()
        choice = st.choices.get(q.text)
        if choice is None:
            vec = self.embedder.encode([q.text])[0] if self.embedder is not None else None
            choice = choose(
                q.text,
                scope,
                ctx.index,
                question_vec=vec,
                thresholds=ctx.thresholds,
                default_threshold=self.threshold,
            )
            if len(st.choices) >= CHOICE_CACHE:
                st.choices.clear()
            st.choices[q.text] = choice
        # The room's counters are read only for an answer that states them.
        needs_facts = choice.hit is not None and choice.reason == "ok" and choice.hit.item.source == "live"
        self.cpu_s += time.perf_counter() - started
        d = None if needs_facts else st.rendered.get(q.text)
        if d is None:
            facts = await self.facts(q.room, doc) if needs_facts else live.RoomFacts(now_ms=now_ms())
            d = render(choice, scope, facts)
            if not needs_facts:  # its text depends on the scope alone: rendered once per scope
                if len(st.rendered) >= CHOICE_CACHE:
                    st.rendered.clear()
                st.rendered[q.text] = d
        if d.answer and self.phraser is not None:
            worded = await self.phraser.phrase(q.text, d.text, d.lang)
            if worded is not None:
                d = _reworded(d, worded)
        if d.answer and self._blocked(st, node.words.for_room(q.room, doc.words), d.text):
            d = Decision(False, "blocked_content", d.lang, d.score, d.key, d.product)
        now = now_ms()
        sent = await self._may_send(q, d, st, now) if d.answer else None
        answered = sent is not None
        cluster = d.key if d.score >= 0.3 else None
        # Recorded first (a local queue): a bus that fails below loses the board entry only.
        node.behaviour.record(
            q.room,
            q.user,
            "assistant",
            {"question_seq": q.seq, "answered": answered, "cluster": cluster or q.text, "text": q.text},
        )
        entry: dict[str, Any] = {
            "n": self.origin,
            "t": q.at_ms,
            "s": q.seq,
            "u": q.user,
            "q": q.text,
            "k": cluster,
            "a": answered,
            "p": d.product,
        }
        st.board.add(Asked(q.at_ms, q.seq, q.user, q.text, cluster, answered))
        st.pending.append((entry, q.seq))
        if sent:  # an answer to publish now (not one the room was told a moment ago)
            entry["ans"] = {**sent, "at": now, "score": round(d.score, 3), "sources": d.sources}
            await self._flush(q.room, st)
            await self._publish_answer(q, d, st, sent, now)
        return d

    async def _may_send(self, q: Question, d: Decision, st: RoomState, now: int) -> dict[str, Any] | None:
        """Whether the limits let the answer out: its data (``{}``: the room was told this
        a moment ago, so this asker counts as answered), or None."""
        key = d.key or ""
        if now - st.folded_ms >= FOLD_BEFORE_ANSWER_MS:
            await self._fold(q.room, st)  # other nodes' askers count towards a room-wide answer
        wide = st.board.askers(key, now) + 1 >= ROOM_WIDE_ASKERS  # (this one is not on it yet)
        if wide:
            # The room-wide gate is asked at most once a WIDE_RECHECK_MS per key after it
            # refused (someone told the room), and not at all while this node's own room-wide
            # answer is fresh: a popular question is not a bus round trip per asker.
            if now < st.wide_until.get(key, 0):
                return {}
            if not await self.node.broker.gate(
                q.room, "assistant.wide:" + key, ROOM_WIDE_REPEAT_MS, str(now)
            ):
                st.wide_until[key] = now + WIDE_RECHECK_MS
                return {}  # the room was just told (by any node): this asker saw that answer
            st.wide_until[key] = now + ROOM_WIDE_REPEAT_MS
        elif now - st.user_last.get(q.user, 0) < USER_ANSWER_S * 1000:
            return None
        if not await self._room_slot(q.room, st, now):
            return None
        return {
            "to": None if wide else {"id": q.user, "name": q.name},
            "question_seq": q.seq,
            "question": q.text,
            "text": d.text,
            "product": d.product,
            "source": d.source,
        }

    async def _room_slot(self, room: str, st: RoomState, now: int) -> bool:
        """One of the room's ROOM_ANSWERS answers of this second, across the cluster."""
        if now < st.room_full_until:
            return False
        for i in range(ROOM_ANSWERS):
            slot = (st.next_slot + i) % ROOM_ANSWERS
            # The value only has to differ from the slot's last (the interval decides).
            if await self.node.broker.gate(
                room, f"assistant.answers:{slot}", ROOM_SLOT_MS, f"{self.origin}:{now}"
            ):
                st.next_slot = slot + 1
                return True
        st.room_full_until = now + ROOM_FULL_RECHECK_MS
        return False

    async def _publish_answer(
        self, q: Question, d: Decision, st: RoomState, data: dict[str, Any], now: int
    ) -> None:
        wide = data["to"] is None
        emit = Emit("assistant.answer", data, audience="" if wide else "user:" + q.user)
        await self.node.publish(q.room, [emit])
        if not wide:
            st.user_last[q.user] = now
            if len(st.user_last) > USER_LAST_MAX:  # askers past their spacing limit nothing
                horizon = now - USER_ANSWER_S * 1000
                st.user_last = {u: t for u, t in st.user_last.items() if t > horizon}
        self.latencies_ms.append(now_ms() - q.at_ms)
        log.info("assistant answer room=%s seq=%s key=%s score=%.2f", q.room, q.seq, d.key, d.score)

    @staticmethod
    def _blocked(st: RoomState, words: WordFilter, text: str) -> bool:
        """Does the room's word filter block this answer text (an answer is one of a few
        texts: checked once per text and filter)?"""
        if words is not st.words:
            st.words, st.blocked = words, {}
        verdict = st.blocked.get(text)
        if verdict is None:
            if len(st.blocked) >= CHOICE_CACHE:
                st.blocked.clear()
            verdict = st.blocked[text] = words.find(text) is not None
        return verdict

    # -- the bus writes ---------------------------------------------------------------

    async def write_pending(self) -> None:
        """Every room's entries not written yet (after each batch of the worker)."""
        for room, st in list(self.rooms.items()):
            if st.pending:
                try:
                    await self._flush(room, st)
                except Exception:  # the bus may be down: these entries are lost, not the next
                    log.exception("assistant: questions of %s not written to the bus", room)

    async def _flush(self, room: str, st: RoomState) -> None:
        """Write the room's pending entries: one stream append for all of them, and the
        show's totals as concurrent tally calls (one script call on Redis: bus/coalesce.py)."""
        batch, st.pending = st.pending, []
        if not batch:
            return
        shared = self.bus()
        await shared.append_questions(room, [entry for entry, _ in batch])
        await asyncio.gather(*(shared.count(room, seq, bool(e["a"])) for e, seq in batch if seq is not None))

    # -- the room's scope, facts and index ----------------------------------------------

    def scope(self, cat: Catalog, doc: RoomDoc) -> RoomScope:
        """The room's products: the pinned one, those of its sales, those set with
        ``assistant.set``; only those the catalogue (or the pin) describes."""
        ids = list(self.settings(doc).get("products", []))
        ids += [raw["product"]["id"] for raw in doc.features.get("sales", {}).values()]
        products: dict[str, CatalogProduct] = {}
        for pid in ids:
            if pid in cat.products:
                products[pid] = cat.products[pid]
        pinned = doc.pinned.id if doc.pinned else None
        if doc.pinned is not None:
            known = cat.products.get(doc.pinned.id)
            products[doc.pinned.id] = known or CatalogProduct(
                doc.pinned.id, doc.pinned.title, doc.pinned.price_cents, 0, 0
            )
        outside = tuple(n for pid, p in cat.products.items() if pid not in products for n in p.names())
        return RoomScope(products, pinned, outside)

    async def facts(self, room: str, doc: RoomDoc) -> live.RoomFacts:
        from roomserver.handlers.commerce import coupon_key, sale_key

        broker, now = self.node.broker, now_ms()
        sales: dict[str, live.SaleFact] = {}
        for raw in doc.features.get("sales", {}).values():
            state = (
                "closed" if raw.get("closed_reason") else ("scheduled" if now < raw["starts_at"] else "open")
            )
            if raw.get("ends_at") is not None and now >= raw["ends_at"]:
                state = "closed"
            left = None
            if state != "closed":
                counter = await broker.stock_state(room, sale_key(raw["id"]))
                left = counter[0] if counter else None
            fact = live.SaleFact(
                raw["id"],
                raw["product"]["id"],
                raw["price_cents"],
                state,
                left,
                raw["starts_at"],
                raw.get("ends_at"),
            )
            prev = sales.get(fact.product)
            if prev is None or prev.state == "closed" or (prev.state == "scheduled" and state == "open"):
                sales[fact.product] = fact
        coupons = []
        for raw in doc.features.get("coupons", {}).values():
            counter = await broker.stock_state(room, coupon_key(raw["id"]))
            coupons.append(
                live.CouponFact(
                    raw["title"],
                    raw["discount_cents"],
                    raw["min_spend_cents"],
                    counter[0] if counter else None,
                )
            )
        return live.RoomFacts(
            now_ms=now,
            pinned=doc.pinned.id if doc.pinned else None,
            pinned_price_cents=doc.pinned.price_cents if doc.pinned else None,
            sales=sales,
            coupons=tuple(coupons),
        )

    def _index(
        self,
        st: RoomState,
        cat: Catalog,
        scope: RoomScope,
        sales: frozenset[str],
        thresholds: dict[str, float],
    ) -> Index:
        key = (
            cat.version,
            tuple(sorted((pid, p.version, p.title) for pid, p in scope.products.items())),
            scope.pinned,
            tuple(sorted(sales)),
            id(thresholds),  # a new table per feedback version (shared.py's cache)
        )
        if st.index is None or st.index_key != key:
            items = room_knowledge()
            for pid, product in scope.products.items():
                items += knowledge_of(product, on_sale=pid in sales)
            st.index, st.index_key = Index(items, self.embedder), key
            st.choices.clear()
            st.rendered.clear()
        return st.index

    # -- the host's board ----------------------------------------------------------------

    async def _boards(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(BOARD_PERIOD_S)
            ticks += 1
            now = now_ms()
            self._forget_idle_rooms(now)
            for room, st in list(self.rooms.items()):
                if now - st.asked_ms > BOARD_ACTIVE_MS and not st.published_board:
                    continue
                try:
                    await self._fold(room, st)
                    await self._publish_board(room, st)
                    if ticks % TRIM_EVERY_TICKS == 0:
                        await self.bus().forget_old_questions(room, now)
                except Exception:  # one room's board must not stop the others'
                    log.exception("assistant board of %s not published", room)

    async def _fold(self, room: str, st: RoomState) -> None:
        """Add the questions other nodes handled (and their hosts' replies) to the board."""
        st.folded_ms = now_ms()
        for e in await self.bus().questions_after(room, st.cursor):
            # Two folds may overlap (the worker's before an answer, the board's each
            # second): what the other applied while this one awaited is skipped.
            if st.cursor and id_key(e.id) <= id_key(st.cursor):
                continue
            st.cursor = e.id
            entry = msgspec.json.decode(e.data)
            if entry.get("n") != self.origin:  # this node's own are on the board already
                _apply(st.board, entry)

    async def _publish_board(self, room: str, st: RoomState) -> None:
        """Every node with the room's questions folds the same board; the room-wide gate
        lets one of them publish it, at most once a second and only when it changed."""
        clusters = [c.view() for c in st.board.clusters(now_ms())]
        if clusters == st.published_board:
            return
        digest = hashlib.blake2b(msgspec.json.encode(clusters), digest_size=12).hexdigest()
        if not await self.node.broker.gate(
            room, "assistant.questions", int(BOARD_PERIOD_S * 1000) - 50, digest
        ):
            return
        st.published_board = clusters
        await self.node.publish(
            room,
            [Emit("assistant.questions", {"clusters": clusters}, durable=False, audience=AUDIENCE_STAFF)],
        )

    # -- host actions -------------------------------------------------------------------

    async def host_reply(self, room: str, key: str | None, text: str, host: dict[str, Any]) -> int | None:
        """The host answers a cluster: one room-wide answer, shown pinned."""
        data = {
            "to": None,
            "question_seq": None,
            "text": text,
            "product": key.split(":", 1)[0] or None if key else None,
            "source": "host",
            "pinned": True,
            "by": host,
        }
        res = await self.node.publish(room, [Emit("assistant.answer", data)])
        st = self.room_state(room)
        if key:
            await self._fold(room, st)  # the cluster's questions other nodes handled, too
        at = now_ms()
        entry = {"n": self.origin, "t": at, "h": key, "ans": {**data, "at": at, "sources": [f"host {key}"]}}
        answered = st.board.mark_answered(key) if key else []
        st.pending.append((entry, None))
        await self._flush(room, st)  # (this node's questions' own tallies first)
        # The show's totals count the questions the reply answered (other nodes mark
        # them on their boards when they fold the entry above).
        shared = self.bus()
        await asyncio.gather(*(shared.count_answered(room, seq) for seq in answered))
        if answered:  # the post-live report counts them answered too (core/report.py)
            self.node.behaviour.record(
                room, str(host.get("id", "")), "assistant", {"host_answered": answered}
            )
        return res.seqs[0] if res.seqs else None

    async def _flush_pending(self, room: str) -> None:
        """This node's entries of the room not written yet (a read must see them)."""
        st = self.rooms.get(room)
        if st is not None:
            await self._flush(room, st)

    async def mark_wrong(self, room: str, question_seq: int, by: str, note: str) -> dict[str, Any]:
        """A wrong answer (given by any node): stored, and its product's threshold goes
        up a step on every node."""
        shared = self.bus()
        await self._flush_pending(room)
        hit = None
        for e in await shared.questions_after(room, ""):
            q = msgspec.json.decode(e.data)
            if q.get("s") == question_seq and q.get("a"):
                hit = q
        if hit is None:
            raise OpError("not_found", f"the assistant has not answered question {question_seq} here")
        key, product = hit.get("k") or "", hit.get("p")
        record = {
            "room": room,
            "question_seq": question_seq,
            "key": key,
            "by": by,
            "note": note,
            "at": now_ms(),
        }
        threshold = await shared.mark_wrong(app_of(room), product, record)
        return {"key": key, "product": product, "threshold": threshold}

    async def stats(self, room: str) -> dict[str, Any]:
        """The show's counts on every node; the top unanswered clusters and the answer log
        over the questions the bus keeps (``shared.BOARD_KEEP``). A read keeps no state."""
        shared = self.bus()
        await self._flush_pending(room)
        board, answers = Board(), []
        for e in await shared.questions_after(room, ""):
            entry = msgspec.json.decode(e.data)
            _apply(board, entry)
            if entry.get("ans"):
                answers.append(entry["ans"])
        asked, answered = await shared.totals(room)
        lat = sorted(self.latencies_ms)
        decided = self.processed.total()  # the process's decisions (the CPU figure is the process's)
        return {
            **board.stats(),
            "asked": asked,
            "answered": answered,
            "unanswered": asked - answered,
            "answers": answers[-50:],
            "feedback": await shared.marks(app_of(room), room, 50),
            "process": {
                "processed": self.processed[app_of(room)],
                "dropped": self.dropped[app_of(room)],
                "decision_cpu_ms_per_question": round(self.cpu_s * 1000 / decided, 3) if decided else None,
                "answer_latency_p95_ms": lat[int(len(lat) * 0.95)] if lat else None,
                "embedder": self.embedder.name if self.embedder else None,
            },
        }


def _apply(board: Board, entry: dict[str, Any]) -> None:
    """One entry of the room's question stream (shared.py) on a board."""
    if "h" in entry:  # the host answered a cluster
        if entry["h"]:
            board.mark_answered(entry["h"])
        return
    board.add(Asked(entry["t"], entry["s"], entry["u"], entry["q"], entry["k"], entry["a"]))


def _reworded(d: Decision, text: str) -> Decision:
    return Decision(
        True, d.reason, d.lang, d.score, d.key, d.product, "llm", text, [*d.sources, f"llm from: {d.text}"]
    )


def settings_rule(
    enabled: bool | None, products: list[str] | None
) -> Callable[[RoomDoc], tuple[RoomDoc, list[Emit]]]:
    """The rule ``assistant.set`` commits (room document feature ``assistant``)."""
    from roomserver.core.room import with_features

    def rule(doc: RoomDoc) -> tuple[RoomDoc, list[Emit]]:
        current = dict(doc.features.get("assistant") or {})
        if enabled is not None:
            current["enabled"] = enabled
        if products is not None:
            current["products"] = products
        view = msgspec.to_builtins(current)
        return with_features(doc, assistant=current), [Emit("assistant.settings", view)]

    return rule
