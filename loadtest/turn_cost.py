"""TURN relay cost: CPU per viewer relayed by coturn against the same viewers connected
directly, same run, same publisher.

    python -m loadtest.turn_cost [--viewers 10,20] [--seconds 10] [--transport udp|tcp] [--json FILE]

One synthetic VP8 publisher (640×480, 30 fps, 1.5 Mbit/s, noisy so the encoder spends it) on a
`MediaRouter` in its own process (roomserver.media.bench's server); Debian's coturn on
loopback (REST-API secret, UDP); N viewers in this process counting encoded frames (no decode).
`direct` viewers reach the server's host candidates; `relay` viewers use
`iceTransportPolicy: relay` with credentials minted as the server would, so every media packet
goes viewer ⇄ coturn ⇄ server. Measured per step over `--seconds`: coturn CPU-s and server
CPU-s per viewer-second, and the viewers' frame rates. CPU is utime + stime from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import asdict, dataclass

import aiohttp

from roomserver.core.turn import ice_servers
from roomserver.cpu_time import process_cpu_seconds
from roomserver.media.bench import (
    LOOPBACK,
    ROOM,
    ServerProcess,
    _force_vp8_bitrate,
    connect_peer,
    viewer_fps,
)
from roomserver.media.client import Publisher, Viewer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.synthetic import CounterVideoTrack

from .coturn import Coturn, coturn


@dataclass
class TurnStep:
    path: str  # "direct" | "relay" (over --transport)
    viewers: int
    seconds: float
    coturn_cpu_per_viewer_s: float
    server_cpu_per_viewer_s: float
    client_cpu_per_viewer_s: float
    viewer_fps_mean: float
    viewer_fps_min: float
    relayed_pairs: int


async def measure(args: argparse.Namespace) -> list[TurnStep]:
    pin_host_addresses([LOOPBACK])
    steps: list[TurnStep] = []
    async with (
        coturn() as turn,
        ServerProcess("forward") as server,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://{LOOPBACK}:{server.port}"
        video = CounterVideoTrack(640, 480, 30, detail=True)
        publisher = Publisher([video], video_codec="VP8")
        await connect_peer(http, f"{base}/v1/rooms/{ROOM}/whip", publisher, None)
        try:
            for count in args.viewers:
                for path in ("direct", "relay"):
                    steps.append(await _step(args, http, base, turn, server.pid, path, count))
                    print(json.dumps(asdict(steps[-1])), flush=True)
        finally:
            await publisher.close()
    return steps


async def _step(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    base: str,
    turn: Coturn,
    server_pid: int,
    path: str,
    count: int,
) -> TurnStep:
    viewers: list[Viewer] = []
    try:
        for i in range(count):
            servers = ice_servers([turn.url(args.transport)], turn.secret, f"bench{i}", time.time(), 600)
            viewer = (
                Viewer(decode=False, ice_servers=servers, relay_only=True)
                if path == "relay"
                else Viewer(decode=False)
            )
            viewers.append(viewer)
            await connect_peer(http, f"{base}/v1/rooms/{ROOM}/whep", viewer, None)
        await asyncio.sleep(args.settle)
        frames_before = [v.encoded_frames["video"] for v in viewers]
        coturn_before, server_before = process_cpu_seconds(turn.pid), process_cpu_seconds(server_pid)
        client_before, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        viewer_seconds = count * elapsed
        fps = viewer_fps(viewers, frames_before, elapsed)
        relayed = sum(1 for v in viewers for local, _ in v.selected_candidate_types() if local == "relay")
        return TurnStep(
            path=path,
            viewers=count,
            seconds=round(elapsed, 2),
            coturn_cpu_per_viewer_s=round(
                (process_cpu_seconds(turn.pid) - coturn_before) / viewer_seconds, 4
            ),
            server_cpu_per_viewer_s=round(
                (process_cpu_seconds(server_pid) - server_before) / viewer_seconds, 4
            ),
            client_cpu_per_viewer_s=round((time.process_time() - client_before) / viewer_seconds, 4),
            viewer_fps_mean=round(statistics.fmean(fps), 1),
            viewer_fps_min=round(min(fps), 1),
            relayed_pairs=relayed,
        )
    finally:
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.close()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="10,20", help="viewer counts, comma separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="viewer ⇄ coturn")
    parser.add_argument("--json", default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.viewers = [int(n) for n in args.viewers.split(",")]
    _force_vp8_bitrate(args.bitrate)  # process-wide, so here and not in measure() (tests call it)
    steps = asyncio.run(measure(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(s) for s in steps], f, indent=2)


if __name__ == "__main__":
    main()
