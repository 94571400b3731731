"""Polls and announcements on the Redis Cluster backend, across two server processes:
one vote per user however many processes, results and the close once, same seq everywhere."""

from __future__ import annotations

import asyncio
import time
import uuid

from roomserver.client import RoomClient, RoomError
from tests.server_procs import token


async def test_poll_votes_count_once_across_processes_and_close_once(two_servers):
    a, b = two_servers
    room = "r-" + uuid.uuid4().hex[:8]
    host = RoomClient(a.url, token("host", "host"))
    viewers = [RoomClient((a, b)[i % 2].url, token(f"v{i}")) for i in range(6)]
    closed: list[dict] = []
    announced: list[dict] = []
    for c in (host, *viewers):
        await c.connect()
        await c.join(room)
    viewers[0].on("poll.closed", closed.append)
    viewers[1].on("poll.closed", closed.append)
    viewers[1].on("room.announcement", announced.append)
    try:
        created = await host.request(
            "poll.create", room, question="Next?", options=["a", "b", "c"], duration_ms=5000
        )
        poll_id = created["poll"]["id"]
        await asyncio.gather(
            *(v.request("poll.vote", room, poll=poll_id, option=i % 3) for i, v in enumerate(viewers))
        )
        # The same user voting again, through the other process: conflict, nothing counted.
        again = RoomClient(b.url, token("v0"))
        await again.connect()
        await again.join(room)
        try:
            await again.request("poll.vote", room, poll=poll_id, option=2)
            raise AssertionError("a second vote was accepted")
        except RoomError as err:
            assert err.code == "conflict"
        finally:
            await again.close()
        countdown_to = int(time.time() * 1000) + 86_400_000
        await host.request("room.announce", room, text="Sale at 8", countdown_to=countdown_to)
        deadline = asyncio.get_running_loop().time() + 15
        while len(closed) < 2 or not announced:
            assert asyncio.get_running_loop().time() < deadline, (closed, announced)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a second close (from the other process) would arrive by now
        assert len(closed) == 2  # one poll.closed per listening client: closed exactly once
        assert closed[0]["seq"] == closed[1]["seq"]
        assert closed[0]["data"] == {"id": poll_id, "counts": [2, 2, 2]}
        assert announced[0]["data"] == {"text": "Sale at 8", "countdown_to": countdown_to}
        with_late = RoomClient(b.url, token("late"))
        await with_late.connect()
        snap = (await with_late.join(room))["room"]
        await with_late.close()
        assert snap["poll"]["state"] == "closed" and snap["poll"]["counts"] == [2, 2, 2]
        assert snap["announcement"]["text"] == "Sale at 8"
    finally:
        for c in (host, *viewers):
            await c.close()
