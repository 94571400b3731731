"""hls.js (vendored, web_client/vendor/hlsjs/) plays a room's live HLS in Chromium (issue 14):
the rendition made by the real remuxer (an aiortc H.264+Opus publisher through a MediaRouter)
in the e2e server's data directory, served by its `GET /v1/rooms/{room}/hls/{file}` with the
viewer's token, decoded and played by the browser (its decoded-frame count and clock advance)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import READY_MS, Pages
from tests.e2e.hls_rendition import live_rendition

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


# H.264 remuxed as the host sent it, and VP8 (what a browser host sends) transcoded by x264.
@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_hls_js_plays_the_live_rendition(pages: Pages, room: str, codec: str) -> None:
    async with live_rendition(pages, room, codec):
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
