"""The join snapshot's ``recent`` (PROTOCOL §3 room.join): a viewer who joins after the chat
started sees the room's last ≤ 20 barrage events, the very events members were sent."""

from __future__ import annotations

from roomserver.fanout import RECENT_BARRAGE
from tests.server_fixtures import Recorder, Server


async def _chat(server: Server, room: str, n: int) -> list[dict]:
    """``n`` barrage messages with other durable events in between; the events a member got."""
    host = await server.client("h1", "host")
    await host.join(room)
    watcher = await server.client("w0")
    await watcher.join(room)
    rec = Recorder(watcher)
    # Several senders: one user's barrage burst is 10 (RATE_LIMITS).
    senders = [host]
    for k in range(n // 8):
        senders.append(await server.client(f"s{k}"))
        await senders[-1].join(room)
    for i in range(n):
        await senders[i % len(senders)].send_barrage(room, f"line {i}")
        if i % 5 == 0:  # durable non-barrage events are mixed in the history
            await host.announce(room, f"note {i}")
    return await rec.wait("barrage", count=n)


async def test_late_joiner_gets_the_last_barrage_events(server: Server, room: str) -> None:
    sent = await _chat(server, room, RECENT_BARRAGE + 7)
    late = await server.client("late")
    snap = (await late.join(room))["room"]
    assert snap["recent"] == sent[-RECENT_BARRAGE:]
    assert all(ev["seq"] <= snap["seq"] for ev in snap["recent"])


async def test_recent_is_read_from_history_by_a_node_that_was_not_subscribed(
    server: Server, room: str
) -> None:
    sent = await _chat(server, room, 8)
    for c in server.clients:
        await c.leave(room)
    assert room not in server.node.fanout.channels  # the next join subscribes afresh
    late = await server.client("late")
    snap = (await late.join(room))["room"]
    assert snap["recent"] == sent


async def test_empty_room_has_no_recent_chat(server: Server, room: str) -> None:
    first = await server.client("first")
    snap = (await first.join(room))["room"]
    assert snap["recent"] == []
