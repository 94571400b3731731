"""The assistant's pure parts: detection, catalogue versions, the decision's product
rules, live facts as text, the host's board."""

from __future__ import annotations

import msgspec
import pytest

from roomserver.assistant import facts as live
from roomserver.assistant.answer import ProductName, RoomScope, _mentions, decide
from roomserver.assistant.board import Asked, Board
from roomserver.assistant.catalog import Catalog, FaqBody, ProductBody
from roomserver.assistant.intents import knowledge_of, room_knowledge
from roomserver.assistant.retrieval import Index
from roomserver.assistant.text import is_question, tokens
from roomserver.protocol import OpError

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    "text",
    ["多少钱", "有XL吗", "偏大还是偏小", "尺码准不准", "还有货没", "is it waterproof?", "how much", "price?"],
)
def test_questions_are_detected(text: str) -> None:
    assert is_question(text)


@pytest.mark.parametrize("text", ["主播好美", "666", "买了买了", "love it", "已拍", "", "   "])
def test_chat_is_not_a_question(text: str) -> None:
    assert not is_question(text)


def test_typos_keep_most_tokens() -> None:
    right, typo = set(tokens("waterproof")), set(tokens("waterprof"))
    assert len(right & typo) / len(right | typo) > 0.5


def _catalog() -> Catalog:
    cat = Catalog()
    body = {
        "title": "羽绒服",
        "title_en": "down jacket",
        "price_cents": 59900,
        "aliases": ["jacket"],
        "attributes": {"sizes": "S-XXL"},
    }
    cat.put("jacket", msgspec.convert(body, ProductBody), NOW)
    cat.put(
        "cup",
        msgspec.convert({"title": "保温杯", "price_cents": 12900, "aliases": ["thermos"]}, ProductBody),
        NOW,
    )
    cat.put("case", msgspec.convert({"title": "手机壳", "price_cents": 3900}, ProductBody), NOW)
    return cat


def test_versions_refuse_a_stale_write() -> None:
    cat = _catalog()
    assert cat.products["jacket"].version == 1
    with pytest.raises(OpError) as err:
        cat.put_faq("jacket", FaqBody(faq=[], version=0), NOW)
    assert err.value.code == "conflict"
    assert cat.put_faq("jacket", FaqBody(faq=[], version=1), NOW).version == 2
    with pytest.raises(OpError):
        cat.get("nope")


def _scope(cat: Catalog, pinned: str | None, room: tuple[str, ...]) -> tuple[RoomScope, Index]:
    products = {pid: cat.products[pid] for pid in room}
    outside = tuple(n for pid, p in cat.products.items() if pid not in products for n in p.names())
    items = room_knowledge()
    for p in products.values():
        items += knowledge_of(p, on_sale=True)
    return RoomScope(products, pinned, outside), Index(items)


def test_a_product_not_in_the_room_is_never_answered_about() -> None:
    scope, index = _scope(_catalog(), "jacket", ("jacket", "cup"))
    facts = live.RoomFacts(now_ms=NOW)
    d = decide("手机壳多少钱", scope, index, facts)
    assert not d.answer and d.reason == "not_in_room"
    d = decide("保温杯多少钱", scope, index, facts)
    assert d.answer and d.product == "cup" and "¥129" in d.text


def test_product_names_match_as_whole_words_in_ascii_and_as_substrings_in_chinese() -> None:
    scope, index = _scope(_catalog(), "jacket", ("jacket", "cup"))
    assert _mentions("the thermos, how much", scope.room_names) == ["cup"]
    assert _mentions("thermoses and jackets", scope.room_names) == []  # not these words
    assert _mentions("羽绒服和保温杯", scope.room_names) == ["jacket", "cup"]
    assert _mentions("手机壳呢", scope.other_names) == [""]  # a product outside the room
    assert ProductName.of(" \u3000 ", "x") is None  # nothing left to match (or to strip)
    d = decide("ＴＨＥＲＭＯＳ多少钱", scope, index, live.RoomFacts(now_ms=NOW))  # full-width
    assert d.answer and d.product == "cup"


def test_without_a_pin_an_unnamed_common_question_is_ambiguous() -> None:
    scope, index = _scope(_catalog(), None, ("jacket", "cup"))
    d = decide("多少钱", scope, index, live.RoomFacts(now_ms=NOW))
    assert not d.answer and d.reason == "ambiguous"


