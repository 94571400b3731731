"""A video jitter buffer that releases frames on the RTP marker bit (one frame less latency)."""

from __future__ import annotations

from collections import deque

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, releasing each frame as soon as it is complete.

    aiortc only knows a frame is complete when a packet with the next timestamp arrives. An
    RTP sender sets the marker bit on a video frame's last packet (RFC 7741 for VP8, RFC 6184
    for H.264), so once the packets from the buffer's origin up to a marked packet are all
    present with one timestamp, that is a whole frame. Anything else (loss, reordering, a
    frame still missing its marker) falls back to aiortc's rule. One frame leaves per packet
    (the receiver takes one), so after a hole is filled the buffer can stay a frame behind
    until a frame of several packets lets it catch up on its marker: never worse than aiortc.
    """

    def __init__(self, replaced: JitterBuffer) -> None:
        super().__init__(capacity=replaced.capacity, prefetch=0, is_video=True)
        self._marked: deque[int] = deque(maxlen=8)  # timestamps whose marked packet is in

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if packet.marker:
            self._marked.append(packet.timestamp)
        if frame is None and self._origin is not None and packet.timestamp in self._marked:
            frame = self._release_complete_frame()
        return pli_flag, frame

    def _release_complete_frame(self) -> JitterFrame | None:
        origin = self._origin
        assert origin is not None  # called only once a packet set it
        first = self._packets[origin % self._capacity]
        if first is None:
            return None
        packets = []
        for count in range(self._capacity):
            packet = self._packets[uint16_add(origin, count) % self._capacity]
            if packet is None or packet.timestamp != first.timestamp:
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                # aiortc keeps the payload in a private attribute its stubs do not name.
                data = b"".join(p._data for p in packets)  # type: ignore[attr-defined]
                return JitterFrame(data=data, timestamp=first.timestamp)
        return None
