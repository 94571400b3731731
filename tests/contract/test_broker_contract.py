"""The Broker contract: the same assertions hold on every backend."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from roomserver.bus.base import (
    AUDIENCE_STAFF,
    CommitStatus,
    Delivery,
    Draft,
    HistoryGone,
    Idem,
    TallyResult,
    TallyStatus,
)
from roomserver.protocol import encode_event
from roomserver.tenancy import app_of


def room_id(app: str = "") -> str:
    """A fresh room key (``<app>/<room>``, as the bus sees rooms); a fresh app too
    unless ``app`` is given."""
    return f"{app or 'a-' + uuid.uuid4().hex[:8]}/r-{uuid.uuid4().hex[:10]}"


def ev(room: str, text: str) -> bytes:
    return encode_event("barrage", room, {"text": text}, ts=1)


class Collector:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.changed = asyncio.Event()

    def __call__(self, d: Delivery) -> None:
        self.deliveries.append(d)
        self.changed.set()

    async def wait_events(self, n: int, timeout: float = 5.0) -> list:
        async def until() -> None:
            while sum(len(d.events) for d in self.deliveries) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return [e for d in self.deliveries for e in d.events]


async def started(broker, rooms=()):
    c = Collector()
    await broker.start(c)
    for r in rooms:
        await broker.subscribe(r)
    return c


async def test_seq_is_assigned_in_order_and_spliced_into_body(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    res = await b.commit(room, [Draft(ev(room, "a")), Draft(ev(room, "b"))])
    assert res.status == CommitStatus.OK
    assert res.seqs == (1, 2)
    assert res.epoch
    events = await c.wait_events(2)
    assert [e.seq for e in events] == [1, 2]
    bodies = [msgspec.json.decode(e.body) for e in events]
    assert [x["seq"] for x in bodies] == [1, 2]
    assert [x["data"]["text"] for x in bodies] == ["a", "b"]


async def test_ephemeral_events_have_no_seq_and_no_history(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    res = await b.commit(room, [Draft(ev(room, "e"), durable=False, coalesce="likes"), Draft(ev(room, "d"))])
    assert res.seqs == (0, 1)
    events = await c.wait_events(2)
    assert events[0].seq == 0 and events[0].coalesce == "likes"
    assert b"seq" not in events[0].body
    page = await b.history(room, 0)
    assert [e.seq for e in page.events] == [1]


async def test_two_nodes_see_the_same_seq_in_the_same_order(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    ca = await started(a, [room])
    cb = await started(b, [room])
    await asyncio.gather(*(n.commit(room, [Draft(ev(room, f"{i}"))]) for i in range(20) for n in (a, b)))
    ea = await ca.wait_events(40)
    eb = await cb.wait_events(40)
    assert [e.seq for e in ea] == list(range(1, 41))
    assert [e.body for e in ea] == [e.body for e in eb]


async def test_unsubscribed_node_gets_nothing(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    ca = await started(a, [room])
    cb = await started(b, [room])
    await b.unsubscribe(room)
    await a.commit(room, [Draft(ev(room, "x"))])
    await ca.wait_events(1)
    await asyncio.sleep(0.2)
    assert cb.deliveries == []


async def test_history_pages_and_resume_points(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    for i in range(10):
        await b.commit(room, [Draft(ev(room, str(i)))])
    page = await b.history(room, 4)
    assert [e.seq for e in page.events] == [5, 6, 7, 8, 9, 10]
    assert page.seq == 10
    page = await b.history(room, 4, limit=2)
    assert [e.seq for e in page.events] == [5, 6]
    assert (await b.history(room, 10)).events == []
    with pytest.raises(HistoryGone):
        await b.history(room, 11)
    with pytest.raises(HistoryGone):
        await b.history(room, -1)


async def test_empty_room_history_from_zero_is_empty(broker_factory):
    b = broker_factory()
    await started(b)
    page = await b.history(room_id(), 0)
    assert page.events == [] and page.seq == 0


async def test_history_is_capped_and_too_old_is_gone(broker_factory):
    b = broker_factory()
    await started(b)
    room = room_id()
    limit = b.limits.max_events
    drafts = [Draft(ev(room, str(i))) for i in range(limit + 5)]
    await b.commit(room, drafts)
    page = await b.history(room, 5, limit=3)
    assert [e.seq for e in page.events] == [6, 7, 8]
    with pytest.raises(HistoryGone):
        await b.history(room, 4)


async def test_idempotent_commit_replays_first_result(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    idem = Idem(user="u1", cid="c-1", fingerprint="f1")
    first = await b.commit(room, [Draft(ev(room, "hi"))], idem=idem)
    again = await b.commit(room, [Draft(ev(room, "hi"))], idem=idem)
    assert first.status == CommitStatus.OK and again.status == CommitStatus.REPLAYED
    assert again.seqs == first.seqs
    other = await b.commit(room, [Draft(ev(room, "other"))], idem=Idem("u1", "c-1", "f2"))
    assert other.status == CommitStatus.IDEM_CONFLICT
    other_user = await b.commit(room, [Draft(ev(room, "hi"))], idem=Idem("u2", "c-1", "f1"))
    assert other_user.status == CommitStatus.OK
    await c.wait_events(2)
    await asyncio.sleep(0.1)
    assert sum(len(d.events) for d in c.deliveries) == 2
    assert (await b.load(room)).seq == 2


async def test_version_cas_applies_once(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    rec = await a.load(room)
    assert rec.version == 0 and rec.doc is None
    r1 = await a.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"one")
    r2 = await b.commit(room, [Draft(ev(room, "y"))], expect_version=0, doc=b"two")
    assert r1.status == CommitStatus.OK and r1.version == 1
    assert r2.status == CommitStatus.VERSION_CONFLICT
    rec = await b.load(room)
    assert (rec.version, rec.doc, rec.seq) == (1, b"one", 1)
    assert await a.rooms(app_of(room)) == [room]


async def test_version_cas_delivers_new_version(broker_factory):
    a = broker_factory("a")
    room = room_id()
    c = await started(a, [room])
    await a.commit(room, [], expect_version=0, doc=b"d")
    await a.commit(room, [Draft(ev(room, "x"))], expect_version=1, doc=b"d2")
    await c.wait_events(1)
    assert c.deliveries[-1].version == 2


async def test_barrage_cap_sheds_only_capped_events(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    drafts = [Draft(ev(room, str(i)), capped=True) for i in range(5)] + [Draft(ev(room, "gift"))]
    res = await b.commit(room, drafts, barrage_cap=3)
    # A second boundary may fall inside the batch only in theory: one call is one instant.
    assert res.seqs == (1, 2, 3, None, None, 4)
    page = await b.history(room, 0)
    assert len(page.events) == 4


async def test_audience_and_close_code_travel_with_the_event(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    await b.commit(room, [Draft(ev(room, "k"), durable=False, audience="user:u9", close_code=4003)])
    await b.commit(room, [Draft(ev(room, "s"), durable=False, audience=AUDIENCE_STAFF)])
    events = await c.wait_events(2)
    assert (events[0].audience, events[0].close_code) == ("user:u9", 4003)
    assert events[1].audience == AUDIENCE_STAFF


async def test_presence_sums_live_nodes(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    assert (await a.report_presence({room: 3}, ttl_ms=5000))[room] == 3
    assert (await b.report_presence({room: 4}, ttl_ms=5000))[room] == 7
    assert (await a.report_presence({room: 1}, ttl_ms=5000))[room] == 5
    # b expires
    await b.report_presence({room: 4}, ttl_ms=1)
    await asyncio.sleep(0.05)
    assert (await a.report_presence({room: 1}, ttl_ms=5000))[room] == 1
    # a room left out of a report is 0 for that node
    await b.report_presence({room: 2}, ttl_ms=5000)
    assert (await a.report_presence({}, ttl_ms=5000)) == {}
    assert (await b.report_presence({room: 2}, ttl_ms=5000))[room] == 2


async def test_accumulate_flushes_at_most_once_per_interval(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    assert await a.accumulate(room, "likes", 5, 1000) == (5, 5)
    assert await b.accumulate(room, "likes", 2, 1000) == (7, None)
    assert await a.accumulate(room, "likes", 1, 1000) == (8, None)
    assert await a.accumulate(room, "likes", 0, 1000) == (8, None)
    await asyncio.sleep(0.06)
    assert await b.accumulate(room, "likes", 1, 50) == (9, 4)
    assert await b.accumulate(room, "likes", 0, 0) == (9, None)


async def test_gate_throttles_and_skips_unchanged_values(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    assert await b.gate(room, "online", 50, "3") is True
    assert await b.gate(room, "online", 50, "4") is False  # too soon
    await asyncio.sleep(0.06)
    assert await b.gate(room, "online", 50, "3") is False  # unchanged
    assert await b.gate(room, "online", 50, "4") is True


async def test_gates_are_room_wide_across_nodes(broker_factory):
    """The assistant's room answer rate (five gates a room, each passing once an
    interval) holds across nodes: a gate one node passed is closed to the other."""
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    passed = []
    for i in range(12):  # alternating nodes; each tries every slot, as the assistant does
        node = (a, b)[i % 2]
        took = False
        for slot in range(5):
            if await node.gate(room, f"assistant.answers:{slot}", 60_000, f"{i}"):
                took = True
                break
        passed.append(took)
    assert passed == [True] * 5 + [False] * 7
    assert await a.gate(room_id(), "assistant.answers:0", 60_000, "x") is True  # per room


async def test_delete_room_starts_a_new_epoch(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    first = await b.commit(room, [Draft(ev(room, "x"))], expect_version=0, doc=b"d")
    await b.delete_room(room)
    rec = await b.load(room)
    assert rec.doc is None and rec.seq == 0
    second = await b.commit(room, [Draft(ev(room, "y"))])
    assert second.seqs == (1,)
    assert second.epoch != first.epoch
    assert await b.rooms(app_of(room)) == []


async def test_tally_counts_one_entry_per_member(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    assert await a.tally(room, "poll:1", "u1", "0", 60_000) == TallyResult(TallyStatus.ADDED, {"0": 1})
    assert await b.tally(room, "poll:1", "u2", "1", 60_000) == TallyResult(
        TallyStatus.ADDED, {"0": 1, "1": 1}
    )
    assert await b.tally(room, "poll:1", "u1", "1", 60_000) == TallyResult(
        TallyStatus.EXISTS, {"0": 1, "1": 1}
    )
    assert await a.tally_counts(room, "poll:1") == {"0": 1, "1": 1}
    assert sorted(await a.tally_members(room, "poll:1")) == ["u1", "u2"]
    assert await a.tally_counts(room, "poll:2") == {}
    assert await a.tally_members(room, "poll:2") == []


async def test_tally_remove_takes_one_entry_back_until_closed(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    for user in ("u1", "u2", "u3"):
        await a.tally(room, "followers", user, "1", 60_000)
    assert await b.tally_remove(room, "followers", "u2") is True
    assert await a.tally_remove(room, "followers", "u2") is False  # gone already
    assert await a.tally_remove(room, "followers", "nobody") is False
    assert await a.tally_remove(room, "no-such-tally", "u1") is False
    assert sorted(await b.tally_members(room, "followers")) == ["u1", "u3"]
    assert await b.tally_counts(room, "followers") == {"1": 2}
    # Back again: a new entry.
    assert (await b.tally(room, "followers", "u2", "1", 60_000)).status is TallyStatus.ADDED
    for user in ("u1", "u2", "u3"):
        assert await a.tally_remove(room, "followers", user) is True
    assert await a.tally_counts(room, "followers") == {}
    assert (await a.tally(room, "followers", "u4", "1", 60_000)).status is TallyStatus.ADDED
    # A closed tally keeps its entries (a drawn lottery's entrants).
    await a.tally_close(room, "followers")
    assert await b.tally_remove(room, "followers", "u4") is False
    assert await b.tally_members(room, "followers") == ["u4"]


async def test_tally_is_atomic_under_concurrency(broker_factory):
    nodes = [broker_factory(f"n{i}") for i in range(3)]
    room = room_id()
    for n in nodes:
        await started(n)
    results = await asyncio.gather(
        *(nodes[i % 3].tally(room, "lottery:x", f"u{i % 50}", "n", 60_000) for i in range(300))
    )
    assert sum(r.status == TallyStatus.ADDED for r in results) == 50
    assert await nodes[0].tally_counts(room, "lottery:x") == {"n": 50}


async def test_tally_expires(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    await b.tally(room, "poll:t", "u1", "0", 50)
    await asyncio.sleep(0.1)
    assert await b.tally_counts(room, "poll:t") == {}
    assert await b.tally(room, "poll:t", "u1", "0", 50) == TallyResult(TallyStatus.ADDED, {"0": 1})


async def test_tally_close_freezes_entries(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    for i in range(5):
        await a.tally(room, "lottery:1", f"u{i}", "1", 60_000)
    members = await b.tally_close(room, "lottery:1")
    assert sorted(members) == [f"u{i}" for i in range(5)]
    late = await a.tally(room, "lottery:1", "late", "1", 60_000)
    assert late == TallyResult(TallyStatus.CLOSED, {"1": 5})
    assert sorted(await a.tally_members(room, "lottery:1")) == sorted(members)
    assert await a.tally_close(room, "never-opened") == []
