"""A live HLS rendition of a room for the page tests: the real remuxer (an aiortc H.264 or VP8
publisher with Opus through a MediaRouter) writing into the e2e server's data directory, where the
server's `GET /v1/rooms/{room}/hls/{file}` serves it."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from roomserver.auth import DEV_APP
from roomserver.core.replay import hls_dir
from roomserver.media.client import Publisher
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack
from roomserver.tenancy import room_key
from tests.e2e.conftest import Pages
from tests.media.test_hls import parse_playlist


@asynccontextmanager
async def live_rendition(pages: Pages, room: str, video_codec: str = "H264") -> AsyncIterator[None]:
    """`room`'s rendition, with 3+ segments listed, while the block runs; removed after.
    An H.264 publisher is remuxed, a VP8 one transcoded (media/transcode.py)."""
    directory = hls_dir(pages.server.config.data_dir, room_key(DEV_APP, room))
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    publisher = Publisher([CounterVideoTrack(), ToneAudioTrack()], video_codec=video_codec)
    try:
        _, answer = await router.publish(room, "hls-host", "host", await publisher.offer())
        await publisher.accept(answer)
        router.start_hls(room, str(directory))
        deadline = time.monotonic() + 30
        playlist = directory / "index.m3u8"
        while not (playlist.exists() and len(parse_playlist(playlist.read_text())[1]) >= 3):
            assert time.monotonic() < deadline, "no live playlist"
            await asyncio.sleep(0.1)
        yield
    finally:
        await publisher.close()
        await router.close()
        shutil.rmtree(directory, ignore_errors=True)
