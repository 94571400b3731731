"""RTP-level forwarding rules: per-viewer SSRC/sequence/timestamp rewriting, the packet cache
that answers NACKs, and which packet a viewer may start on (a keyframe's first packet).

A viewer sees one continuous RTP stream per track whatever the server forwards into it: the
publisher's sequence numbers and timestamps are shifted by per-viewer offsets, and when the
source changes (a layer switch, a re-publish) new offsets continue the viewer's sequence with
no gap and its timestamps at the elapsed wall-clock time (how mediasoup's and LiveKit's
forwarders do it). Everything here is pure: arrival times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

SEQ_MOD = 1 << 16
SEQ_HALF = SEQ_MOD // 2
TS_MOD = 1 << 32
T = TypeVar("T")
CACHE_PACKETS = 1024  # ≈ 1 s of 1.5 Mbit/s video at ~1100 B per packet


def seq_newer(a: int, b: int) -> bool:
    """RFC 3550 serial comparison: `a` comes after `b` (16-bit sequence numbers)."""
    return a != b and ((a - b) % SEQ_MOD) < SEQ_HALF


@dataclass
class Mapped:
    sequence_number: int
    timestamp: int


class SeqTsRewriter:
    """Maps one source's (seq, ts) onto a viewer's continuous outgoing (seq, ts).

    `start_seq`/`start_ts` are the viewer's first outgoing values (random in practice:
    RFC 3550 §5.1). Packets of the current source older than the first one forwarded since
    the last `switch` are dropped (they belong to the previous source or precede the
    keyframe the viewer started on); later and reordered ones keep their relative order.
    """

    def __init__(self, start_seq: int, start_ts: int, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._next_seq = start_seq % SEQ_MOD
        self._next_ts = start_ts % TS_MOD
        self._seq_offset: int | None = None  # None: the next packet starts a source
        self._source = 0
        self._ts_offset = 0
        self._first_src_seq = 0
        self._highest_out_seq = 0
        self._last_out_ts: int | None = None
        self._last_out_at = 0.0
        # The source before the last switch: (seq offset, ts offset, first src seq, last out
        # seq), so NACKs of its packets lost just before a switch can still be answered.
        self._previous: tuple[int, int, int, int] | None = None

    @property
    def started(self) -> bool:
        return self._seq_offset is not None

    def switch(self) -> None:
        """The next packet mapped comes from a new source (it should start a keyframe)."""
        if self._seq_offset is not None and self._last_out_ts is not None:
            self._previous = (self._seq_offset, self._ts_offset, self._first_src_seq, self._highest_out_seq)
        self._seq_offset = None

    def previous_source_seq(self, out_seq: int) -> tuple[int, int] | None:
        """(source seq, ts offset) of a NACKed `out_seq` forwarded from the source before the
        last switch: a viewer whose link lost the old layer's last packets waits for them
        (aiortc's jitter buffer does not skip to the new keyframe), so they are resent."""
        if self._previous is None:
            return None
        seq_offset, ts_offset, first_src, last_out = self._previous
        src = (out_seq - seq_offset) % SEQ_MOD
        if seq_newer(first_src, src) or seq_newer(out_seq, last_out):
            return None
        return src, ts_offset

    def map(self, src_seq: int, src_ts: int, now: float, source: int = 0) -> Mapped | None:
        """Outgoing (seq, ts) for a packet of `source` (its SSRC, say) arriving at `now`
        (seconds), or None to drop it: the first packet after `switch()` picks the source,
        packets of any other source are dropped until the next switch."""
        if self._seq_offset is None:
            self._source = source
            next_seq = self._next_seq
            if self._last_out_ts is not None:
                next_seq = (self._highest_out_seq + 1) % SEQ_MOD
                elapsed = max(now - self._last_out_at, 0.0)
                # At least one tick later, so the new source's first frame is a new frame.
                self._next_ts = (self._last_out_ts + max(1, round(elapsed * self.clock_rate))) % TS_MOD
            self._seq_offset = (next_seq - src_seq) % SEQ_MOD
            self._ts_offset = (self._next_ts - src_ts) % TS_MOD
            self._first_src_seq = src_seq
            self._highest_out_seq = next_seq
            self._last_out_ts = None
        elif source != self._source or (
            # seq_newer(first source seq, src_seq), inlined: this runs per packet per viewer
            (first := self._first_src_seq) != src_seq and (first - src_seq) % SEQ_MOD < SEQ_HALF
        ):
            return None
        out_seq = (src_seq + self._seq_offset) % SEQ_MOD
        out_ts = (src_ts + self._ts_offset) % TS_MOD
        highest = self._highest_out_seq
        if self._last_out_ts is None or (out_seq != highest and (out_seq - highest) % SEQ_MOD < SEQ_HALF):
            # The newest packet sent sets where a later source's timestamps continue.
            self._highest_out_seq = out_seq
            self._last_out_ts = out_ts
            self._last_out_at = now
        return Mapped(out_seq, out_ts)

    @property
    def source(self) -> int:
        return self._source

    def source_seq(self, out_seq: int) -> int | None:
        """The source sequence number a viewer's NACKed `out_seq` was forwarded from, if it
        belongs to the current source (earlier sources' packets are not retransmitted)."""
        if self._seq_offset is None:
            return None
        src = (out_seq - self._seq_offset) % SEQ_MOD
        if seq_newer(self._first_src_seq, src) or seq_newer(
            src, (self._highest_out_seq - self._seq_offset) % SEQ_MOD
        ):
            return None
        return src


class PacketCache(Generic[T]):
    """The last `size` packets of one source by sequence number, for retransmission.

    A slot holds (seq, packet); a lookup checks the seq, so a packet evicted by one 64 K
    wrap-around later is never returned for an old number.
    """

    def __init__(self, size: int = CACHE_PACKETS) -> None:
        if size <= 0:
            raise ValueError("a packet cache holds at least one packet")
        self._size = size
        self._slots: list[tuple[int, T, float] | None] = [None] * size

    def put(self, seq: int, packet: T, at: float = 0.0) -> None:
        self._slots[seq % self._size] = (seq, packet, at)

    def get(self, seq: int) -> T | None:
        slot = self._slots[seq % self._size]
        if slot is None or slot[0] != seq:
            return None
        return slot[1]

    def stored_at(self, seq: int) -> float | None:
        """The `at` the packet numbered `seq` was stored with, if it is still here."""
        slot = self._slots[seq % self._size]
        if slot is None or slot[0] != seq:
            return None
        return slot[2]

    def clear(self) -> None:
        self._slots = [None] * self._size


def vp8_starts_keyframe(payload: bytes) -> bool:
    """Whether a VP8 RTP payload (RFC 7741) is the first packet of a key frame.

    The payload descriptor's S bit with partition index 0 marks a frame's first packet; the
    VP8 payload header after the descriptor has P (bit 0) = 0 on key frames.
    """
    if len(payload) < 1:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, PID 0
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    return len(payload) > pos and payload[pos] & 0x01 == 0


_H264_IDR, _H264_SPS, _H264_STAP_A, _H264_FU_A = 5, 7, 24, 28


def h264_starts_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) starts a keyframe: an SPS or IDR NAL unit,
    alone, in a STAP-A aggregate, or as the start fragment of an FU-A."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F in (_H264_IDR, _H264_SPS)
    if nal_type == _H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if size == 0 or pos + 2 + size > len(payload):
                return False
            if payload[pos + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            pos += 2 + size
    return False


def starts_keyframe(codec_name: str, payload: bytes) -> bool:
    """Whether a packet of `codec_name` can start a viewer's stream (audio: every packet)."""
    name = codec_name.lower()
    if name == "vp8":
        return vp8_starts_keyframe(payload)
    if name == "h264":
        return h264_starts_keyframe(payload)
    return True


MAX_RESEND_AGE = 1.0  # seconds: a packet forwarded longer ago is too late to be worth resending


class ResendGate:
    """Whether a NACKed packet may be resent now: at most once per `interval` seconds and
    `max_resends` times in all.

    Receivers NACK again while a retransmission is still in flight (aiortc re-sends its whole
    missing list on every new gap), so without this a lossy link gets each lost packet many
    times over and stays saturated by retransmissions (seen at 300 kbit/s: ~2 MB resent in
    20 s). `size` bounds the memory (the oldest entries are forgotten first).
    """

    def __init__(self, interval: float = 0.3, max_resends: int = 2, size: int = 2048) -> None:
        self.interval = interval
        self.max_resends = max_resends
        self._size = size
        self._sent: dict[int, tuple[float, int]] = {}
        self.refused = 0

    def allow(self, seq: int, now: float) -> bool:
        last, count = self._sent.get(seq, (None, 0))
        if last is not None and (now - last < self.interval or count >= self.max_resends):
            self.refused += 1
            return False
        self._sent.pop(seq, None)
        self._sent[seq] = (now, count + 1)
        if len(self._sent) > self._size:
            del self._sent[next(iter(self._sent))]
        return True
