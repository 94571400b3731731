"""HLS glass-to-glass latency (issue 14): capture → shown by hls.js in Chromium.

    python -m loadtest.hls_latency [--seconds 20] [--mode ll|plain] [--sync-count 3] [--codec H264|VP8]

One aiortc publisher (320×240 30 fps + Opus; H.264 remuxed, or VP8 transcoded) → `MediaRouter`
→ live LL-HLS (media/hls.py: ≈ 0.25 s parts, ~1 s fMP4 segments, 6-segment playlist) in a
temporary directory, served by a small aiohttp app (the playlist with the server's blocking
reload, `playlist_when_ready`) with the vendored hls.js; Debian's Chromium plays it.
`--mode ll`: hls.js as shipped (`lowLatencyMode` on: it plays parts, PART-HOLD-BACK behind the
edge); `--mode plain`: `lowLatencyMode` off, whole segments only. The rendition's timeline starts at the
wall time its first frame was muxed (`started_at_ms`), so a shown frame's capture time is about
`started_at_ms + video.currentTime` (less the few tens of ms from capture to the SFU, which this
leaves in, so the figure slightly under-counts); latency = `Date.now()` minus that, sampled every
250 ms once playing. Same machine, one wall clock. `--sync-count` is hls.js's
`liveSyncDurationCount` in plain mode (its default 3: how many target durations behind the live
edge it plays).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright

from roomserver.core import llhls
from roomserver.media.client import Publisher
from roomserver.media.hls import playlist_when_ready
from roomserver.media.ice import pin_host_addresses
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack

LOOPBACK = "127.0.0.1"
HLSJS = Path(__file__).resolve().parent.parent / "web_client" / "vendor" / "hlsjs" / "hls.min.js"
PAGE = """<!doctype html><video id=v muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
const v = document.getElementById("v");
const hls = new Hls(%s);
hls.loadSource("/hls/index.m3u8");
hls.attachMedia(v);
hls.on(Hls.Events.MANIFEST_PARSED, () => v.play());
</script>"""


async def bench(args: argparse.Namespace) -> dict:
    pin_host_addresses([LOOPBACK])
    directory = Path(tempfile.mkdtemp(prefix="hlsbench-"))
    router = MediaRouter(ice_host=LOOPBACK)
    publisher = Publisher(
        [CounterVideoTrack(args.width, args.height, detail=args.detail), ToneAudioTrack()],
        video_codec=args.codec,
    )
    app = web.Application()

    async def index(request: web.Request) -> web.Response:
        config = (
            "{}"
            if args.mode == "ll"
            else json.dumps({"lowLatencyMode": False, "liveSyncDurationCount": args.sync_count})
        )
        return web.Response(text=PAGE % config, content_type="text/html")

    async def playlist(request: web.Request) -> web.Response:
        wanted = llhls.reload_request(request.query.get("_HLS_msn"), request.query.get("_HLS_part"))
        text = await playlist_when_ready(directory / "index.m3u8", wanted)
        if text is None:
            return web.Response(status=503)
        return web.Response(body=text.encode(), content_type="application/vnd.apple.mpegurl")

    async def hlsjs(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HLSJS)

    app.router.add_get("/", index)
    app.router.add_get("/hls.min.js", hlsjs)
    app.router.add_get("/hls/index.m3u8", playlist)
    app.router.add_static("/hls/", directory, append_version=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    port = runner.addresses[0][1]
    out: dict = {"config": vars(args).copy(), "cores": os.cpu_count(), "loadavg_before": os.getloadavg()}
    try:
        session, answer = await router.publish("bench", "host", "host", await publisher.offer())
        await publisher.accept(answer)
        router.start_hls("bench", str(directory))
        rendition = router.hls(session)
        assert rendition is not None
        while not (directory / "index.m3u8").exists():
            await asyncio.sleep(0.05)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
            )
            page = await browser.new_page()
            await page.goto(f"http://{LOOPBACK}:{port}/")
            await page.wait_for_function("document.getElementById('v').currentTime > 0", timeout=60_000)
            samples = []
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                shown_s, now_ms = await page.evaluate(
                    "[document.getElementById('v').currentTime, Date.now()]"
                )
                assert rendition.started_at_ms is not None
                samples.append(now_ms - (rendition.started_at_ms + shown_s * 1000))
                await asyncio.sleep(0.25)
            await browser.close()
        if rendition.transcoder is not None:  # a VP8 publisher: the transcoder's own thread
            t = rendition.transcoder
            out["transcode"] = {
                "frames": t.encoded,
                "dropped": t.dropped,
                "cpu_s": round(t.cpu_s, 3),
                "cpu_ms_per_frame": round(1000 * t.cpu_s / max(1, t.encoded), 2),
            }
        out["samples"] = len(samples)
        out["latency_ms_p50"] = round(statistics.median(samples))
        out["latency_ms_p95"] = round(sorted(samples)[int(0.95 * (len(samples) - 1))])
        out["latency_ms_min"] = round(min(samples))
        out["latency_ms_max"] = round(max(samples))
    finally:
        await publisher.close()
        await router.close()
        await runner.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
    out["loadavg_after"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling window once playing")
    parser.add_argument("--mode", choices=("ll", "plain"), default="ll", help="hls.js lowLatencyMode on/off")
    parser.add_argument("--sync-count", type=int, default=3, help="hls.js liveSyncDurationCount (plain)")
    parser.add_argument("--codec", choices=("H264", "VP8"), default="H264", help="the publisher's video")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--detail", action="store_true", help="textured frames (VP8 near 1.5 Mbit/s)")
    print(json.dumps(asyncio.run(bench(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
