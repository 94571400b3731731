"""The post-live report page in Chromium: the scripted show's report drawn as charts
(canvas present), in English and Chinese, no console errors, no sideways scroll on a
phone; the REST route's format=html lands on it."""

from __future__ import annotations

import msgspec
import pytest
from playwright.async_api import Page

from roomserver.appkeys import STORE_KEY
from roomserver.auth import DEV_APP
from tests.analytics.report_show import previous_show, this_show
from tests.e2e.conftest import DESKTOP, READY_MS, SCREENSHOTS, Pages


async def ingest_show(pages: Pages, room: str) -> None:
    store = pages.server.app[STORE_KEY]
    for batch in (previous_show(), this_show()):
        moved = [
            msgspec.structs.replace(
                e, id=f"{room}-{e.id}", app=DEV_APP, room=room if e.room == "r1" else e.room
            )
            for e in batch
        ]
        await store.events.ingest(moved)


async def layout(page: Page) -> dict[str, int]:
    return await page.evaluate(
        """() => ({
            canvases: document.querySelectorAll('#report canvas').length,
            scroll: document.documentElement.scrollWidth,
            width: window.innerWidth,
            charts: window.app ? window.app.charts : 0,
        })"""
    )


@pytest.mark.parametrize(
    ("lang", "heading", "gmv_label"), [("en", "Post-live report", "GMV"), ("zh-CN", "直播复盘", "成交额")]
)
async def test_report_page_draws_charts_on_a_phone(
    pages: Pages, room: str, lang: str, heading: str, gmv_label: str
) -> None:
    await ingest_show(pages, room)
    page = await pages.blank("report-admin", phone=True)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    token = pages.server.token("report-admin", "admin")
    await page.goto(f"{pages.server.url}/report.html?room={room}&show=2&lang={lang}#token={token}")
    await page.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
    assert await page.text_content("h1") == heading
    got = await layout(page)
    assert got["charts"] == 4 and got["canvases"] >= 4, got
    assert got["scroll"] <= got["width"], f"sideways scroll at {got['width']} px: {got}"
    text = await page.text_content("#report") or ""
    assert gmv_label in text and "397" in text  # GMV ¥397
    assert "#" not in page.url  # the token left the address bar
    await page.screenshot(path=str(SCREENSHOTS / f"report-phone-{lang}.png"), full_page=True)
    assert not errors, errors


async def test_rest_format_html_opens_the_page(pages: Pages, room: str) -> None:
    await ingest_show(pages, room)
    page = await pages.blank("report-admin", viewport=DESKTOP)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    token = pages.server.token("report-admin", "admin")
    await page.goto(f"{pages.server.url}/v1/rooms/{room}/report?format=html&lang=en&token={token}")
    await page.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
    assert "/report.html?room=" in page.url and "show=2" in page.url
    got = await layout(page)
    assert got["charts"] == 4 and got["scroll"] <= got["width"], got
    await page.screenshot(path=str(SCREENSHOTS / "report-desktop-en.png"), full_page=True)
    assert not errors, errors
