"""`media` scenario: WebRTC viewers against a real `roomserver serve`, with MediaRelay beside it.

    python -m loadtest.media --viewers 20,40,60 --workers 0 --relay-viewers 1,2,4
    python -m loadtest.media --viewers 40,80 --rooms 2 --workers 1,2 --relay-viewers ''
    python -m loadtest.media --viewers 150,300 --forwarding rtp,frame --relay-viewers ''

`--forwarding` runs the server once per `--media-forwarding` mode (RTP-level or frame-level)
in the same invocation, so the two are compared under the same machine load.

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
under the same load for the side-by-side CPU comparison. Each publisher runs in its own
process (its VP8 encoder must not slow down with the viewers' loop); bulk viewers count
encoded frames without decoding and run in `--viewer-procs` child processes
(`loadtest/media_viewers.py`), so the decoding probes in this process have a quiet event loop;
read latencies as "client-bound" when the machine nears its two cores (reported per step: the
client's CPU, the other tenants' share, the publishers' real frame rate and stalled viewers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.cpuquota import CpuQuota, quota_name
from loadtest.media_viewers import ViewerProcess
from loadtest.procs import (
    NO_CLIENT_LIMITS,
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
from roomserver.media.client import Publisher, Viewer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.synthetic import CounterVideoTrack

LOOPBACK = "127.0.0.1"


@dataclass
class MediaStep(bench.Step):
    workers: int = 0
    rooms: int = 1
    forwarding: str = "rtp"
    # CPU-seconds of each process of the server tree over the window (main first).
    process_cpu_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0  # the load generator: viewers and publisher processes
    other_tenants_cores: float = 0.0
    join_to_first_frame_p95_ms: float | None = None
    # Frames per second the publishers captured in the window (the most a viewer can get).
    source_fps: float = 0.0
    # Viewers whose peer connection is not "connected" at the end of the window, and
    # viewers that got less than one frame per second (stalled).
    viewers_not_connected: int = 0
    viewers_stalled: int = 0
    # RTP packets the bulk viewers never got (gaps in sequence numbers) in the window.
    lost_packets: int = 0


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

    def __init__(self, workers: int, log_level: str = "WARNING", forwarding: str = "rtp") -> None:
        self.servers = ServerSet()
        self.workers = workers
        self.forwarding = forwarding
        self.log_level = log_level
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
                "--media-forwarding",
                self.forwarding,
                *NO_CLIENT_LIMITS,
                "--log-level",
                self.log_level,
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


async def _probe(
    http: aiohttp.ClientSession,
    sut: MediaServerUnderTest,
    room: str,
    video: RemotePublisher,
    seconds: float,
) -> tuple[float, list[float], list[float]]:
    """A decoding viewer joins: (join → first decoded frame in ms, steady and all frame
    latencies in ms: see ``bench.frame_latencies``)."""
    probe = Viewer(decode=True)
    try:
        try:
            await bench.connect_peer(http, f"{sut.base}/v1/rooms/{room}/whep", probe, sut.token("probe"))
        except RuntimeError as exc:  # e.g. the room's publisher dropped: recorded, the run goes on
            print(f"probe failed: {exc}", file=sys.stderr, flush=True)
            return float("nan"), [], []
        if not await probe.wait_for(lambda v: bool(v.video), timeout=10):
            return float("nan"), [], []
        assert probe.first_frame_at is not None and probe.offered_at is not None  # video came
        first = (probe.first_frame_at - probe.offered_at) * 1000
        await asyncio.sleep(seconds)
        return (first, *bench.frame_latencies(probe, video.sent_at))
    finally:
        await probe.close()


class _ReportingTrack(CounterVideoTrack):
    """Prints "n sent_at" per frame: the load tester learns each frame's capture time."""

    async def recv(self):  # type: ignore[override]
        frame = await super().recv()
        n = self.count - 1
        sys.stdout.write(f"{n} {self.sent_at[n]:.6f}\n")
        sys.stdout.flush()
        return frame


async def _publisher_process(url: str, token: str, width: int, height: int, fps: int, bitrate: int) -> None:
    """`python -m loadtest.media publish URL TOKEN W H FPS BPS`: one WHIP publisher until stdin closes."""
    pin_host_addresses([LOOPBACK])
    bench._force_vp8_bitrate(bitrate)
    publisher = Publisher([_ReportingTrack(width, height, fps, detail=True)], video_codec="VP8")
    async with aiohttp.ClientSession() as http:
        await bench.connect_peer(http, url, publisher, token)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        while await stdin.read(4096):
            pass
    finally:
        await publisher.close()


