"""Fan-out: shared frames, ordering, gap repair, sync, shedding, slow consumers.

Sockets are stood in for by a transport that records what is written; the
WebSocket framing itself is checked by decoding the frames."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import msgspec
import pytest

from roomserver.bus.base import BusEvent, Delivery
from roomserver.fanout import Connection, Fanout, cut, ws_text_frame
from roomserver.protocol import encode_event, with_seq


class RecordingTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.frames: list[bytes] = []
        self.buffered = buffered

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    aborted = False

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default=None):
        return default

    def messages(self) -> list[dict]:
        out = []
        for f in self.frames:
            assert f[0] == 0x81
            n = f[1]
            off = 2
            if n == 126:
                (n,) = struct.unpack("!H", f[2:4])
                off = 4
            elif n == 127:
                (n,) = struct.unpack("!Q", f[2:10])
                off = 10
            assert len(f) == off + n
            out.extend(msgspec.json.decode(f[off:]))
        return out


def make_conn(i: int, user: str = "", staff: bool = False, buffered: int = 0):
    closed: list[int] = []

    async def closer(code: int, reason: str) -> None:
        closed.append(code)

    t = RecordingTransport(buffered)
    conn = Connection(i, user or f"u{i}", staff, t, closer)  # type: ignore[arg-type]
    return conn, t, closed


def durable(room: str, seq: int, text: str = "x") -> BusEvent:
    return BusEvent(seq, with_seq(encode_event("barrage", room, {"text": text}, ts=1), seq))


def ephemeral(room: str, ev: str, n: int, **kw) -> BusEvent:
    return BusEvent(0, encode_event(ev, room, {"n": n}, ts=1), **kw)


def delivery(room: str, *events: BusEvent, epoch: str = "e1") -> Delivery:
    return Delivery(room, epoch, 1, tuple(events))


@pytest.fixture
def fanout():
    # Tests using it are async: closes spawn a task, which needs the running loop (a
    # sync test met no loop once an earlier test had left none set).
    return Fanout(flush_ms=10)


def test_ws_frame_lengths():
    for n in (0, 125, 126, 65535, 65536):
        f = ws_text_frame(b"a" * n)
        assert f[0] == 0x81 and f.endswith(b"a" * n)


async def test_one_shared_frame_for_all_members(fanout):
    conns = [make_conn(i) for i in range(3)]
    fanout.set_ready("r", "e1", 0)
    for c, _, _ in conns:
        fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 1), durable("r", 2)))
    fanout.flush()
    frames = [t.frames for _, t, _ in conns]
    assert all(len(f) == 1 for f in frames)
    assert frames[0][0] is frames[1][0] is frames[2][0]  # the very same bytes object
    assert [m["seq"] for m in conns[0][1].messages()] == [1, 2]


async def test_personal_messages_come_first_in_the_same_frame(fanout):
    (c1, t1, _), (c2, t2, _) = make_conn(1), make_conn(2)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c1, "r")
    fanout.join(c2, "r")
    fanout.send_personal(c1, b'{"re":1,"ok":true,"data":{}}')
    fanout.ingest(delivery("r", durable("r", 1)))
    fanout.flush()
    assert len(t1.frames) == 1
    assert [m.get("re", m.get("seq")) for m in t1.messages()] == [1, 1]
    assert [m["seq"] for m in t2.messages()] == [1]


async def test_duplicates_dropped_and_deliveries_held_until_ready(fanout):
    c, t, _ = make_conn(1)
    fanout.channel("r")
    fanout.ingest(delivery("r", durable("r", 5)))  # before ready: held
    fanout.set_ready("r", "e1", 4)
    fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 5), durable("r", 6)))
    fanout.flush()
    assert [m["seq"] for m in t.messages()] == [5, 6]


async def test_gap_is_repaired_from_history_before_later_events():
    history = {2: durable("r", 2), 3: durable("r", 3)}
    calls = []

    async def reader(room: str, since: int):
        calls.append(since)
        await asyncio.sleep(0.01)
        return [history[s] for s in sorted(history) if s > since]

    fanout = Fanout(flush_ms=10, history_reader=reader)
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 1)))
    fanout.ingest(delivery("r", durable("r", 4)))  # 2 and 3 were lost
    fanout.ingest(delivery("r", durable("r", 5)))
    await asyncio.sleep(0.05)
    fanout.flush()
    assert calls == [1]
    assert [m["seq"] for m in t.messages()] == [1, 2, 3, 4, 5]


async def test_ephemeral_events_coalesce_by_key(fanout):
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c, "r")
    fanout.ingest(delivery("r", ephemeral("r", "likes", 1, coalesce="likes"), durable("r", 1)))
    fanout.ingest(delivery("r", ephemeral("r", "likes", 2, coalesce="likes"), ephemeral("r", "x", 3)))
    fanout.flush()
    msgs = t.messages()
    assert [(m["ev"], m["data"].get("n")) for m in msgs] == [("barrage", None), ("likes", 2), ("x", 3)]


async def test_targeted_events_reach_only_their_audience_and_close(fanout):
    (a, ta, _), (b, tb, _), (s, ts, _) = (
        make_conn(1, "alice"),
        make_conn(2, "bob"),
        make_conn(3, "mod", staff=True),
    )
    fanout.set_ready("r", "e1", 0)
    for c in (a, b, s):
        fanout.join(c, "r")
    fanout.ingest(
        delivery(
            "r",
            ephemeral("r", "kicked", 1, audience="user:alice", close_code=4003),
            ephemeral("r", "cohost.requested", 2, audience="staff"),
        )
    )
    fanout.flush()
    assert [m["ev"] for m in ta.messages()] == ["kicked"]
    assert tb.messages() == []
    assert [m["ev"] for m in ts.messages()] == ["cohost.requested"]
    assert a.closed


async def test_sync_merges_history_and_held_events_without_duplicates(fanout):
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 3)
    fanout.begin_sync(c, "r")
    fanout.ingest(delivery("r", durable("r", 4), ephemeral("r", "online", 1)))
    fanout.ingest(delivery("r", durable("r", 5)))
    fanout.flush()
    assert t.frames == []  # held while syncing
    history = [durable("r", 2), durable("r", 3), durable("r", 4)]
    n = fanout.end_sync(
        c, "r", history, lambda n: msgspec.json.encode({"re": 1, "ok": True, "data": {"replayed": n}})
    )
    fanout.flush()
    msgs = t.messages()
    assert n == 4
    assert msgs[0]["data"] == {"replayed": 4}
    assert [m.get("seq") for m in msgs[1:]] == [2, 3, 4, None, 5]


async def test_soft_limit_sheds_ephemeral_and_hard_limit_closes(fanout):
    fanout.buffer_soft, fanout.buffer_limit = 100, 1000
    (ok, tok, _), (soft, tsoft, _), (slow, tslow, _) = (
        make_conn(1),
        make_conn(2, buffered=500),
        make_conn(3, buffered=5000),
    )
    fanout.set_ready("r", "e1", 0)
    for c in (ok, soft, slow):
        fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 1), ephemeral("r", "online", 1)))
    fanout.flush()
    assert [m["ev"] for m in tok.messages()] == ["barrage", "online"]
    assert [m["ev"] for m in tsoft.messages()] == ["barrage"]
    assert tslow.frames == [] and slow.closed
    assert fanout.stats.slow_closes == 1 and fanout.stats.shed_ephemeral == 1


def _slow_socket(fanout: Fanout, closer) -> tuple[Connection, RecordingTransport]:
    """A member past the buffer limit, cut loose by one flush (4008)."""
    fanout.buffer_soft, fanout.buffer_limit = 100, 1000
    t = RecordingTransport(buffered=5000)
    conn = Connection(1, "u1", False, t, closer)  # type: ignore[arg-type]
    fanout.set_ready("r", "e1", 0)
    fanout.join(conn, "r")
    fanout.ingest(delivery("r", durable("r", 1)))
    fanout.flush()
    assert conn.closed and fanout.stats.slow_closes == 1
    return conn, t


def test_a_close_the_peer_never_answers_is_cut_at_close_timeout():
    # On a loop of its own whose clock is moved by hand: the timer is checked
    # without waiting for it, and no other test's timers see the jump.
    loop = asyncio.new_event_loop()
    real_time, offset = loop.time, [0.0]
    loop.time = lambda: real_time() + offset[0]  # type: ignore[method-assign]
    never = asyncio.Event()
    cancelled: list[int] = []

    async def closer(code: int, reason: str) -> None:
        try:
            await never.wait()  # a peer that does not read never answers the close
        except asyncio.CancelledError:
            cancelled.append(code)
            raise

    async def scenario() -> None:
        fanout = Fanout(flush_ms=10, close_timeout=2.0)
        _, t = _slow_socket(fanout, closer)
        (task,) = fanout.background_tasks()
        await asyncio.sleep(0)  # the close has started: its deadline is now + 2 s
        offset[0] = 1.9
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done() and not t.aborted and not cancelled
        offset[0] = 2.1
        await asyncio.wait_for(task, 10)
        assert t.aborted and cancelled == [4008]
        assert fanout.stats.cut_connections == 1

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


async def test_a_close_the_peer_answers_in_time_is_not_cut():
    answered = asyncio.Event()
    codes: list[int] = []

    async def closer(code: int, reason: str) -> None:
        codes.append(code)
        await answered.wait()

    fanout = Fanout(flush_ms=10, close_timeout=60.0)
    _, t = _slow_socket(fanout, closer)
    (task,) = fanout.background_tasks()
    await asyncio.sleep(0)
    answered.set()
    await asyncio.wait_for(task, 10)
    assert codes == [4008] and not t.aborted and fanout.stats.cut_connections == 0


async def test_cut_resets_the_tcp_connection_at_once():
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        theirs = await accepted
        theirs.write(b"x" * 100_000)  # unsent bytes are dropped, not delivered first
        cut(theirs.transport)
        with pytest.raises(ConnectionResetError):
            while await asyncio.wait_for(reader.read(1 << 16), 10):
                pass
        assert theirs.transport.is_closing() and theirs.transport.get_write_buffer_size() == 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_epoch_change_resets_and_notifies():
    seen = []
    fanout = Fanout(flush_ms=10, on_epoch_change=lambda ch: seen.append(ch.room))
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 10)
    fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 1), epoch="e2"))
    fanout.flush()
    assert seen == ["r"]
    assert c.closed and t.frames == []  # its seq means nothing now: it resumes
    late, t_late, _ = make_conn(2)
    fanout.join(late, "r")
    fanout.ingest(delivery("r", durable("r", 2), epoch="e2"))
    fanout.flush()
    assert [m["seq"] for m in t_late.messages()] == [2]


async def test_no_batching_writes_one_frame_per_event():
    fanout = Fanout(flush_ms=10, batching=False)
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c, "r")
    fanout.ingest(delivery("r", durable("r", 1), durable("r", 2)))
    assert len(t.frames) == 2


async def test_leave_drops_empty_channels(fanout):
    c, _, _ = make_conn(1)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c, "r")
    assert fanout.local_counts() == {"r": 1}
    assert fanout.remove_connection(c) == ["r"]
    assert fanout.channels == {}


async def test_head_only_delivery_repairs_a_quiet_room():
    """After a re-subscription the bus announces the history head; a room that
    missed events while unsubscribed reads them even if nothing else happens."""
    history = {1: durable("r", 1), 2: durable("r", 2)}

    async def reader(room: str, since: int):
        return [history[s] for s in sorted(history) if s > since]

    fanout = Fanout(flush_ms=10, history_reader=reader)
    c, t, _ = make_conn(1)
    fanout.set_ready("r", "e1", 0)
    fanout.join(c, "r")
    fanout.ingest(Delivery("r", "e1", 1, (), head=2))
    await asyncio.sleep(0.02)
    fanout.flush()
    assert [m["seq"] for m in t.messages()] == [1, 2]
    fanout.ingest(Delivery("r", "e1", 1, (), head=2))  # nothing new: no repair
    assert not fanout.channels["r"].repairing


@contextlib.asynccontextmanager
async def running(fanout: Fanout):
    """The fan-out's timers run inside; stopped (and flushed) after."""
    fanout.start()
    try:
        yield fanout
    finally:
        await fanout.stop()


