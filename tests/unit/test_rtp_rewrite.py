"""RTP rewriting rules (roomserver/core/rtp_rewrite.py): sequence/timestamp continuity across
source switches, reordering and wrap-around, NACK mapping, the packet cache, and which
packets may start a viewer's video (checked on aiortc's real VP8/H.264 packetizer output)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from roomserver.core.rtp_rewrite import (
    SEQ_MOD,
    TS_MOD,
    PacketCache,
    ResendGate,
    SeqTsRewriter,
    h264_starts_keyframe,
    seq_newer,
    starts_keyframe,
    vp8_starts_keyframe,
)
from roomserver.media.synthetic import CounterVideoTrack


def test_seq_newer_is_serial_arithmetic() -> None:
    assert seq_newer(1, 0) and not seq_newer(0, 1) and not seq_newer(5, 5)
    assert seq_newer(0, SEQ_MOD - 1)  # wrapped
    assert not seq_newer(SEQ_MOD - 1, 0)


def test_one_source_is_shifted_by_constant_offsets_through_wraparound() -> None:
    r = SeqTsRewriter(start_seq=100, start_ts=5000, clock_rate=90000)
    src_seqs = [SEQ_MOD - 2, SEQ_MOD - 1, 0, 1]
    out = [r.map(s, TS_MOD - 10 + 3000 * i, now=i * 0.033) for i, s in enumerate(src_seqs)]
    assert [m.sequence_number for m in out if m] == [100, 101, 102, 103]
    assert [m.timestamp for m in out if m] == [5000, 8000, 11000, 14000]


def test_reordered_packets_keep_their_place_and_packets_before_the_start_are_dropped() -> None:
    r = SeqTsRewriter(start_seq=10, start_ts=0, clock_rate=90000)
    assert r.map(500, 1000, 0.0).sequence_number == 10  # type: ignore[union-attr]
    assert r.map(502, 1000, 0.0).sequence_number == 12  # type: ignore[union-attr]
    assert r.map(501, 1000, 0.0).sequence_number == 11  # type: ignore[union-attr]  (late)
    assert r.map(499, 1000, 0.0) is None  # before the packet the viewer started on


def test_switching_source_continues_the_sequence_without_a_gap_and_time_moves_on() -> None:
    r = SeqTsRewriter(start_seq=SEQ_MOD - 2, start_ts=TS_MOD - 100, clock_rate=90000)
    for i in range(3):  # source A: seq 7000.., one frame each 33 ms
        r.map(7000 + i, 40000 + 3000 * i, now=i * 0.033, source=0xA)
    last = r.map(7003, 49000, now=0.099, source=0xA)
    assert last is not None
    r.switch()
    # source B has unrelated numbers; its first packet comes 50 ms after A's last
    first_b = r.map(123, 777, now=0.149, source=0xB)
    assert first_b is not None
    assert first_b.sequence_number == (last.sequence_number + 1) % SEQ_MOD
    assert (first_b.timestamp - last.timestamp) % TS_MOD == round(0.05 * 90000)
    assert (
        r.map(124, 777 + 3000, now=0.18, source=0xB).sequence_number
        == (first_b.sequence_number + 1) % SEQ_MOD
    )  # type: ignore[union-attr]
    # a late packet of source A after the switch is not forwarded
    assert r.map(7002, 46000, now=0.19, source=0xA) is None
    assert r.source == 0xB


def test_switch_within_the_same_clock_tick_still_advances_the_timestamp() -> None:
    r = SeqTsRewriter(start_seq=0, start_ts=0, clock_rate=90000)
    r.map(1, 100, now=1.0)
    r.switch()
    assert r.map(900, 50, now=1.0).timestamp == 1  # type: ignore[union-attr]


def test_nacked_sequence_numbers_map_back_only_within_the_current_source() -> None:
    r = SeqTsRewriter(start_seq=1000, start_ts=0, clock_rate=90000)
    assert r.source_seq(1000) is None  # nothing forwarded yet
    for s in range(50, 60):
        r.map(s, 0, 0.0)
    assert r.source_seq(1000) == 50 and r.source_seq(1009) == 59
    assert r.source_seq(999) is None  # before the start
    assert r.source_seq(1010) is None  # not sent yet
    r.switch()
    r.map(4000, 0, 0.1)  # out seq 1010
    assert r.source_seq(1010) == 4000
    assert r.source_seq(1005) is None  # an earlier source's packet


def test_the_previous_source_s_packets_map_back_after_a_switch() -> None:
    r = SeqTsRewriter(start_seq=1000, start_ts=500, clock_rate=90000)
    assert r.previous_source_seq(1000) is None
    for s in range(50, 60):
        r.map(s, 3000, 0.0)  # out 1000..1009, out ts 500
    r.switch()
    assert r.previous_source_seq(1005) == (55, (500 - 3000) % (1 << 32))
    r.map(4000, 0, 0.1)  # the new source starts at out seq 1010
    assert r.previous_source_seq(1009) is not None and r.previous_source_seq(1009)[0] == 59
    assert r.previous_source_seq(1010) is None  # the current source's
    assert r.previous_source_seq(999) is None  # before the previous source started
    r.switch()
    r.map(7000, 0, 0.2)
    assert r.previous_source_seq(1010) == (4000, r.previous_source_seq(1010)[1])
    assert r.previous_source_seq(1005) is None  # two sources back: not kept


def test_packet_cache_returns_only_the_packet_stored_for_that_number() -> None:
    cache: PacketCache[str] = PacketCache(size=4)
    for seq in range(10):
        cache.put(seq, f"p{seq}")
    assert cache.get(9) == "p9" and cache.get(6) == "p6"
    assert cache.get(5) is None  # evicted by 9 (same slot)
    assert cache.get(9 + 4 * 1000) is None  # same slot, other number
    cache.clear()
    assert cache.get(9) is None
    with pytest.raises(ValueError):
        PacketCache(size=0)


async def _packets(encoder_cls, n: int, force_key_at: int) -> list[list[bytes]]:
    """RTP payloads per frame from aiortc's own encoder + packetizer (what a publisher sends)."""
    encoder = encoder_cls()
    track = CounterVideoTrack(fps=1000)
    frames = []
    for i in range(n):
        payloads, _ = encoder.encode(await track.recv(), force_keyframe=(i == force_key_at))
        frames.append(payloads)
    return frames


