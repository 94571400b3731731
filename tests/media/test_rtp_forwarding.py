"""RTP-level forwarding through MediaRouter with real aiortc peers over loopback: packets go
through per-viewer sinks (no frame queue), and a viewer's real RTCP NACK is answered from the
track's packet cache as an RTX packet carrying the original sequence number."""

from __future__ import annotations

import asyncio
import struct

from aiortc.rtp import RtpPacket

from roomserver.media.forwarding import ForwardedTrack
from roomserver.media.rtp_forwarding import SilentTrack
from roomserver.media.sfu import MediaRouter, PublisherSession, ViewerSession
from tests.polling import eventually

from .test_sfu_media import assert_consecutive, start_publisher, start_viewer


async def test_rtp_mode_forwards_packets_through_sinks_and_viewers_decode_every_frame() -> None:
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=5.0)
    assert router.forwarding == "rtp"  # the default
    publisher_id, publisher = await start_publisher(router)
    viewers = [await start_viewer(router, user=f"v{i}") for i in range(2)]
    try:
        for _, viewer in viewers:
            assert await viewer.wait_for(lambda v: len(v.video) >= 30, timeout=10)
            assert_consecutive(viewer.counters)
        session = router.session(publisher_id)
        assert isinstance(session, PublisherSession)
        (forwarder,) = session.forwarders
        fanout = session.fanouts[forwarder]
        assert forwarder.viewers == frozenset()  # no frame-level viewer tracks
        assert len(fanout.sinks) == 2
        assert all(s.packets_sent >= 30 and s.first_packet_at is not None for s in fanout.sinks)
        assert all(s._fast_send is not None for s in fanout.sinks)  # the synchronous send path
        # Sent through udp_batch (staged per burst; tests/media/test_udp_batch.py shows a burst
        # going out as one GSO send: here the in-process publisher sends no bursts).
        batches = [s._fast_send.batch for s in fanout.sinks if s._fast_send is not None]
        assert all(b is not None and b.datagrams >= 30 and b.dropped == 0 for b in batches)
        assert session.batcher.totals.datagrams == sum(b.datagrams for b in batches if b is not None)
        for viewer_id, _ in viewers:
            viewer_session = router.session(viewer_id)
            assert isinstance(viewer_session, ViewerSession)
            assert all(isinstance(t, SilentTrack) for t in viewer_session.tracks)
            assert not any(isinstance(t, ForwardedTrack) for t in viewer_session.tracks)
    finally:
        for _, viewer in viewers:
            await viewer.close()
        await publisher.close()
        await router.close()
    assert router.peer_connections == 0
    assert all(b is not None and b.closed for b in batches)  # their socket duplicates too


async def test_a_viewers_nack_is_answered_from_the_cache_as_rtx() -> None:
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=5.0)
    publisher_id, publisher = await start_publisher(router)
    _, viewer = await start_viewer(router)
    try:
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=10)
        session = router.session(publisher_id)
        assert isinstance(session, PublisherSession)
        (sink,) = next(iter(session.fanouts.values())).sinks
        assert sink.rtx_payload_type is not None  # aiortc negotiates RTX for video

        # What reaches the viewer, before aiortc unwraps RTX.
        (receiver,) = [t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video"]
        seen: list[RtpPacket] = []
        original = receiver._handle_rtp_packet

        async def record(packet: RtpPacket, arrival_time_ms: int) -> None:
            seen.append(packet)
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = record  # type: ignore[method-assign]
        assert await eventually(
            lambda: sum(p.payload_type == sink.payload_type for p in seen) >= 10, 5, step=0.02
        )
        media = [p for p in seen if p.payload_type == sink.payload_type]
        lost = media[-1].sequence_number - 3  # sent a moment ago: still cached
        await receiver._send_rtcp_nack(sink.sender._ssrc, [lost])  # a real RTCP NACK over DTLS/SRTP

        def got_rtx() -> bool:
            return any(
                p.payload_type == sink.rtx_payload_type and struct.unpack("!H", p.payload[:2])[0] == lost
                for p in seen
            )

        assert await eventually(got_rtx, 5, step=0.02)
        assert sink.retransmitted >= 1
        rtx = next(p for p in seen if p.payload_type == sink.rtx_payload_type)
        assert rtx.ssrc == sink.sender._rtx_ssrc
        original_packet = next(p for p in media if p.sequence_number == lost)
        assert rtx.payload[2:] == original_packet.payload and rtx.timestamp == original_packet.timestamp

        # A number never sent (or long evicted) is a miss, not a crash.
        misses = sink.nack_misses
        await receiver._send_rtcp_nack(sink.sender._ssrc, [(lost + 30000) % 65536])
        assert await eventually(lambda: sink.nack_misses == misses + 1, 5, step=0.02)
        assert await viewer.wait_for(lambda v: len(v.video) >= 20, timeout=10)  # still playing
    finally:
        await viewer.close()
        await publisher.close()
        await router.close()


async def test_fan_out_is_shed_while_the_ingest_backlog_is_over_the_limit() -> None:
    """An overloaded server skips fan-out rather than queueing stale packets without bound;
    with the limit below any backlog (-1) nothing is forwarded and every packet is counted."""
    router = MediaRouter(ice_host="127.0.0.1", connect_timeout=5.0)
    publisher_id, publisher = await start_publisher(router)
    session = router.session(publisher_id)
    assert isinstance(session, PublisherSession)
    (fanout,) = session.fanouts.values()
    _, viewer = await start_viewer(router)
    try:
        assert await viewer.wait_for(lambda v: len(v.video) >= 5, timeout=10)
        assert fanout.shed == 0  # a quiet loop has no backlog
        fanout.backlog_limit = -1
        (sink,) = fanout.sinks
        await asyncio.sleep(0.2)
        sent = sink.packets_sent
        assert await eventually(lambda: fanout.shed >= 30, 5, step=0.02)
        assert sink.packets_sent == sent
        fanout.backlog_limit = 100  # back to normal: forwarding resumes
        assert await eventually(lambda: sink.packets_sent > sent, 5, step=0.02)
    finally:
        await viewer.close()
        await publisher.close()
        await router.close()