class RemotePublisher:
    """A publisher in its own process: its VP8 encoder (the costliest part of the load
    generator) does not share an event loop with the viewers, so a busy viewer loop does
    not slow the source down for everyone. ``sent_at`` mirrors the track's capture times
    (one clock for every process of the host) for the latency probes."""

    def __init__(self, url: str, token: str, args: argparse.Namespace) -> None:
        self.cmd = [sys.executable, "-m", "loadtest.media", "publish", url, token]
        self.cmd += [str(args.width), str(args.height), str(args.fps), str(args.bitrate)]
        self.sent_at: dict[int, float] = {}
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._first = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 30.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.ensure_future(self._read())
        await asyncio.wait_for(self._first.wait(), timeout)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            n, at = line.split()
            self.sent_at[int(n)] = float(at)
            self._first.set()
            if len(self.sent_at) > 20_000:
                del self.sent_at[next(iter(self.sent_at))]

    async def close(self) -> None:
        if self.process is None:
            return
        await bench.end_child(self.process)
        if self._reader is not None:
            self._reader.cancel()


def _client_cpu(publishers: list[RemotePublisher], viewer_procs: list[ViewerProcess]) -> float:
    """The load generator's CPU: this process (probes), the publisher and viewer processes."""
    pids = [p.pid for p in publishers] + [v.pid for v in viewer_procs]
    return self_cpu_seconds() + sum(cpu_seconds(pid) for pid in pids)


async def _frames(procs: list[ViewerProcess]) -> tuple[list[int], list[int], int]:
    """Video frames and lost packets of every bulk viewer (process by process), and how
    many are not connected."""
    frames: list[int] = []
    lost: list[int] = []
    not_connected = 0
    for got, gone, down in await asyncio.gather(*(p.stats() for p in procs)):
        frames += got
        lost += gone
        not_connected += down
    return frames, lost, not_connected


async def run_server(
    workers: int, args: argparse.Namespace, errors: list[dict[str, Any]], forwarding: str = "rtp"
) -> list[MediaStep]:
    """The viewer steps against one server; a step whose viewers cannot all join (a
    saturated worker drops its publisher) is recorded in ``errors`` and ends this mode."""
    steps: list[MediaStep] = []
    rooms = [f"lt-media-{i}" for i in range(args.rooms)]
    label = f"server/{workers}w/{forwarding}"
    with (
        MediaServerUnderTest(workers, args.server_log_level, forwarding) as sut,
        contextlib.ExitStack() as caps,
    ):
        server = sut.server
        assert server is not None  # started by __enter__
        print(f"server log: {server.log_path}", file=sys.stderr, flush=True)
        if args.worker_cpu_quota and workers:
            # Each media worker gets its own cap: a "core" of worker_cpu_quota CPUs.
            for i, pid in enumerate(descendants(server.pid)):
                cap = CpuQuota(quota_name(f"w{workers}-{i}"), args.worker_cpu_quota)
                caps.callback(cap.close)
                cap.add(pid)
        async with aiohttp.ClientSession() as http:
            videos = [
                RemotePublisher(f"{sut.base}/v1/rooms/{room}/whip", sut.token(f"host{i}", "host"), args)
                for i, room in enumerate(rooms)
            ]
            procs = [ViewerProcess() for _ in range(args.viewer_procs)]
            placed = 0  # viewers connected so far, round-robin over rooms and processes
            try:
                for proc in procs:
                    await proc.start()
                for video in videos:
                    await video.start()
                await asyncio.sleep(args.settle)
                baseline: float | None = None
                for target in [0, *args.viewers]:
                    batches: list[list[tuple[str, str]]] = [[] for _ in procs]
                    while placed < target:
                        room = rooms[placed % len(rooms)]
                        url = f"{sut.base}/v1/rooms/{room}/whep"
                        batches[placed % len(procs)].append((url, sut.token(f"v{placed + 1}")))
                        placed += 1
                    try:
                        await asyncio.gather(*(p.add(b) for p, b in zip(procs, batches, strict=True) if b))
                    except RuntimeError as exc:
                        errors.append({"mode": label, "viewers": target, "error": str(exc)})
                        print(f"{label} at {target} viewers: {exc}", file=sys.stderr, flush=True)
                        break
                    await asyncio.sleep(args.settle)
                    pids = sut.pids()
                    frames_before = await _frames(procs)
                    sent_before = sum(len(v.sent_at) for v in videos)
                    cpu_before = [cpu_seconds(p) for p in pids]
                    client_before, machine_before = _client_cpu(videos, procs), machine_cpu()["busy"]
                    t0 = time.monotonic()
                    await asyncio.sleep(args.seconds)
                    elapsed = time.monotonic() - t0
                    frames_after = await _frames(procs)
                    source_fps = (sum(len(v.sent_at) for v in videos) - sent_before) / elapsed / len(videos)
                    per_process = [cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True)]
                    client_cpu = _client_cpu(videos, procs) - client_before
                    busy = machine_cpu()["busy"] - machine_before
                    cpu = sum(per_process)
                    fps = [(a - b) / elapsed for a, b in zip(frames_after[0], frames_before[0], strict=True)]
                    if target == 0:
                        baseline = cpu / elapsed
                    probes = [
                        await _probe(
                            http, sut, rooms[k % len(rooms)], videos[k % len(rooms)], args.probe_seconds
                        )
                        for k in range(args.probes)
                    ]
                    step = MediaStep(
                        mode=label,
                        **bench.measured_fields(
                            viewers=target,
                            elapsed=elapsed,
                            cpu=cpu,
                            baseline=baseline,
                            fps=fps,
                            source_fps=args.fps,
                            probes=probes,
                        ),
                        server_rss_mb=round(tree_rss_mb(pids), 1),
                        workers=workers,
                        rooms=len(rooms),
                        forwarding=forwarding,
                        process_cpu_s=[round(c, 3) for c in per_process],
                        client_cpu_s=round(client_cpu, 3),
                        other_tenants_cores=round(max(0.0, busy - cpu - client_cpu) / elapsed, 2),
                        join_to_first_frame_p95_ms=bench.percentile([p[0] for p in probes], 0.95),
                        source_fps=round(source_fps, 1),
                        viewers_not_connected=frames_after[2],
                        lost_packets=sum(frames_after[1]) - sum(frames_before[1]),
                        viewers_stalled=sum(f < 1 for f in fps),
                    )
                    steps.append(step)
                    print(json.dumps(asdict(step)), file=sys.stderr, flush=True)
            finally:
                await asyncio.gather(*(p.close() for p in procs), return_exceptions=True)
                for video in videos:
                    with contextlib.suppress(Exception):
                        await video.close()
    return steps


