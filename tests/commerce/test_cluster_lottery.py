"""The automatic lottery draw with two server processes serving the room: both
watch the deadline, exactly one draw happens (one event, one seq, one webhook),
and the public audit recomputes it."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from roomserver.auth import mint_token
from roomserver.client import RoomClient
from roomserver.core.lottery import verify_draw
from tests.commerce.conftest import WebhookSink
from tests.commerce.draw_check import recompute_winners
from tests.server_fixtures import Recorder
from tests.server_procs import APP, SECRET, ServerProcess

pytestmark = pytest.mark.redis

VIEWERS = 40


def token(user: str, role: str = "viewer") -> str:
    return mint_token(APP, SECRET, user, role)  # type: ignore[arg-type]


async def get_json(session: aiohttp.ClientSession, url: str, tok: str) -> dict:
    async with session.get(url, headers={"Authorization": f"Bearer {tok}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_automatic_draw_happens_once_across_processes(
    two_processes: list[ServerProcess], process_sink: WebhookSink
):
    a, b = two_processes
    room = "lot-" + uuid.uuid4().hex[:8]
    urls = [a.url, b.url]
    async with aiohttp.ClientSession() as session:
        host = RoomClient(a.url, token("host-1", "host"), session=session)
        mod = RoomClient(b.url, token("mod-1", "moderator"), session=session)
        viewers = [RoomClient(urls[i % 2], token(f"v{i:02d}"), session=session) for i in range(VIEWERS)]
        everyone = [host, mod, *viewers]
        try:
            for c in everyone:
                await c.connect()
                await c.join(room)
            recorders = [Recorder(c) for c in everyone]
            lot = (await host.lottery_create(room, prize="Tea", winners=3, duration_ms=2_000, keyword="win"))[
                "lottery"
            ]
            entered: set[str] = set()
            # Half enter with the op, a quarter with the keyword, the rest stay out;
            # both ways, through both processes.
            for i, v in enumerate(viewers):
                if i % 4 in (0, 1):
                    assert await v.lottery_enter(room, lot["id"]) == {"entered": True}
                    entered.add(f"v{i:02d}")
                elif i % 4 == 2:
                    assert (await v.send_barrage(room, "I WIN this"))["seq"]
                    entered.add(f"v{i:02d}")
                else:
                    assert (await v.send_barrage(room, "just watching"))["seq"]

            # Nobody draws: both processes see closes_at pass; one draw happens.
            drawn = [(await rec.wait("lottery.drawn", timeout=8))[0] for rec in recorders]
            assert all(ev == drawn[0] for ev in drawn), "not the same lottery.drawn everywhere"
            assert "seq" in drawn[0] and drawn[0]["data"]["id"] == lot["id"]
            await asyncio.sleep(1.0)  # both deadline loops ran several times since
            assert all(len(rec.named("lottery.drawn")) == 1 for rec in recorders)
            data = drawn[0]["data"]
            assert data["entrants"] == len(entered) and len(data["winners"]) == 3
            assert set(data["winners"]) <= entered and data["drawn_at"] >= lot["closes_at"]

            admin = token("backend", "admin")
            history = await get_json(session, f"{b.url}/v1/rooms/{room}/history?since=0", admin)
            assert [e["ev"] for e in history["events"]].count("lottery.drawn") == 1

            # The audit, from either process, recomputes the draw.
            audits = [
                await get_json(session, f"{url}/v1/rooms/{room}/lotteries/{lot['id']}", token("anyone"))
                for url in urls
            ]
            assert audits[0] == audits[1]
            audit = audits[0]
            assert audit["entrants"] == sorted(entered) and audit["winners"] == data["winners"]
            assert verify_draw(
                audit["seed"], audit["seed_hash"], audit["entrants"], audit["winners"], max_winners=3
            )
            assert recompute_winners(audit) == data["winners"]

            # One webhook, though two processes watched the deadline.
            end = time.monotonic() + 10
            while not process_sink.named("lottery.drawn", room) and time.monotonic() < end:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            hooks = process_sink.named("lottery.drawn", room)
            assert len(hooks) == 1 and hooks[0]["data"]["winners"] == data["winners"]
        finally:
            for c in everyone:
                await c.close()
