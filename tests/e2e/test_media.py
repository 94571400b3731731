"""Video through the real server in Chromium: WHIP from the host page (fake camera), WHEP to
viewers, co-hosts, PK battles and call rooms, all following `media.publishers`."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest
from playwright.async_api import Page, expect

from roomserver.appkeys import NODE_KEY
from roomserver.auth import DEV_APP
from roomserver.tenancy import room_key
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_live_room import T, tab
from tests.polling import eventually

pytestmark = pytest.mark.e2e
HOST_VIDEO = "#videos .tile[data-user='h1'] video"

# ms: ICE + DTLS + first keyframe. Measured with the 2 cores shared by other work (load
# average 16-20): up to ~20 s, so 20 s was a coin toss there; only failures wait this long.
MEDIA_T = 45_000


async def playing(page: Page, video: str) -> None:
    """The <video> decodes frames: it has a size and its clock advances by 0.3 s (measured
    on the element itself, so a tile re-created meanwhile starts the measure again)."""
    await page.wait_for_function(
        """(sel) => {
          const v = document.querySelector(sel);
          if (!v || !(v.videoWidth > 0) || !(v.currentTime > 0)) return false;
          if (v.__firstTime === undefined) v.__firstTime = v.currentTime;
          return v.currentTime > v.__firstTime + 0.3;
        }""",
        arg=video,
        timeout=MEDIA_T,
    )


async def go_live(host: Page) -> None:
    await host.click("#golive-btn")
    await host.wait_for_function(
        "() => app.cam.publication && app.cam.publication.state === 'connected'", timeout=MEDIA_T
    )
    await expect(host.locator("#pub-state")).to_have_text("● on air")


async def test_host_publishes_the_fake_camera_and_a_viewer_plays_it(pages, server, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.open("viewer", room, "v1")
    tile = viewer.locator("#videos .tile[data-user='h1']")
    await expect(tile).to_have_attribute("data-role", "host", timeout=MEDIA_T)
    await playing(viewer, "#videos .tile[data-user='h1'] video")
    await expect(viewer.locator("#placeholder")).to_be_hidden()
    # The host page sends a low quality layer too (issue 14): two video m-lines, ?layers=high,low.
    sending = await host.evaluate(
        """() => app.cam.publication.pc.getTransceivers()
              .filter((t) => t.sender.track && t.sender.track.kind === 'video').length"""
    )
    assert sending == 2
    assert await host.evaluate("app.cam.publication.current.lowTrack !== null")
    # ... and the server receives it: a viewer moved to it switches on its first keyframe and
    # plays on. (Chromium offers audio, video, video: with aiortc's default bundle policy the
    # second video kept a transport of its own, so nothing of the low layer arrived and the
    # switch never happened.)
    media = server.app[NODE_KEY].media
    location = await viewer.evaluate("() => app.view.videos.tiles.get('h1').playback.location")
    session = media.backend.session(location.rsplit("/", 1)[1])
    assert await media.set_layer(room_key(DEV_APP, room), "v1", "h1", "low") == "low"
    assert await eventually(lambda: session.layers.sink.switches >= 1, MEDIA_T / 1000)
    await viewer.evaluate(f'() => {{ delete document.querySelector("{HOST_VIDEO}").__firstTime; }}')
    await playing(viewer, HOST_VIDEO)
    # Ending the show stops the publication: the tile goes away.
    await host.click("#end-btn")
    await expect(tile).to_have_count(0, timeout=MEDIA_T)


async def test_host_publishes_again_when_the_video_connection_fails(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.open("viewer", room, "v1")
    await playing(viewer, "#videos .tile[data-user='h1'] video")
    # What a browser reports when ICE consent is lost (a network drop, or a server too busy
    # to answer in time): the page must not stay off air.
    await host.evaluate(
        """() => { const pc = app.cam.publication.pc; window.__failedPc = pc;
          Object.defineProperty(pc, 'connectionState', { get: () => 'failed' });
          pc.dispatchEvent(new Event('connectionstatechange')); }"""
    )
    await host.wait_for_function(
        "() => app.cam.publication && app.cam.publication.pc !== window.__failedPc"
        " && app.cam.publication.state === 'connected'",
        timeout=MEDIA_T,
    )
    await expect(host.locator("#pub-state")).to_have_text("● on air")
    await playing(viewer, "#videos .tile[data-user='h1'] video")


async def test_cohost_goes_on_camera_and_the_viewer_sees_two_videos(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    guest = await pages.open("viewer", room, "g1", name="Gus")
    viewer = await pages.open("viewer", room, "v1")
    ask = guest.locator("#cohost-btn")
    await ask.click()
    # The button keeps showing the pending request (the "Request sent" toast lasts 3.5 s: a
    # check that starts late on a loaded machine can miss it).
    await expect(ask).to_have_class(re.compile(r"\bpending\b"), timeout=T)
    await expect(ask).to_have_attribute("aria-label", "Request sent: waiting for the host")
    await tab(host, "stage")
    request = host.locator("#requests .item[data-user='g1']")
    await expect(request).to_be_visible(timeout=T)
    await request.locator("button", has_text="Accept").click()
    await expect(guest.locator("#self-tile video")).to_be_visible(timeout=MEDIA_T)
    await expect(ask).to_have_class(re.compile(r"\bactive\b"), timeout=MEDIA_T)
    await expect(ask).not_to_have_class(re.compile(r"\bpending\b"))
    await expect(viewer.locator("#videos .tile")).to_have_count(2, timeout=MEDIA_T)
    await expect(viewer.locator("#videos")).to_have_attribute("data-count", "2")
    await playing(viewer, "#videos .tile[data-user='h1'] video")
    await playing(viewer, "#videos .tile[data-user='g1'] video")
    await expect(viewer.locator("#videos .tile[data-user='g1']")).to_have_attribute("data-role", "cohost")
    await expect(host.locator("#cohosts .item[data-user='g1']")).to_be_visible(timeout=T)
    await playing(host, "#videos .tile[data-user='g1'] video")

    # The host ends the co-hosting: the guest's camera stops and viewers are back to one video.
    await host.locator("#cohosts .item[data-user='g1'] button").click()
    await expect(viewer.locator("#videos .tile")).to_have_count(1, timeout=MEDIA_T)
    await expect(guest.locator("#self-tile")).to_have_count(0, timeout=T)


async def test_host_invites_a_viewer_on_camera(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    guest = await pages.open("viewer", room, "g2", name="Gia")
    await tab(host, "stage")
    await host.fill("#invite-user", "g2")
    await host.click("#invite-btn")
    await guest.click("#accept-invite", timeout=T)
    await expect(guest.locator("#self-tile")).to_be_visible(timeout=MEDIA_T)
    viewer = await pages.open("viewer", room, "v2")
    await expect(viewer.locator("#videos .tile")).to_have_count(2, timeout=MEDIA_T)
    await playing(viewer, "#videos .tile[data-user='g2'] video")


async def test_pk_battle_shows_both_hosts_and_the_score(pages, room) -> None:
    other = room + "-b"
    host_a = await pages.open("host", room, "ha", "host", name="Ava")
    host_b = await pages.open("host", other, "hb", "host", name="Ben")
    await go_live(host_a)
    await go_live(host_b)
    viewer = await pages.open("viewer", room, "v1")
    await playing(viewer, "#videos .tile[data-user='ha'] video")

    await tab(host_a, "stage")
    await host_a.fill("#pk-room", other)
    await host_a.fill("#pk-duration", "120")
    await host_a.click("#pk-invite-btn")
    await tab(host_b, "stage")
    invite = host_b.locator("#pk-invites .item")
    await expect(invite).to_be_visible(timeout=T)
    await invite.locator("button", has_text="Accept").click()

    await expect(viewer.locator("#pkbar")).to_be_visible(timeout=T)
    await expect(viewer.locator("#videos .tile")).to_have_count(2, timeout=MEDIA_T)
    await expect(viewer.locator("#videos .tile[data-user='hb']")).to_have_attribute("data-role", "pk")
    await playing(viewer, "#videos .tile[data-user='hb'] video")
    await playing(viewer, "#videos .tile[data-user='ha'] video")
    # Gifts in room A are A's points.
    await viewer.click("#gift-btn")
    await viewer.click("#gift-grid [data-gift='rocket']")
    await expect(viewer.locator("#pk-ours")).to_have_text("500", timeout=T)
    await expect(viewer.locator("#pk-theirs-name")).to_have_text("hb")
    await expect(host_b.locator("#pk-theirs")).to_have_text("500", timeout=T)
    await viewer.screenshot(path=SCREENSHOTS / "viewer-pk.png")
    await host_a.click("#pk-end-btn")
    await expect(viewer.locator(".toast", has_text="We won the PK!")).to_be_visible(timeout=T)


async def test_call_room_grid(pages, server, room) -> None:
    async with pages.admin_http() as http:
        res = await http.post("/v1/rooms", json={"id": room, "title": "Team sync", "mode": "call"})
        assert res.status == 201
    people = [
        await pages.open("call", room, f"p{i}", name=name) for i, name in enumerate(["Ana", "Bo", "Cy"])
    ]
    for page in people:
        await expect(page.locator("#videos .tile")).to_have_count(3, timeout=MEDIA_T)
        await expect(page.locator("#call-count")).to_have_text("3")
    for i, page in enumerate(people):
        for j in range(3):
            if i != j:
                await playing(page, f"#videos .tile[data-user='p{j}'] video")
    await people[0].fill("#say", "Can everyone see me?")
    await people[0].press("#say", "Enter")
    await expect(people[2].locator("#chat .line.msg", has_text="Can everyone see me?")).to_be_visible(
        timeout=T
    )
    await people[0].screenshot(path=SCREENSHOTS / "call.png")
    await people[2].click("#leave-btn")
    await expect(people[0].locator("#videos .tile")).to_have_count(2, timeout=MEDIA_T)


async def test_a_connection_disconnected_for_two_seconds_is_published_again(pages, room) -> None:
    """A node killed without a word sends no DTLS close: Chromium says "disconnected" about 5 s
    after its last answer and "failed" only after 15 s. A blip that comes back within the grace
    (2 s) changes nothing; one that lasts is treated as the end of the session."""
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    set_state = """(state) => { const pc = app.cam.publication.pc; window.__lostPc = pc;
        Object.defineProperty(pc, 'connectionState', { get: () => state, configurable: true });
        pc.dispatchEvent(new Event('connectionstatechange')); }"""
    # A blip: back after 0.5 s, timed in the page (the grace timer is too), so a slow test
    # process cannot stretch it.
    await host.evaluate(
        f"() => {{ ({set_state})('disconnected'); setTimeout(() => ({set_state})('connected'), 500); }}"
    )
    await host.wait_for_timeout(3000)
    assert await host.evaluate("app.cam.publication.pc === window.__lostPc"), "a blip was republished"
    await host.evaluate(set_state, "disconnected")
    await host.wait_for_function(
        "() => app.cam.publication && app.cam.publication.pc && app.cam.publication.pc !== window.__lostPc"
        " && app.cam.publication.state === 'connected'",
        timeout=MEDIA_T,
    )
    await expect(host.locator("#pub-state")).to_have_text("● on air")


async def test_host_publishes_again_at_once_when_the_server_ends_its_session(pages, server, room) -> None:
    """A draining node closes its media sessions (DTLS close). Chromium keeps such a peer
    connection "connected" until ICE consent runs out (≈ 15 s, measured: the host was off air
    that long); the page must notice the DTLS close and publish again at once."""
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.open("viewer", room, "v1")
    await playing(viewer, "#videos .tile[data-user='h1'] video")
    await host.evaluate("() => { window.__endedPc = app.cam.publication.pc; }")
    ended_at = time.monotonic()
    await server.app[NODE_KEY].media.unpublish(room_key(DEV_APP, room), "h1")  # as a drain does
    await host.wait_for_function(
        "() => !app.cam.publication || app.cam.publication.pc !== window.__endedPc", timeout=MEDIA_T
    )
    noticed_s = time.monotonic() - ended_at
    # Well under the consent timeout, whatever the load (the DTLS close is an event, not a timer).
    assert noticed_s < 10, f"the page noticed the end after {noticed_s:.1f} s"
    await host.wait_for_function(
        "() => app.cam.publication && app.cam.publication.pc && app.cam.publication.pc !== window.__endedPc"
        " && app.cam.publication.state === 'connected'",
        timeout=MEDIA_T,
    )
    print(f"\nthe host page noticed the ended session after {noticed_s:.1f} s")
    await expect(host.locator("#pub-state")).to_have_text("● on air")
    await playing(viewer, "#videos .tile[data-user='h1'] video")


async def test_a_viewer_plays_again_at_once_when_the_server_ends_its_playback(pages, server, room) -> None:
    """The viewer's node drains (or its session is otherwise ended there): `followPublishers`
    plays the host again at once instead of waiting out ICE consent."""
    host = await pages.open("host", room, "h1", "host")
    await go_live(host)
    viewer = await pages.open("viewer", room, "v1")
    await playing(viewer, "#videos .tile[data-user='h1'] video")
    location = await viewer.evaluate(
        "() => { const pb = app.view.videos.tiles.get('h1').playback; window.__endedPc = pb.pc; return pb.location; }"
    )
    ended_at = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.delete(location, headers={"Authorization": f"Bearer {server.token('v1')}"}) as r,
    ):
        assert r.status == 200  # the server closes the session (DTLS close), as a drain does
    await viewer.wait_for_function(
        "() => { const t = app.view.videos.tiles.get('h1'); return t && t.playback !== null"
        " && t.playback.pc !== window.__endedPc; }",
        timeout=MEDIA_T,
    )
    noticed_s = time.monotonic() - ended_at
    assert noticed_s < 10, f"the viewer played again after {noticed_s:.1f} s"
    print(f"\nthe viewer page played again after {noticed_s:.1f} s")
    await playing(viewer, "#videos .tile[data-user='h1'] video")
