"""Draining (PROTOCOL §2 close 1001): SIGTERM to a real `roomserver serve`
process closes every socket with 1001; the SDK reconnects elsewhere and, since
the other server has another history, re-joins and emits `resync`."""

from __future__ import annotations

import asyncio
import signal

from roomserver.client import RoomClient
from tests.server_fixtures import Recorder, Server, start_serve_process, token


async def test_app_shutdown_closes_sockets_with_1001(server: Server, room: str) -> None:
    a = await server.client("ann", reconnect=False)
    b = await server.client("bob", reconnect=False)
    await a.join(room)
    await b.join(room)
    await server.app.shutdown()
    assert await a.wait_closed(timeout=5) == 1001
    assert await b.wait_closed(timeout=5) == 1001
    status, body = await server.rest("GET", "/readyz")
    assert status == 503 and body == {"ok": False}


async def test_sigterm_drains_with_1001_and_exits_cleanly(room: str) -> None:
    proc = await start_serve_process()
    clients = [RoomClient(proc.base_url, token(f"u{i}"), reconnect=False) for i in range(3)]
    host = RoomClient(proc.base_url, token("h1", "host"), reconnect=False)
    try:
        for c in clients:
            await c.connect()
            await c.join(room)
        recs = [Recorder(c) for c in clients]
        await host.connect()
        await host.join(room)
        await host.send_barrage(room, "last words before the drain")
        await recs[0].wait("barrage")
        proc.proc.send_signal(signal.SIGTERM)
        for c in clients:
            assert await c.wait_closed(timeout=10) == 1001
        assert await host.wait_closed(timeout=10) == 1001
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 15)
        assert rc == 0, proc.proc.stderr.read().decode()[-2000:] if proc.proc.stderr else rc
    finally:
        proc.stop(signal.SIGKILL)
        for c in [*clients, host]:
            await c.close()


async def test_sdk_reconnects_elsewhere_after_drain_and_resyncs(room: str) -> None:
    first = await start_serve_process()
    second = await start_serve_process()
    client = RoomClient([first.base_url, second.base_url], token("ann"), backoff_initial=0.05)
    try:
        rec = Recorder(client)
        await client.connect()
        await client.join(room)
        await client.send_barrage(room, "on the first server")
        await rec.wait("barrage")
        first.proc.send_signal(signal.SIGTERM)
        (resync,) = await rec.wait("resync", timeout=10)
        assert client.url.endswith(str(second.port) + "/v1/ws")
        assert [d["data"]["code"] for d in rec.named("disconnected")] == [1001]
        # the second server has its own history: the client starts over from its snapshot
        snap = resync["data"]["room"]
        assert snap["id"] == room and client.rooms[room].epoch == snap["epoch"]
        reply = await client.send_barrage(room, "on the second server")
        assert reply["seq"] == snap["seq"] + 1
        events = await rec.wait("barrage", count=2)
        assert events[1]["seq"] == reply["seq"]
    finally:
        await client.close()
        first.stop()
        second.stop()
