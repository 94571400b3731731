"""Media benchmark: the forwarding unit against aiortc's stock MediaRelay, same run, same load.

    python -m roomserver.media.bench [--viewers 10,20,40] [--relay-viewers 1,2,4] [--seconds 8]
                                     [--width 640 --height 480 --fps 30 --bitrate 1500000] [--json FILE]

One publisher (synthetic VP8, noisy so the encoder really spends `--bitrate`) and N viewers, all
aiortc over loopback in this process; the server under test runs in its own process
(`python -m roomserver.media.bench serve --mode forward|relay`) so its CPU time is its own:

- forward: `MediaRouter` (encoded frames forwarded, no decode/encode);
- relay: `aiortc.contrib.media.MediaRelay` (decode once, one VP8 encode per viewer).

Measured per step: server CPU-seconds per viewer-second (total, and marginal over the
publisher-only baseline), frames each viewer received per second, and with one decoding probe
viewer joining after the others: join → first decoded frame and capture → decoded latency
(both clocks are `time.monotonic()`, which every process on a Linux host shares). Bulk viewers
count encoded frames without decoding so the client side stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from roomserver.cpu_time import process_cpu_seconds

from .client import Publisher, Viewer, post_offer
from .ice import pin_host_addresses, rtc_configuration
from .sfu import MediaRouter
from .synthetic import CounterVideoTrack
from .trickle import Unprocessable
from .whip import MediaPrincipal, media_routes

LOOPBACK = "127.0.0.1"
ROOM = "bench"


# ---------------------------------------------------------------------------- server side


class RelayBackend:
    """The baseline: aiortc's documented way to fan a received track out (decode + re-encode)."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: list = []
        self.pcs: set[RTCPeerConnection] = set()
        self._drains: list[asyncio.Future] = []
        self._n = 0

    async def publish(
        self, room: str, user: str, role: str, offer_sdp: str, layers: tuple[str, ...] | None = None
    ) -> tuple[str, str]:
        pc = RTCPeerConnection(rtc_configuration())
        self.pcs.add(pc)
        pc.on("track", self._on_source)
        return await self._answer(pc, offer_sdp)

    def _on_source(self, track) -> None:
        # Keep the relay reading from the start, as a live server would; otherwise the first
        # viewer starts seconds behind, on decoded frames queued since the publish.
        self.sources.append(track)
        self._drains.append(asyncio.ensure_future(self._drain(self.relay.subscribe(track, buffered=False))))

    @staticmethod
    async def _drain(track) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    async def play(
        self,
        room: str,
        publisher_user: str | None,
        viewer_user: str,
        offer_sdp: str,
        layers: tuple[str, ...] | None = None,  # the baseline has one quality
    ) -> tuple[str, str]:
        pc = RTCPeerConnection(rtc_configuration())
        self.pcs.add(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for track in self.sources:
            # Unbuffered: a viewer whose encoder falls behind skips frames instead of lagging.
            pc.addTrack(self.relay.subscribe(track, buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        self._n += 1
        return str(self._n), pc.localDescription.sdp

    async def stop(
        self, session_id: str, user: str, *, room: str | None = None, kind: str | None = None
    ) -> None:
        return None

    async def trickle(
        self,
        session_id: str,
        user: str,
        fragment_text: str,
        *,
        room: str | None = None,
        kind: str | None = None,
    ) -> None:
        raise Unprocessable("the MediaRelay baseline takes complete offers only")

    async def _answer(self, pc: RTCPeerConnection, offer_sdp: str) -> tuple[str, str]:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self._n += 1
        return str(self._n), pc.localDescription.sdp

    async def close(self) -> None:
        for task in self._drains:
            task.cancel()
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)


def viewer_fps(viewers: list[Any], frames_before: list[int], elapsed: float) -> list[float]:
    """Video frames per second each viewer decoded since ``frames_before`` was taken."""
    return [(v.encoded_frames["video"] - b) / elapsed for v, b in zip(viewers, frames_before, strict=True)]


async def _bench_authorize(request: web.Request, room: str, action: str) -> MediaPrincipal:
    # Benchmark server on loopback only: no tokens, roles by action.
    return MediaPrincipal("host", "host") if action == "publish" else MediaPrincipal("viewer")


async def serve(mode: str) -> None:
    pin_host_addresses([LOOPBACK])
    await serve_backend(MediaRouter(video_queue_frames=60) if mode == "forward" else RelayBackend())


async def serve_backend(backend: MediaRouter | RelayBackend) -> None:
    """A benchmark's server process: WHIP/WHEP for ``backend`` on a free loopback port
    (printed as JSON with our pid) until the benchmark closes our stdin; then the
    backend is closed (a recording gets its trailer and manifest)."""
    app = web.Application()
    app.add_routes(media_routes(backend, _bench_authorize))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    print(json.dumps({"port": runner.addresses[0][1], "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while await stdin.read(4096):  # until the benchmark closes our stdin
        pass
    await backend.close()
    await runner.cleanup()


# ---------------------------------------------------------------------------- client side


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Step:
    mode: str
    viewers: int
    seconds: float
    server_cpu_s: float
    cpu_per_viewer_s: float | None
    marginal_cpu_per_viewer_s: float | None
    # Per viewer-second actually delivered (frames received ÷ fps): fair when a server
    # cannot keep up and viewers get fewer frames than sent.
    cpu_per_delivered_viewer_s: float | None
    viewer_fps_mean: float
    viewer_fps_min: float
    join_to_first_frame_ms: list[float] = field(default_factory=list)
    # Frames captured after the probe's first decoded frame (steady state) ...
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    # ... and every frame, with the catch-up frames a joining viewer gets from its
    # starting keyframe on (their delay is part of joining, measured as join → first frame).
    latency_all_ms_p95: float | None = None
    server_rss_mb: float = 0.0


def frame_latencies(probe: Viewer, sent_at: dict[int, float]) -> tuple[list[float], list[float]]:
    """A decoding probe's capture → decoded latencies in ms: (steady, all). Steady leaves
    out frames captured before the probe decoded its first frame: a viewer starts at a
    keyframe and its first frames are decoded nearly together, a delay that is part of
    joining (measured as join → first frame)."""
    every, steady = [], []
    for sample in probe.video:
        captured = sent_at.get(sample.counter) if sample.counter is not None else None
        if captured is None:
            continue
        every.append((sample.at - captured) * 1000)
        if probe.first_frame_at is not None and captured >= probe.first_frame_at:
            steady.append(every[-1])
    return steady, every


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v == v)  # drop NaN (a probe that saw nothing)
    return round(values[min(len(values) - 1, int(len(values) * q))], 1) if values else None


ProbeResult = tuple[float, list[float], list[float]]  # join → first frame, steady, all (ms)


def measured_fields(
    *,
    viewers: int,
    elapsed: float,
    cpu: float,
    baseline: float | None,
    fps: list[float],
    source_fps: int,
    probes: list[ProbeResult],
) -> dict[str, Any]:
    """The `Step` fields both media benchmarks compute the same way from one window:
    server CPU over it, each viewer's fps, and the decoding probes that joined after it."""
    delivered = sum(fps) * elapsed / source_fps  # viewer-seconds actually delivered
    steady = [x for _, lat, _ in probes for x in lat]
    every = [x for _, _, lat_all in probes for x in lat_all]
    return {
        "viewers": viewers,
        "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu, 3),
        "cpu_per_viewer_s": round(cpu / (viewers * elapsed), 4) if viewers else None,
        "marginal_cpu_per_viewer_s": (
            round((cpu / elapsed - baseline) / viewers, 4) if viewers and baseline is not None else None
        ),
        "cpu_per_delivered_viewer_s": round(cpu / delivered, 4) if delivered else None,
        "viewer_fps_mean": round(statistics.fmean(fps), 1) if fps else 0.0,
        "viewer_fps_min": round(min(fps), 1) if fps else 0.0,
        "join_to_first_frame_ms": [round(first, 1) for first, _, _ in probes],
        "latency_ms_p50": percentile(steady, 0.5),
        "latency_ms_p95": percentile(steady, 0.95),
        "latency_all_ms_p95": percentile(every, 0.95),
    }


class ServerProcess:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.pid = 0

    async def __aenter__(self) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "roomserver.media.bench",
            "serve",
            "--mode",
            self.mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None  # stdout=PIPE
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        info = json.loads(line)
        self.port, self.pid = info["port"], info["pid"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        await end_child(self.process)


async def end_child(process: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
    """End a child that stops when its stdin closes; killed if it takes over ``timeout``."""
    if process.returncode is not None:
        return
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()


async def connect_peer(
    http: aiohttp.ClientSession, url: str, peer: Publisher | Viewer, token: str | None
) -> str:
    """WHIP or WHEP: post the peer's offer (with ``token``), apply the answer (returned)."""
    reply = await post_offer(http, url, await peer.offer(), token)
    if reply.status != 201:
        raise RuntimeError(f"{url}: {reply.status} {reply.body}")
    await peer.accept(reply.body)
    return reply.body


async def _probe(
    http: aiohttp.ClientSession, base: str, video: CounterVideoTrack, seconds: float
) -> tuple[float, list[float], list[float]]:
    """A decoding viewer joins: (join → first decoded frame in ms, steady and all
    frame latencies in ms: see ``frame_latencies``)."""
    probe = Viewer(decode=True)
    try:
        await connect_peer(http, f"{base}/v1/rooms/{ROOM}/whep", probe, None)
        if not await probe.wait_for(lambda v: bool(v.video), timeout=10):
            return float("nan"), [], []
        assert probe.first_frame_at is not None and probe.offered_at is not None  # video came
        first = (probe.first_frame_at - probe.offered_at) * 1000
        await asyncio.sleep(seconds)
        return (first, *frame_latencies(probe, video.sent_at))
    finally:
        await probe.close()


FIRST_FRAME_TIMEOUT_S = 20.0


async def run_mode(mode: str, counts: list[int], args: argparse.Namespace) -> list[Step]:
    steps: list[Step] = []
    async with ServerProcess(mode) as server, aiohttp.ClientSession() as http:
        base = f"http://{LOOPBACK}:{server.port}"
        video = CounterVideoTrack(args.width, args.height, args.fps, detail=True)
        publisher = Publisher([video], video_codec="VP8")
        viewers: list[Viewer] = []
        try:
            await connect_peer(http, f"{base}/v1/rooms/{ROOM}/whip", publisher, None)
            await asyncio.sleep(args.settle)
            # A loaded box may take longer than the settle time to send the first frame
            # (ICE and DTLS done, the encoder's first frame): wait for it, bounded.
            deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
            while video.count == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if video.count == 0:
                raise RuntimeError(f"the publisher sent no frame within {FIRST_FRAME_TIMEOUT_S:.0f} s")
            baseline: float | None = None
            for target in [0, *counts]:
                while len(viewers) < target:
                    viewer = Viewer(decode=False)
                    viewers.append(viewer)
                    await connect_peer(http, f"{base}/v1/rooms/{ROOM}/whep", viewer, None)
                await asyncio.sleep(args.settle)  # joins and their keyframes are over
                frames_before = [v.encoded_frames["video"] for v in viewers]
                cpu_before, t0 = process_cpu_seconds(server.pid), time.monotonic()
                await asyncio.sleep(args.seconds)
                cpu, elapsed = process_cpu_seconds(server.pid) - cpu_before, time.monotonic() - t0
                fps = viewer_fps(viewers, frames_before, elapsed)
                if target == 0:
                    baseline = cpu / elapsed
                probes = [await _probe(http, base, video, args.probe_seconds) for _ in range(args.probes)]
                step = Step(
                    mode=mode,
                    **measured_fields(
                        viewers=target,
                        elapsed=elapsed,
                        cpu=cpu,
                        baseline=baseline,
                        fps=fps,
                        source_fps=args.fps,
                        probes=probes,
                    ),
                    server_rss_mb=round(process_rss_mb(server.pid), 1),
                )
                steps.append(step)
                print(json.dumps(asdict(step)), flush=True)
            stats = await publisher.pc.getSenders()[0].getStats()
            sent = next(s for s in stats.values() if s.type == "outbound-rtp")
            print(
                json.dumps(
                    {"mode": mode, "publisher_kbps": round(sent.bytesSent * 8 / 1000 / _elapsed(video), 1)}
                )
            )
        finally:
            for viewer in viewers:
                with contextlib.suppress(Exception):
                    await viewer.close()
            await publisher.close()
    return steps


def _elapsed(video: CounterVideoTrack) -> float:
    return max(1e-6, video.count / video.fps)


def _force_vp8_bitrate(bps: int) -> None:
    """aiortc adapts VP8 between 250 kbps and 1.5 Mbps from REMB; pin it for a fixed load."""
    from aiortc.codecs import vpx

    vpx.MIN_BITRATE = vpx.DEFAULT_BITRATE = vpx.MAX_BITRATE = bps


async def bench(args: argparse.Namespace) -> dict:
    pin_host_addresses([LOOPBACK])
    _force_vp8_bitrate(args.bitrate)
    result: dict = {"config": vars(args).copy(), "loadavg_before": os.getloadavg(), "steps": []}
    for mode, counts in (("forward", args.viewers), ("relay", args.relay_viewers)):
        if counts:
            result["steps"] += [asdict(s) for s in await run_mode(mode, counts, args)]
    result["loadavg_after"] = os.getloadavg()
    return result


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--viewers", type=_counts, default=[10, 20, 40], help="forwarder steps, e.g. 10,20,40"
    )
    parser.add_argument(
        "--relay-viewers", type=_counts, default=[1, 2, 4], help="MediaRelay steps ('' to skip)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per step")
    parser.add_argument("--probes", type=int, default=3, help="late-joining decoding viewers per step")
    parser.add_argument("--probe-seconds", type=float, default=1.5, help="how long each probe watches")
    parser.add_argument("--settle", type=float, default=2.0, help="wait after joins before measuring")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--json", default=None, help="write the results here")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve_parser = argparse.ArgumentParser(prog="roomserver.media.bench serve")
        serve_parser.add_argument("--mode", choices=["forward", "relay"], required=True)
        asyncio.run(serve(serve_parser.parse_args(argv[1:]).mode))
        return
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(bench(args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
