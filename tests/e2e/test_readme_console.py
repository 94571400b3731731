"""The README's browser-console session, pasted into the dev landing page as printed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Browser
from playwright.async_api import Error as PlaywrightError

from tests.e2e.conftest import Server

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_console_snippet_joins_sends_and_sees_the_event(server: Server, browser: Browser):
    (snippet,) = [
        b for b in re.findall(r"^```js\n(.*?)^```$", README.read_text(), re.M | re.S) if "/dev/token" in b
    ]
    page = await browser.new_page()
    try:
        logged: list[object] = []
        got_barrage = asyncio.Event()

        async def on_console(msg) -> None:
            for arg in msg.args:
                try:
                    value = await arg.json_value()
                except PlaywrightError:
                    # A message still being read when the page closes (the snippet keeps
                    # logging): its error would otherwise surface in the next test.
                    return
                logged.append(value)
                if isinstance(value, dict) and value.get("ev") == "barrage":
                    got_barrage.set()

        page.on("console", on_console)
        await page.goto(f"{server.url}/")
        # DevTools' console allows top-level await; an async function body is the same code.
        await page.evaluate("async () => {\n" + snippet + "\n}")
        await asyncio.wait_for(got_barrage.wait(), 15)
    finally:
        page.remove_listener("console", on_console)
        await page.close()
    replies = {m["re"]: m["ok"] for m in logged if isinstance(m, dict) and "re" in m}
    assert replies == {1: True, 2: True}
    (barrage,) = [m for m in logged if isinstance(m, dict) and m.get("ev") == "barrage"]
    assert barrage["data"]["text"] == "hello from the console"
    assert barrage["data"]["user"]["id"] == "u2"
