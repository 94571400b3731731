"""What 1,000 rooms cost Redis: CPU, memory and commands, idle and with a barrage.

    .venv/bin/python -m tests.bench_redis_rooms [--rooms 1000] [--nodes 2] [--rate 1] [--seconds 20]

Starts a Redis Cluster (3 primaries + 3 replicas, tests/redis_servers.py) and ``--nodes``
`roomserver serve` processes on it, then opens ``--rooms`` rooms, each with one socket (on the
nodes in turn) that joins it; measures Redis for ``--seconds`` with the rooms idle (presence
reports, deadline checks), then again with every socket sending ``--rate`` barrage messages per
second into its room. Redis CPU is the six servers' utime + stime (/proc), memory the primaries'
``used_memory``, commands their ``total_commands_processed``. Prints one JSON object; kills
everything at the end. Not a test: the numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.procs import cpu_seconds
from tests.redis_servers import RedisCluster, RedisServers
from tests.server_procs import ServerProcess, token


def redis_totals(cluster: RedisCluster) -> dict[str, float]:
    cpu = sum(cpu_seconds(n.proc.pid) for n in cluster.nodes if n.proc is not None)
    memory = commands = 0
    keys = 0
    for n in cluster.nodes:
        info = n.command("INFO", timeout=5)
        assert isinstance(info, dict)
        if info.get("role") != "master":
            continue
        memory += int(info["used_memory"])
        commands += int(info["total_commands_processed"])
        keys += sum(int(v["keys"]) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    return {"cpu": cpu, "memory": memory, "commands": commands, "keys": keys, "wall": time.monotonic()}


def delta(a: dict[str, float], b: dict[str, float], rooms: int) -> dict[str, Any]:
    wall = b["wall"] - a["wall"]
    per_k = 1000 / rooms
    return {
        "seconds": round(wall, 1),
        "redis_cores": round((b["cpu"] - a["cpu"]) / wall, 3),
        "redis_cores_per_1000_rooms": round((b["cpu"] - a["cpu"]) / wall * per_k, 3),
        "commands_per_s": round((b["commands"] - a["commands"]) / wall),
        "commands_per_s_per_1000_rooms": round((b["commands"] - a["commands"]) / wall * per_k),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = RedisServers()
    cluster = servers.start_cluster()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-rooms-"))
    nodes = [
        ServerProcess("--redis-cluster", cluster.startup, log_dir=log_dir).start() for _ in range(args.nodes)
    ]
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    result: dict[str, Any] = {"rooms": args.rooms, "nodes": args.nodes, "rate_per_room": args.rate}
    try:
        # limit=0: every socket is a connection of the session's pool (default 100).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            tally = Tally()
            readers: list[asyncio.Future[None]] = []

            async def open_rooms(first: int, last: int) -> None:
                for i in range(first, last):
                    node = nodes[i % len(nodes)]
                    ws = await http.ws_connect(f"{node.url}/v1/ws?token={token(f'u{i}')}", max_msg_size=0)
                    await ws.send_json({"id": 1, "op": "room.join", "room": f"bench-{i}"})
                    sockets.append(ws)
                    readers.append(asyncio.ensure_future(drain(ws, tally)))
                deadline = time.monotonic() + 120
                while tally.joined + tally.refused < last and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(3)  # the joins' own commits settle

            # A few rooms first: the nodes' connections, scripts and replication buffers
            # exist before the baseline, so the difference is the rooms'.
            warm = max(1, args.rooms // 20)
            await open_rooms(0, warm)
            empty = redis_totals(cluster)
            await open_rooms(warm, args.rooms)
            print(f"{tally.joined} rooms joined; idle {args.seconds:g} s", file=sys.stderr, flush=True)
            measured = args.rooms - warm
            result["joined"], result["join_refused"] = tally.joined, tally.refused
            opened = redis_totals(cluster)
            result["memory_bytes_per_1000_rooms"] = round(
                (opened["memory"] - empty["memory"]) * 1000 / measured
            )
            result["keys_per_room"] = round((opened["keys"] - empty["keys"]) / measured, 2)
            await asyncio.sleep(args.seconds)
            idle_end = redis_totals(cluster)
            result["idle"] = delta(opened, idle_end, args.rooms)
            print(f"barrage {args.rate:g}/s per room for {args.seconds:g} s", file=sys.stderr, flush=True)
            sent = await barrage(sockets, args.rate, args.seconds)
            busy_end = redis_totals(cluster)
            await asyncio.sleep(1)
            result["barrage"] = delta(idle_end, busy_end, args.rooms) | {
                "messages_sent": sent,
                "accepted": tally.accepted,
                "refused": tally.send_errors,
            }
            result["memory_bytes_per_1000_rooms_after_barrage"] = round(
                (busy_end["memory"] - empty["memory"]) * 1000 / measured
            )
            for r in readers:
                r.cancel()
    finally:
        for n in nodes:
            n.stop()
        servers.stop()
    return result


class Tally:
    def __init__(self) -> None:
        self.joined = self.refused = self.accepted = self.send_errors = 0


async def drain(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
    """Read everything; count the join's and the sends' replies (a frame may batch several)."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT or '"re":' not in msg.data:
            continue
        data = json.loads(msg.data)
        for m in data if isinstance(data, list) else [data]:
            if "re" not in m:
                continue
            if m["re"] == 1:
                tally.joined += bool(m["ok"])
                tally.refused += not m["ok"]
            else:
                tally.accepted += bool(m["ok"])
                tally.send_errors += not m["ok"]


async def barrage(sockets: list[aiohttp.ClientWebSocketResponse], rate: float, seconds: float) -> int:
    """Each socket sends ``rate`` messages per second into its room, spread over the second."""
    n = len(sockets)
    total = int(n * rate * seconds)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * n * rate))
        while sent < due:
            ws = sockets[sent % n]
            room = f"bench-{sent % n}"
            await ws.send_json(
                {"id": 3 + sent, "op": "barrage.send", "room": room, "text": "x" * 40, "cid": f"c{sent}"}
            )
            sent += 1
        await asyncio.sleep(0.005)
    return sent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--rate", type=float, default=1.0, help="barrage messages per second per room")
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    json.dump(asyncio.run(run(args)), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
