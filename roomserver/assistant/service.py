"""The assistant of one server process (the I/O shell around the pure parts).

The barrage handler hands each accepted line to ``offer`` (a bounded queue put, no
await): the barrage's commit and flush never wait for the assistant. One task
drains the queue: question detection, the room's scope and live facts (room
document, stock and coupon counters), retrieval, the decision, the answer as a
durable ``assistant.answer`` event. Another publishes each room's question board
to hosts and moderators (``assistant.questions``, ephemeral, at most once a second,
only when it changed). A full queue drops questions (counted in ``dropped``)
rather than grow without bound.

Each process answers the questions its own sockets sent, so every question is
answered once in a cluster of nodes. The catalogue, the feedback and the question
board are kept per process (docs/assistant.md: what that means for several nodes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from roomserver.assistant import facts as live
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
from roomserver.core.moderation import TokenBucket
from roomserver.core.room import Emit, RoomDoc
from roomserver.protocol import now_ms
from roomserver.tenancy import app_of

log = logging.getLogger("roomserver.assistant")

QUEUE_MAX = 10_000
BOARD_PERIOD_S = 1.0
# An answer to one asker at most every USER_ANSWER_S; a room at most ROOM_ANSWERS_PER_S.
USER_ANSWER_S = 10.0
ROOM_ANSWERS_PER_S = 5.0
# This many askers of the same thing within a minute: answer the room, not each one,
# and not again for ROOM_WIDE_REPEAT_MS.
ROOM_WIDE_ASKERS = 3
ROOM_WIDE_REPEAT_MS = 30_000
THRESHOLD_STEP = 0.05  # raised per "wrong" mark on a product's answer
THRESHOLD_MAX = 0.95
ANSWER_LOG = 500
# Bounds on what the assistant keeps in memory (it lives in the process, not on the bus):
# a room's state is dropped a day after its last question or action, an app keeps its
# latest "wrong" marks, and a room forgets askers whose answer spacing has passed.
ROOM_STATE_KEEP_MS = 24 * 3600 * 1000
FEEDBACK_KEEP = 1000
USER_LAST_MAX = 10_000
CHOICE_CACHE = 2048


@dataclass(slots=True)
class Question:
    room: str
    user: str
    name: str
    text: str
    seq: int
    at_ms: int


@dataclass(slots=True)
class RoomState:
    board: Board = field(default_factory=Board)
    room_bucket: TokenBucket = field(
        default_factory=lambda: TokenBucket(ROOM_ANSWERS_PER_S, ROOM_ANSWERS_PER_S)
    )
    user_last: dict[str, int] = field(default_factory=dict)
    room_wide_at: dict[str, int] = field(default_factory=dict)
    index_key: tuple[Any, ...] = ()
    index: Index | None = None
    # question text -> what retrieval chose, for the current index and thresholds
    choices: dict[str, Choice] = field(default_factory=dict)
    published_board: list[dict[str, Any]] = field(default_factory=list)
    answers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ANSWER_LOG))
    # question seq -> (key, product) of the answer, for the host's "wrong" mark
    answered_seq: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    touched_ms: int = 0  # the last question or host action (see ROOM_STATE_KEEP_MS)


class Assistant:
    def __init__(self, embedder: Embedder | None = None, phraser: Phraser | None = None) -> None:
        self.embedder = embedder
        self.phraser = phraser
        self.threshold = DEFAULT_THRESHOLD if embedder is None else HYBRID_THRESHOLD
        self.catalogs: dict[str, Catalog] = {}
        self.thresholds: dict[str, dict[str, float]] = {}  # app -> product -> threshold
        self.thresholds_version = 0  # raised by each change: cached choices are dropped
        self.feedback: dict[str, deque[dict[str, Any]]] = {}  # app -> latest wrong marks
        self.rooms: dict[str, RoomState] = {}
        self.queue: asyncio.Queue[Question] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0
        self.processed = 0
        self.cpu_s = 0.0
        self.latencies_ms: deque[float] = deque(maxlen=10_000)
        self.node: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle (create_app calls these) --------------------------------------------

    async def start(self, node: Any) -> None:
        self.node = node
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

    def catalog(self, app: str) -> Catalog:
        cat = self.catalogs.get(app)
        if cat is None:
            cat = self.catalogs[app] = Catalog()
        return cat

    # -- the hot path's only call ----------------------------------------------------

    def offer(self, room: str, user: dict[str, Any], text: str, seq: int) -> None:
        """An accepted barrage line (called by the barrage handler; never blocks)."""
        if not self.catalogs.get(app_of(room)):
            return
        try:
            self.queue.put_nowait(Question(room, user["id"], user.get("name", ""), text, seq, now_ms()))
        except asyncio.QueueFull:
            self.dropped += 1

    # -- the worker -------------------------------------------------------------------

    async def _drain(self) -> None:
        # jieba's dictionary takes 1-5 s to load: in a thread, so the server's start
        # does not wait for it; questions wait in the queue meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, jieba_ready)
        while True:
            q = await self.queue.get()
            try:
                await self.handle(q)
            except Exception:  # one bad question must not stop the assistant
                log.exception("assistant: question in %s failed", q.room)

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

    async def handle(self, q: Question) -> Decision | None:
        if not is_question(q.text):
            return None
        node = self.node
        doc = await node.room(q.room)
        if doc is None or not self.settings(doc).get("enabled", True):
            return None
        self.processed += 1
        app = app_of(q.room)
        scope = self.scope(app, doc)
        st = self.room_state(q.room)
        sales = frozenset(raw["product"]["id"] for raw in doc.features.get("sales", {}).values())
        index = self._index(st, app, scope, sales)
        # CPU of the decision itself (synchronous: no other task runs in between);
        # reading counters and publishing are the node's usual costs.
        started = time.process_time()
        choice = st.choices.get(q.text)
        if choice is None:
            vec = self.embedder.encode([q.text])[0] if self.embedder is not None else None
            choice = choose(
                q.text,
                scope,
                index,
                question_vec=vec,
                thresholds=self.thresholds.get(app),
                default_threshold=self.threshold,
            )
            if len(st.choices) >= CHOICE_CACHE:
                st.choices.clear()
            st.choices[q.text] = choice
        # The room's counters are read only for an answer that states them.
        needs_facts = choice.hit is not None and choice.reason == "ok" and choice.hit.item.source == "live"
        self.cpu_s += time.process_time() - started
        facts = await self.facts(q.room, doc) if needs_facts else live.RoomFacts(now_ms=now_ms())
        d = render(choice, scope, facts)
        if d.answer and self.phraser is not None:
            worded = await self.phraser.phrase(q.text, d.text, d.lang)
            if worded is not None:
                d = _reworded(d, worded)
        if d.answer and node.words.for_room(q.room, doc.words).find(d.text) is not None:
            d = Decision(False, "blocked_content", d.lang, d.score, d.key, d.product)
        now = now_ms()
        answered = d.answer and await self._send(q, d, st, now)
        cluster = d.key if d.score >= 0.3 else None
        st.board.add(Asked(q.at_ms, q.seq, q.user, q.text, cluster, answered))
        # The behaviour log (issue 12): a question the assistant took, answered or not.
        data: dict[str, Any] = {"question_seq": q.seq, "answered": bool(answered)}
        if cluster:
            data["cluster"] = cluster
        node.behaviour.record(q.room, q.user, "assistant", data)
        return d

    async def _send(self, q: Question, d: Decision, st: RoomState, now: int) -> bool:
        key = d.key or ""
        wide = st.board.askers(key, now) + 1 >= ROOM_WIDE_ASKERS
        if wide:
            if now - st.room_wide_at.get(key, 0) < ROOM_WIDE_REPEAT_MS:
                return True  # the room was just told: this asker saw that answer
        elif now - st.user_last.get(q.user, 0) < USER_ANSWER_S * 1000:
            return False
        if st.room_bucket.take(now) != 0:
            return False
        data = {
            "to": None if wide else {"id": q.user, "name": q.name},
            "question_seq": q.seq,
            "question": q.text,
            "text": d.text,
            "product": d.product,
            "source": d.source,
        }
        emit = Emit("assistant.answer", data, audience="" if wide else "user:" + q.user)
        await self.node.publish(q.room, [emit])
        if wide:
            st.room_wide_at[key] = now
        else:
            st.user_last[q.user] = now
            if len(st.user_last) > USER_LAST_MAX:  # askers past their spacing limit nothing
                horizon = now - USER_ANSWER_S * 1000
                st.user_last = {u: t for u, t in st.user_last.items() if t > horizon}
        self.latencies_ms.append(now_ms() - q.at_ms)
        st.answered_seq[q.seq] = (key, d.product)
        if len(st.answered_seq) > ANSWER_LOG:
            st.answered_seq.pop(next(iter(st.answered_seq)))
        entry = {**data, "at": now, "score": round(d.score, 3), "sources": d.sources}
        st.answers.append(entry)
        log.info("assistant answer room=%s seq=%s key=%s score=%.2f", q.room, q.seq, key, d.score)
        return True

    # -- the room's scope, facts and index ----------------------------------------------

    def scope(self, app: str, doc: RoomDoc) -> RoomScope:
        """The room's products: the pinned one, those of its sales, those set with
        ``assistant.set``; only those the catalogue (or the pin) describes."""
        cat = self.catalog(app)
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

    def _index(self, st: RoomState, app: str, scope: RoomScope, sales: frozenset[str]) -> Index:
        key = (
            self.catalog(app).version,
            tuple(sorted((pid, p.version, p.title) for pid, p in scope.products.items())),
            scope.pinned,
            tuple(sorted(sales)),
            self.thresholds_version,
        )
        if st.index is None or st.index_key != key:
            items = room_knowledge()
            for pid, product in scope.products.items():
                items += knowledge_of(product, on_sale=pid in sales)
            st.index, st.index_key = Index(items, self.embedder), key
            st.choices.clear()
        return st.index

    # -- the host's board ----------------------------------------------------------------

    async def _boards(self) -> None:
        while True:
            await asyncio.sleep(BOARD_PERIOD_S)
            self._forget_idle_rooms(now_ms())
            for room, st in list(self.rooms.items()):
                try:
                    await self._publish_board(room, st)
                except Exception:  # one room's board must not stop the others'
                    log.exception("assistant board of %s not published", room)

    async def _publish_board(self, room: str, st: RoomState) -> None:
        clusters = [c.view() for c in st.board.clusters(now_ms())]
        if clusters == st.published_board:
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
            st.board.mark_answered(key)
        st.answers.append({**data, "at": now_ms(), "sources": [f"host {key}"]})
        return res.seqs[0] if res.seqs else None

    def mark_wrong(self, room: str, question_seq: int, by: str, note: str) -> dict[str, Any]:
        """A wrong answer: stored, and its product's threshold goes up a step."""
        st = self.room_state(room)
        hit = st.answered_seq.get(question_seq)
        if hit is None:
            from roomserver.protocol import OpError

            raise OpError("not_found", f"the assistant has not answered question {question_seq} here")
        key, product = hit
        app = app_of(room)
        table = self.thresholds.setdefault(app, {})
        name = product or ""
        table[name] = min(THRESHOLD_MAX, table.get(name, self.threshold) + THRESHOLD_STEP)
        self.thresholds_version += 1
        record = {
            "room": room,
            "question_seq": question_seq,
            "key": key,
            "by": by,
            "note": note,
            "at": now_ms(),
        }
        self.feedback.setdefault(app, deque(maxlen=FEEDBACK_KEEP)).append(record)
        return {"key": key, "product": product, "threshold": table[name]}

    def stats(self, room: str) -> dict[str, Any]:
        st = self.rooms.get(room) or RoomState()  # a read keeps no state for the room
        lat = sorted(self.latencies_ms)
        return {
            **st.board.stats(),
            "answers": list(st.answers)[-50:],
            "feedback": [f for f in self.feedback.get(app_of(room), []) if f["room"] == room][-50:],
            "process": {
                "processed": self.processed,
                "dropped": self.dropped,
                "decision_cpu_ms_per_question": round(self.cpu_s * 1000 / self.processed, 3)
                if self.processed
                else None,
                "answer_latency_p95_ms": lat[int(len(lat) * 0.95)] if lat else None,
                "embedder": self.embedder.name if self.embedder else None,
            },
        }


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
