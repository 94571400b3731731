"""A Redis primary killed under a barrage storm and a flash sale (issue 13): how soon after
the cluster's failover barrage and sales flow again, and that nothing was lost or doubled.

    python -m loadtest.redis_failover [--replicas 1,2] [--nodes 2] [--viewers 30]
        [--senders 6 --rate 8] [--buyers 10 --buy-rate 4] [--before 4] [--after 14]
        [--restart-after 6]

For each `--replicas` value: a throw-away Redis Cluster of 3 primaries with that many
replicas each (tests/redis_servers.py, free loopback ports), `--nodes` roomserver
processes on it (`--redis-durable-wait-ms` at its cluster default), one room whose slot's
primary is the one killed. Viewers, senders and buyers are spread round robin over the
nodes (roomserver.client.RoomClient: it resumes a gap from history and retries with the
same cid after `unavailable`, as the SDKs do). After `--before` seconds the room's primary
gets SIGKILL; the run waits for a replica to take its slots over ("promoted"), restarts the
killed node `--restart-after` seconds later (as an orchestrator would; it rejoins as a
replica), and goes on for `--after` seconds from the kill.

Measured, in seconds from the promotion (negative: before it):
- `barrage_resumed_s`: per viewer, the first barrage delivered after the kill (p50/p95/max);
- `sends_resumed_s`: per sender, the first barrage acknowledged after the kill;
- `orders_resumed_s`: per buyer, the first order acknowledged after the kill;
and `kill_to_promoted_s`. With one replica per primary the promoted primary has none left
until the killed node is back, and orders wait for a replica (an order is acknowledged
only once a replica has it), so their figure follows `--restart-after`; with two, the other
replica follows the new primary at once.

Checked (the run exits 1 when any fails): every viewer's barrage `seq`s contiguous, no
duplicate; every acknowledged order listed once with its id; sold == stock taken; no
order listed that was not acknowledged. JSON on stdout. Bounded: every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from roomserver.bus.redis import room_keys
from roomserver.client import RoomClient, RoomError
from roomserver.tenancy import room_key
from tests.redis_servers import RedisCluster, start_cluster
from tests.server_procs import APP, ServerProcess, running, token

RETRYABLE = {"unavailable", "timeout", "disconnected"}
PRICE = 990


@dataclass
class Clock:
    start: float = field(default_factory=time.monotonic)
    killed: float | None = None
    promoted: float | None = None
    restarted: float | None = None


def pctl(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summary(values: list[float | None], count: int) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "of": count,
        "resumed": len(got),
        "p50": pctl(got, 0.5),
        "p95": pctl(got, 0.95),
        "max": round(max(got), 3) if got else None,
        "mean": round(statistics.fmean(got), 3) if got else None,
    }


async def settle(call: Callable[[str], Awaitable[Any]], *, deadline: float) -> tuple[str, Any]:
    """Run ``call(cid)`` with one cid until it is decided (retry on a retryable error)."""
    cid = uuid.uuid4().hex
    while True:
        try:
            return "ok", await call(cid)
        except RoomError as exc:
            if exc.code not in RETRYABLE or time.monotonic() > deadline:
                return exc.code, None
        await asyncio.sleep(0.1)


async def one_run(args: argparse.Namespace, replicas: int, root: Path) -> dict[str, Any]:
    cluster = start_cluster(root / f"r{replicas}", replicas=replicas)
    prefix = "fo" + uuid.uuid4().hex[:6]
    servers = [
        ServerProcess(
            *("--redis-cluster", cluster.startup, "--redis-prefix", prefix, "--flush-ms", "20"),
            *("--no-analytics",),
            log_dir=root,
        )
        for _ in range(args.nodes)
    ]
    try:
        with running(servers):
            return await drive(args, replicas, cluster, prefix, servers)
    finally:
        cluster.kill_all()


async def drive(
    args: argparse.Namespace, replicas: int, cluster: RedisCluster, prefix: str, servers: list[ServerProcess]
) -> dict[str, Any]:
    room = "failover-" + uuid.uuid4().hex[:8]
    slot_key = room_keys(prefix, room_key(APP, room)).room
    urls = [s.url for s in servers]
    clock = Clock()
    stop = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:

        def client(i: int, user: str, role: str = "viewer") -> RoomClient:
            return RoomClient(urls[i % len(urls)], token(user, role), session=http, request_timeout=3)

        host = client(0, "host", "host")
        viewers = [client(i, f"v{i:03d}") for i in range(args.viewers)]
        senders = [client(i, f"s{i:03d}") for i in range(args.senders)]
        buyers = [client(i, f"b{i:03d}") for i in range(args.buyers)]
        everyone = [host, *viewers, *senders, *buyers]
        seen: list[list[tuple[float, int, str]]] = [[] for _ in viewers]  # (time, seq, ev)
        acked_sends: list[list[float]] = [[] for _ in senders]
        orders: dict[str, dict[str, Any]] = {}
        order_times: list[list[float]] = [[] for _ in buyers]
        answers: Counter[str] = Counter()
        try:
            for c in everyone:
                await c.connect()
                await c.join(room)
            for i, v in enumerate(viewers):

                def record(ev: dict[str, Any], into: list[tuple[float, int, str]] = seen[i]) -> None:
                    into.append((time.monotonic(), ev.get("seq") or 0, ev["ev"]))

                v.on("*", record)
            sale = (
                await host.sale_create(
                    room,
                    product={"id": "p-1", "title": "Rice cooker", "price_cents": PRICE},
                    price_cents=PRICE,
                    stock=args.stock,
                    limit_per_user=args.stock,
                )
            )["sale"]
            end = time.monotonic() + args.before + args.after

            async def send_loop(k: int, c: RoomClient) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    text = f"s{k}-{n}"

                    def send(cid: str, text: str = text) -> Awaitable[Any]:
                        return c.send_barrage(room, text, cid=cid)

                    code, _ = await settle(send, deadline=end + 10)
                    if code == "ok":
                        acked_sends[k].append(time.monotonic())
                    await asyncio.sleep(1 / args.rate)

            async def buy_loop(k: int, c: RoomClient) -> None:
                while not stop.is_set():
                    code, order = await settle(
                        lambda cid: c.sale_buy(room, sale["id"], 1, cid=cid), deadline=end + 10
                    )
                    answers[code] += 1
                    if code == "ok":
                        order_times[k].append(time.monotonic())
                        orders[order["order"]["id"]] = order["order"]
                    elif code == "sold_out":
                        return
                    await asyncio.sleep(1 / args.buy_rate)

            loops = [asyncio.ensure_future(send_loop(k, c)) for k, c in enumerate(senders)]
            loops += [asyncio.ensure_future(buy_loop(k, c)) for k, c in enumerate(buyers)]
            await asyncio.sleep(args.before)
            old = cluster.kill_primary_of(slot_key)
            clock.killed = time.monotonic()
            await asyncio.to_thread(cluster.wait_for_failover, slot_key, old, 30.0)
            clock.promoted = time.monotonic()
            await asyncio.sleep(max(0.0, clock.promoted + args.restart_after - time.monotonic()))
            cluster.restart(old)
            clock.restarted = time.monotonic()
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            stop.set()
            await asyncio.wait_for(asyncio.gather(*loops), 30)
            await asyncio.sleep(1.0)  # the last deliveries
            async with http.get(
                f"{urls[-1]}/v1/rooms/{room}/sales/{sale['id']}/orders",
                headers={"Authorization": f"Bearer {token('backend', 'admin')}"},
            ) as r:
                listing = await r.json()
        finally:
            stop.set()
            await asyncio.gather(*(c.close() for c in everyone), return_exceptions=True)
        await asyncio.to_thread(cluster.wait_healthy, 30.0)

    assert clock.killed is not None and clock.promoted is not None
    killed, promoted = clock.killed, clock.promoted

    def first_after_kill(times: list[float]) -> float | None:
        after = [t for t in times if t > killed]
        return round(min(after) - promoted, 3) if after else None

    problems = []
    for i, s in enumerate(seen):
        # The client hands durable events over in seq order, filling gaps from history.
        seqs = [q for _, q, _ in s if q]
        if not seqs or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            problems.append(f"viewer {i}: durable seqs not contiguous ({len(seqs)} seen)")
    listed = {o["id"]: o for o in listing["orders"]}
    if set(listed) != set(orders):
        problems.append(
            f"orders: {len(set(orders) - set(listed))} acknowledged not listed, "
            f"{len(set(listed) - set(orders))} listed not acknowledged"
        )
    if listing["sold"] != sum(o["qty"] for o in listed.values()) or listing["problems"]:
        problems.append(f"sale not reconciled: sold {listing['sold']}, problems {listing['problems']}")
    return {
        "replicas_per_primary": replicas,
        "kill_to_promoted_s": round(promoted - killed, 3),
        "restarted_after_promotion_s": round((clock.restarted or promoted) - promoted, 3),
        "barrage_resumed_s": summary(
            [first_after_kill([t for t, _, ev in s if ev == "barrage"]) for s in seen], len(seen)
        ),
        "sends_resumed_s": summary([first_after_kill(t) for t in acked_sends], len(senders)),
        "orders_resumed_s": summary([first_after_kill(t) for t in order_times], len(buyers)),
        "orders": len(orders),
        "orders_after_kill": sum(1 for ts in order_times for t in ts if t > killed),
        "barrage_acknowledged": sum(len(t) for t in acked_sends),
        "buy_answers": dict(answers),
        "problems": problems,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.redis_failover", description=__doc__.split("\n")[0])
    p.add_argument("--replicas", default="1,2", help="replicas per primary, one run each")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--viewers", type=int, default=30)
    p.add_argument("--senders", type=int, default=6)
    p.add_argument("--rate", type=float, default=8.0, help="barrage messages/s per sender")
    p.add_argument("--buyers", type=int, default=10)
    p.add_argument("--buy-rate", type=float, default=4.0, help="orders/s per buyer")
    p.add_argument("--stock", type=int, default=100_000)
    p.add_argument("--before", type=float, default=4.0, help="seconds of load before the kill")
    p.add_argument("--after", type=float, default=14.0, help="seconds of load from the kill")
    p.add_argument(
        "--restart-after", type=float, default=6.0, help="restart the killed node this long after promotion"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="redis-failover-"))
    runs = [asyncio.run(one_run(args, int(r), root)) for r in args.replicas.split(",")]
    params = {k: v for k, v in vars(args).items()}
    print(json.dumps({"benchmark": "redis_failover", "params": params, "runs": runs}, indent=2))
    return 1 if any(r["problems"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
