"""Quality layers over loopback with real aiortc peers: a publisher sends a high and a low
encoding (WHIP `?layers=high,low`), each viewer gets one video track, `media.layer`
(MediaRouter.set_layer) moves a viewer between layers on a keyframe, and the viewer keeps
decoding across the switch. The link-driven choice is tests/media/test_layers_netns.py."""

from __future__ import annotations

import pytest

from roomserver.media.client import Publisher, Viewer
from roomserver.media.errors import BadRequest, NotFound
from roomserver.media.negotiation import media_lines, parse_offer
from roomserver.media.sfu import MediaRouter, PublisherSession, ViewerSession
from roomserver.media.synthetic import LOW_LAYER_BITRATE, CounterVideoTrack, layer_pair
from tests.polling import eventually

from .test_sfu_media import start_viewer

HIGH_WIDTH, LOW_WIDTH = 640, 320


async def start_layered(router: MediaRouter, user: str = "host1") -> tuple[str, Publisher]:
    high, low = layer_pair()
    publisher = Publisher([high, low], max_bitrates={low: LOW_LAYER_BITRATE})
    session, answer = await router.publish("r1", user, "host", await publisher.offer(), ("high", "low"))
    await publisher.accept(answer)
    return session, publisher


def widths_after(viewer, start: int) -> set[int]:
    return {s.width for s in viewer.video[start:]}


async def test_a_viewer_switches_layers_on_request_and_keeps_decoding() -> None:
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    publisher_id, publisher = await start_layered(router)
    viewer_id, viewer = await start_viewer(router, user="v1")
    try:
        (entry,) = router.publishers("r1")
        assert entry["tracks"] == [{"kind": "video", "codec": "VP8", "layers": ["high", "low"]}]
        assert len(viewer.pc.getTransceivers()) == 1  # one video track, whatever the layers
        assert await viewer.wait_for(lambda v: len(v.video) >= 15, timeout=20)
        assert widths_after(viewer, 0) == {HIGH_WIDTH}  # auto starts high

        assert router.set_layer("r1", "v1", "host1", "low") == "low"
        mark = len(viewer.video)
        assert await viewer.wait_for(lambda v: LOW_WIDTH in widths_after(v, mark), timeout=20)
        at_low = next(i for i in range(mark, len(viewer.video)) if viewer.video[i].width == LOW_WIDTH)
        assert await viewer.wait_for(lambda v: len(v.video) >= at_low + 15, timeout=20)
        assert widths_after(viewer, at_low) == {LOW_WIDTH}  # pinned: stays low
        assert None not in viewer.counters  # every frame decoded cleanly across the switch

        session = router.session(viewer_id)
        assert isinstance(session, ViewerSession) and session.layers is not None
        assert session.layers.playing == "low" and session.layers.sink.switches == 1
        switcher = session.layers
        # the viewer's receiver reports reach the estimate (aiortc: every 0.5–1.5 s)
        assert await eventually(lambda: switcher.reports > 0, 20)

        assert router.set_layer("r1", "v1", "host1", "auto") == "high"  # a clean link: high
        mark = len(viewer.video)
        assert await viewer.wait_for(lambda v: HIGH_WIDTH in widths_after(v, mark), timeout=20)
        assert None not in viewer.counters
        publisher_session = router.session(publisher_id)
        assert isinstance(publisher_session, PublisherSession) and publisher_session.low is not None
    finally:
        await viewer.close()
        await publisher.close()
        await router.close()
    assert router.peer_connections == 0


async def test_media_layer_errors() -> None:
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    publisher = Publisher([CounterVideoTrack()])
    try:
        offer = await publisher.offer()
        with pytest.raises(BadRequest):  # names two video m-lines, the offer has one
            await router.publish("r1", "host1", "host", offer, ("high", "low"))
        _, answer = await router.publish("r1", "host1", "host", offer)
        await publisher.accept(answer)
        _, viewer = await start_viewer(router, user="v1")
        try:
            with pytest.raises(NotFound):  # not a layered publisher
                router.set_layer("r1", "v1", "host1", "low")
            with pytest.raises(BadRequest):
                router.set_layer("r1", "v1", "host1", "medium")
        finally:
            await viewer.close()
    finally:
        await publisher.close()
        await router.close()


async def test_frame_mode_forwards_the_high_layer_only() -> None:
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0, forwarding="frame")
    _, publisher = await start_layered(router)
    _, viewer = await start_viewer(router, user="v1")
    try:
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=20)
        assert widths_after(viewer, 0) == {HIGH_WIDTH}
        with pytest.raises(NotFound):
            router.set_layer("r1", "v1", "host1", "low")
    finally:
        await viewer.close()
        await publisher.close()
        await router.close()


async def test_whep_layers_give_each_video_line_one_layer_fixed() -> None:
    """WHEP `?layers=high,low` (what a node relaying a publisher of another node asks, so
    that its own viewers can switch): the offer's first video m-line carries the high layer,
    the second the low one, neither switching; for a publisher without layers the second is
    inactive; a count of names that does not match the offer is refused."""
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=10.0)
    _, publisher = await start_layered(router)
    plain = Publisher([CounterVideoTrack()])
    relays = [Viewer(kinds=("video", "video")) for _ in range(2)]
    try:
        session_id, answer = await router.play("r1", None, "node:b", await relays[0].offer(), ("high", "low"))
        await relays[0].accept(answer)
        assert await relays[0].wait_for(lambda v: {HIGH_WIDTH, LOW_WIDTH} <= widths_after(v, 0), 20)
        session = router.session(session_id)
        assert isinstance(session, ViewerSession) and session.layers is None  # fixed: no switcher
        with pytest.raises(NotFound):  # nothing to switch
            router.set_layer("r1", "node:b", "host1", "low")
        with pytest.raises(BadRequest):  # two names, one video m-line
            await router.play("r1", None, "v2", await Viewer(kinds=("video",)).offer(), ("high", "low"))

        _, answer = await router.publish("r2", "host2", "host", await plain.offer())
        await plain.accept(answer)
        _, answer = await router.play("r2", None, "node:b", await relays[1].offer(), ("high", "low"))
        assert [m.direction for m in media_lines(parse_offer(answer))] == ["sendonly", "inactive"]
        await relays[1].accept(answer)
        assert await relays[1].wait_for(lambda v: len(v.video) >= 10, 20)
    finally:
        for relay in relays:
            await relay.close()
        await plain.close()
        await publisher.close()
        await router.close()
