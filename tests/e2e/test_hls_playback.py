"""hls.js (vendored, web_client/vendor/hlsjs/) plays a room's live HLS in Chromium (issue 14):
the rendition made by the real remuxer (an aiortc H.264+Opus publisher through a MediaRouter)
in the e2e server's data directory, served by its `GET /v1/rooms/{room}/hls/{file}` with the
viewer's token, decoded and played by the browser (its decoded-frame count and clock advance)."""

from __future__ import annotations

import asyncio
import shutil
import time

from roomserver.auth import DEV_APP
from roomserver.core.replay import hls_dir
from roomserver.media.client import Publisher
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack
from roomserver.tenancy import room_key
from tests.e2e.conftest import READY_MS, Pages
from tests.media.test_hls import parse_playlist

PLAY = """([url, token]) => new Promise((resolve) => {
  const video = document.createElement("video");
  video.muted = true;
  document.body.append(video);
  if (!window.Hls || !window.Hls.isSupported()) return resolve("hls.js not supported");
  const hls = new window.Hls({ xhrSetup: (xhr) => xhr.setRequestHeader("Authorization", `Bearer ${token}`) });
  window.hlsErrors = [];
  hls.on(window.Hls.Events.ERROR, (_, data) => { if (data.fatal) window.hlsErrors.push(data.details); });
  hls.loadSource(url);
  hls.attachMedia(video);
  hls.on(window.Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); resolve("ok"); });
  window.video = video;
})"""


async def test_hls_js_plays_the_live_rendition(pages: Pages, room: str) -> None:
    directory = hls_dir(pages.server.config.data_dir, room_key(DEV_APP, room))
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    publisher = Publisher([CounterVideoTrack(), ToneAudioTrack()], video_codec="H264")
    try:
        _, answer = await router.publish(room, "host1", "host", await publisher.offer())
        await publisher.accept(answer)
        router.start_hls(room, str(directory))
        deadline = time.monotonic() + 30
        playlist = directory / "index.m3u8"
        while not (playlist.exists() and len(parse_playlist(playlist.read_text())[1]) >= 3):
            assert time.monotonic() < deadline, "no live playlist"
            await asyncio.sleep(0.1)

        page = await pages.blank("hls-viewer")
        await page.goto(f"{pages.server.url}/healthz")  # the server's origin, no CORS involved
        await page.add_script_tag(url="/vendor/hlsjs/hls.min.js")
        token = pages.server.token("hls-viewer", "viewer")
        assert await page.evaluate(PLAY, [f"/v1/rooms/{room}/hls/index.m3u8", token]) == "ok"
        await page.wait_for_function(
            "window.video.currentTime > 1.5 && window.video.getVideoPlaybackQuality().totalVideoFrames > 30",
            timeout=READY_MS,
        )
        assert await page.evaluate("window.hlsErrors") == []
        assert await page.evaluate("[window.video.videoWidth, window.video.videoHeight]") == [320, 240]
    finally:
        await publisher.close()
        await router.close()
        shutil.rmtree(directory, ignore_errors=True)