def table(steps: list[dict[str, Any]]) -> str:
    """A markdown table of the steps (docs/benchmarks.md style)."""
    head = (
        "| server | viewers | CPU-s/viewer-s | marginal | per delivered | viewer fps (min) "
        "| join→first frame p95 | latency p50/p95 (all p95) | server cores | client cores | others | source fps | stalled | lost packets |"
    )
    rows = [head, "|" + "---|" * 14]
    for s in steps:
        cores = s["server_cpu_s"] / s["seconds"] if s["seconds"] else 0
        rows.append(
            f"| {s['mode']} | {s['viewers']} | {s['cpu_per_viewer_s']} | {s['marginal_cpu_per_viewer_s']} "
            f"| {s['cpu_per_delivered_viewer_s']} | {s['viewer_fps_mean']} ({s['viewer_fps_min']}) "
            f"| {s.get('join_to_first_frame_p95_ms', max(s['join_to_first_frame_ms'], default=None))} "
            f"| {s['latency_ms_p50']}/{s['latency_ms_p95']} ({s.get('latency_all_ms_p95')}) | {cores:.2f} "
            f"| {s.get('client_cpu_s', 0) / s['seconds']:.2f} | {s.get('other_tenants_cores', '')} "
            f"| {s.get('source_fps', '')} | {s.get('viewers_stalled', '')} | {s.get('lost_packets', '')} |"
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
        "errors": [],
    }
    for workers in args.workers:
        for forwarding in args.forwarding:
            steps = await run_server(workers, args, result["errors"], forwarding)
            result["steps"] += [asdict(s) for s in steps]
    if args.relay_viewers:
        result["steps"] += [asdict(s) for s in await bench.run_mode("relay", args.relay_viewers, args)]
    result["loadavg_end"] = list(os.getloadavg())
    return result


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _modes(text: str) -> list[str]:
    modes = [x.strip() for x in text.split(",") if x.strip()]
    if not modes or any(m not in ("rtp", "frame") for m in modes):
        raise argparse.ArgumentTypeError(f"{text!r}: give rtp, frame or rtp,frame")
    return modes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--viewers", type=_counts, default=[20, 40, 60], help="viewer steps, e.g. 20,40,60")
    p.add_argument("--rooms", type=int, default=1, help="rooms (one publisher each); viewers round-robin")
    p.add_argument("--workers", type=_counts, default=[0], help="--media-workers runs, e.g. 0 or 1,2")
    p.add_argument(
        "--forwarding",
        type=_modes,
        default=["rtp"],
        help="--media-forwarding runs, e.g. rtp,frame (each against a fresh server, same invocation)",
    )
    p.add_argument("--relay-viewers", type=_counts, default=[1, 2, 4], help="MediaRelay steps ('' to skip)")
    p.add_argument("--seconds", type=float, default=8.0, help="measurement window per step")
    p.add_argument("--probes", type=int, default=5, help="late-joining decoding viewers per step")
    p.add_argument(
        "--viewer-procs", type=int, default=2, help="processes hosting the bulk (non-decoding) viewers"
    )
    p.add_argument("--probe-seconds", type=float, default=1.5)
    p.add_argument("--settle", type=float, default=2.0, help="wait after joins before measuring")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=1_500_000)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    p.add_argument("--server-log-level", default="WARNING", help="INFO logs every media session's end")
    p.add_argument(
        "--worker-cpu-quota",
        type=float,
        default=0.0,
        help="cap each media worker at this many CPUs (a cgroup; root): scaling with cores on a small box",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["publish"]:  # the publisher process started by RemotePublisher
        url, token, width, height, fps, bitrate = argv[1:7]
        asyncio.run(_publisher_process(url, token, int(width), int(height), int(fps), int(bitrate)))
        return 0
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
        from loadtest.plots import plot_media

        plot_media(result["steps"], args.out.with_suffix(".png"))
    print(text)
    print(table(result["steps"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