def test_live_facts_follow_the_room() -> None:
    scope, index = _scope(_catalog(), "jacket", ("jacket",))
    pinned = live.RoomFacts(now_ms=NOW, pinned="jacket", pinned_price_cents=45900)
    assert "¥459" in decide("多少钱", scope, index, pinned).text
    sale = live.SaleFact("s1", "jacket", 39900, "open", 3, NOW - 1000, NOW + 65_000)
    on_sale = live.RoomFacts(now_ms=NOW, pinned="jacket", pinned_price_cents=45900, sales={"jacket": sale})
    assert "¥399" in decide("how much?", scope, index, on_sale).text
    assert "3件" in decide("还有货吗", scope, index, on_sale).text
    assert "1分5秒" in decide("秒杀还有多久结束", scope, index, on_sale).text
    gone = live.RoomFacts(
        now_ms=NOW, sales={"jacket": live.SaleFact("s1", "jacket", 1, "closed", 0, 0, None)}
    )
    assert "抢光" in decide("还有货吗", scope, index, gone).text


def test_coupons_as_text() -> None:
    assert live.coupon_text((), "zh") is None
    assert live.coupon_text((live.CouponFact("新人券", 3000, 30000, 0),), "zh") is None
    text = live.coupon_text((live.CouponFact("新人券", 3000, 30000, 5),), "en")
    assert text is not None and "¥30 off orders over ¥300" in text


def test_the_board_clusters_by_item_and_by_words() -> None:
    board = Board()
    board.add(Asked(NOW - 61_000, 5, "e", "old", None, False))
    board.add(Asked(NOW, 1, "a", "多少钱", "jacket:price", True))
    board.add(Asked(NOW, 2, "b", "how much?", "jacket:price", False))
    board.add(Asked(NOW, 3, "c", "主播用的什么麦克风", None, False))
    board.add(Asked(NOW, 4, "d", "主播用什么麦克风", None, False))
    clusters = board.clusters(NOW)
    assert [(c.key, c.count, c.answered) for c in clusters] == [("jacket:price", 2, 1), (None, 2, 0)]
    assert board.askers("jacket:price", NOW) == 2
    board.mark_answered("jacket:price")
    stats = board.stats()
    assert stats["asked"] == 5 and stats["answered"] == 2


