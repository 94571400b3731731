"""The JavaScript SDK in Chromium takes the TURN servers the WHEP endpoint announces (OPTIONS
with its token, RFC 9725 §4.6 Link headers) and plays through coturn when only relay
candidates are allowed."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import async_playwright

from loadtest.coturn import coturn
from roomserver.core.turn import ice_servers, link_header
from roomserver.media.client import Publisher, post_offer
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack
from roomserver.media.whip import MediaPrincipal

from .conftest import PAGES, make_token, serve_media
from .test_chromium_interop import CHROMIUM, FLAGS

pytestmark = pytest.mark.e2e

PAGES["sdk_turn"] = "<!doctype html><html><body></body></html>"

PLAY = """async ([room, token]) => {
  const { RoomClient } = await import('/sdk/roomserver.js');
  const client = new RoomClient({ url: location.origin, token });
  const playback = await client.play(room, null, { rtcConfig: { iceTransportPolicy: 'relay' } });
  const pc = playback.pc;
  const deadline = Date.now() + 15000;
  let frames = 0, local = null;
  while (Date.now() < deadline && frames < 20) {
    await new Promise(r => setTimeout(r, 200));
    const stats = await pc.getStats();
    stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0; });
    stats.forEach(s => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded')
        local = stats.get(s.localCandidateId).candidateType;
    });
  }
  const servers = pc.getConfiguration().iceServers.map(s => ({ urls: s.urls, username: s.username }));
  pc.close();
  return { frames, local, servers };
}"""


async def test_the_sdk_plays_through_the_announced_turn_server(router: MediaRouter) -> None:
    async with coturn() as turn:

        def links(principal: MediaPrincipal) -> list[str]:
            servers = ice_servers([turn.url("udp")], turn.secret, principal.user, time.time(), 600)
            return [link_header(s) for s in servers]

        async with serve_media(router, links) as server, async_playwright() as playwright:
            publisher = Publisher([CounterVideoTrack()])
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                reply = await post_offer(
                    server.http,
                    server.url("/v1/rooms/s1/whip"),
                    await publisher.offer(),
                    make_token("h1", "host"),
                )
                await publisher.accept(reply.body)
                page = await browser.new_page()
                await page.goto(server.url("/pages/sdk_turn"))
                result = await page.evaluate(PLAY, ["s1", make_token("browser-1")])
                assert result["servers"][0]["username"].endswith(":browser-1"), result
                assert [s["urls"] for s in result["servers"]] in ([turn.url("udp")], [[turn.url("udp")]])
                assert result["local"] == "relay" and result["frames"] >= 20, result
            finally:
                await browser.close()
                await publisher.close()
