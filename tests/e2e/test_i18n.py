"""The pages in Chinese and English: the browser's language picks Chinese, the 中文 / EN
switch changes every text in place (and is remembered), ?lang= wins over both, error codes
are shown in the page's language, and no page logs a console error (a missing text is one)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.test_live_room import T, say, tab

pytestmark = pytest.mark.e2e

ZH = "zh-CN"


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


async def switch_to(page: Page, label: str) -> None:
    await page.locator(".lang-switch button", has_text=label).first.click()
    await expect(page.locator(".lang-switch button[aria-pressed='true']").first).to_have_text(label)


async def assert_language(page: Page, lang: str) -> None:
    await expect(page.locator("html")).to_have_attribute("lang", lang)
    await expect(page.locator(".lang-switch button[aria-pressed='true']").first).to_have_text(
        "中文" if lang == ZH else "EN"
    )


async def test_each_page_in_chinese_and_switched_to_english(pages, server, room) -> None:
    async with pages.admin_http() as http:
        await http.post("/v1/rooms", json={"id": f"{room}-c", "title": "", "mode": "call"})
    opened: list[tuple[Page, list[str], list[tuple[str, str, str]]]] = []

    landing = await pages.blank("landing", locale=ZH)
    landing_errors = console_errors(landing)
    await landing.goto(server.url + "/")
    await landing.wait_for_selector("body[data-ready='1']")
    opened.append((landing, landing_errors, [("#open-host", "以主播身份进入", "Open as host")]))

    viewer = await pages.open("viewer", room, "vic", name="Vic", locale=ZH, ready=False)
    viewer_errors = console_errors(viewer)
    await viewer.wait_for_selector("body[data-ready='1']")
    opened.append(
        (
            viewer,
            viewer_errors,
            [
                ("#say", "", ""),  # placeholder, below
                ("#ph-text", "直播还没开始。别走开，开播后就在这个页面。", "The show has not started yet."),
                ("#host-name", "主播还没来", "Host not here yet"),
            ],
        )
    )
    host = await pages.open("host", room, "hana", "host", name="Hana", locale=ZH, ready=False)
    host_errors = console_errors(host)
    await host.wait_for_selector("body[data-ready='1']")
    opened.append(
        (
            host,
            host_errors,
            [
                ("#golive-btn", "开播", "Go live"),
                (".tab[data-tab='sell']", "带货", "Sell"),
                ("#studio-title", "工作台", "Studio"),
                ("#kpi-online ~ small, .kpi small >> nth=0", "在线人数", "Online"),
            ],
        )
    )
    call = await pages.open("call", f"{room}-c", "ana", name="Ana", locale=ZH, ready=False)
    call_errors = console_errors(call)
    await call.wait_for_selector("body[data-ready='1']")
    opened.append(
        (
            call,
            call_errors,
            [
                ("#call-empty b", "还没有其他人加入", "Nobody else is here yet"),
                ("#call-title", "视频通话", "Call"),
            ],
        )
    )

    for page, _, texts in opened:
        await assert_language(page, ZH)
        for selector, zh, _ in texts:
            if zh:
                await expect(page.locator(selector).first).to_contain_text(zh)
    await expect(viewer.locator("#say")).to_have_attribute("placeholder", "说点什么…")

    for page, _, texts in opened:
        await switch_to(page, "EN")
        await assert_language(page, "en")
        for selector, _, en in texts:
            if en:
                await expect(page.locator(selector).first).to_contain_text(en)
    await expect(viewer.locator("#say")).to_have_attribute("placeholder", "Say something…")
    assert await host.title() == "Host studio · roomserver"

    # and back: texts a page set itself (the stage hint, the studio title) follow too
    await switch_to(host, "中文")
    await expect(host.locator("#studio-title")).to_have_text(f"工作台 · {room}")
    await expect(host.locator("#golive-btn")).to_have_text("开播")

    for page, errors, _ in opened:
        assert errors == [], f"{page.url}: {errors}"


async def test_the_choice_is_remembered_and_lang_in_the_address_wins(pages, server, room) -> None:
    page = await pages.blank("returning", locale="en-US")
    errors = console_errors(page)
    await page.goto(server.url + "/")
    await page.wait_for_selector("body[data-ready='1']")
    await assert_language(page, "en")
    await switch_to(page, "中文")
    await expect(page.locator("#open-viewer")).to_have_text("以观众身份进入")
    await page.reload()
    await page.wait_for_selector("body[data-ready='1']")
    await assert_language(page, ZH)  # stored, although the browser says English

    await page.goto(server.url + "/?lang=en")
    await page.wait_for_selector("body[data-ready='1']")
    await assert_language(page, "en")
    assert errors == []


async def test_numbers_and_money_follow_the_language(pages, bots, room) -> None:
    host = await pages.open("host", room, "hana", "host", name="Hana", locale=ZH)
    await tab(host, "sell")
    # The demo products are in Chinese, with yuan prices as Intl writes them.
    await expect(host.locator("#presets .preset").first).to_contain_text("真丝丝巾")
    await expect(host.locator("#presets .preset small").first).to_have_text("¥129")
    await host.locator("#presets .preset").first.click()
    await host.click("#pin-btn")
    viewer = await pages.open("viewer", room, "vic", name="Vic", locale=ZH)
    await expect(viewer.locator("#product .title")).to_have_text("真丝丝巾 · 春季印花")
    await expect(viewer.locator("#product .tag")).to_have_text("讲解中")
    await expect(viewer.locator("#product .price b")).to_have_text("¥129")
    # 12,345 likes: 1.2万 in Chinese, 12.3K in English
    fan = await bots("fan")
    await fan.request("room.join", room)
    await fan.request("like.send", room, count=100)
    await expect(viewer.locator("#likes")).to_have_text("100", timeout=T)
    await viewer.evaluate("() => window.app.view._set('likes', 12345)")
    await expect(viewer.locator("#likes")).to_have_text("1.2万")
    await switch_to(viewer, "EN")
    await expect(viewer.locator("#product .tag")).to_have_text("Pinned")
    await viewer.evaluate("() => window.app.view._set('likes', 12345)")
    await expect(viewer.locator("#likes")).to_have_text("12.3K")


async def test_error_codes_are_shown_in_the_page_language(pages, bots, room) -> None:
    boss = await bots("boss", "host", name="Boss")
    await boss.request("room.join", room)
    await boss.request("mod.words", room, add=["spam"], remove=[])
    viewer = await pages.open("viewer", room, "vic", name="Vic", locale=ZH)
    errors = console_errors(viewer)
    await say(viewer, "buy spam now")
    await expect(viewer.locator(".toast.error", has_text="消息包含违禁词，未能发送。").first).to_be_visible(
        timeout=T
    )
    await boss.request("mod.mute", room, user="vic")
    await expect(viewer.locator("#say")).to_have_attribute("placeholder", "你已被禁言", timeout=T)
    await say(viewer, "hello")
    await expect(viewer.locator(".toast.error", has_text="你已被禁言，无法发送弹幕。").first).to_be_visible(
        timeout=T
    )
    await switch_to(viewer, "EN")
    await expect(viewer.locator("#say")).to_have_attribute("placeholder", "You are muted")
    await say(viewer, "hello again")
    await expect(
        viewer.locator(
            ".toast.error", has_text="You have been muted in this room and cannot send messages."
        ).first
    ).to_be_visible(timeout=T)
    # the SDK logs nothing as an error for a refused op; the page logs only its warning
    assert errors == []


async def test_the_missing_token_card_in_chinese(pages, server, room) -> None:
    page = await pages.blank("lost", locale=ZH, phone=True)
    await page.goto(f"{server.url}/viewer.html?room={room}")
    await expect(page.locator(".fatal h2")).to_have_text("链接里没有令牌")
    await switch_to(page, "EN")
    await expect(page.locator(".fatal h2")).to_have_text("No token in this link")
    await expect(page.locator(".fatal .btn")).to_have_text("Go to the start page")
