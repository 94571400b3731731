"""Live (LL-)HLS of a room's host (issue 14): an aiortc H.264 or VP8 publisher with Opus through
the MediaRouter, the playlist parsed as it grows, its segments and parts decoded with PyAV
(numbered frames in order across segments), ended with EXT-X-ENDLIST when the room closes."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path

import av
import pytest

from roomserver.core.llhls import LivePlaylist
from roomserver.media.hls import playlist_when_ready
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack, read_counter

from .test_sfu_media import assert_consecutive, start_publisher


def parse_playlist(text: str) -> tuple[dict[str, str], list[tuple[float, str]]]:
    """(tags, [(EXTINF duration, segment URI)]) of a media playlist."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U"
    tags: dict[str, str] = {}
    segments: list[tuple[float, str]] = []
    pending: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            pending = float(line[8:].split(",")[0])
        elif line.startswith("#"):
            name, _, value = line[1:].partition(":")
            tags[name] = value
        else:
            assert pending is not None, f"segment {line} without EXTINF"
            segments.append((pending, line))
            pending = None
    return tags, segments


async def _playlist_grows_and_decodes(router: MediaRouter, tmp_path: Path, video_codec: str) -> None:
    session, publisher = await start_publisher(
        router, video_codec=video_codec, tracks=[CounterVideoTrack(), ToneAudioTrack()]
    )
    try:
        router.start_hls("r1", str(tmp_path))
        assert router.hls(session) is not None
        playlist = tmp_path / "index.m3u8"
        deadline = time.monotonic() + 20
        while True:
            segments = parse_playlist(playlist.read_text())[1] if playlist.exists() else []
            if len(segments) >= 3:
                break
            assert time.monotonic() < deadline, "fewer than 3 segments in 20 s"
            await asyncio.sleep(0.1)
        tags, segments = parse_playlist(playlist.read_text())
        assert tags["EXT-X-MAP"] == 'URI="init.mp4"' and "EXT-X-ENDLIST" not in tags
        assert int(tags["EXT-X-TARGETDURATION"]) <= 2, playlist.read_text()
        init = (tmp_path / "init.mp4").read_bytes()
        counters: list[int | None] = []
        for duration, name in segments:
            assert 0.3 < duration < 2.5, (name, duration)
            with av.open(io.BytesIO(init + (tmp_path / name).read_bytes())) as container:
                assert [s.codec_context.name for s in container.streams] == ["h264", "opus"]
                got = [read_counter(f) for f in container.decode(video=0)]
            assert got, name
            assert abs(len(got) / 30 - duration) < 0.2, (name, len(got), duration)
            counters += got
        assert_consecutive(counters)  # one run of frames across segments, none lost between
        # LL-HLS: the segment being filled is listed as parts (the first independent), each
        # a fragment that decodes after the init section.
        text = playlist.read_text()
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text
        parts = re.findall(r'#EXT-X-PART:DURATION=([0-9.]+),URI="(seg[0-9]+\.[0-9]+\.m4s)"', text)
        assert parts and all(float(d) <= 0.4 for d, _ in parts)
        for _, name in parts[-2:]:
            try:
                part = (tmp_path / name).read_bytes()
            except FileNotFoundError:
                continue  # its segment left the window since the playlist was read
            with av.open(io.BytesIO(init + part)) as container:
                assert all(read_counter(f) is not None for f in container.decode(video=0))
        await router.close_room("r1")
        tags, _ = parse_playlist(playlist.read_text())
        assert "EXT-X-ENDLIST" in tags
    finally:
        await publisher.close()


async def test_the_hosts_hls_playlist_grows_and_its_segments_decode(
    router: MediaRouter, tmp_path: Path
) -> None:
    await _playlist_grows_and_decodes(router, tmp_path, "H264")


async def test_a_vp8_host_is_transcoded_once_into_the_h264_rendition(
    router: MediaRouter, tmp_path: Path
) -> None:
    # Browsers publish VP8: its frames are decoded and re-encoded (transcode.py); the numbered
    # frames survive the transcode in order, the segments hold H.264, and no frame is dropped.
    await _playlist_grows_and_decodes(router, tmp_path, "VP8")


async def test_a_blocking_reload_gives_up_after_three_target_durations(tmp_path: Path) -> None:
    # A rendition that stalls (its publisher stopped sending): the held request ends with
    # None (the server's 503) after 3 × EXT-X-TARGETDURATION, not never.
    playlist = LivePlaylist(segment_s=1, window=6)
    playlist.add_part(0.25, True)
    path = tmp_path / "index.m3u8"
    path.write_text(playlist.render())
    started = time.monotonic()
    assert await playlist_when_ready(path, (0, 0)) == path.read_text()  # there: at once
    assert time.monotonic() - started < 1
    assert await playlist_when_ready(path, (0, 1)) is None
    assert 2.9 < time.monotonic() - started < 10
    with pytest.raises(FileNotFoundError):
        await playlist_when_ready(tmp_path / "gone.m3u8", (0, 1))
