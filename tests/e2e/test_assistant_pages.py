"""The room assistant in Chromium (issue 18): a viewer asks in the barrage and sees the
answer; the host studio's 观众在问 board shows the cluster and answers it with one click."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.test_live_room import T, say, tab

pytestmark = pytest.mark.e2e

SCARF = {
    "title": "真丝围巾",
    "title_en": "silk scarf",
    "price_cents": 19900,
    "aliases": ["围巾", "scarf"],
    "attributes": {"material": {"zh": "100%桑蚕丝", "en": "100% mulberry silk"}},
}


async def test_a_viewer_asks_and_the_host_sees_the_cluster(pages, room) -> None:
    async with pages.admin_http() as http, http.put("/v1/products/scarf-1", json=SCARF) as resp:
        assert resp.status == 200, await resp.text()
    host = await pages.open("host", room, "h1", "host", name="Hana")
    viewer = await pages.open("viewer", room, "v1", name="Vic")
    await tab(host, "sell")
    await host.fill("#pin-id", "scarf-1")
    await host.fill("#pin-title", "真丝围巾")
    await host.fill("#pin-price", "199")
    await host.click("#pin-btn")
    await expect(viewer.locator("#product .title")).to_have_text("真丝围巾", timeout=T)

    await say(viewer, "什么材质的？")
    await expect(viewer.locator("#chat .line", has_text="100%桑蚕丝")).to_be_visible(timeout=T)

    await tab(host, "live")
    cluster = host.locator("#assistant-board .assistant-cluster", has_text="什么材质的？")
    await expect(cluster).to_be_visible(timeout=T)
    await expect(cluster.locator(".badge")).to_have_text("×1")
    await cluster.locator("input").fill("真丝的，可以手洗")
    await cluster.locator("button[type=submit]").click()
    await expect(viewer.locator("#chat .line", has_text="📌 真丝的，可以手洗")).to_be_visible(timeout=T)
