"""Redis unreachable: ops answer `unavailable`, /readyz fails, and both recover when it returns.
A Redis that comes back empty is a new epoch: resume answers history_gone, never a silent replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
import uuid

import pytest

from roomserver.auth import mint_token
from roomserver.client import RoomClient, RoomError
from tests.ports import free_ports
from tests.redis_servers import RedisNode
from tests.server_procs import APP, SECRET, ServerProcess

# Bounds, not waits: generous so that a loaded machine does not fail them (docs/testing.md).
HTTP_TIMEOUT_S = 20.0


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=HTTP_TIMEOUT_S) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def until(cond, timeout: float = 60.0) -> None:
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


def history(url: str, room: str) -> list[dict]:
    req = urllib.request.Request(
        f"{url}/v1/rooms/{room}/history?since=0&limit=1000",
        headers={"Authorization": f"Bearer {mint_token(APP, SECRET, 'admin-1', 'admin')}"},
    )
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
        return json.loads(r.read())["events"]


class ReplyLosingProxy:
    """A TCP proxy in front of Redis that can hold back the reply to one command: the
    command reaches Redis and runs, but the server hears nothing until ``release()``
    (a stalled link, a reply lost in a failover). Everything else flows, so "answered
    `unavailable`, yet done" happens on every run, not by chance."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._marker: bytes | None = None
        self._gates: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def lose_reply_to(self, marker: bytes) -> None:
        """Hold the replies on the connection that next sends a command containing ``marker``."""
        self._marker = marker

    def release(self) -> None:
        self._marker = None
        for gate in self._gates:
            gate.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        gate = asyncio.Event()
        gate.set()
        self._gates.append(gate)
        for coro in (self._commands(reader, up_writer, gate), self._replies(up_reader, writer, gate)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commands(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    gate.clear()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def _replies(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await gate.wait()
                dst.write(data)
                await dst.drain()
        dst.close()


@pytest.mark.parametrize("op", ["barrage", "gift"])
async def test_unavailable_means_unknown_and_a_retry_with_the_same_cid_publishes_once(
    own_redis, tmp_path, op
) -> None:
    proxy = ReplyLosingProxy(own_redis.port)
    await proxy.start()
    server = ServerProcess("--redis-url", proxy.url, "--flush-ms", "20", log_dir=tmp_path)
    await asyncio.to_thread(server.start)  # the proxy runs in this loop: keep it free
    room = "r-" + uuid.uuid4().hex[:8]

    # Something only the op's command to Redis contains: the barrage text (sent with the
    # SDK's own cid), the gift's cid (the app's, part of the idempotency key's name).
    marker = "reply-lost-" + uuid.uuid4().hex

    async def send(c: RoomClient, cid: str | None = None) -> dict:
        if op == "barrage":
            return await c.send_barrage(room, marker, cid=cid)
        return await c.send_gift(room, "rose", 2, cid=cid or marker)

    async def events() -> list[dict]:
        return [e for e in await asyncio.to_thread(history, server.url, room) if e["ev"] == op]

    try:
        async with RoomClient(server.url, mint_token(APP, SECRET, "u1"), request_timeout=15) as c:
            await c.join(room)
            proxy.lose_reply_to(marker.encode())
            try:
                # Redis runs the op; the server hears no reply within its op timeout (1 s).
                with pytest.raises(RoomError) as err:
                    await send(c)
            finally:
                proxy.release()
            assert err.value.code == "unavailable" and err.value.retry_after_ms
            cid = err.value.cid
            assert cid, "the SDK sent the op without a cid"
            # `unavailable` did not mean "not done": the op is in the room's history.
            deadline = time.monotonic() + 60
            while not (done := await events()):
                assert time.monotonic() < deadline, "the op answered unavailable never ran"
                await asyncio.sleep(0.1)
            # The documented answer: retry with the same cid. The server replays the first reply.
            while True:
                try:
                    reply = await send(c, cid)
                    break
                except RoomError as e:
                    assert e.code in ("unavailable", "timeout", "disconnected"), e
                    await asyncio.sleep(0.2)
            after = await events()
            assert after == done and len(after) == 1, after
            if op == "barrage":
                assert reply == {"seq": after[0]["seq"]} and after[0]["data"]["cid"] == cid
            else:
                assert reply == {"value": after[0]["data"]["value"]}
            # Control: the same op with a new cid is a second one.
            await (c.send_barrage(room, marker) if op == "barrage" else c.send_gift(room, "rose", 2))
            assert len(await events()) == 2
    finally:
        await asyncio.to_thread(server.stop)
        await proxy.close()