async def test_replies_keep_flush_ms_while_room_flushes_stretch_with_the_node_size():
    # 200 sockets and a 1,000 frames/s budget: rooms flush every 0.2 s, replies every 10 ms.
    fanout = Fanout(flush_ms=10, frame_budget=1_000)
    conns = _room_of(fanout, 200)
    assert fanout.interval() == pytest.approx(0.2)
    async with running(fanout):
        loop = asyncio.get_running_loop()
        (c1, t1, _), (_, t2, _) = conns[0], conns[1]
        fanout.ingest(delivery("r", durable("r", 1)))
        fanout.flush()  # a durable flush just happened: the next one is 0.2 s away
        t1.frames.clear()
        t2.frames.clear()
        t0 = loop.time()
        fanout.ingest(delivery("r", durable("r", 2)))
        fanout.send_personal(c1, b'{"re":1,"ok":true,"data":{}}')
        while not t1.frames:
            await asyncio.sleep(0.002)
        reply_after = loop.time() - t0
        assert [m.get("re") for m in t1.messages()] == [1]  # the reply alone
        assert not t2.frames
        while not t2.frames:
            await asyncio.sleep(0.005)
        event_after = loop.time() - t0
        assert reply_after < 0.1 <= 0.18 < event_after
        # The reply came first on the wire, the room event after it, once.
        assert [m.get("re", m.get("seq")) for m in t1.messages()] == [1, 2]
        assert [m["seq"] for m in t2.messages()] == [2]


