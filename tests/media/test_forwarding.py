"""Forwarding rules without a network: keyframe detection on real encoder output, the
per-viewer queue policy, the keyframe-request rate limit, the tap's end-of-stream handling."""

from __future__ import annotations

import asyncio
import fractions
import queue

import av
import pytest
from aiortc import RTCRtpCodecCapability
from aiortc.codecs.h264 import H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from roomserver.media.forwarding import EncodedFrameTap, KeyframeRequester, TrackForwarder, is_keyframe
from roomserver.media.jitter import MarkerJitterBuffer
from roomserver.media.negotiation import CodecChoice
from roomserver.media.synthetic import CounterVideoTrack, read_counter

VP8 = CodecChoice("video", RTCRtpCodecCapability("video/VP8", 90000), None)
OPUS = CodecChoice("audio", RTCRtpCodecCapability("audio/opus", 48000, 2), None)


async def _frames(n: int) -> list[av.VideoFrame]:
    track = CounterVideoTrack(fps=1000)
    return [await track.recv() for _ in range(n)]


async def _encoded(encoder_cls, n: int, force_key_at: int) -> list[bytes]:
    """Encode with aiortc's own encoders, packetize, then depayload as the receiver does."""
    encoder = encoder_cls()
    depayload = vp8_depayload if encoder_cls is Vp8Encoder else h264_depayload
    frames = []
    for i, frame in enumerate(await _frames(n)):
        payloads, _ = encoder.encode(frame, force_keyframe=(i == force_key_at))
        if payloads:
            frames.append(b"".join(depayload(p) for p in payloads))
    return frames


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_keyframes_are_detected_in_depayloaded_frames(codec: str) -> None:
    frames = await _encoded(Vp8Encoder if codec == "VP8" else H264Encoder, 12, force_key_at=6)
    flags = [is_keyframe(codec, f) for f in frames]
    assert flags[0] is True
    assert flags[6] is True
    assert not any(flags[1:6]) and not any(flags[7:])


def test_keyframe_detection_edge_cases() -> None:
    assert is_keyframe("VP8", b"") is False
    assert is_keyframe("H264", b"") is False
    assert is_keyframe("H264", b"\x00\x00\x00\x01\x67\x42") is True  # SPS
    assert is_keyframe("H264", b"\x00\x00\x00\x01\x41\x9a") is False  # non-IDR slice
    assert is_keyframe("opus", b"\xfc") is True


def _packet(n: int) -> av.Packet:
    p = av.Packet(bytes([n % 256]))
    p.pts = n
    p.time_base = fractions.Fraction(1, 90000)
    return p


async def test_new_video_viewer_starts_at_a_keyframe_and_asks_for_one() -> None:
    forwarder = TrackForwarder(VP8, video_queue_frames=4)
    plis: list[int] = []
    forwarder.set_pli_sender(lambda: plis.append(1))
    track = forwarder.subscribe()
    assert plis == [1]  # asked on subscribe
    track.push(_packet(1), keyframe=False)
    track.push(_packet(2), keyframe=False)
    assert track.queued == 0 and track.frames_skipped == 2
    track.push(_packet(3), keyframe=True)
    track.push(_packet(4), keyframe=False)
    assert [(await track.recv()).pts for _ in range(2)] == [3, 4]
    track.stop()
    assert forwarder.viewers == frozenset()


async def test_full_video_queue_drops_to_the_next_keyframe_and_stays_bounded() -> None:
    forwarder = TrackForwarder(VP8, video_queue_frames=4, keyframe_interval=0.0)
    plis: list[int] = []
    forwarder.set_pli_sender(lambda: plis.append(1))
    track = forwarder.subscribe()
    track.push(_packet(0), keyframe=True)
    for n in range(1, 50):
        track.push(_packet(n), keyframe=False)
        assert track.queued <= 4
    assert track.queued == 0 and track.frames_dropped == 5  # 4 queued + the frame that overflowed
    requested = len(plis)
    recv = asyncio.ensure_future(track.recv())  # the sender asks for a frame: now a keyframe is wanted
    await asyncio.sleep(0)
    assert len(plis) == requested + 1
    track.push(_packet(60), keyframe=False)
    track.push(_packet(61), keyframe=True)
    assert (await recv).pts == 61
    track.stop()


