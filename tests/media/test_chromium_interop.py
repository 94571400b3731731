"""Interop with a real browser: Chromium publishes over WHIP and plays over WHEP through the
forwarding unit (its offers carry what aiortc's do not: transport-cc, many H.264 profiles,
RED/CN audio), and an aiortc viewer plays the browser's stream too."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright

from roomserver.media.client import Viewer, post_offer
from roomserver.media.sfu import MediaRouter

from .conftest import PAGES, MediaServer, make_token

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]

PAGE = """<!doctype html><html><body><script>
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise(r => pc.addEventListener('icegatheringstatechange',
    () => pc.iceGatheringState === 'complete' && r()));
}
async function negotiate(url, token, pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(url, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}});
  const answer = await r.text();
  if (r.status !== 201) throw new Error(r.status + ' ' + answer);
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
}
window.publish = async (room, codec, token) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240}, audio: true});
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, {direction: 'sendonly'});
    if (track.kind === 'video') t.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs
      .filter(c => c.mimeType === 'video/' + codec || c.mimeType === 'video/rtx'));
  }
  await negotiate(`/v1/rooms/${room}/whip`, token, pc);
  window.publishers = (window.publishers || []).concat([pc]);
};
window.play = async (room, token, ms) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await negotiate(`/v1/rooms/${room}/whep`, token, pc);
  await new Promise(r => setTimeout(r, ms));
  const stats = {};
  (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') stats[s.kind] = s; });
  const sent = {};
  for (const p of window.publishers) (await p.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') sent.pli = (sent.pli || 0) + s.pliCount; });
  pc.close();
  return {frames: stats.video.framesDecoded, keyframes: stats.video.keyFramesDecoded,
          lost: stats.video.packetsLost, audioBytes: stats.audio.bytesReceived, publisherPli: sent.pli};
};
window.stop = () => { for (const p of window.publishers) p.close(); };
</script></body></html>"""


PAGES["interop"] = PAGE


async def test_chromium_publishes_and_plays_vp8_and_h264(
    media_server: MediaServer, router: MediaRouter
) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(media_server.url("/pages/interop"))
            for room, codec in (("rv", "VP8"), ("rh", "H264")):
                await page.evaluate(
                    "a => window.publish(...a)", [room, codec, make_token(f"h-{room}", "host")]
                )
                assert router.publishers(room)[0]["tracks"] == [
                    {"kind": "audio", "codec": "opus"},
                    {"kind": "video", "codec": codec},
                ]
                result = await page.evaluate(
                    "a => window.play(...a)", [room, make_token("browser-viewer"), 2500]
                )
                assert result["frames"] >= 20, result
                assert result["keyframes"] >= 1 and result["lost"] == 0, result
                assert result["audioBytes"] > 1000, result
                assert result["publisherPli"] >= 1, result  # the viewer's join keyframe came from upstream

                viewer = Viewer(("audio", "video"))
                reply = await post_offer(
                    media_server.http,
                    media_server.url(f"/v1/rooms/{room}/whep"),
                    await viewer.offer(),
                    make_token("v"),
                )
                assert reply.status == 201
                await viewer.accept(reply.body)
                assert await viewer.wait_for(
                    lambda v: len(v.video) >= 10 and v.audio_frames >= 10, timeout=10
                )
                await viewer.close()
            await page.evaluate("() => window.stop()")
        finally:
            await browser.close()
