"""The pure fan-out stream: deliveries and clock values in, frames and actions out.

No event loop, no sockets, no sleeps: a socket is a ``Buffer`` whose buffered
byte count the test sets, and every assertion is on the returned actions."""

from __future__ import annotations

from typing import Any

import msgspec

from roomserver.bus.base import BusEvent, Delivery
from roomserver.core.fanout import (
    RECENT_BARRAGE,
    Action,
    Broadcast,
    Close,
    Connection,
    EpochChanged,
    FanoutStream,
    Frame,
    ReadHistory,
)
from roomserver.protocol import CLOSE_SLOW_CONSUMER, encode_event, with_seq


class Buffer:
    """A transport as the stream sees it: only its buffered byte count."""

    def __init__(self, buffered: int = 0) -> None:
        self.buffered = buffered

    def write(self, data: bytes) -> None:
        raise AssertionError("the stream never writes")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        raise AssertionError("the stream never aborts")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _never(code: int, reason: str) -> None:
    raise AssertionError("the stream never closes a socket itself")


def conn(i: int, user: str = "", staff: bool = False, buffered: int = 0) -> Connection:
    return Connection(i, user or f"u{i}", staff, Buffer(buffered), _never)


def durable(seq: int, text: str = "x", ev: str = "barrage") -> BusEvent:
    return BusEvent(seq, with_seq(encode_event(ev, "r", {"text": text}, ts=1), seq))


def ephemeral(ev: str, n: int, **kw: Any) -> BusEvent:
    return BusEvent(0, encode_event(ev, "r", {"n": n}, ts=1), **kw)


def delivery(*events: BusEvent, epoch: str = "e1", head: int = 0) -> Delivery:
    return Delivery("r", epoch, 1, tuple(events), head=head)


def decode(frame: bytes) -> list[dict[str, Any]]:
    n, off = frame[1], 2
    if n == 126:
        off = 4
    elif n == 127:
        off = 10
    return msgspec.json.decode(frame[off:])  # type: ignore[no-any-return]


def seqs(frame: bytes) -> list[Any]:
    return [m.get("seq", m.get("re", m.get("ev"))) for m in decode(frame)]


def frames_to(actions: list[Action], c: Connection) -> list[bytes]:
    out = []
    for a in actions:
        if (isinstance(a, Broadcast) and c in a.conns) or (isinstance(a, Frame) and a.conn is c):
            out.append(a.data)
    return out


def room(stream: FanoutStream, n: int, seq: int = 0) -> list[Connection]:
    stream.set_ready("r", "e1", seq)
    conns = [conn(i) for i in range(n)]
    for c in conns:
        stream.add_connection(c)
        stream.join(c, "r")
    return conns


def test_one_broadcast_action_carries_the_shared_frame_for_every_member() -> None:
    s = FanoutStream(flush_ms=10)
    conns = room(s, 3)
    assert s.ingest(delivery(durable(1), durable(2))) == []  # batched: nothing until the flush
    (b,) = s.flush(1.0)
    assert isinstance(b, Broadcast) and b.conns == conns and b.messages == 2
    assert seqs(b.data) == [1, 2]


def test_ordering_dedupe_and_a_gap_read_from_history_before_later_events() -> None:
    s = FanoutStream(flush_ms=10)
    (c,) = room(s, 1)
    s.ingest(delivery(durable(1)))
    assert s.ingest(delivery(durable(1))) == []  # duplicate
    (read,) = s.ingest(delivery(durable(4), durable(5)))  # 2 and 3 were lost
    assert isinstance(read, ReadHistory) and read.after == 1
    assert s.ingest(delivery(durable(6))) == []  # held behind the gap
    assert s.history_read(read.channel, [durable(2), durable(3)]) == []  # caught up: released
    assert [seqs(f) for f in frames_to(s.flush(1.0), c)] == [[1, 2, 3, 4, 5, 6]]


