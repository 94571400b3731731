"""The join snapshot's ``recent`` on Redis: a process that never served the room reads the
room's last barrage events from the shared history for its first joiner."""

from __future__ import annotations

import asyncio
import uuid

from roomserver.client import RoomClient
from tests.cluster.test_two_processes import collect, send
from tests.server_procs import token


async def test_late_joiner_on_the_other_process_sees_the_recent_chat(two_servers):
    a, b = two_servers
    room = "r-" + uuid.uuid4().hex[:8]
    async with RoomClient(a.url, token("sender")) as sa:
        await sa.join(room)
        own = asyncio.ensure_future(collect(sa, room, 5))
        for i in range(5):
            await send(sa, room, f"m{i}")
        sent = await own
        async with RoomClient(b.url, token("late")) as lb:
            snap = (await lb.join(room))["room"]
    assert snap["recent"] == sent
