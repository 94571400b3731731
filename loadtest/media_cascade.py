"""`media_cascade` scenario: one room's WebRTC viewers on a second node (cascade) vs on the origin.

    python -m loadtest.media_cascade --viewers 10,20 --seconds 8

Starts one Redis server (the test harness's, free port) and two `roomserver serve`
processes on it (loopback, `--ice-host 127.0.0.1`): the origin, where the host publishes
(synthetic VP8 with a frame counter, in its own process, `--bitrate`), and the edge, which
relays the host once from the origin (roomserver/media/cascade.py) for its own viewers.

Two decoding probes stay connected the whole run, one on each node, in this process. Each
frame's decode time on the edge probe minus on the origin probe is the cascade hop's added
latency (`hop_ms_p50`/`p95`: same frames, same decoder, one clock). Then, per viewer count N,
N bulk viewers (non-decoding, `loadtest/media_viewers.py` processes) play for `--seconds`
on the edge, then N on the origin ("1 node"), and each node's CPU-seconds over the window
are read from /proc: `edge_cpu_per_viewer_s` is the edge's CPU per viewer-second above the
step with no bulk viewers (the relay and one probe). Frame loss: the probes' counters
missing in the window, the bulk viewers' RTP sequence gaps and their received fps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.media import LOOPBACK, RemotePublisher
from loadtest.media_viewers import ViewerProcess
from loadtest.procs import ServerProcess, ServerSet, cpu_seconds, machine
from roomserver.auth import mint_token
from roomserver.media import bench
from roomserver.media.client import Viewer
from roomserver.media.ice import pin_host_addresses

ROOM = "lt-cascade"


def _redis() -> Any:
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.redis_servers import RedisServers  # the project's harness: free ports, never 6379

    return RedisServers()


def _window_frames(probe: Viewer, since: float) -> dict[int, float]:
    return {s.counter: s.at for s in probe.video if s.counter is not None and s.at >= since}


def _missing(frames: dict[int, float]) -> tuple[int, int]:
    """(frames missing between the first and last counter seen, that span)."""
    if not frames:
        return 0, 0
    span = max(frames) - min(frames) + 1
    return span - len(frames), span


async def _step(
    placement: str,
    viewers: int,
    args: argparse.Namespace,
    nodes: dict[str, ServerProcess],
    token: Any,
    probes: dict[str, Viewer],
    publisher: RemotePublisher,
) -> dict[str, Any]:
    procs = [ViewerProcess() for _ in range(min(args.viewer_procs, viewers))]
    try:
        await asyncio.gather(*(p.start() for p in procs))
        url = f"{nodes[placement].url}/v1/rooms/{ROOM}/whep"
        pairs = [(url, token(f"bulk-{placement}-{viewers}-{i}")) for i in range(viewers)]
        for i, proc in enumerate(procs):
            await proc.add(pairs[i :: len(procs)])
        await asyncio.sleep(args.settle)
        cpu0 = {name: cpu_seconds(n.pid) for name, n in nodes.items()}
        before = await asyncio.gather(*(p.stats() for p in procs))
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - started
        cpu = {name: (cpu_seconds(n.pid) - cpu0[name]) / elapsed for name, n in nodes.items()}
        after = await asyncio.gather(*(p.stats() for p in procs))
    finally:
        await asyncio.gather(*(p.close() for p in procs), return_exceptions=True)
    frames = [f for got, _, _ in after for f in got]
    frames0 = [f for got, _, _ in before for f in got]
    fps = [(b - a) / elapsed for a, b in zip(frames0, frames, strict=False)]
    lost = sum(x for _, gone, _ in after for x in gone) - sum(x for _, gone, _ in before for x in gone)
    edge, origin = _window_frames(probes["edge"], started), _window_frames(probes["origin"], started)
    hop = [(edge[n] - origin[n]) * 1000 for n in edge.keys() & origin.keys()]
    sent = publisher.sent_at
    return {
        "placement": placement,
        "viewers": viewers,
        "window_s": round(elapsed, 2),
        "edge_cores": round(cpu["edge"], 4),
        "origin_cores": round(cpu["origin"], 4),
        "bulk_fps_min": round(min(fps), 1) if fps else None,
        "bulk_fps_mean": round(sum(fps) / len(fps), 1) if fps else None,
        "bulk_lost_packets": lost,
        "bulk_not_connected": sum(down for _, _, down in after),
        "hop_ms_p50": bench.percentile(hop, 0.5),
        "hop_ms_p95": bench.percentile(hop, 0.95),
        "hop_frames": len(hop),
        "probe_origin_latency_ms_p95": bench.percentile(
            [(at - sent[n]) * 1000 for n, at in origin.items() if n in sent], 0.95
        ),
        "probe_edge_latency_ms_p95": bench.percentile(
            [(at - sent[n]) * 1000 for n, at in edge.items() if n in sent], 0.95
        ),
        "probe_origin_missing_frames": _missing(origin),
        "probe_edge_missing_frames": _missing(edge),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pin_host_addresses([LOOPBACK])
    bench._force_vp8_bitrate(args.bitrate)
    result: dict[str, Any] = {"scenario": "media_cascade", "config": vars(args).copy(), "machine": machine()}
    redis = _redis()
    servers = ServerSet()
    publisher: RemotePublisher | None = None
    probes: dict[str, Viewer] = {}
    try:
        single = redis.start_single()
        extra = ["--redis-url", single.url, "--ice-host", LOOPBACK, "--announce-s", "1"]
        origin, edge = servers.start_roomservers(2, flush_ms=20, barrage_cap=250, extra=extra)
        nodes = {"origin": origin, "edge": edge}

        def token(user: str, role: str = "viewer") -> str:
            return mint_token(servers.app_key, servers.app_secret, user, role)  # type: ignore[arg-type]

        publisher = RemotePublisher(f"{origin.url}/v1/rooms/{ROOM}/whip", token("host", "host"), args)
        await publisher.start()
        async with aiohttp.ClientSession() as http:
            for name, node in nodes.items():
                probes[name] = Viewer(decode=True)
                deadline = time.monotonic() + 30
                while True:  # the edge answers 404 until the origin entry is on the bus
                    try:
                        await bench.connect_peer(
                            http, f"{node.url}/v1/rooms/{ROOM}/whep", probes[name], token(f"probe-{name}")
                        )
                        break
                    except RuntimeError:
                        await probes[name].close()
                        if time.monotonic() > deadline:
                            raise
                        probes[name] = Viewer(decode=True)
                        await asyncio.sleep(0.5)
                assert await probes[name].wait_for(lambda v: bool(v.video), 20), f"{name} probe got no video"
        await asyncio.sleep(args.warmup)  # both probes' decoders and the relay settle
        steps = [await _step("edge", 0, args, nodes, token, probes, publisher)]
        for n in args.viewers:
            for placement in ("edge", "origin"):
                steps.append(await _step(placement, n, args, nodes, token, probes, publisher))
        base = steps[0]["edge_cores"]
        for s in steps:
            if s["viewers"] and s["placement"] == "edge":
                s["edge_cpu_per_viewer_s"] = round((s["edge_cores"] - base) / s["viewers"], 5)
            if s["viewers"] and s["placement"] == "origin":
                s["origin_cpu_per_viewer_s"] = round(
                    (s["origin_cores"] - steps[0]["origin_cores"]) / s["viewers"], 5
                )
        result["steps"] = steps
    finally:
        for probe in probes.values():
            await probe.close()
        if publisher is not None:
            await publisher.close()
        servers.stop()
        redis.stop()
    result["loadavg_end"] = list(os.getloadavg())
    return result


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.media_cascade", description=__doc__.splitlines()[0])
    p.add_argument("--viewers", type=_counts, default=[10, 20], help="bulk viewer steps, e.g. 10,20")
    p.add_argument("--seconds", type=float, default=8.0, help="measurement window per step")
    p.add_argument("--settle", type=float, default=3.0, help="wait after joins before measuring")
    p.add_argument("--warmup", type=float, default=3.0, help="wait after the probes joined")
    p.add_argument("--viewer-procs", type=int, default=2, help="processes hosting the bulk viewers")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=1_500_000)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