def test_a_repair_reads_on_until_it_meets_the_held_events() -> None:
    s = FanoutStream(flush_ms=10)
    (c,) = room(s, 1)
    (read,) = s.ingest(delivery(durable(5)))
    (again,) = s.history_read(read.channel, [durable(1), durable(2)])  # a short page
    assert isinstance(again, ReadHistory) and again.after == 2
    assert s.history_read(again.channel, [durable(3), durable(4)]) == []
    assert [seqs(f) for f in frames_to(s.flush(1.0), c)] == [[1, 2, 3, 4, 5]]


def test_a_failed_repair_closes_the_members_to_resume() -> None:
    s = FanoutStream(flush_ms=10)
    a, b = room(s, 2)
    (read,) = s.ingest(delivery(durable(3)))
    closes = s.history_failed(read.channel)
    assert [(x.conn, x.code) for x in closes if isinstance(x, Close)] == [(a, 4008), (b, 4008)]
    assert a.closed and b.closed
    assert isinstance(closes[-1], ReadHistory)  # the held delivery still starts after a gap


def test_a_head_announcement_repairs_a_quiet_room_once() -> None:
    s = FanoutStream(flush_ms=10)
    room(s, 1, seq=3)
    assert s.ingest(delivery(head=3)) == []  # nothing missed
    (read,) = s.ingest(delivery(head=5))
    assert isinstance(read, ReadHistory) and read.after == 3


def test_deliveries_before_ready_are_held_and_a_joiner_starts_at_the_flushed_seq() -> None:
    s = FanoutStream(flush_ms=10)
    s.channel("r")
    s.ingest(delivery(durable(5)))
    s.set_ready("r", "e1", 4)
    c = conn(1)
    assert s.join(c, "r") == 4
    s.flush(1.0)
    late = conn(2)
    assert s.join(late, "r") == 5


def test_resume_holds_then_merges_history_and_held_without_duplicates() -> None:
    s = FanoutStream(flush_ms=10)
    s.set_ready("r", "e1", 3)
    c = conn(1)
    s.begin_sync(c, "r")
    s.ingest(delivery(durable(4), ephemeral("online", 1)))
    assert frames_to(s.flush(1.0), c) == []  # held while syncing
    n = s.end_sync(c, "r", [durable(2), durable(3), durable(4)], lambda n: b'{"re":9,"ok":true}')
    assert n == 3
    (f,) = frames_to(s.flush(2.0), c)
    assert seqs(f) == [9, 2, 3, 4, "online"]


def test_cadence_replies_every_flush_ms_rooms_stretched_by_the_frame_budget() -> None:
    # 200 sockets, 1,000 frames/s: a room flushes at most every 0.2 s, replies every 10 ms.
    s = FanoutStream(flush_ms=10, frame_budget=1_000)
    conns = room(s, 200)
    assert s.interval() == 0.2
    s.ingest(delivery(durable(1)))
    s.flush(10.0)
    assert s.due() is None
    s.ingest(delivery(durable(2)))
    assert s.due() == 10.2
    s.send_personal(conns[0], b'{"re":1,"ok":true}')
    assert s.due() == 10.01
    out = s.tick(10.01)  # the reply alone
    assert [seqs(f) for f in frames_to(out, conns[0])] == [[1]] and not frames_to(out, conns[1])
    assert s.due() == 10.2
    out = s.tick(10.2)
    assert [seqs(f) for f in frames_to(out, conns[1])] == [[2]]


def test_chatter_alone_waits_two_intervals_a_durable_event_one() -> None:
    s = FanoutStream(flush_ms=10, frame_budget=1_000)
    room(s, 200)
    s.ingest(delivery(ephemeral("online", 1, coalesce="online")))
    s.flush(10.0)
    s.ingest(delivery(ephemeral("online", 2, coalesce="online")))
    assert s.due() == 10.4  # chatter: twice the interval since any flush
    s.ingest(delivery(durable(1)))
    assert s.due() == 10.01  # no durable flush for a while: one flush_ms after the last flush


def test_a_reply_due_just_before_the_room_goes_in_the_room_s_frame() -> None:
    s = FanoutStream(flush_ms=20)
    (c, _) = room(s, 2)
    s.ingest(delivery(durable(1)))
    s.send_personal(c, b'{"re":7,"ok":true}')
    out = s.tick(0.019)  # the room is due at 0.02: within the slack
    assert [seqs(f) for f in frames_to(out, c)] == [[7, 1]]


