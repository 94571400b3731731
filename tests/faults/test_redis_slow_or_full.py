"""Redis slow (DEBUG SLEEP) or out of memory (maxmemory, noeviction) under a flood of ops:
each op is answered `unavailable` within its bound (nothing piles up on the node: its memory
stays bounded), and everything works again once Redis does. Redis unreachable and killed
primaries have their own tests (test_redis_outage.py, tests/commerce/test_failover_sale.py)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from roomserver.client import RoomClient, RoomError
from tests.ports import free_ports
from tests.redis_servers import RedisNode
from tests.server_procs import ServerProcess, token

FLOODERS = 40
OPS_EACH = 25
ANSWER_BOUND_S = 4.0  # the op timeout is 1 s; a loaded machine gets slack
SLEEP_S = 8  # longer than the bound: a node that waited for Redis would fail
RSS_GROWTH_LIMIT = 64 * 2**20


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture
def redis_with_debug(tmp_path):
    node = RedisNode(
        free_ports(1, cluster_bus=False)[0],
        tmp_path / "redis",
        ["--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
    )
    node.start()
    yield node
    node.kill()


@pytest.fixture
def server(redis_with_debug, tmp_path):
    s = ServerProcess("--redis-url", redis_with_debug.url, "--flush-ms", "20", log_dir=tmp_path).start()
    yield s
    s.stop()


class Flood:
    """FLOODERS clients, each firing OPS_EACH barrage sends at once; answers and their times."""

    def __init__(self, url: str, room: str) -> None:
        self.clients = [RoomClient(url, token(f"f{i}"), reconnect=False) for i in range(FLOODERS)]
        self.room = room
        self.codes: dict[str, int] = {}
        self.slowest = 0.0
        self.messages: set[str] = set()
        # Each socket's ops run one after the other: its first answer shows how long
        # one op may wait; later ones queue behind it.
        self.first_answer: dict[int, float] = {}
        self.t0 = 0.0

    async def open(self) -> None:
        for c in self.clients:
            await c.connect()
            await c.join(self.room)

    async def _one(self, i: int, c: RoomClient, text: str) -> None:
        t0 = time.monotonic()
        try:
            reply = await c.send_barrage(self.room, text)
            code = "shed" if reply.get("shed") else "ok"  # over the room's cap: not published
        except RoomError as err:
            code = err.code
            if code == "unavailable":
                assert err.retry_after_ms, "unavailable without retry_after_ms"
                self.messages.add(err.message)
        self.slowest = max(self.slowest, time.monotonic() - t0)
        self.first_answer.setdefault(i, time.monotonic() - t0)
        self.codes[code] = self.codes.get(code, 0) + 1

    async def fire(self) -> None:
        await asyncio.gather(
            *(self._one(i, c, f"flood-{i}-{j}") for i, c in enumerate(self.clients) for j in range(OPS_EACH))
        )

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


async def peak_rss_while(pid: int, work: asyncio.Future) -> int:
    peak = rss(pid)
    while not work.done():
        peak = max(peak, rss(pid))
        await asyncio.sleep(0.05)
    return max(peak, rss(pid))


async def recovered(server: ServerProcess, viewer: RoomClient, room: str, timeout: float = 30.0) -> float:
    """Seconds until a send succeeds again and a viewer receives it."""
    t0 = time.monotonic()
    got = asyncio.Event()
    off = viewer.on("barrage", lambda ev: got.set() if ev["data"]["text"] == "after" else None)
    try:
        async with RoomClient(server.url, token("late"), reconnect=False) as c:
            await c.join(room)
            while True:
                try:
                    # The flood spent the room's barrage cap (100/s): a shed message is
                    # answered but not published, so send until one is.
                    if (await c.send_barrage(room, "after"))["seq"] is not None:
                        break
                    await asyncio.sleep(0.2)
                except RoomError as err:
                    assert err.code in ("unavailable", "rate_limited"), err
                    assert time.monotonic() - t0 < timeout, "no recovery"
                    await asyncio.sleep(0.2)
        await asyncio.wait_for(got.wait(), timeout)
    finally:
        off()
    assert await asyncio.to_thread(readyz, server.url) == 200
    return time.monotonic() - t0


async def test_slow_redis_answers_unavailable_in_bounded_time_and_recovers(redis_with_debug, server):
    room = "r-" + uuid.uuid4().hex[:8]
    assert server.proc is not None
    flood = Flood(server.url, room)
    async with RoomClient(server.url, token("viewer"), reconnect=False) as viewer:
        await viewer.join(room)
        await flood.open()
        try:
            before = rss(server.proc.pid)
            # Redis stands still for SLEEP_S (one client's command blocks every client); the
            # node's answers must not wait for it beyond their bound.
            sleeping = asyncio.ensure_future(
                asyncio.to_thread(redis_with_debug.command, "DEBUG", "SLEEP", str(SLEEP_S), timeout=30)
            )
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(redis_with_debug.ping):  # until Redis stands still
                assert time.monotonic() < deadline and not sleeping.done()
            t0 = time.monotonic()
            work = asyncio.ensure_future(flood.fire())
            probe = asyncio.ensure_future(asyncio.to_thread(readyz, server.url))
            peak = await peak_rss_while(server.proc.pid, work)
            flood_s = time.monotonic() - t0
            ready_during = await probe
            await sleeping
            took = await recovered(server, viewer, room)
        finally:
            await flood.close()
    print(
        f"\nDEBUG SLEEP {SLEEP_S}: {FLOODERS * OPS_EACH} ops answered {flood.codes} in {flood_s:.2f} s "
        f"(each socket's first answer within {max(flood.first_answer.values()):.2f} s, slowest op "
        f"{flood.slowest:.2f} s behind its socket's others); node RSS {before / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB; "
        f"/readyz during {ready_during}; recovered {took:.2f} s after Redis woke"
    )
    assert flood.codes.get("unavailable", 0) > 0
    assert set(flood.codes) <= {"unavailable", "rate_limited", "ok", "shed"}, flood.codes
    assert len(flood.first_answer) == FLOODERS
    assert max(flood.first_answer.values()) <= ANSWER_BOUND_S
    assert peak - before <= RSS_GROWTH_LIMIT
    assert ready_during == 503
    assert all("no answer within" in m for m in flood.messages), flood.messages


async def test_redis_out_of_memory_answers_unavailable_clearly_and_recovers(redis_with_debug, server):
    room = "r-" + uuid.uuid4().hex[:8]
    assert server.proc is not None
    flood = Flood(server.url, room)
    async with RoomClient(server.url, token("viewer"), reconnect=False) as viewer:
        await viewer.join(room)
        await flood.open()
        try:
            before = rss(server.proc.pid)
            redis_with_debug.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
            redis_with_debug.command("CONFIG", "SET", "maxmemory", "1")  # every write refused
            work = asyncio.ensure_future(flood.fire())
            peak = await peak_rss_while(server.proc.pid, work)
            # A new room cannot be created either: its document is a write.
            async with RoomClient(server.url, token("newcomer"), reconnect=False) as c:
                with pytest.raises(RoomError) as err:
                    await c.join("r-" + uuid.uuid4().hex[:8])
                assert err.value.code == "unavailable" and "out of memory" in err.value.message
            redis_with_debug.command("CONFIG", "SET", "maxmemory", "0")
            took = await recovered(server, viewer, room)
        finally:
            await flood.close()
    print(
        f"\nmaxmemory 1, noeviction: {FLOODERS * OPS_EACH} ops answered {flood.codes} "
        f"(slowest {flood.slowest:.2f} s); node RSS {before / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB; "
        f"recovered in {took:.2f} s"
    )
    assert flood.codes.get("unavailable", 0) > 0 and "ok" not in flood.codes, flood.codes
    assert set(flood.codes) <= {"unavailable", "rate_limited", "shed"}, flood.codes
    assert flood.messages and all("out of memory" in m for m in flood.messages), flood.messages
    assert max(flood.first_answer.values()) <= ANSWER_BOUND_S
    assert peak - before <= RSS_GROWTH_LIMIT
    assert "Redis refuses writes, out of memory" in server.log_path.read_text()
