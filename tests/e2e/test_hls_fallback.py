"""The viewer page plays the host's live HLS when WebRTC cannot (issue 14): forced with
``?playback=hls``, or after its WHEP playback fails (Playwright answers the page's WHEP
requests with 503). The rendition is made by the real remuxer (an aiortc H.264+Opus
publisher through a MediaRouter, as in test_hls_playback.py) in the e2e server's data
directory and served by its HLS route; hls.js (vendored) plays it in Chromium. The barrage
keeps arriving over the page's WebSocket. The last test has no aiortc publisher: a browser
host's VP8 is transcoded by the server and played by a viewer page."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Route, expect

from roomserver.appkeys import NODE_KEY
from roomserver.auth import DEV_APP
from roomserver.core.replay import hls_dir
from roomserver.tenancy import room_key
from tests.e2e.conftest import Pages
from tests.e2e.hls_rendition import live_rendition
from tests.e2e.test_media import MEDIA_T, go_live, playing
from tests.media.test_hls import parse_playlist

pytestmark = pytest.mark.e2e

HLS_VIDEO = "#hls-tile video"


@pytest.fixture
async def rendition(pages: Pages, room: str) -> AsyncIterator[None]:
    """A live HLS rendition of `room` while the test runs."""
    async with live_rendition(pages, room):
        yield


async def test_playback_hls_plays_the_rendition_and_the_barrage_keeps_arriving(
    pages: Pages, room: str, rendition: None, bots
) -> None:
    viewer = await pages.open("viewer", room, "v1", query="&playback=hls", locale="zh-CN")
    await playing(viewer, HLS_VIDEO)
    assert await viewer.evaluate("document.querySelector('#hls-tile video').videoWidth") == 320
    await expect(viewer.locator("#hls-badge")).to_have_text("标准直播")
    await expect(viewer.locator("#placeholder")).to_be_hidden()
    # The page has no WHEP playback: the only tile is the HLS one.
    await expect(viewer.locator("#videos video")).to_have_count(1)

    other = await bots("b1", name="Bo")
    await other.request("room.join", room)
    await other.request("barrage.send", room, text="HLS 也能看到弹幕")
    await expect(viewer.locator("#chat")).to_contain_text("HLS 也能看到弹幕")


async def test_a_failing_whep_falls_back_to_hls(pages: Pages, room: str, rendition: None) -> None:
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.blank("v2")
    whep_posts: list[str] = []

    async def refuse(route: Route) -> None:
        whep_posts.append(route.request.method)
        await route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error":{"code":"unavailable","message":"e2e: WHEP refused"}}',
        )

    await viewer.route("**/whep*", refuse)
    token = pages.server.token("v2", "viewer")
    await viewer.goto(f"{pages.server.url}/viewer.html?room={room}#token={token}")
    await viewer.wait_for_selector("body[data-ready='1']", timeout=MEDIA_T)
    await playing(viewer, HLS_VIDEO)
    assert "POST" in whep_posts  # WHEP was tried first
    await expect(viewer.locator("#hls-badge")).to_have_text("HLS")
    # The host's WHEP tile is gone: the HLS tile stands for the host.
    await expect(viewer.locator("#videos .tile[data-user='h1']")).to_have_count(1)
    await expect(viewer.locator("#hls-tile")).to_have_attribute("data-user", "h1")


async def test_the_rooms_playback_setting_sends_its_viewers_to_hls(
    pages: Pages, room: str, rendition: None, bots
) -> None:
    owner = await bots("o1")
    await owner.request("room.join", room)  # the room exists
    async with pages.admin_http() as http:
        bad = await http.patch(f"/v1/rooms/{room}", json={"playback": "dash"})
        assert bad.status == 400
        res = await http.patch(f"/v1/rooms/{room}", json={"playback": "hls"})
        assert res.status == 200 and (await res.json())["room"]["playback"] == "hls"
    viewer = await pages.open("viewer", room, "v3")
    assert await viewer.evaluate("app.hls.forced") is True
    await playing(viewer, HLS_VIDEO)
    await expect(viewer.locator("#hls-badge")).to_have_text("HLS")
    async with pages.admin_http() as http:
        res = await http.patch(f"/v1/rooms/{room}", json={"playback": None})
        assert (await res.json())["room"]["playback"] is None
    assert (await owner.request("room.join", room))["room"]["playback"] is None


async def test_pages_already_open_follow_the_rooms_playback_both_ways(
    pages: Pages, room: str, rendition: None
) -> None:
    # Mid-show the operator sends the audience to HLS (the SFU is full, say) and back: open
    # pages switch on `room.playback`, without a reload; a page whose URL asked for HLS stays.
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.open("viewer", room, "v4")
    pinned = await pages.open("viewer", room, "v5", query="&playback=hls")
    whep = "#videos .tile[data-user='h1']:not(#hls-tile) video"
    await playing(viewer, whep)
    await playing(pinned, HLS_VIDEO)
    async with pages.admin_http() as http:
        assert (await http.patch(f"/v1/rooms/{room}", json={"playback": "hls"})).status == 200
    await playing(viewer, HLS_VIDEO)
    await expect(viewer.locator("#videos video")).to_have_count(1)  # the WHEP tile is gone
    async with pages.admin_http() as http:
        assert (await http.patch(f"/v1/rooms/{room}", json={"playback": None})).status == 200
    await expect(viewer.locator("#hls-tile")).to_have_count(0, timeout=MEDIA_T)
    await playing(viewer, whep)
    await expect(pinned.locator("#hls-tile")).to_have_count(1)
    await playing(pinned, HLS_VIDEO)


async def test_a_browser_hosts_vp8_plays_as_hls(pages: Pages, room: str) -> None:
    # The whole way with no aiortc publisher: Chromium's host page publishes its fake camera
    # (VP8, the browser's default), the server transcodes it to H.264 for the rendition
    # (media/transcode.py), and a viewer page forced to HLS plays it with hls.js.
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    node = pages.server.app[NODE_KEY]
    backend = node.media.backend
    key = room_key(DEV_APP, room)
    publishers = [s for s in backend.sessions.values() if s.kind == "publish" and s.room == key]
    assert [f.choice.name for s in publishers for f in s.forwarders if f.kind == "video"] == ["VP8"]
    directory = hls_dir(pages.server.config.data_dir, key)
    backend.start_hls(key, str(directory))  # what --hls does at show start (this server runs without)
    try:
        playlist = directory / "index.m3u8"
        deadline = time.monotonic() + 30
        while not (playlist.exists() and len(parse_playlist(playlist.read_text())[1]) >= 2):
            assert time.monotonic() < deadline, "no rendition of the browser's VP8"
            await asyncio.sleep(0.1)
        viewer = await pages.open("viewer", room, "v1", query="&playback=hls")
        await playing(viewer, HLS_VIDEO)
        await expect(viewer.locator("#videos video")).to_have_count(1)
    finally:
        backend.stop_hls(key)
        shutil.rmtree(directory, ignore_errors=True)
