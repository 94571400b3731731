"""`media` scenario: WebRTC viewers against a real `roomserver serve`, with MediaRelay beside it.

    python -m loadtest.media --viewers 20,40,60 --workers 0 --relay-viewers 1,2,4
    python -m loadtest.media --viewers 40,80 --rooms 2 --workers 1,2 --relay-viewers ''

Each run starts `roomserver serve` (loopback, a generated app key, `--ice-host 127.0.0.1`,
`--media-workers N`) and drives it like an app would: hosts publish over WHIP with host
tokens (synthetic VP8 with a frame counter, `--bitrate`), viewers play over WHEP with viewer
tokens, spread round-robin over `--rooms` rooms. The steps and measurements are those of
`roomserver/media/bench.py` (whose `Step` this returns), taken over the server's whole process
tree (the main process plus its media workers):

- CPU-seconds per viewer-second (total, marginal over the publisher-only baseline, and per
  viewer-second actually delivered), viewers' received fps;
- join → first decoded frame and capture → decoded latency from late-joining decoding probes
  (one clock: `time.monotonic()` is shared by every process of a Linux host);
- RSS and, with workers, each worker's CPU share (is the load split across cores?).

`--relay-viewers` runs bench.py's aiortc `MediaRelay` server (decode + one encode per viewer)
under the same load for the side-by-side CPU comparison. Bulk viewers count encoded frames
without decoding, so the load generator stays light; it still runs in this one process, so
read latencies at high viewer counts as "client-bound" when its CPU nears one core (reported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.procs import (
    ServerProcess,
    ServerSet,
    cpu_seconds,
    free_port,
    machine,
    machine_cpu,
    self_cpu_seconds,
)
from roomserver.auth import mint_token
from roomserver.media import bench
from roomserver.media.client import Publisher, Viewer, post_offer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.synthetic import CounterVideoTrack

LOOPBACK = "127.0.0.1"


@dataclass
class MediaStep(bench.Step):
    workers: int = 0
    rooms: int = 1
    # CPU-seconds of each process of the server tree over the window (main first).
    process_cpu_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    other_tenants_cores: float = 0.0
    join_to_first_frame_p95_ms: float | None = None


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (the media workers of a server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{entry}/stat").read_bytes()
            ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_rss_mb(pids: list[int]) -> float:
    return sum(bench.process_rss_mb(p) for p in pids if Path(f"/proc/{p}").exists())


class MediaServerUnderTest:
    """`roomserver serve` with media, and the tokens of its generated app."""

    def __init__(self, workers: int) -> None:
        self.servers = ServerSet()
        self.workers = workers
        self.server: ServerProcess | None = None

    def __enter__(self) -> MediaServerUnderTest:
        s = self.servers
        port = free_port()
        self.server = ServerProcess(
            name=f"media-w{self.workers}",
            args=[
                sys.executable,
                "-m",
                "roomserver.cli",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--app",
                f"{s.app_key}:{s.app_secret}",
                "--ice-host",
                LOOPBACK,
                "--media-workers",
                str(self.workers),
                "--log-level",
                "WARNING",
            ],
            port=port,
            log_path=s.workdir / f"media-w{self.workers}.log",
        )
        self.server.start(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def base(self) -> str:
        assert self.server is not None
        return self.server.url

    def pids(self) -> list[int]:
        assert self.server is not None
        return [self.server.pid, *descendants(self.server.pid)]

    def token(self, user: str, role: str = "viewer") -> str:
        return mint_token(self.servers.app_key, self.servers.app_secret, user, role)  # type: ignore[arg-type]


async def _connect(http: aiohttp.ClientSession, url: str, peer: Publisher | Viewer, token: str) -> None:
    reply = await post_offer(http, url, await peer.offer(), token)
    if reply.status != 201:
        raise RuntimeError(f"{url}: {reply.status} {reply.body}")
    await peer.accept(reply.body)


async def _probe(
    http: aiohttp.ClientSession,
    sut: MediaServerUnderTest,
    room: str,
    video: CounterVideoTrack,
    seconds: float,
) -> tuple[float, list[float]]:
    """A decoding viewer joins: (join → first decoded frame in ms, frame latencies in ms)."""
    probe = Viewer(decode=True)
    try:
        await _connect(http, f"{sut.base}/v1/rooms/{room}/whep", probe, sut.token("probe"))
        if not await probe.wait_for(lambda v: bool(v.video), timeout=10):
            return float("nan"), []
        first = (probe.first_frame_at - probe.offered_at) * 1000
        await asyncio.sleep(seconds)
        return first, [
            (s.at - video.sent_at[s.counter]) * 1000
            for s in probe.video
            if s.counter is not None and s.counter in video.sent_at
        ]
    finally:
        await probe.close()


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v == v)  # drop NaN (a probe that saw nothing)
    return round(values[min(len(values) - 1, int(len(values) * q))], 1) if values else None


async def run_server(workers: int, args: argparse.Namespace) -> list[MediaStep]:
    steps: list[MediaStep] = []
    rooms = [f"lt-media-{i}" for i in range(args.rooms)]
    with MediaServerUnderTest(workers) as sut:
        async with aiohttp.ClientSession() as http:
            videos = [CounterVideoTrack(args.width, args.height, args.fps, detail=True) for _ in rooms]
            publishers = [Publisher([v], video_codec="VP8") for v in videos]
            viewers: list[Viewer] = []
            try:
                for i, (room, pub) in enumerate(zip(rooms, publishers, strict=True)):
                    await _connect(
                        http, f"{sut.base}/v1/rooms/{room}/whip", pub, sut.token(f"host{i}", "host")
                    )
                await asyncio.sleep(args.settle)
                baseline: float | None = None
                for target in [0, *args.viewers]:
                    while len(viewers) < target:
                        viewer = Viewer(decode=False)
                        room = rooms[len(viewers) % len(rooms)]
                        viewers.append(viewer)
                        await _connect(
                            http, f"{sut.base}/v1/rooms/{room}/whep", viewer, sut.token(f"v{len(viewers)}")
                        )
                    await asyncio.sleep(args.settle)
                    pids = sut.pids()
                    frames_before = [v.encoded_frames["video"] for v in viewers]
                    cpu_before = [cpu_seconds(p) for p in pids]
                    client_before, machine_before = self_cpu_seconds(), machine_cpu()["busy"]
                    t0 = time.monotonic()
                    await asyncio.sleep(args.seconds)
                    elapsed = time.monotonic() - t0
                    per_process = [cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True)]
                    client_cpu = self_cpu_seconds() - client_before
                    busy = machine_cpu()["busy"] - machine_before
                    cpu = sum(per_process)
                    fps = [
                        (v.encoded_frames["video"] - b) / elapsed
                        for v, b in zip(viewers, frames_before, strict=True)
                    ]
                    delivered = sum(fps) * elapsed / args.fps
                    if target == 0:
                        baseline = cpu / elapsed
                    joins, latencies = [], []
                    for k in range(args.probes):
                        first, lat = await _probe(
                            http, sut, rooms[k % len(rooms)], videos[k % len(rooms)], args.probe_seconds
                        )
                        joins.append(round(first, 1))
                        latencies += lat
                    step = MediaStep(
                        mode=f"server/{workers}w",
                        viewers=target,
                        seconds=round(elapsed, 2),
                        server_cpu_s=round(cpu, 3),
                        cpu_per_viewer_s=round(cpu / (target * elapsed), 4) if target else None,
                        marginal_cpu_per_viewer_s=(
                            round((cpu / elapsed - baseline) / target, 4)
                            if target and baseline is not None
                            else None
                        ),
                        cpu_per_delivered_viewer_s=round(cpu / delivered, 4) if delivered else None,
                        viewer_fps_mean=round(statistics.fmean(fps), 1) if fps else 0.0,
                        viewer_fps_min=round(min(fps), 1) if fps else 0.0,
                        join_to_first_frame_ms=joins,
                        latency_ms_p50=_pct(latencies, 0.5),
                        latency_ms_p95=_pct(latencies, 0.95),
                        server_rss_mb=round(tree_rss_mb(pids), 1),
                        workers=workers,
                        rooms=len(rooms),
                        process_cpu_s=[round(c, 3) for c in per_process],
                        client_cpu_s=round(client_cpu, 3),
                        other_tenants_cores=round(max(0.0, busy - cpu - client_cpu) / elapsed, 2),
                        join_to_first_frame_p95_ms=_pct(joins, 0.95),
                    )
                    steps.append(step)
                    print(json.dumps(asdict(step)), file=sys.stderr, flush=True)
            finally:
                for viewer in viewers:
                    with contextlib.suppress(Exception):
                        await viewer.close()
                for pub in publishers:
                    with contextlib.suppress(Exception):
                        await pub.close()
    return steps


def table(steps: list[dict[str, Any]]) -> str:
    """A markdown table of the steps (docs/benchmarks.md style)."""
    head = (
        "| server | viewers | CPU-s/viewer-s | marginal | per delivered | viewer fps (min) "
        "| join→first frame p95 | latency p50/p95 | server cores | client cores | others |"
    )
    rows = [head, "|" + "---|" * 11]
    for s in steps:
        cores = s["server_cpu_s"] / s["seconds"] if s["seconds"] else 0
        rows.append(
            f"| {s['mode']} | {s['viewers']} | {s['cpu_per_viewer_s']} | {s['marginal_cpu_per_viewer_s']} "
            f"| {s['cpu_per_delivered_viewer_s']} | {s['viewer_fps_mean']} ({s['viewer_fps_min']}) "
            f"| {s.get('join_to_first_frame_p95_ms', max(s['join_to_first_frame_ms'], default=None))} "
            f"| {s['latency_ms_p50']}/{s['latency_ms_p95']} | {cores:.2f} "
            f"| {s.get('client_cpu_s', 0) / s['seconds']:.2f} | {s.get('other_tenants_cores', '')} |"
        )
    return "\n".join(rows)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pin_host_addresses([LOOPBACK])
    bench._force_vp8_bitrate(args.bitrate)
    result: dict[str, Any] = {
        "scenario": "media",
        "config": vars(args).copy(),
        "machine": machine(),
        "steps": [],
    }
    for workers in args.workers:
        result["steps"] += [asdict(s) for s in await run_server(workers, args)]
    if args.relay_viewers:
        result["steps"] += [asdict(s) for s in await bench.run_mode("relay", args.relay_viewers, args)]
    result["loadavg_end"] = list(os.getloadavg())
    return result


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--viewers", type=_counts, default=[20, 40, 60], help="viewer steps, e.g. 20,40,60")
    p.add_argument("--rooms", type=int, default=1, help="rooms (one publisher each); viewers round-robin")
    p.add_argument("--workers", type=_counts, default=[0], help="--media-workers runs, e.g. 0 or 1,2")
    p.add_argument("--relay-viewers", type=_counts, default=[1, 2, 4], help="MediaRelay steps ('' to skip)")
    p.add_argument("--seconds", type=float, default=8.0, help="measurement window per step")
    p.add_argument("--probes", type=int, default=5, help="late-joining decoding viewers per step")
    p.add_argument("--probe-seconds", type=float, default=1.5)
    p.add_argument("--settle", type=float, default=2.0, help="wait after joins before measuring")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=1_500_000)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomserver-loadtest media", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return cli(parser.parse_args(argv))


def cli(args: argparse.Namespace) -> int:
    """Entry point for `roomserver-loadtest media` (parsed with ``add_arguments``)."""
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    print(table(result["steps"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