@pytest.mark.parametrize(
    ("encoder", "check"), [(Vp8Encoder, vp8_starts_keyframe), (H264Encoder, h264_starts_keyframe)]
)
def test_only_a_keyframes_first_packet_starts_a_viewer(encoder, check) -> None:
    frames = asyncio.run(_packets(encoder, 6, force_key_at=4))
    starts = [[check(p) for p in payloads] for payloads in frames if payloads]
    assert starts[0][0] and starts[4][0]  # the first frame and the forced one are keyframes
    assert not any(starts[i][0] for i in (1, 2, 3, 5))
    # VP8: only the first packet of a keyframe (later ones continue a partition)
    if encoder is Vp8Encoder:
        assert not any(any(s[1:]) for s in starts)


def test_keyframe_start_edge_cases() -> None:
    assert not vp8_starts_keyframe(b"")
    assert not vp8_starts_keyframe(b"\x90")  # X set, extension byte missing
    assert not vp8_starts_keyframe(b"\x90\x80")  # PictureID announced, missing
    assert vp8_starts_keyframe(b"\x10\x00")  # S, no extensions, P = 0
    assert not vp8_starts_keyframe(b"\x00\x00")  # not a frame start
    assert not h264_starts_keyframe(b"")
    assert h264_starts_keyframe(bytes([24, 0, 2, 0x67, 0x42]))  # STAP-A holding an SPS
    assert not h264_starts_keyframe(bytes([24, 0, 9, 0x67]))  # STAP-A with a truncated NALU
    assert h264_starts_keyframe(bytes([28, 0x85]))  # FU-A start of an IDR
    assert not h264_starts_keyframe(bytes([28, 0x05]))  # FU-A continuation
    assert starts_keyframe("opus", b"")  # audio: any packet


def test_resend_gate_allows_a_packet_once_per_interval_and_twice_in_all() -> None:
    gate = ResendGate(interval=0.3, max_resends=2, size=4)
    assert gate.allow(10, 0.0)
    assert not gate.allow(10, 0.1)  # still in flight
    assert gate.allow(11, 0.1)
    assert gate.allow(10, 0.31)
    assert not gate.allow(10, 5.0)  # resent twice already
    assert gate.refused == 2
    for seq in range(20, 25):  # over the size: 10 and 11 forgotten, allowed again
        gate.allow(seq, 6.0)
    assert gate.allow(10, 6.0)


def test_packet_cache_keeps_when_each_packet_was_stored() -> None:
    cache: PacketCache[str] = PacketCache(4)
    cache.put(7, "p7", 1.5)
    assert cache.stored_at(7) == 1.5 and cache.get(7) == "p7"
    cache.put(11, "p11", 2.0)  # same slot
    assert cache.stored_at(7) is None and cache.stored_at(11) == 2.0
