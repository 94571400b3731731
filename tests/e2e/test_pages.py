"""What a first-time user sees: the recent chat on joining late, a host stage and a call page
that say what to do, the card for a link without a token, and tokens kept out of the URL."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from roomserver.fanout import RECENT_BARRAGE
from tests.e2e.conftest import PHONE, READY_MS
from tests.e2e.test_live_room import T

pytestmark = pytest.mark.e2e

# The browser refuses the camera until the page sets window.__camAllowed (a person who has
# not answered the permission prompt yet, or said no).
CAMERA_REFUSED = """
(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => window.__camAllowed
    ? real(c)
    : Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
})();
"""


async def chat_lines(page: Page) -> list[str]:
    return await page.locator("#chat .line.msg .text").all_inner_texts()


async def test_a_late_viewer_and_host_see_the_recent_chat(pages, bots, room) -> None:
    first = await pages.open("viewer", room, "v0", name="Vi")
    talkers = [await bots(f"b{i}", name=f"Bot {i}") for i in range(3)]
    for bot in talkers:
        await bot.request("room.join", room)
    said = [f"message {i}" for i in range(RECENT_BARRAGE + 4)]
    for i, text in enumerate(said):
        await talkers[i % 3].request("barrage.send", room, text=text)
    await expect(first.locator("#chat .line.msg", has_text=said[-1])).to_be_visible(timeout=T)

    late = await pages.open("viewer", room, "v9", name="Late")
    # The join snapshot brings the last RECENT_BARRAGE messages, oldest first, at once.
    assert await chat_lines(late) == said[-RECENT_BARRAGE:]
    await expect(late.locator("#chat .line.msg.earlier .who").first).to_have_text("Bot 1")
    # Nothing from the past flies over the video again.
    await expect(late.locator("#danmaku .dm")).to_have_count(0)
    host = await pages.open("host", room, "h1", "host", name="Hana")
    assert await chat_lines(host) == said[-RECENT_BARRAGE:]
    await host.click(".tab[data-tab='moderate']")
    await expect(host.locator("#chatters .item")).to_have_count(3)
    # New messages follow the earlier ones, once each.
    await talkers[0].request("barrage.send", room, text="and one more")
    await expect(late.locator("#chat .line.msg", has_text="and one more")).to_have_count(1, timeout=T)
    assert (await chat_lines(late))[-2:] == [said[-1], "and one more"]


async def test_host_stage_says_what_to_do(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host", name="Hana", init_script=CAMERA_REFUSED)
    # Before any show the room has no host: the host sees their own name, not "no host".
    await expect(host.locator("#host-name")).to_have_text("Hana")
    await expect(host.locator("#ph-text")).to_contain_text("Start your camera")
    await expect(host.locator("#ph-text")).to_contain_text("Go live")
    start = host.locator("#ph-action")
    await expect(start).to_have_text("Start camera")
    await host.evaluate("window.__camAllowed = true")
    await start.click()
    await expect(host.locator("#self-tile video")).to_be_visible(timeout=T)
    await expect(host.locator("#placeholder")).to_be_hidden()
    # The preview says viewers do not see it yet, with the button that changes that.
    note = host.locator("#stage-note")
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("Go live")
    await note.locator("button", has_text="Go live").click()
    await expect(host.locator("#end-btn")).to_be_visible(timeout=T)
    await expect(note).to_be_hidden()
    await expect(host.locator("#live-badge")).to_be_visible(timeout=T)


async def test_call_page_shows_me_an_empty_call_and_labelled_controls(pages, server, room) -> None:
    async with pages.admin_http() as http:
        res = await http.post("/v1/rooms", json={"id": room, "title": "Team sync", "mode": "call"})
        assert res.status == 201
    call = await pages.open("call", room, "p0", name="Ana")
    me = call.locator("#self-tile")
    await expect(me).to_be_visible()
    await expect(me.locator(".tile-label")).to_have_text("Ana (you)")
    await expect(me.locator("video")).to_be_visible()
    empty = call.locator("#call-empty")
    await expect(empty).to_be_visible()
    await expect(empty).to_contain_text("Nobody else is here yet")
    await expect(empty).to_contain_text(room)
    for button in await call.locator(".call-bar button").all():
        assert await button.get_attribute("aria-label")
        assert await button.get_attribute("title")
    captions = await call.locator(".call-bar .ctl-caption").all_inner_texts()
    assert captions == ["Mic", "Camera", "Leave"]

    cam = call.locator("#cam-btn")
    await expect(cam).to_have_attribute("aria-label", "Turn off camera")
    await cam.click()
    await expect(me).to_have_class(re.compile(r"\bcam-off\b"))
    await expect(me.locator(".cam-off-card")).to_contain_text("Your camera is off")
    await expect(cam).to_have_attribute("aria-label", "Turn on camera")
    await expect(cam).to_have_attribute("aria-pressed", "false")
    await me.locator("#self-cam-on").click()
    await expect(cam).to_have_attribute("aria-pressed", "true")
    await expect(me.locator("video")).to_be_visible()

    other = await pages.open("call", room, "p1", name="Bo")
    await expect(call.locator("#videos .tile[data-user='p1']")).to_be_visible(timeout=T)
    await expect(empty).to_be_hidden()
    await expect(other.locator("#call-empty")).to_be_hidden(timeout=T)


async def test_a_call_without_camera_offers_to_turn_it_on(pages, server, room) -> None:
    async with pages.admin_http() as http:
        await http.post("/v1/rooms", json={"id": room, "title": "Team sync", "mode": "call"})
    call = await pages.open("call", room, "p0", name="Ana", init_script=CAMERA_REFUSED)
    me = call.locator("#self-tile")
    await expect(me.locator(".cam-off-card")).to_be_visible()
    await expect(call.locator("#cam-btn")).to_have_attribute("aria-label", "Turn on camera")
    await call.evaluate("window.__camAllowed = true")
    await me.locator("#self-cam-on").click()
    await expect(me.locator("video")).to_be_visible(timeout=T)
    await expect(call.locator("#call-count")).to_have_text("1", timeout=T)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
async def test_missing_token_card_is_centred_and_compact(pages, server, phone: bool) -> None:
    page = await pages.blank("nobody", phone=phone)
    await page.goto(f"{server.url}/viewer.html?room=r1")
    card = page.locator(".fatal")
    await expect(card).to_be_visible(timeout=T)
    await expect(card).to_contain_text("No token in this link")
    await expect(card.locator("a.btn")).to_have_attribute("href", "/")
    box = await card.bounding_box()
    view = page.viewport_size
    assert box is not None and view is not None
    assert abs(box["x"] + box["width"] / 2 - view["width"] / 2) <= 2, box
    assert abs(box["y"] + box["height"] / 2 - view["height"] / 2) <= 2, box
    assert box["width"] <= 380 and box["height"] <= 320, box
    if phone:
        assert box["width"] <= PHONE["width"] - 24


@pytest.mark.parametrize("page_name", ["viewer", "host", "call"])
async def test_token_from_the_fragment_is_used_and_removed_from_the_url(
    pages, server, room, page_name
) -> None:
    page = await pages.open(page_name, room, "u1", "host" if page_name == "host" else "viewer")
    href = await page.evaluate("location.href")
    assert "token" not in href and href.endswith(f"/{page_name}.html?room={room}"), href
    history = await page.evaluate("history.length")
    # A reload in the same tab still enters the room (the tab kept the token, not the URL).
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
    assert "token" not in await page.evaluate("location.href")
    assert await page.evaluate("history.length") == history


async def test_old_links_with_the_token_in_the_query_still_work_and_lose_it(pages, server, room) -> None:
    page = await pages.blank("old-link")
    token = server.token("u2")
    await page.goto(f"{server.url}/viewer.html?token={token}&room={room}#x=1")
    await page.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
    href = await page.evaluate("location.href")
    assert "token" not in href and href.endswith(f"/viewer.html?room={room}#x=1"), href
    assert await page.evaluate("app.me.id") == "u2"
