"""Recording cost (issue 14): server CPU with recording on vs off for one publisher, same run.

    python -m loadtest.recording_bench [--runs 3] [--seconds 10] [--codec VP8|H264]
                                       [--width 640 --height 480 --fps 30 --bitrate 1500000]

One aiortc publisher (synthetic noisy video so VP8 really spends `--bitrate`, plus an Opus
tone) publishes over WHIP to a `MediaRouter` in its own process (`serve`), so the CPU-seconds
read from /proc are the server's alone. Runs alternate off, on, off, on… (a fresh server each,
the same publisher settings), so load from other work on a shared machine hits both alike.
"On" records the publisher with `MediaRouter.start_recording` into a temporary directory
(deleted afterwards); the file's size gives the recorded bitrate. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from roomserver.cpu_time import process_cpu_seconds
from roomserver.media.bench import _force_vp8_bitrate, end_child, serve_backend
from roomserver.media.client import Publisher, post_offer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.recording import RecordingTarget
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack

LOOPBACK = "127.0.0.1"
ROOM = "bench"


async def serve(record_dir: str | None) -> None:
    pin_host_addresses([LOOPBACK])
    router = MediaRouter()
    if record_dir:
        router.start_recording(ROOM, RecordingTarget(record_dir, 1, int(time.time() * 1000)))
    await serve_backend(router)


async def one_run(args: argparse.Namespace, record: bool) -> dict:
    record_dir = tempfile.mkdtemp(prefix="recbench-") if record else ""
    cmd = [sys.executable, "-m", "loadtest.recording_bench", "serve"] + (
        ["--record", record_dir] if record else []
    )
    process = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    publisher = None
    try:
        assert process.stdout is not None
        info = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        video = CounterVideoTrack(args.width, args.height, args.fps, detail=True)
        publisher = Publisher([video, ToneAudioTrack()], video_codec=args.codec)
        async with aiohttp.ClientSession() as http:
            reply = await post_offer(
                http, f"http://{LOOPBACK}:{info['port']}/v1/rooms/{ROOM}/whip", await publisher.offer(), None
            )
            assert reply.status == 201, reply.body
            await publisher.accept(reply.body)
        await asyncio.sleep(args.settle)
        cpu0, t0, frames0 = process_cpu_seconds(info["pid"]), time.monotonic(), video.count
        await asyncio.sleep(args.seconds)
        cpu1, t1, frames1 = process_cpu_seconds(info["pid"]), time.monotonic(), video.count
    finally:
        if publisher is not None:
            await publisher.close()
        await end_child(process)
    result = {
        "record": record,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cores": round((cpu1 - cpu0) / (t1 - t0), 4),
        "publisher_fps": round((frames1 - frames0) / (t1 - t0), 1),
    }
    if record:
        files = [p for p in Path(record_dir).iterdir() if p.suffix in (".webm", ".mp4")]
        manifest = json.loads(next(Path(record_dir).glob("*.json")).read_text())
        size = sum(p.stat().st_size for p in files)
        result["recorded_kbps"] = round(size * 8 / 1000 / max(1e-6, manifest["duration_s"] or 1e-6))
        result["recorded_s"] = manifest["duration_s"]
        for p in Path(record_dir).iterdir():
            p.unlink()
        os.rmdir(record_dir)
    return result


async def bench(args: argparse.Namespace) -> dict:
    pin_host_addresses([LOOPBACK])
    _force_vp8_bitrate(args.bitrate)
    out: dict = {
        "config": vars(args).copy(),
        "cores": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "runs": [],
    }
    for _ in range(args.runs):
        for record in (False, True):
            out["runs"].append(await one_run(args, record))
    off = [r["server_cores"] for r in out["runs"] if not r["record"]]
    on = [r["server_cores"] for r in out["runs"] if r["record"]]
    out["server_cores_off_median"] = statistics.median(off)
    out["server_cores_on_median"] = statistics.median(on)
    out["recording_cost_cores"] = round(statistics.median(on) - statistics.median(off), 4)
    out["loadavg_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve_parser = argparse.ArgumentParser(prog="loadtest.recording_bench serve")
        serve_parser.add_argument("--record", default=None)
        asyncio.run(serve(serve_parser.parse_args(argv[1:]).record))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="off/on pairs")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    parser.add_argument("--settle", type=float, default=3.0, help="wait after the publish before measuring")
    parser.add_argument("--codec", choices=["VP8", "H264"], default="VP8")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    print(json.dumps(asyncio.run(bench(parser.parse_args(argv))), indent=2))


if __name__ == "__main__":
    main()