def test_soft_limit_sheds_ephemeral_hard_limit_closes() -> None:
    s = FanoutStream(flush_ms=10, buffer_soft=100, buffer_limit=1000)
    s.set_ready("r", "e1", 0)
    ok, soft, slow = conn(1), conn(2, buffered=500), conn(3, buffered=5000)
    for c in (ok, soft, slow):
        s.join(c, "r")
    s.ingest(delivery(durable(1), ephemeral("online", 1)))
    out = s.flush(1.0)
    assert [seqs(f) for f in frames_to(out, ok)] == [[1, "online"]]
    assert [seqs(f) for f in frames_to(out, soft)] == [[1]]
    assert frames_to(out, slow) == []
    assert [(a.conn, a.code) for a in out if isinstance(a, Close)] == [(slow, CLOSE_SLOW_CONSUMER)]
    assert s.stats.slow_closes == 1 and s.stats.shed_ephemeral == 1


def test_a_kicked_member_gets_its_event_then_the_close() -> None:
    s = FanoutStream(flush_ms=10)
    s.set_ready("r", "e1", 0)
    a, b = conn(1, "alice"), conn(2, "bob")
    for c in (a, b):
        s.join(c, "r")
    s.ingest(delivery(ephemeral("kicked", 1, audience="user:alice", close_code=4003)))
    out = s.flush(1.0)
    kinds = [(type(x).__name__, getattr(x, "conn", None)) for x in out]
    assert kinds == [("Frame", a), ("Close", a)]
    assert frames_to(out, b) == []


def test_an_epoch_change_closes_the_members_and_starts_over() -> None:
    s = FanoutStream(flush_ms=10)
    (c,) = room(s, 1, seq=10)
    out = s.ingest(delivery(durable(1), epoch="e2"))
    assert isinstance(out[0], EpochChanged) and (out[0].old, out[0].new) == ("e1", "e2")
    assert isinstance(out[1], Close) and out[1].conn is c and c.closed
    assert frames_to(s.flush(1.0), c) == []
    assert s.channels["r"].flushed_seq == 1


def test_a_big_room_is_planned_a_slice_at_a_time() -> None:
    s = FanoutStream(flush_ms=10, slice_size=3)
    s.slicing = True
    conns = room(s, 7)
    s.ingest(delivery(durable(1)))
    (first,) = s.flush(1.0)
    assert isinstance(first, Broadcast) and first.conns == conns[:3] and s.writing
    s.leave(conns[3], "r")  # between slices: left, so skipped
    (second,) = s.continue_writes()
    assert isinstance(second, Broadcast) and second.conns == conns[4:6]
    s.ingest(delivery(durable(2)))
    out = s.flush(2.0)  # the next flush finishes the previous one first
    assert [seqs(f) for f in frames_to(out, conns[6])] == [[1]]
    assert [seqs(f) for f in frames_to(out, conns[0])] == [[2]]
    assert out.index(next(a for a in out if conns[6] in getattr(a, "conns", ()))) == 0
    assert s.writing  # seq 2 to the 6 members is sliced in turn


def test_recent_keeps_the_last_barrage_bodies_seeded_from_history() -> None:
    s = FanoutStream(flush_ms=10)
    history = [durable(i, ev="barrage" if i % 2 else "pinned") for i in range(1, 51)]
    s.set_ready("r", "e1", 50, history)
    recent = s.channels["r"].recent
    assert len(recent) == RECENT_BARRAGE and recent[-1] == durable(49).body
    s.join(conn(1), "r")
    s.ingest(delivery(durable(51)))
    assert recent[-1] != durable(51).body  # only what was flushed
    s.flush(1.0)
    assert recent[-1] == durable(51).body


def test_no_batching_plans_one_frame_per_event_at_once() -> None:
    s = FanoutStream(flush_ms=10, batching=False)
    (c,) = room(s, 1)
    out = s.ingest(delivery(durable(1), durable(2)))
    assert [seqs(f) for f in frames_to(out, c)] == [[1], [2]]