async def test_a_reply_and_a_room_event_due_together_share_one_frame():
    fanout = Fanout(flush_ms=20)
    (c, t, _), (c2, t2, _) = make_conn(1), make_conn(2)
    fanout.set_ready("r", "e1", 0)
    for conn in (c, c2):
        fanout.add_connection(conn)
        fanout.join(conn, "r")
    async with running(fanout):
        fanout.ingest(delivery("r", durable("r", 1)))
        fanout.send_personal(c, b'{"re":7,"ok":true,"data":{}}')
        while not (t.frames and t2.frames):
            await asyncio.sleep(0.005)
        assert len(t.frames) == 1
        assert [m.get("re", m.get("seq")) for m in t.messages()] == [7, 1]


async def test_in_a_stretched_room_chatter_cannot_hold_a_durable_event_back():
    # 200 sockets, 1,000 frames/s: durable flushes 0.2 s apart, chatter-only 0.4 s after any flush.
    fanout = Fanout(flush_ms=10, frame_budget=1_000)
    conns = _room_of(fanout, 200)
    _, t, _ = conns[0]
    async with running(fanout):
        loop = asyncio.get_running_loop()
        fanout.ingest(delivery("r", ephemeral("r", "online", 1, coalesce="online")))
        fanout.flush()  # chatter just went out
        t.frames.clear()
        t0 = loop.time()
        fanout.ingest(delivery("r", ephemeral("r", "online", 2, coalesce="online")))
        await asyncio.sleep(0.1)
        assert not t.frames  # chatter alone waits
        fanout.ingest(delivery("r", durable("r", 1)))  # no durable flush for a while: goes now
        while not t.frames:
            await asyncio.sleep(0.002)
        assert loop.time() - t0 < 0.18
        assert [m.get("seq", m["ev"]) for m in t.messages()] == ["online", 1]
        t.frames.clear()
        t1 = loop.time()
        fanout.ingest(delivery("r", ephemeral("r", "online", 3, coalesce="online")))
        while not t.frames:
            await asyncio.sleep(0.005)
        assert 0.35 < loop.time() - t1 < 0.6  # chatter-only: twice the interval since that flush


