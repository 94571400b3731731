"""Recording through the real server (issue 14): `--record` / the room's `record` setting,
a host publishing over WHIP with aiortc, the show ended with `room.end`; then the replay
list (tenant-scoped) and the file over HTTP with Range requests, decoded back with PyAV."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp.test_utils import TestServer

from roomserver.auth import mint_token
from roomserver.config import Config
from roomserver.media.client import Publisher, post_offer
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack, read_counter
from roomserver.server import create_app
from tests.cohost_pk.conftest import LOOPBACK, joined
from tests.media.test_hls import parse_playlist
from tests.media.test_recording import decode
from tests.media.test_sfu_media import assert_consecutive
from tests.server_fixtures import APP, NO_REST_LIMITS, SECRET, Server, closed_after, new_room_id, token

OTHER_APP = "otherapp"
OTHER_SECRET = "other-secret-" + "y" * 48
SHOW_S = 2.5


async def start(data_dir: Path, **overrides: Any) -> Server:
    config = Config(
        apps={APP: SECRET, OTHER_APP: OTHER_SECRET},
        flush_ms=10,
        ice_host=LOOPBACK,
        auto_create="any",
        data_dir=str(data_dir),
        **{**NO_REST_LIMITS, **overrides},
    )
    ts = TestServer(create_app(config), host=LOOPBACK)
    await ts.start_server()
    return Server(config, ts.app, ts, aiohttp.ClientSession())


@pytest.fixture
async def make(no_leaked_peer_connections: None) -> AsyncIterator[Any]:
    async with closed_after(start) as make_server:
        yield make_server


async def wait_for_file(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)


async def record_a_show(server: Server, room: str, publisher: Publisher) -> None:
    host, _ = await joined(server, room, "h1", "host")
    await host.start(room)
    reply = await post_offer(
        server.http, f"{server.base_url}/v1/rooms/{room}/whip", await publisher.offer(), token("h1", "host")
    )
    assert reply.status == 201, reply.body
    await publisher.accept(reply.body)


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_recorded_show_is_listed_and_served_with_ranges(
    make: Any, tmp_path: Path, workers: int
) -> None:
    server = await make(tmp_path, record=True, media_workers=workers)
    room = new_room_id()
    publisher = Publisher([CounterVideoTrack(), ToneAudioTrack()], video_codec="VP8")
    try:
        await record_a_show(server, room, publisher)
        show_dir = tmp_path / "recordings" / APP / room
        await wait_for_file(show_dir / "1.json")
        await asyncio.sleep(SHOW_S)
        host = server.clients[0]
        await host.end(room)
    finally:
        await publisher.close()
    manifest = json.loads((show_dir / "1.json").read_text())
    assert manifest["ended_at"] is not None and manifest["user"] == "h1"
    assert manifest["duration_s"] > SHOW_S - 0.6

    status, body = await server.rest("GET", f"/v1/rooms/{room}/replays", token("v1"))
    assert status == 200
    [entry] = body["replays"]
    assert entry["url"] == f"/v1/rooms/{room}/replays/1.webm" and entry["show"] == 1
    assert entry["codecs"] == {"video": "VP8", "audio": "opus"}

    size = (show_dir / "1.webm").stat().st_size
    url = f"{server.base_url}{entry['url']}?token={token('v1')}"
    async with server.http.get(url, headers={"Range": "bytes=0-99"}) as resp:
        assert resp.status == 206 and len(await resp.read()) == 100
        assert resp.headers["Content-Range"] == f"bytes 0-99/{size}"
        assert resp.headers["Content-Type"] == "video/webm"
    async with server.http.get(url, headers={"Range": f"bytes={size + 10}-"}) as resp:
        assert resp.status == 416
    async with server.http.get(url) as resp:
        assert resp.status == 200
        (tmp_path / "copy.webm").write_bytes(await resp.read())
    counters, video_s, audio_samples, _ = decode(tmp_path / "copy.webm")
    assert_consecutive(counters)
    assert video_s > SHOW_S - 0.6 and audio_samples > 0

    # Another app's token names its own app's room: not found. Bad names are 404 too.
    other = mint_token(OTHER_APP, OTHER_SECRET, "v1", "viewer")  # type: ignore[arg-type]
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays", other))[0] == 404
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays/1.webm", other))[0] == 404
    for name in ("1.json", "..%2F..%2Fanalytics.sqlite3", "2.webm", "1.webm.tmp"):
        status, body = await server.rest("GET", f"/v1/rooms/{room}/replays/{name}", token("v1"))
        assert status == 404, name
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays/1.webm"))[0] == 401
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays?show=x", token("v1")))[0] == 400
    for show in ("x", "1234567890", "7"):  # not a show number, too long, never started
        assert (await server.rest("GET", f"/v1/rooms/{room}/replays/{show}/timeline", token("v1")))[0] == 404
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays/1/timeline", other))[0] == 404


async def test_the_rooms_own_setting_overrides_the_server_default(make: Any, tmp_path: Path) -> None:
    server = await make(tmp_path, record=True)
    room = new_room_id()
    await joined(server, room, "v0")
    status, body = await server.admin("PATCH", f"/v1/rooms/{room}", {"record": False})
    assert status == 200 and body["room"]["record"] is False
    status, body = await server.admin("PATCH", f"/v1/rooms/{room}", {})  # changes nothing
    assert status == 200 and body["room"]["record"] is False
    assert (await server.admin("PATCH", f"/v1/rooms/{room}", {"record": "yes"}))[0] == 400
    publisher = Publisher([CounterVideoTrack()], video_codec="VP8")
    try:
        await record_a_show(server, room, publisher)
        await asyncio.sleep(1.0)
        await server.clients[-1].end(room)
    finally:
        await publisher.close()
    assert not (tmp_path / "recordings" / APP / room).exists()
    assert (await server.rest("GET", f"/v1/rooms/{room}/replays", token("v1")))[1] == {"replays": []}

    # Off by default, on for this room: recorded.
    server2 = await make(tmp_path / "two", record=False)
    status, body = await server2.admin("PATCH", f"/v1/rooms/{room}", {"record": True})
    assert status == 404  # no such room on this (separate) server yet
    await joined(server2, room, "v0")
    status, body = await server2.admin("PATCH", f"/v1/rooms/{room}", {"record": True})
    assert status == 200 and body["room"]["record"] is True
    publisher = Publisher([CounterVideoTrack()], video_codec="VP8")
    try:
        await record_a_show(server2, room, publisher)
        await wait_for_file(tmp_path / "two" / "recordings" / APP / room / "1.webm")
        await server2.clients[-1].end(room)
    finally:
        await publisher.close()
    status, body = await server2.rest("GET", f"/v1/rooms/{room}/replays", token("v1"))
    assert [e["file"] for e in body["replays"]] == ["1.webm"]


# In process an H.264 host (remuxed); in a media worker a VP8 host (transcoded there).
@pytest.mark.parametrize(("workers", "codec"), [(0, "H264"), (1, "VP8")])
async def test_a_live_shows_hls_is_served_and_decodes(
    make: Any, tmp_path: Path, workers: int, codec: str
) -> None:
    server = await make(tmp_path, hls=True, media_workers=workers)
    room = new_room_id()
    publisher = Publisher([CounterVideoTrack(), ToneAudioTrack()], video_codec=codec)
    base = f"/v1/rooms/{room}/hls"
    viewer = token("v1")
    try:
        await record_a_show(server, room, publisher)
        deadline = time.monotonic() + 30
        while True:
            status, text = await server.rest("GET", f"{base}/index.m3u8", viewer)
            segments = parse_playlist(text)[1] if status == 200 else []
            if len(segments) >= 2:
                break
            assert time.monotonic() < deadline, f"no HLS playlist with 2 segments: {status} {text!r}"
            await asyncio.sleep(0.2)
        async with server.http.get(f"{server.base_url}{base}/index.m3u8?token={viewer}") as resp:
            assert resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
            assert resp.headers["Cache-Control"] == "no-cache"
            native = await resp.text()
        # A player that only has the playlist's URL (Safari's native HLS) fetches what it
        # lists as written: every URI carries the token.
        tags, listed = parse_playlist(native)
        assert tags["EXT-X-MAP"].endswith(f'init.mp4?token={viewer}"')
        assert listed and all(uri.endswith(f"?token={viewer}") for _, uri in listed)
        async with server.http.get(f"{server.base_url}{base}/{listed[-1][1]}") as resp:
            assert resp.status == 200
        parts = []
        for name in ("init.mp4", segments[-1][1]):
            async with server.http.get(f"{server.base_url}{base}/{name}?token={viewer}") as resp:
                assert resp.status == 200, name
                parts.append(await resp.read())
        with av.open(io.BytesIO(b"".join(parts))) as container:
            counters = [read_counter(f) for f in container.decode(video=0)]
        assert counters and None not in counters

        # LL-HLS blocking reload: a request for the next part is held until it is listed.
        _, text = await server.rest("GET", f"{base}/index.m3u8", viewer)
        msn, part = max((int(m), int(i)) for m, i in re.findall(r'URI="seg([0-9]+)\.([0-9]+)\.m4s"', text))
        status, text = await server.rest(
            "GET", f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part + 1}", viewer
        )
        assert status == 200
        assert f'URI="seg{msn}.{part + 1}.m4s"' in text or f'URI="seg{msn + 1}.0.m4s"' in text
        newest = max(
            re.findall(r'URI="(seg[0-9]+\.[0-9]+\.m4s)"', text),
            key=lambda n: [int(x) for x in n[3:-4].split(".")],
        )
        async with server.http.get(f"{server.base_url}{base}/{newest}?token={viewer}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/iso.segment"
        for query in (f"_HLS_msn={msn + 9}", "_HLS_msn=x", "_HLS_part=1", f"_HLS_msn={msn}&_HLS_part=-1"):
            status, body = await server.rest("GET", f"{base}/index.m3u8?{query}", viewer)
            assert status == 400 and body["error"]["code"] == "bad_request", (query, body)

        other = mint_token(OTHER_APP, OTHER_SECRET, "v1", "viewer")  # type: ignore[arg-type]
        assert (await server.rest("GET", f"{base}/index.m3u8", other))[0] == 404
        for name in ("x.m3u8", "seg-1.m4s", "..%2Findex.m3u8"):
            assert (await server.rest("GET", f"{base}/{name}", viewer))[0] == 404, name
        await server.clients[0].end(room)
        _, text = await server.rest("GET", f"{base}/index.m3u8", viewer)
        assert "EXT-X-ENDLIST" in parse_playlist(text)[0]
    finally:
        await publisher.close()
