"""End to end through MediaRouter with real aiortc peers over loopback (no HTTP here).

The publisher sends frames numbered by `CounterVideoTrack`; viewers decode them and read the
numbers back, so "forwarded in order, without gaps, decodable" is checked frame by frame.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from roomserver.media.client import Publisher, Viewer
from roomserver.media.errors import BadRequest, Forbidden, LimitReached, NotFound, Unavailable
from roomserver.media.sfu import MediaRouter, ViewerSession
from roomserver.media.synthetic import CounterVideoTrack, ToneAudioTrack
from tests.polling import eventually


async def start_publisher(
    router: MediaRouter, room: str = "r1", user: str = "host1", role: str = "host", **kwargs
) -> tuple[str, Publisher]:
    tracks = kwargs.pop("tracks", None) or [CounterVideoTrack()]
    publisher = Publisher(tracks, **kwargs)
    session, answer = await router.publish(room, user, role, await publisher.offer())
    await publisher.accept(answer)
    return session, publisher


async def start_viewer(
    router: MediaRouter, room: str = "r1", publisher: str | None = None, user: str = "v", **kwargs
) -> tuple[str, Viewer]:
    viewer = Viewer(**kwargs)
    session, answer = await router.play(room, publisher, user, await viewer.offer())
    await viewer.accept(answer)
    return session, viewer


def assert_consecutive(counters: list[int | None]) -> None:
    assert counters, "no frames"
    assert None not in counters, "undecodable counter blocks"
    gaps = [(a, b) for a, b in itertools.pairwise(counters) if b != a + 1]
    assert gaps == []


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_viewers_receive_every_frame_in_order(router: MediaRouter, codec: str) -> None:
    _, publisher = await start_publisher(router, video_codec=codec)
    assert router.publishers("r1")[0]["tracks"] == [{"kind": "video", "codec": codec}]
    viewers = [await start_viewer(router, user=f"v{i}") for i in range(3)]
    try:
        for _, viewer in viewers:
            assert await viewer.wait_for(lambda v: len(v.video) >= 45, timeout=10)
        sent = publisher.tracks[0].count
        for _, viewer in viewers:
            # Viewers may join after the first frames (slow machine): they start on a later
            # keyframe, then must see every frame.
            assert_consecutive(viewer.counters)
            assert viewer.counters[-1] >= sent - 15  # live, not lagging
        assert codec in viewers[0][1].pc.remoteDescription.sdp
    finally:
        for _, viewer in viewers:
            await viewer.close()
        await publisher.close()


async def test_late_viewer_starts_quickly_on_a_requested_keyframe(router: MediaRouter) -> None:
    _, publisher = await start_publisher(router)
    _, early = await start_viewer(router, user="early")
    try:
        assert await early.wait_for(lambda v: len(v.video) >= 30, timeout=10)
        requests_before = len(publisher.keyframe_requests)
        _, late = await start_viewer(router, user="late")
        try:
            assert await late.wait_for(lambda v: len(v.video) >= 10, timeout=5)
            join_to_first_frame = late.first_frame_at - late.offered_at
            # aiortc's VP8 encoder makes a keyframe every 3000 frames: without the PLI on join
            # the late viewer would wait ~100 s.
            assert join_to_first_frame < 1.5
            assert len(publisher.keyframe_requests) > requests_before
            assert_consecutive(late.counters)
            assert late.counters[0] > 20
        finally:
            await late.close()
        assert_consecutive(early.counters)  # the late viewer's keyframe did not disturb others
    finally:
        await early.close()
        await publisher.close()


async def test_viewer_keyframe_requests_reach_the_publisher_rate_limited(router: MediaRouter) -> None:
    _, publisher = await start_publisher(router)
    _, viewer = await start_viewer(router)
    try:
        assert await viewer.wait_for(lambda v: len(v.video) >= 20, timeout=10)
        await asyncio.sleep(0.6)  # past the rate-limit window of the join request
        before = len(publisher.keyframe_requests)
        for _ in range(10):
            assert await viewer.send_pli() == 1
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.2)
        arrived = publisher.keyframe_requests[before:]
        assert 1 <= len(arrived) <= 3  # 10 viewer PLIs in 0.1 s; at most one per 0.5 s upstream
        assert all(b - a >= 0.4 for a, b in itertools.pairwise(arrived))
        forwarder = router.publisher_session("r1", "host1").forwarders[0]
        assert forwarder.keyframes.requests >= 10
    finally:
        await viewer.close()
        await publisher.close()


async def test_audio_is_forwarded_with_video(router: MediaRouter) -> None:
    _, publisher = await start_publisher(router, tracks=[ToneAudioTrack(), CounterVideoTrack()])
    assert [t["kind"] for t in router.publishers("r1")[0]["tracks"]] == ["audio", "video"]
    _, both = await start_viewer(router, user="both", kinds=("audio", "video"))
    _, audio_only = await start_viewer(router, user="ears", kinds=("audio",))
    try:
        assert await both.wait_for(lambda v: v.audio_frames >= 50 and len(v.video) >= 30, timeout=10)
        assert await audio_only.wait_for(lambda v: v.audio_frames >= 50, timeout=10)
        for viewer in (both, audio_only):
            assert viewer.audio_peak > 2000  # the tone, not silence
        assert audio_only.video == []
        assert_consecutive(both.counters)
    finally:
        await both.close()
        await audio_only.close()
        await publisher.close()


async def test_stuck_viewer_queue_is_bounded_and_the_session_times_out() -> None:
    """Frame-level forwarding only: RTP forwarding queues nothing per viewer."""
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=2.0, video_queue_frames=10, forwarding="frame")
    _, publisher = await start_publisher(router)
    stuck = Viewer()
    try:
        session_id, _answer = await router.play(
            "r1", None, "stuck", await stuck.offer()
        )  # answer never applied
        session = router.session(session_id)
        assert isinstance(session, ViewerSession)
        track = session.tracks[0]
        peak = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, track.queued)
            await asyncio.sleep(0.02)
        assert 0 < peak <= 10
        assert track.frames_dropped > 0
        assert await eventually(lambda: router.session(session_id) is None, 3)
        assert track.readyState == "ended"
        assert router.peer_connections == 1  # only the publisher is left
    finally:
        await stuck.close()
        await publisher.close()
        await router.close()
    assert router.peer_connections == 0


async def test_sessions_end_when_peers_leave(router: MediaRouter) -> None:
    publisher_session, publisher = await start_publisher(router)
    viewer_session, viewer = await start_viewer(router)
    other_session, other = await start_viewer(router, user="v2")
    assert await viewer.wait_for(lambda v: len(v.video) >= 5, timeout=10)
    await viewer.close()  # remote close: the server notices through DTLS
    assert await eventually(lambda: router.session(viewer_session) is None, 5)
    assert await eventually(lambda: router.peer_connections == 2, 5)
    await publisher.close()  # the publisher goes: its remaining viewers are closed too
    assert await eventually(lambda: router.peer_connections == 0, 5)
    assert router.publishers("r1") == []
    assert router.changes[-1] == "r1"
    assert router.session(other_session) is None and router.session(publisher_session) is None
    await other.close()


async def test_only_the_owner_stops_a_session_and_publish_errors_leave_nothing(router: MediaRouter) -> None:
    session_id, publisher = await start_publisher(router)
    try:
        with pytest.raises(Forbidden):
            await router.stop(session_id, "someone-else")
        with pytest.raises(NotFound):
            await router.stop("no-such-session", "host1")
        with pytest.raises(NotFound):
            await router.stop(session_id, "host1", kind="play")
        with pytest.raises(NotFound):
            await router.play("r1", "nobody", "v", "v=0\r\n")
        with pytest.raises(NotFound):
            await router.play("empty-room", None, "v", "v=0\r\n")
        with pytest.raises(BadRequest):
            await router.publish("r1", "u2", "viewer", "v=0\r\n")
        for garbage in ("", "garbage", "v=0\r\nm=video x\r\n"):
            with pytest.raises(BadRequest):
                await router.publish("r2", "u2", "host", garbage)
        audio_only_viewer = Viewer(kinds=("audio",))
        with pytest.raises(BadRequest):  # the publisher sends no audio
            await router.play("r1", None, "v", await audio_only_viewer.offer())
        await audio_only_viewer.close()
        vp8_only = Viewer(video_codec="VP8")
        h264_publisher = Publisher([CounterVideoTrack()], video_codec="H264")
        h264_session, answer = await router.publish("r3", "h3", "host", await h264_publisher.offer())
        await h264_publisher.accept(answer)
        with pytest.raises(BadRequest):  # no transcoding: a VP8-only viewer cannot play H.264
            await router.play("r3", None, "v", await vp8_only.offer())
        await vp8_only.close()
        await router.stop(h264_session, "h3")
        await h264_publisher.close()
        assert router.peer_connections == 1
        await router.stop(session_id, "host1")
        assert router.peer_connections == 0
        assert router.publishers("r1") == []
    finally:
        await publisher.close()


async def test_publisher_limit_and_republish_replaces(router: MediaRouter) -> None:
    router.max_publishers_per_room = 2
    publishers = []
    try:
        for i in range(2):
            publishers.append(await start_publisher(router, room="call", user=f"u{i}", role="call"))
        extra = Publisher([CounterVideoTrack()])
        with pytest.raises(LimitReached):
            await router.publish("call", "u9", "call", await extra.offer())
        await extra.close()
        first_stream = router.publishers("call")[0]["stream"]
        again = await start_publisher(router, room="call", user="u0", role="call")  # reconnect
        publishers.append(again)
        entries = router.publishers("call")
        assert sorted(e["user"] for e in entries) == ["u0", "u1"]
        assert first_stream not in {e["stream"] for e in entries}
        assert router.session(publishers[0][0]) is None
        assert router.peer_connections == 2  # u1 and the new u0: the replaced pc is closed
        router.max_peer_connections = 2
        viewer = Viewer()
        with pytest.raises(Unavailable):  # process capacity, distinct from the room's limit
            await router.play("call", "u1", "v", await viewer.offer())
        await viewer.close()
        assert router.peer_connections == 2
    finally:
        for _, publisher in publishers:
            await publisher.close()


async def test_pk_viewers_play_the_other_rooms_host(router: MediaRouter) -> None:
    _, host_a = await start_publisher(router, room="ra", user="ha")
    _, host_b = await start_publisher(router, room="rb", user="hb")
    router.changes.clear()
    router.link("ra", "rb", "hb")
    router.link("rb", "ra", "ha")
    assert [(p["user"], p["role"]) for p in router.publishers("ra")] == [("ha", "host"), ("hb", "pk")]
    assert router.changes == ["ra", "rb"]
    _, viewer = await start_viewer(router, room="ra", publisher="hb")
    _, cohost_b = await start_publisher(router, room="rb", user="cb", role="cohost")
    try:
        assert router.changes == ["ra", "rb", "rb"]  # ra shows only rb's host: unchanged
        assert [p["user"] for p in router.publishers("ra")] == ["ha", "hb"]
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=10)
        assert_consecutive(viewer.counters)
        router.unlink("ra", "rb", "hb")
        assert [p["user"] for p in router.publishers("ra")] == ["ha"]
        with pytest.raises(NotFound):
            await router.play("ra", "hb", "v2", "v=0\r\n")
        router.changes.clear()
        await host_a.close()  # ra's host leaves: rb shows it as pk, so rb changes too
        assert await eventually(lambda: "rb" in router.changes and "ra" in router.changes, 5)
        assert [p["user"] for p in router.publishers("rb")] == ["hb", "cb"]
    finally:
        await viewer.close()
        await cohost_b.close()
        await host_a.close()
        await host_b.close()


async def test_close_shuts_everything(router: MediaRouter) -> None:
    _, publisher = await start_publisher(router)
    _, viewer = await start_viewer(router)
    assert await viewer.wait_for(lambda v: len(v.video) >= 3, timeout=10)
    await router.close()
    assert router.peer_connections == 0 and router.sessions == {}
    await viewer.close()
    await publisher.close()
