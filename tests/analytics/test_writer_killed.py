"""Issue 12's test: two `roomserver serve` processes on the Redis Cluster feed one
PostgreSQL; one is killed (SIGKILL) mid-show while its writer holds stream
entries it read but had not stored; the other claims them. The store ends with
exactly the records the clients' ops produced: none lost, none twice.

To be sure the killed writer holds entries at that moment, the test locks the
behaviour table (a real PostgreSQL lock, as a slow database would): both
writers read entries and wait in their insert; the test sees (XPENDING) that
the doomed process's consumer holds some, and that every record made so far is
on the bus, before it kills.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio.cluster import ClusterNode, RedisCluster

from roomserver.behaviour_log import streams
from roomserver.behaviour_writer import GROUP
from roomserver.client import RoomClient
from roomserver.core.behaviour import decode_batch
from tests.server_fixtures import new_room_id
from tests.server_procs import ServerProcess, token

ROOMS = 4
VIEWERS_PER_PROCESS = 2


def _procs(cluster: Any, prefix: str, pg: str, log_dir: Path) -> list[ServerProcess]:
    args = ["--redis-cluster", cluster.startup, "--redis-prefix", prefix, "--database-url", pg]
    args += ["--log-level", "WARNING"]
    # Started one after the other: the first migrates the schema.
    return [ServerProcess(*args, "--node-id", name, log_dir=log_dir).start() for name in ("keep", "doomed")]


async def _pending_by_consumer(redis: RedisCluster, prefix: str) -> Counter[str]:
    held: Counter[str] = Counter()
    for stream in streams():
        key = f"{prefix}x:{{{stream}}}"
        if not await redis.exists(key):
            continue
        info = await redis.xpending(key, GROUP)
        for c in info["consumers"]:
            held[c["name"].decode()] += int(c["pending"])
    return held


async def _records_on_bus(redis: RedisCluster, prefix: str) -> int:
    ids: set[str] = set()
    for stream in streams():
        for _, fields in await redis.xrange(f"{prefix}x:{{{stream}}}"):
            ids.update(e.id for e in decode_batch(fields[b"d"]))
    return len(ids)


async def _until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.1)


async def test_a_killed_writers_entries_are_claimed_none_lost_none_twice(
    redis_cluster: Any, unique_prefix: str, postgres_url: str, tmp_path: Path
) -> None:
    keep, doomed = _procs(redis_cluster, unique_prefix, postgres_url, tmp_path)
    host, port = redis_cluster.startup.split(",")[0].rsplit(":", 1)
    redis = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
    pg = await asyncpg.connect(postgres_url)
    made: Counter[str] = Counter()  # kind -> records the clients' ops produced
    try:
        async with aiohttp.ClientSession() as http:
            rooms = [new_room_id() for _ in range(ROOMS)]
            hosts = [RoomClient(keep.url, token(f"h{i}", "host"), session=http) for i in range(ROOMS)]
            viewers = {
                proc: [
                    RoomClient(proc.url, token(f"{name}{i}"), session=http, reconnect=False)
                    for i in range(VIEWERS_PER_PROCESS)
                ]
                for proc, name in ((keep, "k"), (doomed, "d"))
            }
            for c in hosts + viewers[keep] + viewers[doomed]:
                await c.connect()
            for h, room in zip(hosts, rooms, strict=True):
                await h.join(room)
                await h.start(room)
                made.update(["join", "show.start"])

            async def activity(proc: ServerProcess, rounds: int) -> None:
                for _ in range(rounds):
                    for v in viewers[proc]:
                        for room in rooms:
                            await v.send_like(room, 1)
                            await v.track(room, "product.click", product="p1")
                            made.update(["like", "track"])

            for v in viewers[keep] + viewers[doomed]:
                for room in rooms:
                    await v.join(room)
                    made["join"] += 1
            await activity(keep, 3)
            await activity(doomed, 3)

            # The database stalls: both writers read entries and wait in their insert.
            lock = pg.transaction()
            await lock.start()
            await pg.execute("LOCK TABLE behaviour_events IN EXCLUSIVE MODE")
            await activity(keep, 3)
            await activity(doomed, 3)
            total_before_kill = sum(made.values())

            async def doomed_holds_entries() -> bool:
                held = await _pending_by_consumer(redis, unique_prefix)
                on_bus = await _records_on_bus(redis, unique_prefix)
                stored = await pg.fetchval("SELECT count(*) FROM behaviour_events")
                return on_bus + stored == total_before_kill and any(
                    n for c, n in held.items() if c.startswith("doomed-")
                )

            await _until("the doomed writer holds entries, every record on the bus", doomed_holds_entries, 30)
            assert doomed.proc is not None
            doomed.proc.kill()  # SIGKILL: no flush, no ack, no goodbye
            doomed.proc.wait(10)
            await lock.rollback()

            # The show goes on on the surviving process, then ends.
            await activity(keep, 2)
            for v in viewers[keep]:
                for room in rooms:
                    await v.leave(room)
                    made["leave"] += 1
            for h, room in zip(hosts, rooms, strict=True):
                await h.end(room)
                made["show.end"] += 1
            expected = sum(made.values())

            async def all_stored() -> bool:
                n = await pg.fetchval("SELECT count(*) FROM behaviour_events")
                assert n <= expected, (n, expected)
                return n == expected

            await _until("every record stored", all_stored, 60)
            rows = await pg.fetch("SELECT kind, count(*) FROM behaviour_events GROUP BY kind")
            assert {r[0]: r[1] for r in rows} == dict(made)
            # The survivor claimed what the killed one had read.
            async with http.get(keep.url + "/metrics") as resp:
                metrics = await resp.text()
            claimed = [
                ln for ln in metrics.splitlines() if ln.startswith("roomserver_behaviour_claimed_total")
            ]
            assert claimed and float(claimed[0].split()[-1]) > 0, claimed
            assert not any((await _pending_by_consumer(redis, unique_prefix)).values())
            for c in hosts + viewers[keep] + viewers[doomed]:
                await c.close()
    finally:
        await pg.close()
        await redis.aclose()
        for p in (keep, doomed):
            p.stop()
