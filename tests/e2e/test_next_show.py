"""The viewer page's next-show card and share button (issue 12), in Chromium, in English and
Chinese: a live countdown to the room's scheduled show, a follow button that the server
keeps (and that says "Following" after), a share button copying a signed link, and a page
opened through that link attributed to the sharer; a forged link is said and dropped."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_live_room import T

pytestmark = pytest.mark.e2e

CLOCK = re.compile(r"^\d:\d\d:\d\d$")  # h:mm:ss, under 10 hours ahead


async def schedule(pages, room: str, at: int) -> None:
    async with pages.admin_http() as http:
        res = await http.post("/v1/rooms", json={"id": room, "title": "Spring sale", "scheduled_at": at})
        assert res.status == 201, await res.text()


async def followers(pages, room: str) -> list[str]:
    async with pages.admin_http() as http:
        res = await http.get(f"/v1/rooms/{room}/followers")
        assert res.status == 200
        return (await res.json())["followers"]


async def assert_counting_down(page: Page) -> None:
    clock = page.locator("#next-show .next-clock")
    first = await clock.inner_text()
    assert CLOCK.match(first), first
    await expect(clock).not_to_have_text(first, timeout=T)  # it ticks
    assert CLOCK.match(await clock.inner_text())


async def test_next_show_countdown_follow_and_share_in_en_and_zh(pages, server, room) -> None:
    await schedule(pages, room, int(time.time() * 1000) + 2 * 3600 * 1000)

    alice = await pages.open("viewer", room, "alice", name="Alice", locale="en-US")
    card = alice.locator("#next-show")
    await expect(card).to_be_visible()
    await expect(card.locator(".next-title")).to_have_text("Next show")
    await expect(card.locator(".next-when")).to_contain_text("Starts ")
    await assert_counting_down(alice)
    follow = alice.locator("#follow-btn")
    await expect(follow).to_have_text("Follow")
    await follow.click()
    await expect(follow).to_have_text("Following", timeout=T)
    await expect(follow).to_have_attribute("aria-pressed", "true")
    assert await followers(pages, room) == ["alice"]
    # Pressed again: unfollowed on the server, and back.
    await follow.click()
    await expect(follow).to_have_text("Follow", timeout=T)
    assert await followers(pages, room) == []
    await follow.click()
    await expect(follow).to_have_text("Following", timeout=T)
    assert await followers(pages, room) == ["alice"]
    # Still "Following" when the page is opened again.
    await alice.reload()
    await alice.wait_for_selector("body[data-ready='1']")
    await expect(alice.locator("#follow-btn")).to_have_text("Following")

    await alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    await alice.locator("#share-btn").click()
    share = alice.locator("#share-btn[data-share-url]")
    await expect(share).to_have_count(1, timeout=T)
    url = await share.get_attribute("data-share-url")
    assert url is not None and url.startswith(f"{server.url}/viewer.html?room={room}&ref=")
    assert await alice.evaluate("navigator.clipboard.readText()") == url
    await expect(alice.locator(".toast", has_text="Share link copied")).to_be_visible()

    # Bob opens Alice's link, in Chinese: the card speaks Chinese and his join is Alice's.
    ref = parse_qs(urlparse(url).query)["ref"][0]
    bob = await pages.open("viewer", room, "bob", name="Bob", locale="zh-CN", query=f"&ref={ref}")
    await expect(bob.locator("#next-show .next-title")).to_have_text("下一场直播")
    await expect(bob.locator("#next-show .next-when")).to_contain_text("开播时间")
    await expect(bob.locator("#follow-btn")).to_have_text("关注")
    await assert_counting_down(bob)
    assert await bob.evaluate(f"window.app.client.snapshot({room!r}).attribution") == "attributed"
    await bob.locator("#follow-btn").click()
    await expect(bob.locator("#follow-btn")).to_have_text("已关注", timeout=T)
    await bob.screenshot(path=SCREENSHOTS / "viewer-next-show-zh.png")
    assert await followers(pages, room) == ["alice", "bob"]
    # The language switch re-renders the card in place.
    await bob.locator(".lang-switch button", has_text="EN").first.click()
    await expect(bob.locator("#next-show .next-title")).to_have_text("Next show")
    await expect(bob.locator("#follow-btn")).to_have_text("Following")

    # The show starts: the card goes.
    host = await pages.open("host", room, "h1", "host", name="Hana")
    await host.evaluate(f"window.app.client.start({room!r})")
    await expect(bob.locator("#next-show")).to_be_hidden(timeout=T)


async def test_a_forged_share_link_is_said_and_dropped(pages, server, room) -> None:
    await schedule(pages, room, int(time.time() * 1000) + 3600 * 1000)
    carol = await pages.open(
        "viewer", room, "carol", locale="zh-CN", phone=True, query="&ref=forged.bm90LXNpZ25lZA"
    )
    await expect(carol.locator(".toast", has_text="分享链接在这里无效")).to_be_visible(timeout=T)
    assert "ref=" not in carol.url  # joined without it, and the address no longer carries it
    await expect(carol.locator("#next-show")).to_be_visible()
    # On a phone the card fits the width (no sideways scrolling).
    assert await carol.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await carol.screenshot(path=SCREENSHOTS / "viewer-next-show-phone-zh.png")
    assert await carol.evaluate(f"window.app.client.snapshot({room!r}).attribution ?? null") is None
