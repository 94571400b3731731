"""Two server processes on one Redis Cluster serve the same room (issue 3)."""

from __future__ import annotations

import asyncio
import uuid

from roomserver.client import RoomClient, RoomError
from tests.server_procs import token


async def send(client: RoomClient, room: str, text: str) -> dict:
    """barrage.send, waiting out the per-user rate limit as a real client would."""
    while True:
        try:
            return await client.send_barrage(room, text)
        except RoomError as err:
            if err.code != "rate_limited":
                raise
            await asyncio.sleep((err.retry_after_ms or 100) / 1000)


async def collect(client: RoomClient, room: str, n: int, timeout: float = 10.0) -> list[dict]:
    got: list[dict] = []
    done = asyncio.Event()

    def on(ev: dict) -> None:
        if ev.get("room") == room and "seq" in ev and ev["ev"] == "barrage":
            got.append(ev)
            if len(got) >= n:
                done.set()

    off = client.on("*", on)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        off()
    return got


async def test_viewer_on_a_sees_events_sent_through_b_with_the_same_seq(two_servers):
    a, b = two_servers
    room = "r-" + uuid.uuid4().hex[:8]
    async with RoomClient(a.url, token("viewer")) as va, RoomClient(b.url, token("sender")) as sb:
        snap_a = (await va.join(room))["room"]
        snap_b = (await sb.join(room))["room"]
        assert snap_a["epoch"] == snap_b["epoch"]
        waiting = asyncio.ensure_future(collect(va, room, 20))
        own = asyncio.ensure_future(collect(sb, room, 20))
        replies = [await send(sb, room, f"m{i}") for i in range(20)]
        seen_a, seen_b = await waiting, await own
        sent = [r["seq"] for r in replies]
        assert sent == sorted(sent) and len(set(sent)) == 20
        assert [e["seq"] for e in seen_a] == sent
        assert [e["seq"] for e in seen_b] == sent
        assert [e["data"]["text"] for e in seen_a] == [f"m{i}" for i in range(20)]


async def test_reconnect_to_the_other_process_resumes_without_gap_or_duplicate(two_servers):
    a, b = two_servers
    room = "r-" + uuid.uuid4().hex[:8]
    async with RoomClient(b.url, token("sender")) as sender:
        await sender.join(room)
        viewer = RoomClient(a.url, token("viewer"), reconnect=False)
        await viewer.connect()
        snap = (await viewer.join(room))["room"]
        first = asyncio.ensure_future(collect(viewer, room, 5))
        for i in range(5):
            await send(sender, room, f"before{i}")
        before = await first
        last_seq, epoch = before[-1]["seq"], snap["epoch"]
        await viewer.close()
        missed = [(await send(sender, room, f"missed{i}"))["seq"] for i in range(7)]
        # The same user reconnects to the other process and resumes.
        async with RoomClient(b.url, token("viewer"), reconnect=False) as again:
            replay = asyncio.ensure_future(collect(again, room, 7 + 3))
            await asyncio.sleep(0)
            reply = await again.resume(room, last_seq, epoch)
            assert reply == {"replayed": 7}
            later = [(await send(sender, room, f"after{i}"))["seq"] for i in range(3)]
            events = await replay
            seqs = [e["seq"] for e in events]
            assert seqs == missed + later
            assert seqs == list(range(last_seq + 1, last_seq + 11))
