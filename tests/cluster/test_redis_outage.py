"""Redis unreachable: ops answer `unavailable`, /readyz fails, and both recover when it returns.
A Redis that comes back empty is a new epoch: resume answers history_gone, never a silent replay."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid

import pytest

from roomserver.auth import mint_token
from roomserver.client import RoomClient, RoomError
from tests.redis_servers import RedisNode, free_ports
from tests.server_procs import APP, SECRET, ServerProcess


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def until(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.fixture
def own_redis(tmp_path):
    node = RedisNode(
        free_ports(1, cluster_bus=False)[0], tmp_path / "redis", ["--save", "", "--appendonly", "no"]
    )
    node.start()
    yield node
    node.kill()


async def test_redis_down_then_back(own_redis, tmp_path):
    server = ServerProcess("--redis-url", own_redis.url, "--flush-ms", "20", log_dir=tmp_path).start()
    room = "r-" + uuid.uuid4().hex[:8]
    try:
        # reconnect=True: a Redis that returns empty is a new epoch, which closes the
        # room's sockets with 4008 so that clients resync (they may see that
        # close before the reply of the op that created the new epoch).
        async with RoomClient(server.url, mint_token(APP, SECRET, "u1", "host")) as c:
            snap = (await c.join(room))["room"]
            seq = (await c.send_barrage(room, "before"))["seq"]
            assert readyz(server.url) == 200

            own_redis.kill()
            with pytest.raises(RoomError) as err:
                await c.send_barrage(room, "while down")
            assert err.value.code == "unavailable" and err.value.retry_after_ms
            assert await asyncio.to_thread(readyz, server.url) == 503
            assert c.connected  # the socket survives a bus outage
            resyncs: list[dict] = []
            c.on("resync", resyncs.append)

            own_redis.start()

            async def recovered() -> bool:
                if await asyncio.to_thread(readyz, server.url) != 200:
                    return False
                try:
                    await c.send_barrage(room, "after")
                    return True
                except RoomError as e:
                    assert e.code in ("unavailable", "rate_limited", "disconnected", "timeout"), e
                    return False

            await until(recovered)
        # The restarted Redis kept nothing: the old epoch cannot be resumed.
        async with RoomClient(server.url, mint_token(APP, SECRET, "u2"), reconnect=False) as c2:
            with pytest.raises(RoomError) as err:
                await c2.resume(room, seq, snap["epoch"])
            assert err.value.code == "history_gone"
    finally:
        server.stop()
