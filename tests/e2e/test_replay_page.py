"""The replay page in Chromium (issue 14): a show recorded by the real recorder (an aiortc
publisher through a MediaRouter, VP8+Opus → WebM) under the e2e server's data directory, its
barrage and product pin in the behaviour log; the page plays the file (served with Range),
jumps to the product's chapter, replays the barrage at its show second, and "Buy" hands the
product to the embedding shop. English and Chinese."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from roomserver.appkeys import STORE_KEY
from roomserver.auth import DEV_APP
from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.replay import recording_dir
from roomserver.media.client import Publisher
from roomserver.media.recording import RecordingTarget
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack
from roomserver.tenancy import room_key
from tests.e2e.conftest import READY_MS, SCREENSHOTS, Pages

RECORD_S = 5.0
PIN_T = 2.5  # the product's chapter, seconds into the show


async def record_show(pages: Pages, room: str) -> int:
    """Record RECORD_S seconds of show 1 of `room` and log its barrage and pin; the show's start."""
    async with (
        pages.admin_http() as http,
        http.post("/v1/rooms", json={"id": room, "title": "replay"}) as resp,
    ):
        assert resp.status == 201, await resp.text()
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    publisher = Publisher([CounterVideoTrack(), ToneAudioTrack()], video_codec="VP8")
    started = int(time.time() * 1000)
    directory = recording_dir(pages.server.config.data_dir, room_key(DEV_APP, room))
    try:
        session, answer = await router.publish(room, "host1", "host", await publisher.offer())
        await publisher.accept(answer)
        router.start_recording(room, RecordingTarget(str(directory), 1, started))
        recording = router.recording(session)
        assert recording is not None
        deadline = time.monotonic() + 15
        while recording.frames["video"] == 0:
            assert time.monotonic() < deadline, "nothing recorded"
            await asyncio.sleep(0.05)
        await asyncio.sleep(RECORD_S)
        router.stop_recording(room)
    finally:
        await publisher.close()
        await router.close()

    def record(n: int, user: str, kind: str, at_s: float, data: dict | None = None) -> BehaviourEvent:
        ts = started + int(at_s * 1000)
        return BehaviourEvent(f"{room}-{n}", DEV_APP, room, 1, user, kind, ts, ts - started, data or {})  # type: ignore[arg-type]

    await pages.server.app[STORE_KEY].events.ingest(
        [
            record(1, "host1", "show.start", 0, {"title": "replay", "host": "host1"}),
            record(2, "fan1", "barrage", 1.0, {"seq": 5, "text": "hello early"}),
            record(
                3,
                "host1",
                "mark",
                PIN_T,
                {"what": "pin", "product": "mug", "title": "Blue mug", "price_cents": 3900},
            ),
            record(4, "fan2", "barrage", PIN_T + 0.4, {"seq": 9, "text": "about the mug"}),
            record(5, "host1", "show.end", RECORD_S + 1),
        ]
    )
    return started


@pytest.mark.parametrize(("lang", "heading", "buy"), [("en", "Replay", "Buy"), ("zh-CN", "直播回放", "购买")])
async def test_replay_page_seeks_to_a_product_chapter(
    pages: Pages, room: str, lang: str, heading: str, buy: str
) -> None:
    await record_show(pages, room)
    try:
        page = await pages.blank("replay-viewer")
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        token = pages.server.token("replay-viewer", "viewer")
        await page.goto(f"{pages.server.url}/replay.html?room={room}&lang={lang}#token={token}")
        await page.wait_for_selector("body[data-ready='1']", timeout=READY_MS)
        assert await page.text_content("h1") == heading
        assert "Blue mug" in (await page.text_content(".chapter .jump") or "")
        assert await page.text_content(".chapter .buy") == buy
        duration = await page.evaluate("document.querySelector('video').duration")
        assert RECORD_S - 0.7 <= duration <= RECORD_S + 1.5, duration

        # Jump to the chapter: the video lands on the pin's show second, the barrage shows what
        # was said before it, then what was said after it once playback reaches it.
        await page.click(".chapter .jump")
        await page.wait_for_function(
            f"Math.abs(window.app.showSecond() - {PIN_T}) < 0.8 && !document.querySelector('video').seeking",
            timeout=READY_MS,
        )
        barrage = page.locator(".replay-barrage")
        assert "hello early" in (await barrage.text_content() or "")
        await page.wait_for_function(
            "document.querySelector('.replay-barrage').textContent.includes('about the mug')",
            timeout=READY_MS,
        )
        # The video really plays there: its frames advance past the chapter.
        await page.wait_for_function(f"window.app.showSecond() > {PIN_T + 0.5}", timeout=READY_MS)

        await page.evaluate(
            "window.addEventListener('roomserver:buy', (e) => { window.boughtItem = e.detail.product.id; })"
        )
        await page.click(".chapter .buy")
        assert await page.evaluate("window.boughtItem") == "mug"
        assert errors == []
        await page.screenshot(path=str(SCREENSHOTS / f"replay-{lang}.png"), full_page=True)
    finally:
        shutil.rmtree(
            recording_dir(pages.server.config.data_dir, room_key(DEV_APP, room)), ignore_errors=True
        )
