"""Recording a show's publishers without transcoding (issue 14): real aiortc publishers through
the MediaRouter, the file decoded back with PyAV frame by frame (numbered frames: in order,
none missing), its duration checked against the time it was published."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import av
import pytest

from roomserver.media.recording import RecordingTarget
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack, read_counter

from .test_sfu_media import assert_consecutive, start_publisher, start_viewer

RECORD_S = 3.0


async def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def decode(path: Path) -> tuple[list[int | None], float, int, float]:
    """(video counters, video duration s, audio samples decoded, audio duration s)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        counters, last_video = [], 0.0
        audio_samples, last_audio = 0, 0.0
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                counters.append(read_counter(frame))
                last_video = float(frame.pts * video.time_base)
            else:
                audio_samples += frame.samples
                last_audio = float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate
    return counters, last_video, audio_samples, last_audio


@pytest.mark.parametrize(("codec", "ext"), [("VP8", "webm"), ("H264", "mp4")])
async def test_a_recording_decodes_and_lasts_as_long_as_the_show(
    router: MediaRouter, tmp_path: Path, codec: str, ext: str
) -> None:
    show_started = int(time.time() * 1000)
    target = RecordingTarget(str(tmp_path / "app1" / "r1"), show=3, started_at=show_started)
    session, publisher = await start_publisher(
        router, "app1/r1", video_codec=codec, tracks=[CounterVideoTrack(), ToneAudioTrack()]
    )
    try:
        router.start_recording("app1/r1", target)
        recording = router.recording(session)
        assert recording is not None
        assert await wait_until(lambda: recording.frames["video"] > 0)
        opened = time.monotonic()
        await asyncio.sleep(RECORD_S)
        await router.close_room("app1/r1")
        wall_s = time.monotonic() - opened
    finally:
        await publisher.close()

    path = tmp_path / "app1" / "r1" / f"3.{ext}"
    assert recording.path == path and recording.closed
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["file"] == f"3.{ext}" and manifest["show"] == 3
    assert manifest["codecs"] == {"video": codec, "audio": "opus"}
    assert manifest["show_started_at"] == show_started
    assert 0 <= manifest["offset_s"] < 10
    assert manifest["ended_at"] >= manifest["started_at"]

    counters, video_s, audio_samples, audio_s = decode(path)
    assert_consecutive(counters)  # every frame the SFU received, decodable, in order
    assert len(counters) == manifest["frames"]["video"]
    # The recording covers the time it ran (a loaded machine may make the publisher's encoder
    # fall behind by a few frames, never ahead of the wall clock).
    assert wall_s - 0.6 <= video_s <= wall_s + 0.2, (video_s, wall_s)
    assert abs(manifest["duration_s"] - video_s) < 0.1
    assert len(counters) >= (wall_s - 0.6) * 30
    assert audio_samples > 0 and abs(audio_s - video_s) < 0.5, (audio_s, video_s)


async def test_a_publisher_joining_a_recorded_room_is_recorded_in_its_own_file(
    router: MediaRouter, tmp_path: Path
) -> None:
    target = RecordingTarget(str(tmp_path), show=1, started_at=int(time.time() * 1000))
    router.start_recording("r1", target)
    host_session, host = await start_publisher(router)
    co_session, cohost = await start_publisher(router, user="co/1", role="cohost")
    try:
        recordings = [router.recording(host_session), router.recording(co_session)]
        assert all(r is not None for r in recordings)
        assert await wait_until(lambda: all(r.frames["video"] >= 10 for r in recordings))  # type: ignore[union-attr]
        # A reconnect (the host publishes again) goes to a new file, not over the first.
        await host.close()
        host_session, host = await start_publisher(router)
        again = router.recording(host_session)
        assert again is not None
        assert await wait_until(lambda: again.frames["video"] >= 10)
        router.stop_recording("r1")
        assert router.recording(host_session) is None
    finally:
        await host.close()
        await cohost.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["1.2.json", "1.2.webm", "1.cohost-co_1.json", "1.cohost-co_1.webm", "1.json", "1.webm"]
    for name in ("1.webm", "1.2.webm", "1.cohost-co_1.webm"):
        counters, _, _, _ = decode(tmp_path / name)
        assert len(counters) >= 10
        assert_consecutive(counters)


async def test_recording_does_not_disturb_viewers_and_stops_with_the_publisher(
    router: MediaRouter, tmp_path: Path
) -> None:
    router.start_recording("r1", RecordingTarget(str(tmp_path), show=1, started_at=0))
    session, publisher = await start_publisher(router)
    _, viewer = await start_viewer(router)
    try:
        assert await viewer.wait_for(lambda v: len(v.video) >= 30, timeout=10)
        assert_consecutive(viewer.counters)
        recording = router.recording(session)
        assert recording is not None and recording.frames["video"] >= 30
        await publisher.close()
        assert await wait_until(lambda: recording.closed)
    finally:
        await viewer.close()
        await publisher.close()
    manifest = json.loads((tmp_path / "1.json").read_text())
    assert manifest["ended_at"] is not None and manifest["frames"]["video"] >= 30