async def test_offer_never_waits_and_drops_beyond_its_bound() -> None:
    from roomserver.assistant import shared
    from roomserver.assistant.service import APP_QUEUE_MAX, QUEUE_MAX, Assistant
    from roomserver.bus.memory import MemoryBroker
    from roomserver.core.room import RoomDoc, with_features

    assistant = Assistant()
    user = {"id": "u", "name": "u"}
    doc = RoomDoc(id="r")
    assistant.offer("app/r", doc, user, "多少钱", 1)  # not attached to a bus: not queued
    bus = assistant.attach(MemoryBroker())
    await bus.catalog("app")  # read: the app has no catalogue
    assistant.offer("app/r", doc, user, "多少钱", 1)  # ... so it is not queued
    assert len(assistant.queue) == 0
    bus.catalogs["app"].checked -= shared.EMPTY_RECHECK_MS / 1000  # a second later: offered again
    assistant.offer("app/r", doc, user, "多少钱", 1)
    assert len(assistant.queue) == 1
    await bus.put_product("app", "p", ProductBody(title="t", price_cents=1), NOW)
    await bus.catalog("app")
    # Rooms with the assistant off queue nothing (the worker classifies the others' lines).
    off = with_features(doc, assistant={"enabled": False})
    assistant.offer("app/r", off, user, "多少钱", 3)
    assert len(assistant.queue) == 1
    # The worker keeps the lines that ask something; the queue starts over.
    assistant.offer("app/r", doc, user, "主播好美", 4)
    assistant.offer("app/r", doc, user, "有XL码吗", 5)
    assert [q.seq for q in assistant.take_questions()] == [1, 5] and assistant.queue == []
    # One app's storm fills its own share of the queue, not the other apps' (tenants).
    for seq in range(APP_QUEUE_MAX + 5):
        assistant.offer("app/r", doc, user, "多少钱", seq)
    assert len(assistant.queue) == APP_QUEUE_MAX and assistant.dropped == {"app": 5}
    for other in range(QUEUE_MAX // APP_QUEUE_MAX):
        await bus.put_product(f"app{other}", "p", ProductBody(title="t", price_cents=1), NOW)
        await bus.catalog(f"app{other}")
        for seq in range(APP_QUEUE_MAX):
            assistant.offer(f"app{other}/r", doc, user, "多少钱", seq)
    # The process's bound holds over all of them.
    assert len(assistant.queue) == QUEUE_MAX and assistant.dropped["app4"] == APP_QUEUE_MAX
    assert assistant.dropped["app"] == 5 and assistant.dropped["app0"] == 0
    # A room's stats count its own app's lines only (another tenant's storm is not shown).
    assert (await assistant.stats("app/r"))["process"]["dropped"] == 5
    assert (await assistant.stats("app4/r"))["process"]["dropped"] == APP_QUEUE_MAX
    assistant.take_questions()  # a batch taken: every app's share starts over
    assistant.offer("app/r", doc, user, "多少钱", 1)
    assert len(assistant.queue) == 1


async def test_the_assistant_keeps_bounded_state_per_room() -> None:
    from roomserver.assistant import service
    from roomserver.bus.memory import MemoryBroker

    a = service.Assistant()
    a.attach(MemoryBroker())
    await a.stats("app/never-asked")
    assert "app/never-asked" not in a.rooms  # reading stats keeps nothing
    st = a.room_state("app/r1")
    a.room_state("app/r2")
    st.touched_ms -= service.ROOM_STATE_KEEP_MS + 1
    a._forget_idle_rooms(service.now_ms())
    assert set(a.rooms) == {"app/r2"}


def test_a_full_minute_board_is_cheap_and_clusters_as_a_full_scan_would() -> None:
    """A full board (2,000 entries, the bound: a minute at 33 questions/s; many loose
    texts): the clusters are those a pairwise scan finds, in a bounded time."""
    import time

    from roomserver.assistant import board as b
    from roomserver.assistant.evaluate import EVAL_DIR

    texts = [
        line.split("\t", 1)[1]
        for line in (EVAL_DIR / "questions.tsv").read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    board = Board()
    for i in range(b.MAX_ENTRIES):
        text = texts[(i * 7) % len(texts)]
        board.add(
            Asked(NOW - 59_000 + i * 20, i, f"u{i % 50}", text, "p:price" if i % 3 == 0 else None, False)
        )
    started = time.process_time()
    clusters = board.clusters(NOW)
    spent = time.process_time() - started
    # The reference: every loose entry compared with every earlier cluster's first text.
    loose: list[tuple[frozenset[str], list[int]]] = []
    for e in board.entries:
        if e.key is None:
            toks = frozenset(b.tokens(e.text))
            home = next((seqs for t, seqs in loose if b._similar(t, toks)), None)
            if home is None:
                loose.append((toks, home := []))
            home.append(e.seq)
    reference = sorted(len(seqs) for _, seqs in loose)
    top_loose = sorted(c.count for c in clusters if c.key is None)
    assert top_loose == reference[-len(top_loose) :]
    assert clusters[0].key == "p:price" and clusters[0].count == 667
    assert spent < 0.25  # about 5 ms on the 2-core box; the pairwise scan took about 150 ms


def test_questions_leave_their_clusters_as_they_age_out() -> None:
    board = Board()
    board.add(Asked(NOW - 50_000, 1, "a", "主播用的什么麦克风", None, False))
    board.add(Asked(NOW - 30_000, 2, "b", "主播用什么麦克风", None, False))
    board.add(Asked(NOW - 30_000, 3, "a", "多少钱", "jacket:price", True))
    board.add(Asked(NOW - 5_000, 4, "c", "how much", "jacket:price", False))
    (mic, price) = board.clusters(NOW)  # as many questions: the older cluster first
    assert (price.count, price.answered, len(price.users), mic.count) == (2, 1, 2, 2)
    # 20 s later the first question is gone: its cluster stays (named by it) with the second.
    (price, mic) = board.clusters(NOW + 20_000)  # more questions first
    assert (mic.text, mic.count, list(mic.seqs)) == ("主播用的什么麦克风", 1, [2])
    assert board.askers("jacket:price", NOW + 20_000) == 2
    # The same text again joins at once; later the second question and the answered one age out.
    board.add(Asked(NOW + 25_000, 5, "d", "主播用什么麦克风", None, False))
    (mic, price) = board.clusters(NOW + 40_000)
    assert (mic.count, list(mic.seqs), price.count, price.answered) == (1, [5], 1, 0)
    assert board.askers("jacket:price", NOW + 40_000) == 1
    assert board.clusters(NOW + 90_000) == [] and board.askers("jacket:price", NOW + 90_000) == 0
    assert not board._with_token and not board._loose  # nothing kept for clusters gone
    assert board.stats()["asked"] == 5  # the show's totals do not age


def test_a_full_board_drops_its_oldest_question() -> None:
    from roomserver.assistant.board import MAX_ENTRIES

    board = Board()
    for i in range(MAX_ENTRIES + 3):
        board.add(Asked(NOW, i, f"u{i}", "多少钱", "jacket:price", False))
    (price,) = board.clusters(NOW)
    assert price.count == MAX_ENTRIES and len(board.entries) == MAX_ENTRIES
    assert list(price.seqs)[-1] == MAX_ENTRIES + 2 and len(price.users) == MAX_ENTRIES
