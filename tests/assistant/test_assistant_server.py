"""End to end on a real server: the catalogue over REST, a viewer asks in the barrage
and gets the answer, live facts follow the room, the host's board, reply and "wrong"
mark, the room's switch, and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

from roomserver.assistant.service import Question
from roomserver.assistant.text import jieba_ready
from roomserver.protocol import now_ms
from tests.server_fixtures import APP, Recorder, Server

JACKET: dict[str, Any] = {
    "title": "轻暖羽绒服",
    "title_en": "down jacket",
    "price_cents": 59900,
    "aliases": ["羽绒服", "jacket"],
    "attributes": {"sizes": {"zh": "S到XXL", "en": "S to XXL"}, "shipping": "48小时内发货"},
    "faq": [
        {"id": "hood", "q": ["帽子能拆吗", "is the hood detachable"], "a": {"zh": "帽子可拆", "en": "yes"}}
    ],
}
PIN = {"id": "jacket", "title": "轻暖羽绒服", "price_cents": 45900}


async def _room(server: Server, room: str) -> tuple[Any, Any, Recorder, Recorder]:
    # jieba's dictionary loads once per process (the server's worker waits for it before
    # its first question): loaded here, so the first answer's wait does not include a
    # load that takes over 5 s on a loaded box.
    await asyncio.to_thread(jieba_ready)
    status, body = await server.admin("PUT", "/v1/products/jacket", JACKET)
    assert status == 200, body
    host = await server.client("h1", "host")
    await host.join(room)
    viewer = await server.client("v1")
    await viewer.join(room)
    await host.pin_product(room, PIN)
    return host, viewer, Recorder(host), Recorder(viewer)


async def test_a_viewer_asks_and_sees_the_answer(server: Server, room: str) -> None:
    _host, viewer, rec_host, rec_viewer = await _room(server, room)
    reply = await viewer.send_barrage(room, "有什么尺码？")
    (ev,) = await rec_viewer.wait("assistant.answer")
    data = ev["data"]
    assert data["question_seq"] == reply["seq"] and data["to"]["id"] == "v1"
    assert data["product"] == "jacket" and data["source"] == "attribute"
    assert "S到XXL" in data["text"] and ev["seq"] > reply["seq"]
    # answered to the asker only
    await rec_host.quiet()
    assert not rec_host.named("assistant.answer")
    # the host's board shows the question as answered
    (board,) = await rec_host.wait("assistant.questions", lambda e: e["data"]["clusters"], timeout=5)
    (cluster,) = board["data"]["clusters"]
    assert cluster["count"] == 1 and cluster["answered"] == 1 and cluster["key"] == "jacket:sizes"
    status, stats = await server.admin("GET", f"/v1/rooms/{room}/assistant/stats")
    assert status == 200 and stats["asked"] == 1 and stats["answered"] == 1
    assert stats["answers"][0]["sources"] and stats["answers"][0]["question_seq"] == reply["seq"]


async def test_live_price_and_stock_are_current(server: Server, room: str) -> None:
    host, viewer, _, rec_viewer = await _room(server, room)
    await viewer.send_barrage(room, "多少钱")
    (ev,) = await rec_viewer.wait("assistant.answer")
    assert "¥459" in ev["data"]["text"] and ev["data"]["source"] == "live"
    sale = await host.sale_create(room, product=PIN, price_cents=39900, stock=5, limit_per_user=2)
    await viewer.sale_buy(room, sale["sale"]["id"], qty=2)
    other = await server.client("v2")
    await other.join(room)
    rec_other = Recorder(other)
    await other.send_barrage(room, "还有货吗")
    (ev,) = await rec_other.wait("assistant.answer")
    assert "3件" in ev["data"]["text"]
    await other.send_barrage(room, "how much?")  # within the per-user interval: not answered
    third = await server.client("v3")
    await third.join(room)
    rec_third = Recorder(third)
    await third.send_barrage(room, "how much is the jacket?")
    (ev,) = await rec_third.wait("assistant.answer")
    assert "¥399" in ev["data"]["text"]


async def test_out_of_scope_and_chat_are_not_answered(server: Server, room: str) -> None:
    _, viewer, _, rec_viewer = await _room(server, room)
    await viewer.send_barrage(room, "主播几岁了？")
    await viewer.send_barrage(room, "主播好美")
    await viewer.send_barrage(room, "帽子能拆吗")  # the last: answered, so the two before were read
    (ev,) = await rec_viewer.wait("assistant.answer")
    assert ev["data"]["text"] == "帽子可拆"


async def test_many_askers_get_one_room_wide_answer(server: Server, room: str) -> None:
    _host, _, rec_host, _ = await _room(server, room)
    for i in range(3):
        c = await server.client(f"a{i}")
        await c.join(room)
        await c.send_barrage(room, "什么时候发货")
    (wide,) = await rec_host.wait("assistant.answer", lambda e: e["data"]["to"] is None)
    assert "48小时" in wide["data"]["text"]


async def test_host_reply_wrong_mark_and_switch(server: Server, room: str) -> None:
    host, viewer, _rec_host, rec_viewer = await _room(server, room)
    asked = await viewer.send_barrage(room, "is the hood detachable?")
    await rec_viewer.wait("assistant.answer")
    marked = await host.request("assistant.wrong", room, question_seq=asked["seq"], note="it is not")
    assert marked["key"] == "jacket:faq.hood" and marked["threshold"] > 0.55
    await host.request("assistant.reply", room, key="jacket:faq.hood", text="Hood: detachable, 2 zips")
    (pinned,) = await rec_viewer.wait("assistant.answer", lambda e: e["data"]["source"] == "host")
    assert pinned["data"]["pinned"] is True and pinned["data"]["to"] is None
    await host.request("assistant.set", room, enabled=False)
    v2 = await server.client("v9")
    await v2.join(room)
    rec2 = Recorder(v2)
    await v2.send_barrage(room, "多少钱")
    await rec2.quiet(0.5)
    assert not rec2.named("assistant.answer")
    _status, stats = await server.admin("GET", f"/v1/rooms/{room}/assistant/stats")
    assert stats["feedback"][0]["question_seq"] == asked["seq"]


async def test_catalogue_rest_bad_input_and_versions(server: Server) -> None:
    status, body = await server.admin("PUT", "/v1/products/p1", {"title": "", "price_cents": 1})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = await server.admin("PUT", "/v1/products/p1", {"title": "t", "price_cents": -1})
    assert status == 400
    status, body = await server.admin("PUT", "/v1/products/" + "x" * 129, {"title": "t", "price_cents": 1})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = await server.admin("PUT", "/v1/products/p1", {"title": "t", "price_cents": 1})
    assert status == 200 and body["product"]["version"] == 1
    status, body = await server.admin(
        "PUT", "/v1/products/p1", {"title": "t2", "price_cents": 1, "version": 0}
    )
    assert status == 409 and body["error"]["code"] == "conflict"
    faq = {"faq": [{"q": ["防水吗"], "a": "防泼水"}], "version": 1}
    status, body = await server.admin("PUT", "/v1/products/p1/faq", faq)
    assert status == 200 and body["version"] == 2
    status, body = await server.admin("GET", "/v1/products/p1/faq")
    assert body["faq"] == [{"q": ["防水吗"], "a": "防泼水"}]
    status, body = await server.admin("GET", "/v1/products")
    assert [p["id"] for p in body["products"]] == ["p1"]
    status, body = await server.admin("DELETE", "/v1/products/p1")
    assert status == 200 and body == {"deleted": "p1"}
    status, body = await server.admin("GET", "/v1/products/p1")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await server.rest("GET", "/v1/products")
    assert status == 401


async def test_pin_by_id_takes_the_catalogue_fields(server: Server, room: str) -> None:
    from roomserver.client import RoomError

    status, _ = await server.admin("PUT", "/v1/products/jacket", {**JACKET, "image": "https://img/j.png"})
    assert status == 200
    host = await server.client("h1", "host")
    await host.join(room)
    rec = Recorder(host)
    await host.pin_product(room, {"id": "jacket"})
    (ev,) = await rec.wait("product.pinned")
    assert ev["data"]["product"] == {
        "id": "jacket",
        "title": "轻暖羽绒服",
        "price_cents": 59900,
        "image": "https://img/j.png",
    }
    await host.pin_product(room, {"id": "jacket", "price_cents": 45900})  # given fields win
    (_, ev) = await rec.wait("product.pinned", count=2)
    assert ev["data"]["product"]["price_cents"] == 45900 and ev["data"]["product"]["title"] == "轻暖羽绒服"
    before = (await host.join(room))["room"]["pinned"]
    cases = (
        ({"id": "nope"}, "not_found"),
        ({"id": "nope", "title": "Tea"}, "not_found"),
        ({"id": "x" * 65}, "bad_request"),
        ({}, "bad_request"),
        ({"id": "jacket", "price_cents": -1}, "bad_request"),
    )
    for product, code in cases:
        try:
            await host.pin_product(room, product)
        except RoomError as err:
            assert err.code == code, (product, err)
        else:
            raise AssertionError(f"{product} pinned")
    assert (await host.join(room))["room"]["pinned"] == before  # nothing changed


async def test_pin_by_id_without_the_assistant_is_a_clear_error(make_server, room: str) -> None:
    from roomserver.client import RoomError

    server = await make_server(assistant="off")
    host = await server.client("h1", "host")
    await host.join(room)
    try:
        await host.pin_product(room, {"id": "jacket"})
    except RoomError as err:
        assert err.code == "bad_request" and "title and price_cents" in err.message
    else:
        raise AssertionError("pinned without a catalogue")
    await host.pin_product(room, PIN)  # a whole product still pins


class Behaviour:
    """A behaviour sink that keeps what it is given (the node's BehaviourSink protocol)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, dict[str, Any] | None]] = []

    def record(
        self, room: str, user: str, kind: Any, data: dict[str, Any] | None = None, *, ts: int | None = None
    ) -> None:
        self.records.append((room, user, kind, data))


async def test_every_handled_question_is_a_behaviour_record(server: Server, room: str) -> None:
    sink = Behaviour()
    server.node.behaviour = sink
    _host, viewer, _, rec_viewer = await _room(server, room)
    asked = await viewer.send_barrage(room, "主播几岁了？")
    await viewer.send_barrage(room, "主播好美")  # chat: no record
    answered = await viewer.send_barrage(room, "帽子能拆吗")
    await rec_viewer.wait("assistant.answer")
    records = [r for r in sink.records if r[2] == "assistant"]
    assert [(r[0], r[1]) for r in records] == [(f"{APP}/{room}", "v1")] * 2
    first, second = (r[3] for r in records)
    assert first is not None and second is not None
    assert first["question_seq"] == asked["seq"] and first["answered"] is False and first["cluster"]
    assert first["text"] == "主播几岁了？"  # the question as asked: the report's unanswered examples
    assert second == {
        "question_seq": answered["seq"],
        "answered": True,
        "cluster": "jacket:faq.hood",
        "text": "帽子能拆吗",
    }


async def test_the_show_report_counts_questions_a_host_reply_answered(server: Server, room: str) -> None:
    from roomserver.appkeys import STORE_KEY
    from roomserver.behaviour_writer import wait_show_stored

    host, viewer, _rec_host, rec_viewer = await _room(server, room)
    await host.start(room)
    await viewer.send_barrage(room, "帽子能拆吗")
    await rec_viewer.wait("assistant.answer")
    await viewer.send_barrage(room, "is the hood detachable?")  # within the per-user interval
    await viewer.send_barrage(room, "主播几岁了？")
    await _stats_when(server, room, lambda s: s["asked"] == 3)
    await host.request("assistant.reply", room, key="jacket:faq.hood", text="Hood: detachable, 2 zips")
    await host.request("assistant.reply", room, key="jacket:faq.hood", text="again")  # counts nothing more
    show = (await host.end(room))["summary"]["show"]
    store = server.app[STORE_KEY]
    info = await wait_show_stored(store, server.node.broker, APP, room, show, timeout=20)
    counts = (await store.reports.get(info)).report.assistant
    assert (counts.questions, counts.answered, counts.unanswered) == (3, 2, 1)
    assert [(c.questions, c.example) for c in counts.top_unanswered] == [(1, "主播几岁了？")]


async def _stats_when(server: Server, room: str, ready: Any) -> dict[str, Any]:
    """The room's assistant stats once ``ready(stats)`` (the worker handles questions
    after the barrage's reply), or the last read."""
    import time

    deadline = time.monotonic() + 10
    while True:
        _status, stats = await server.admin("GET", f"/v1/rooms/{room}/assistant/stats")
        if ready(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def test_a_host_reply_counts_its_clusters_questions_answered(server: Server, room: str) -> None:
    host, viewer, _rec_host, rec_viewer = await _room(server, room)
    await viewer.send_barrage(room, "帽子能拆吗")
    await rec_viewer.wait("assistant.answer")
    await viewer.send_barrage(room, "is the hood detachable?")  # within the per-user interval
    await viewer.send_barrage(room, "主播几岁了？")  # nothing the catalogue answers
    stats = await _stats_when(server, room, lambda s: s["asked"] == 3)
    assert (stats["asked"], stats["answered"], stats["unanswered"]) == (3, 1, 2)
    await host.request("assistant.reply", room, key="jacket:faq.hood", text="Hood: detachable, 2 zips")
    _status, stats = await server.admin("GET", f"/v1/rooms/{room}/assistant/stats")
    assert (stats["asked"], stats["answered"], stats["unanswered"]) == (3, 2, 1)
    assert [q["question"] for q in stats["top_unanswered"]] == ["主播几岁了？"]
    # A second reply to the same cluster counts nothing twice; a reply to no cluster nothing.
    await host.request("assistant.reply", room, key="jacket:faq.hood", text="Hood: detachable")
    await host.request("assistant.reply", room, text="Welcome!")
    _status, stats = await server.admin("GET", f"/v1/rooms/{room}/assistant/stats")
    assert (stats["asked"], stats["answered"], stats["unanswered"]) == (3, 2, 1)


async def test_a_repeated_question_follows_the_catalogue_and_the_rooms_words(
    server: Server, room: str
) -> None:
    """The worker keeps a question's decision per room (the barrage repeats itself):
    a changed FAQ answer and a banned word added after the first answer still count."""
    host, _viewer, _, _ = await _room(server, room)
    assistant = server.node.assistant
    full = f"{APP}/{room}"
    asked = iter(range(1_000, 2_000))

    async def ask(text: str) -> Any:
        q = Question(full, f"u{next(asked)}", "", text, next(asked), now_ms())
        return await assistant.handle(q)

    first = await ask("帽子能拆吗")
    assert first.answer and first.text == "帽子可拆"
    assert (await ask("帽子能拆吗")).text == "帽子可拆"  # the kept decision
    changed = {**JACKET, "faq": [{**JACKET["faq"][0], "a": {"zh": "帽子不可拆", "en": "no"}}]}
    status, body = await server.admin("PUT", "/v1/products/jacket", changed)
    assert status == 200, body
    await asyncio.sleep(0.6)  # the catalogue is read again at most every 0.5 s (shared.CHECK_MS)
    assert (await ask("帽子能拆吗")).text == "帽子不可拆"
    await host.request("mod.words", room, add=["不可拆"])
    blocked = await ask("帽子能拆吗")
    assert not blocked.answer and blocked.reason == "blocked_content"
