"""The room assistant's A/B with both sides at the same time (issue 18).

``python -m loadtest.assistant_paired [--seconds 20 --rounds 8 --viewers 200 1000]``

``assistant_bench`` alternates on and off phases of one server; on a box shared with
other work, a phase the box starves flushes late, writes fewer and fuller frames and
costs less per delivery, so the load of the minute decides more than the assistant
(docs/benchmarks.md). Here two identical servers run side by side, each with its room,
``--viewers`` viewers (in processes of their own) and senders; every barrage line goes
to both rooms at the same moment; in each round one server has the assistant on and
the other off, swapped every round (round 0: A on, round 1: B on, …), so both sides of a
round share the same seconds of the box and a difference between the two servers
cancels over the rounds. Per round: each server's CPU (schedstat, ns) and deliveries;
the summary is ``assistant_bench.ab_summary``'s (pooled ratio with a bootstrap interval
over rounds, the rounds' ratios, the cadence-adjusted fit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.assistant_bench import (
    APP,
    SECRET,
    _flushes,
    _join,
    _lines,
    _loadavg,
    _Sender,
    _start_viewers,
    ab_summary,
    assistant_stats,
    paced_lines,
    phase_record,
    set_up_catalogue,
    start_server,
    stop_server,
)
from roomserver.auth import mint_token
from roomserver.client import RoomClient
from roomserver.cpu_time import process_cpu_seconds

ROOM = "bench-room"


@dataclass
class _Side:
    """One server with its room, viewers and senders."""

    name: str
    proc: subprocess.Popen[bytes]
    base: str
    http: aiohttp.ClientSession
    host: RoomClient | None = None
    viewer_procs: list[Any] = field(default_factory=list)
    counts: Any = None
    senders: list[_Sender] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)

    async def set_up(self, args: argparse.Namespace, viewers: int) -> None:
        spec = await set_up_catalogue(self.http, self.base, self.proc)
        self.host = RoomClient(self.base, mint_token(APP, SECRET, "host", "host"))
        await self.host.connect()
        await self.host.join(ROOM)
        await self.host.pin_product(ROOM, spec["pinned"])
        await self.host.request("assistant.set", ROOM, products=spec["room_products"])
        procs = args.viewer_procs or max(1, math.ceil(viewers / 500))
        self.viewer_procs, self.counts = await asyncio.to_thread(
            _start_viewers, self.base, ROOM, viewers, procs
        )
        for i in range(args.senders):
            sender = _Sender(await _join(self.http, self.base, f"s{i}", ROOM), self.latencies, self.replies)
            self.readers.append(asyncio.create_task(sender.read()))
            self.senders.append(sender)

    async def snapshot(self) -> tuple[float, float, float, tuple[float, float, float]]:
        viewer_cpu = sum(process_cpu_seconds(p.pid or 0) for p in self.viewer_procs)
        return (
            sum(self.counts),
            process_cpu_seconds(self.proc.pid),
            viewer_cpu,
            await _flushes(self.http, self.base),
        )

    async def close(self) -> None:
        for t in self.readers:
            t.cancel()
        for p in self.viewer_procs:
            p.terminate()
            p.join(10)
        if self.host is not None:
            await self.host.close()


async def run(args: argparse.Namespace, viewers: int) -> dict[str, Any]:
    """One audience size: two servers, ``args.rounds`` rounds."""
    sides: list[_Side] = []
    try:
        for name in ("A", "B"):
            proc, base = start_server(args)
            sides.append(
                _Side(name, proc, base, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
            )
        for side in sides:
            await side.set_up(args, viewers)
        print(f"{viewers} viewers on each of 2 servers joined", file=sys.stderr, flush=True)
        phases = await _rounds(args, viewers, sides)
        stats = {s.name: await assistant_stats(s.http, s.base) for s in sides}
    finally:
        for side in sides:
            await side.close()
            await side.http.close()
            stop_server(side.proc)
    return {
        "viewers": viewers,
        "viewer_procs": len(sides[0].viewer_procs),
        "paired": True,
        "phases": phases,
        **ab_summary(phases),
        "answer_p95_ms_worst": max((p["answer_p95_ms"] or 0) for p in phases if p["assistant"]),
        "stats": stats,
    }


async def _rounds(args: argparse.Namespace, viewers: int, sides: list[_Side]) -> list[dict[str, Any]]:
    questions, chat = _lines()
    rng = random.Random(7)
    phases: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        on_side = sides[rnd % 2]
        for side in sides:
            assert side.host is not None
            await side.host.request("assistant.set", ROOM, enabled=side is on_side)
        await asyncio.sleep(0.5)
        for side in sides:
            side.latencies.clear()
            side.replies.clear()
        before = [await s.snapshot() for s in sides]

        async def send(i: int, text: str, is_q: bool) -> None:
            for side in sides:  # the same line to both rooms, at the same moment
                await side.senders[i % len(side.senders)].send(ROOM, text, is_q)

        n, asked = await paced_lines(args, rng, questions, chat, send)
        await asyncio.sleep(1.0)  # the round's last answers and flushes
        after = [await s.snapshot() for s in sides]
        for side, (d0, c0, v0, f0), (d1, c1, v1, f1) in zip(sides, before, after, strict=True):
            got, cpu, viewer_cpu = d1 - d0, c1 - c0, v1 - v0
            phases.append(
                phase_record(
                    rnd,
                    side is on_side,
                    sent=n,
                    asked=asked,
                    seconds=args.seconds,
                    deliveries=got,
                    cpu=cpu,
                    viewer_cpu=viewer_cpu,
                    viewer_procs=len(side.viewer_procs),
                    viewers=viewers,
                    flushes=(f0, f1),
                    latencies=side.latencies,
                    replies=side.replies,
                    server=side.name,
                )
            )
            print(json.dumps(phases[-1]), flush=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--questions", type=float, default=0.2)
    parser.add_argument("--viewers", type=int, nargs="+", default=[200], help="audience sizes (a sweep)")
    parser.add_argument(
        "--viewer-procs", type=int, default=0, help="viewer processes per server (0: 1 per 500)"
    )
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--mode", choices=("lexical", "hybrid"), default="lexical")
    parser.add_argument(
        "--redis-url", default="", help="run the servers on this Redis (default: embedded bus)"
    )
    args = parser.parse_args()
    args.profile = ""
    params = {k: v for k, v in vars(args).items() if k != "profile"}
    sizes = []
    for viewers in args.viewers:
        load_before = _loadavg()
        summary = asyncio.run(run(args, viewers))
        summary["params"] = params
        summary["loadavg_before"], summary["loadavg_after"] = load_before, _loadavg()
        print(json.dumps({k: v for k, v in summary.items() if k != "phases"}), flush=True)
        sizes.append(summary)
    if len(sizes) > 1:
        keys = ("viewers", "pooled_ratio", "pooled_ratio_95", "loadavg_before", "loadavg_after")
        print(json.dumps({"sweep": [{k: s.get(k) for k in keys} for s in sizes], "params": params}))


if __name__ == "__main__":
    main()
