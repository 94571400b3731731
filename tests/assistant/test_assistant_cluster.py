"""Two nodes on one Redis share the assistant's state (shared.py): a product put on
node A is answered from on node B, feedback given on B raises A's threshold, the
host on B sees (and is counted in) the questions viewers asked on A."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.assistant.test_assistant_server import JACKET, PIN
from tests.server_fixtures import APP, Recorder, Server, new_room_id

WAIT_S = 10.0


@pytest.fixture
async def nodes(make_server, redis_single, unique_prefix) -> tuple[Server, Server]:
    a = await make_server(redis_url=redis_single.url, redis_prefix=unique_prefix)
    b = await make_server(redis_url=redis_single.url, redis_prefix=unique_prefix)
    return a, b


async def _joined(server: Server, user: str, room: str, role: str = "viewer") -> tuple[Any, Recorder]:
    c = await server.client(user, role)
    await c.join(room)
    return c, Recorder(c)


async def test_a_product_put_on_a_is_answered_from_on_b(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    room = new_room_id()
    status, _ = await a.admin("PUT", "/v1/products/jacket", JACKET)
    assert status == 200
    status, body = await b.admin("GET", "/v1/products/jacket")
    assert status == 200 and body["product"]["version"] == 1
    host, _ = await _joined(a, "h1", room, "host")
    await host.pin_product(room, PIN)
    viewer, rec = await _joined(b, "v1", room)
    await viewer.send_barrage(room, "有什么尺码？")
    (ev,) = await rec.wait("assistant.answer", timeout=WAIT_S)
    assert "S到XXL" in ev["data"]["text"]
    # A change on A: B answers from the new version (its copy is checked every 500 ms).
    changed = {**JACKET, "attributes": {**JACKET["attributes"], "sizes": "M到XL"}, "version": 1}
    status, body = await a.admin("PUT", "/v1/products/jacket", changed)
    assert status == 200 and body["product"]["version"] == 2
    status, body = await b.admin("PUT", "/v1/products/jacket", {**changed, "version": 1})
    assert status == 409  # B sees A's write: its stale version is refused
    v2, rec2 = await _joined(b, "v2", room)
    await v2.send_barrage(room, "有什么尺码？")
    (ev,) = await rec2.wait("assistant.answer", timeout=WAIT_S)
    assert "M到XL" in ev["data"]["text"]
    # A delete on B: A no longer knows the product (only the pin describes it).
    status, _ = await b.admin("DELETE", "/v1/products/jacket")
    assert status == 200
    status, _ = await a.admin("GET", "/v1/products/jacket")
    assert status == 404


async def test_feedback_given_on_b_adjusts_answers_on_a(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    room = new_room_id()
    await a.admin("PUT", "/v1/products/jacket", JACKET)
    host_a, _ = await _joined(a, "h1", room, "host")
    await host_a.pin_product(room, PIN)
    host_b, _ = await _joined(b, "h2", room, "host")
    viewer, rec = await _joined(a, "v1", room)
    asked = await viewer.send_barrage(room, "什么时候发货")
    await rec.wait("assistant.answer", timeout=WAIT_S)
    # The answer was given on A; the host on B marks it wrong (found through the bus).
    first = await host_b.request("assistant.wrong", room, question_seq=asked["seq"], note="wrong")
    second = await host_b.request("assistant.wrong", room, question_seq=asked["seq"])
    assert first["key"] == "jacket:shipping" and second["threshold"] == pytest.approx(
        first["threshold"] + 0.05
    )
    # A's next decision uses the raised threshold (read on its question path).
    thresholds = await a.node.assistant.bus().thresholds(APP)
    assert thresholds["jacket"] == pytest.approx(second["threshold"])
    _, stats = await a.admin("GET", f"/v1/rooms/{room}/assistant/stats")
    assert [f["question_seq"] for f in stats["feedback"]] == [asked["seq"]] * 2
    # Enough marks and A stops answering that question about the jacket.
    for _ in range(8):
        await host_b.request("assistant.wrong", room, question_seq=asked["seq"])
    other, rec_other = await _joined(a, "v2", room)
    await other.send_barrage(room, "发货要多久")
    await other.send_barrage(room, "帽子能拆吗")  # a FAQ question, exact: still answered
    (ev,) = await rec_other.wait("assistant.answer", timeout=WAIT_S)
    assert ev["data"]["text"] == "帽子可拆"
    unknown = await _error(host_b.request("assistant.wrong", room, question_seq=asked["seq"] + 1000))
    assert unknown == "not_found"


async def _error(call: Any) -> str:
    from roomserver.client import RoomError

    try:
        await call
    except RoomError as err:
        return err.code
    raise AssertionError("no error")


async def test_the_host_on_b_sees_the_questions_asked_on_a(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    room = new_room_id()
    await b.admin("PUT", "/v1/products/jacket", JACKET)
    host, rec_host = await _joined(b, "h1", room, "host")
    await host.pin_product(room, PIN)
    for i in range(2):
        c, _ = await _joined(a, f"a{i}", room)
        await c.send_barrage(room, "什么时候发货")
    c, _ = await _joined(a, "a2", room)
    await c.send_barrage(room, "主播几岁了？")

    def shipping_asked_twice(e: dict[str, Any]) -> bool:
        return any(cl["key"] == "jacket:shipping" and cl["count"] == 2 for cl in e["data"]["clusters"])

    await rec_host.wait("assistant.questions", shipping_asked_twice, timeout=WAIT_S)
    # A third asker, on B: three askers across the nodes get one room-wide answer.
    c, _ = await _joined(b, "b0", room)
    await c.send_barrage(room, "多久发货？")
    (wide,) = await rec_host.wait("assistant.answer", lambda e: e["data"]["to"] is None, timeout=WAIT_S)
    assert "48小时" in wide["data"]["text"]
    # The host on B answers a cluster; A's board counts it answered.
    await host.request("assistant.reply", room, key="jacket:shipping", text="今天下单明天发")

    def counted_on_both(stats: dict[str, Any]) -> bool:
        return stats["asked"] == 4 and stats["answered"] >= 3

    for node in (a, b):
        deadline = time.monotonic() + WAIT_S
        while True:
            _, stats = await node.admin("GET", f"/v1/rooms/{room}/assistant/stats")
            if counted_on_both(stats) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert counted_on_both(stats), stats
        assert sum(q["count"] for q in stats["top_unanswered"]) == 1  # 主播几岁了？
        assert any(ans["source"] == "host" for ans in stats["answers"])


async def test_overlapping_folds_count_each_question_once_and_skip_the_nodes_own(
    redis_single, unique_prefix
) -> None:
    """The worker folds before an answer while the board task folds each second: each
    entry of another node counts once; this node's own entries (on its board since it
    handled them) are skipped."""
    from roomserver.assistant import service
    from roomserver.bus.redis import RedisBroker

    broker = RedisBroker.from_url(redis_single.url, node_id="n1", prefix=unique_prefix)
    other = RedisBroker.from_url(redis_single.url, node_id="n2", prefix=unique_prefix)
    try:
        a, b = service.Assistant(), service.Assistant()
        a.attach(broker)
        b.attach(other)
        room = f"{APP}/{new_room_id()}"
        st_a, st_b = a.room_state(room), b.room_state(room)
        now = service.now_ms()

        def asked(node: service.Assistant, i: int) -> dict[str, Any]:
            return {
                "n": node.origin,
                "t": now,
                "s": i,
                "u": f"u{i}",
                "q": "多少钱",
                "k": "p:price",
                "a": False,
            }

        for i in range(5):  # handled on b: on b's board, pending for the bus
            entry = asked(b, i)
            service._apply(st_b.board, entry)
            st_b.pending.append((entry, i))
        await b._flush(room, st_b)
        await asyncio.gather(a._fold(room, st_a), a._fold(room, st_a), a._fold(room, st_a))
        assert st_a.board.askers("p:price", now) == 5
        mine = asked(a, 9)
        service._apply(st_a.board, mine)
        st_a.pending.append((mine, 9))
        await a._flush(room, st_a)
        await asyncio.gather(a._fold(room, st_a), b._fold(room, st_b))
        assert len(st_a.board.entries) == 6 and len(st_b.board.entries) == 6
        stats = await a.stats(room)
        assert (stats["asked"], stats["answered"]) == (6, 0)
    finally:
        await broker.close()
        await other.close()


async def test_a_host_reply_on_b_counts_questions_asked_on_a(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    room = new_room_id()
    await a.admin("PUT", "/v1/products/jacket", JACKET)
    host, _ = await _joined(b, "h1", room, "host")
    await host.pin_product(room, PIN)
    viewer, rec = await _joined(a, "v1", room)
    await viewer.send_barrage(room, "什么时候发货")
    await rec.wait("assistant.answer", timeout=WAIT_S)
    await viewer.send_barrage(room, "多久发货？")  # within the per-user interval: unanswered

    async def stats_on(node: Server, ready: Any) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while True:
            _, stats = await node.admin("GET", f"/v1/rooms/{room}/assistant/stats")
            if ready(stats) or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.05)

    stats = await stats_on(a, lambda s: s["asked"] == 2)  # (a read writes A's pending entries)
    assert (stats["asked"], stats["answered"]) == (2, 1)
    await host.request("assistant.reply", room, key="jacket:shipping", text="今天下单明天发")
    for node in (b, a):  # the totals are on the bus: the same on both at once
        _, stats = await node.admin("GET", f"/v1/rooms/{room}/assistant/stats")
        assert (stats["asked"], stats["answered"], stats["unanswered"]) == (2, 2, 0), stats
    # A's board folds the reply: the cluster's questions count as answered there too.
    stats = await stats_on(a, lambda s: not s["top_unanswered"])
    assert stats["top_unanswered"] == []


async def test_the_room_answer_rate_holds_across_nodes() -> None:
    """Two nodes on one bus share the room's ROOM_ANSWERS answer slots a second (the
    bus's clock moved by hand: no timing)."""
    from roomserver.assistant import service
    from roomserver.bus.memory import MemoryBroker, MemoryHub

    class Clock:
        ms = 1_000_000

        def __call__(self) -> int:
            return self.ms

    clock = Clock()
    hub = MemoryHub(clock=clock)
    nodes = []
    for name in ("n1", "n2"):
        assistant = service.Assistant()
        assistant.attach(MemoryBroker(hub, node_id=name))
        assistant.node = type("Node", (), {"broker": assistant.bus().broker})()
        nodes.append(assistant)
    room = f"{APP}/{new_room_id()}"
    states = [n.room_state(room) for n in nodes]

    async def take(i: int) -> bool:
        return await nodes[i % 2]._room_slot(room, states[i % 2], clock.ms)

    passed = [await take(i) for i in range(12)]
    assert sum(passed) == service.ROOM_ANSWERS and passed[: service.ROOM_ANSWERS] == [True] * 5
    clock.ms += service.ROOM_SLOT_MS // 2  # within the second: still none, on either node
    assert not any([await take(i) for i in range(4)])
    clock.ms += service.ROOM_SLOT_MS // 2  # the next second: again ROOM_ANSWERS in all
    passed = [await take(i) for i in range(12)]
    assert sum(passed) == service.ROOM_ANSWERS
    # One node alone gets the whole room's rate, no more.
    clock.ms += service.ROOM_SLOT_MS
    passed = [await nodes[0]._room_slot(room, states[0], clock.ms + i) for i in range(8)]
    assert sum(passed) == service.ROOM_ANSWERS