async def test_full_audio_queue_drops_oldest_frames() -> None:
    forwarder = TrackForwarder(OPUS, audio_queue_frames=3)
    track = forwarder.subscribe()
    for n in range(10):
        track.push(_packet(n), keyframe=True)
    assert track.queued == 3 and track.frames_dropped == 7
    assert [(await track.recv()).pts for _ in range(3)] == [7, 8, 9]
    track.stop()


async def test_end_of_source_ends_viewer_tracks_after_queued_frames() -> None:
    forwarder = TrackForwarder(OPUS)
    track = forwarder.subscribe()
    track.push(_packet(1), keyframe=True)
    forwarder.end()
    assert (await track.recv()).pts == 1
    with pytest.raises(MediaStreamError):
        await track.recv()
    late = forwarder.subscribe()
    with pytest.raises(MediaStreamError):
        await late.recv()


async def test_keyframe_requests_are_rate_limited_with_a_trailing_request() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    requester = KeyframeRequester(lambda: sent.append(loop.time()), interval=0.2)
    requester.request()
    assert len(sent) == 1
    for _ in range(5):
        requester.request()  # in flight, no keyframe yet: redundant
    assert len(sent) == 1
    requester.keyframe_seen()
    for _ in range(5):
        requester.request()  # a new need inside the interval: deferred, not lost
    assert len(sent) == 1
    await asyncio.sleep(0.3)
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.19
    requester.close()


async def test_tap_forwards_frames_and_passes_end_of_stream_to_the_decoder_thread() -> None:
    forwarder = TrackForwarder(VP8)
    replaced: queue.Queue = queue.Queue()
    tap = EncodedFrameTap(forwarder, replaced)
    track = forwarder.subscribe()
    frame = JitterFrame(data=bytes([0x10, 0x02, 0x00]), timestamp=3000)  # VP8 key frame tag (bit 0 = 0)
    tap.put((RTCRtpCodecCapability("video/VP8", 90000), frame))
    packet = await track.recv()
    assert (
        bytes(packet) == frame.data
        and packet.pts == 3000
        and packet.time_base == fractions.Fraction(1, 90000)
    )
    tap.put(None)
    assert tap.get_nowait() is None and replaced.get_nowait() is None  # whichever queue the thread reads
    assert forwarder.ended
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_synthetic_counter_survives_vp8_coding() -> None:
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    counters = []
    for frame in await _frames(5):
        payloads, ts = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        counters += [read_counter(f) for f in decoder.decode(JitterFrame(data, ts))]
    assert counters == [0, 1, 2, 3, 4]


def _rtp(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    packet._data = data  # what the receiver's depayloader sets before the jitter buffer
    return packet


def test_marker_jitter_buffer_releases_a_frame_on_its_last_packet() -> None:
    buffer = MarkerJitterBuffer(JitterBuffer(capacity=128, is_video=True))
    assert buffer.add(_rtp(10, 3000, False, b"a")) == (False, None)
    _, frame = buffer.add(_rtp(11, 3000, True, b"b"))
    assert (frame.data, frame.timestamp) == (b"ab", 3000)  # aiortc alone would wait for seq 12
    _, frame = buffer.add(_rtp(12, 6000, True, b"c"))  # single-packet frame
    assert (frame.data, frame.timestamp) == (b"c", 6000)


def test_marker_jitter_buffer_waits_for_holes_and_keeps_order() -> None:
    buffer = MarkerJitterBuffer(JitterBuffer(capacity=128, is_video=True))
    released = []

    def add(seq: int, ts: int, marker: bool) -> None:
        _, frame = buffer.add(_rtp(seq, ts, marker, bytes([seq])))
        if frame is not None:
            released.append((frame.timestamp, frame.data))

    add(1, 100, False)
    add(3, 100, True)  # seq 2 missing: frame 100 is not complete
    add(4, 200, True)  # frame 200 is complete but 100 is ahead of it
    assert released == []
    add(2, 100, False)  # the retransmission fills the hole: 100 goes out, in order
    assert released == [(100, bytes([1, 2, 3]))]
    add(5, 300, True)  # aiortc's rule releases 200 (one frame behind after the hole)...
    assert released[-1] == (200, bytes([4]))
    add(6, 400, False)
    add(7, 400, True)  # ...until the next multi-packet frame catches up on its marker
    assert released[-2:] == [(300, bytes([5])), (400, bytes([6, 7]))]