def _room_of(fanout: Fanout, n: int):
    conns = [make_conn(i) for i in range(n)]
    fanout.set_ready("r", "e1", 0)
    for c, _, _ in conns:
        fanout.add_connection(c)
        fanout.join(c, "r")
    return conns


def _sliced_room(slice_size: int, members: int):
    fanout = Fanout(flush_ms=10, slice_size=slice_size)
    return fanout, _room_of(fanout, members)


async def test_a_big_room_is_written_a_slice_per_loop_turn():
    fanout, conns = _sliced_room(3, 10)
    async with running(fanout):
        fanout.ingest(delivery("r", durable("r", 1)))
        fanout.flush()
        assert [len(t.frames) for _, t, _ in conns] == [1, 1, 1] + [0] * 7
        # Between slices: one member leaves, one syncs (resume), a new one joins.
        left, _, _ = conns[4]
        fanout.leave(left, "r")
        syncing, _, _ = conns[8]
        fanout.begin_sync(syncing, "r")
        late, t_late, _ = make_conn(99)
        fanout.add_connection(late)
        fanout.join(late, "r")
        await asyncio.sleep(0)
        assert [len(t.frames) for _, t, _ in conns] == [1] * 3 + [1, 0, 1] + [0] * 4
        for _ in range(5):
            await asyncio.sleep(0)
        assert [len(t.frames) for _, t, _ in conns] == [1] * 4 + [0] + [1] * 3 + [0, 1]
        assert fanout.channels["r"].members[syncing].held == [durable("r", 1)]  # held, not lost
        assert not t_late.frames  # joined after the flush: starts after its seq


async def test_a_big_room_s_next_flush_finishes_the_previous_one_first():
    fanout, conns = _sliced_room(2, 7)
    async with running(fanout):
        fanout.ingest(delivery("r", durable("r", 1)))
        fanout.flush()
        fanout.ingest(delivery("r", durable("r", 2)))
        fanout.flush()  # before any slice of seq 1 ran past the first
    for _, t, _ in conns:
        assert [m["seq"] for m in t.messages()] == [1, 2]
