"""Frame forwarding without decode/encode, on top of aiortc 1.16's private internals.

How a frame travels (one publisher track → N viewer tracks):

    publisher RTCRtpReceiver._handle_rtp_packet          (aiortc: SRTP, NACK, RTX, jitter buffer)
        └─ decoder queue .put((codec, JitterFrame))     ← replaced by EncodedFrameTap
             └─ TrackForwarder.handle_frame               one av.Packet per frame, shared
                  └─ ForwardedTrack.push  (per viewer)     bounded deque, keyframe gate
                       └─ viewer RTCRtpSender._run_rtp → track.recv() → av.Packet
                            → encoder.pack(packet)         (aiortc: packetize only, no encode)

The private hooks (pinned by `aiortc==1.16.0`, checked by tests/media/test_aiortc_hooks.py):

- `RTCRtpReceiver._RTCRtpReceiver__decoder_queue`: the `queue.Queue` the receiver puts each
  reassembled encoded frame into, read by a decoder thread. The "track" event fires inside
  `setRemoteDescription`, before `receive()` starts that thread with the queue as argument, so
  swapping it there hands the thread our tap: the thread idles in `get()` until the receiver
  stops and puts `None`, which the tap passes through so the thread (and `stop()`) can finish.
- `RTCRtpReceiver._RTCRtpReceiver__jitter_buffer` (video): replaced by `MarkerJitterBuffer`,
  which releases a frame when its last packet (RTP marker bit) is in rather than when the next
  frame's first packet arrives, saving one frame interval (33 ms at 30 fps) per hop.
- `RTCRtpReceiver._send_rtcp_pli(ssrc)`: sends a Picture Loss Indication to the publisher.
  `RTCRtpReceiver._RTCRtpReceiver__rtx_ssrc` (RTX SSRC → media SSRC) tells RTX SSRCs apart.
- `RTCRtpSender._send_keyframe()`: called by the sender when a viewer sends PLI/FIR. Replaced
  per viewer sender (an instance attribute shadows the method) by a rate-limited upstream PLI.
- `RTCRtpSender._next_encoded_frame` passes an `av.Packet` from `track.recv()` to
  `encoder.pack()` (VP8, H.264, Opus) instead of encoding: public behaviour since aiortc 1.x,
  used by `MediaPlayer(decode=False)`.

Memory per viewer is a deque of references to shared packets: at most `max_frames` entries
(default 30 video frames ≈ 1 s at 30 fps, 50 audio frames = 1 s); the packets themselves are
shared by every viewer of the track.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .jitter import MarkerJitterBuffer
from .negotiation import CodecChoice

logger = logging.getLogger(__name__)

VIDEO_QUEUE_FRAMES = 30
AUDIO_QUEUE_FRAMES = 50
KEYFRAME_REQUEST_INTERVAL_S = 0.5

DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
RTX_SSRC_ATTR = "_RTCRtpReceiver__rtx_ssrc"

# Something else that consumes a track's encoded frames (the recorder): (data, rtp timestamp,
# keyframe), called on the event loop for every frame, viewers or not.
FrameSink = Callable[[bytes, int, bool], None]

_H264_START_CODE = b"\x00\x00\x01"
_H264_IDR = 5
_H264_SPS = 7


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether a depayloaded frame (what aiortc's jitter buffer emits) starts a decodable picture.

    VP8 (RFC 6386 9.1): bit 0 of the frame tag is 0 on key frames. aiortc's VP8 depayloader
    strips the payload descriptors, so byte 0 is the first partition's frame tag.
    H.264: aiortc depayloads to Annex B (start code + NAL unit); an IDR slice (5) or an SPS (7)
    before the first slice marks a keyframe. Audio frames are all independent.
    """
    name = codec_name.lower()
    if name == "vp8":
        return len(data) > 0 and data[0] & 1 == 0
    if name == "h264":
        i = data.find(_H264_START_CODE)
        while i != -1 and i + 3 < len(data):
            nal_type = data[i + 3] & 0x1F
            if nal_type in (_H264_IDR, _H264_SPS):
                return True
            if 1 <= nal_type <= 4:  # first slice is a non-IDR slice
                return False
            i = data.find(_H264_START_CODE, i + 3)
        return False
    return True


class KeyframeRequester:
    """Rate-limits keyframe requests to the publisher: at most one PLI per `interval`.

    A request inside the interval is not dropped but deferred to the end of it (trailing edge),
    so a viewer joining 100 ms after another still gets its keyframe within `interval`. A
    request while a PLI is in flight (sent, no keyframe seen yet, less than `interval` ago) is
    redundant: the keyframe that PLI asks for serves every waiting viewer.
    """

    def __init__(self, send_pli: Callable[[], None], interval: float = KEYFRAME_REQUEST_INTERVAL_S) -> None:
        self._send_pli = send_pli
        self._interval = interval
        self._last_sent = -float("inf")
        self._in_flight = False
        self._timer: asyncio.TimerHandle | None = None
        self.requests = 0
        self.sent = 0

    def request(self) -> None:
        self.requests += 1
        if self._timer is not None:
            return
        now = time.monotonic()
        wait = self._last_sent + self._interval - now
        if wait <= 0:
            self._fire()
        elif not self._in_flight:
            self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def keyframe_seen(self) -> None:
        self._in_flight = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._last_sent = time.monotonic()
        self._in_flight = True
        self.sent += 1
        self._send_pli()


class ForwardedTrack(MediaStreamTrack):
    """One viewer's copy of a publisher track; `recv()` returns encoded `av.Packet`s.

    Video starts at a keyframe. When the queue is full (the viewer's sender is not keeping up
    or never started), everything queued is dropped and the track waits for the next keyframe:
    a viewer shown a P-frame whose reference was dropped would only see corruption. The
    keyframe is requested when the sender next asks for a frame, not on overflow, so a stuck
    viewer cannot make the publisher send keyframes for everyone.
    """

    def __init__(self, forwarder: TrackForwarder, max_frames: int) -> None:
        super().__init__()
        self.kind = forwarder.kind
        self._forwarder = forwarder
        self._frames: deque[av.Packet] = deque()
        self._max_frames = max_frames
        self._waiter: asyncio.Future[None] | None = None
        self._source_ended = False
        self._awaiting_keyframe = forwarder.kind == "video"
        self.subscribed_at = time.monotonic()
        self.first_frame_at: float | None = None
        self.frames_delivered = 0
        self.frames_dropped = 0
        self.frames_skipped = 0

    @property
    def queued(self) -> int:
        return len(self._frames)

    @property
    def max_frames(self) -> int:
        return self._max_frames

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self._awaiting_keyframe:
            if not keyframe:
                self.frames_skipped += 1
                return
            self._awaiting_keyframe = False
        elif len(self._frames) >= self._max_frames:
            if self.kind == "video":
                self.frames_dropped += len(self._frames)
                self._frames.clear()
                if not keyframe:
                    self.frames_dropped += 1
                    self._awaiting_keyframe = True
                    return
            else:
                self._frames.popleft()
                self.frames_dropped += 1
        self._frames.append(packet)
        self._wake()

    def end_of_source(self) -> None:
        self._source_ended = True
        self._wake()

    async def recv(self) -> av.Packet:
        requested = False
        while not self._frames:
            if self.readyState != "live" or self._source_ended:
                self.stop()
                raise MediaStreamError
            if self._awaiting_keyframe and not requested:
                self._forwarder.request_keyframe()
                requested = True
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        self.frames_delivered += 1
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._frames.clear()
        self._forwarder.unsubscribe(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class TrackForwarder:
    """Fans one publisher track's encoded frames out to its viewers' `ForwardedTrack`s."""

    def __init__(
        self,
        choice: CodecChoice,
        *,
        video_queue_frames: int = VIDEO_QUEUE_FRAMES,
        audio_queue_frames: int = AUDIO_QUEUE_FRAMES,
        keyframe_interval: float = KEYFRAME_REQUEST_INTERVAL_S,
    ) -> None:
        self.choice = choice
        self.kind = choice.kind
        self.time_base = fractions.Fraction(1, choice.codec.clockRate)
        self._max_frames = video_queue_frames if self.kind == "video" else audio_queue_frames
        self._viewers: set[ForwardedTrack] = set()
        self._send_pli: Callable[[], None] = lambda: None
        self.keyframes = KeyframeRequester(lambda: self._send_pli(), keyframe_interval)
        self.ended = False
        self.frames_in = 0
        self.keyframes_in = 0
        self.last_frame_at: float | None = None
        self._foreign_codec_warned = False
        self._sinks: list[FrameSink] = []

    @property
    def viewers(self) -> frozenset[ForwardedTrack]:
        return frozenset(self._viewers)

    def set_pli_sender(self, send_pli: Callable[[], None]) -> None:
        self._send_pli = send_pli

    def subscribe(self) -> ForwardedTrack:
        track = ForwardedTrack(self, self._max_frames)
        if self.ended:
            track.end_of_source()
            return track
        self._viewers.add(track)
        if self.kind == "video":
            self.request_keyframe()
        return track

    def unsubscribe(self, track: ForwardedTrack) -> None:
        self._viewers.discard(track)

    def add_sink(self, sink: FrameSink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self.ended:
            self.keyframes.request()

    def handle_frame(self, codec_name: str, data: bytes, timestamp: int) -> None:
        if codec_name.lower() != self.choice.name.lower():
            # The publisher may only use the codec the answer narrowed it to.
            if not self._foreign_codec_warned:
                logger.warning("dropping %s frames on a %s track", codec_name, self.choice.name)
                self._foreign_codec_warned = True
            return
        keyframe = is_keyframe(codec_name, data)
        self.frames_in += 1
        self.last_frame_at = time.monotonic()
        if keyframe and self.kind == "video":
            self.keyframes_in += 1
            self.keyframes.keyframe_seen()
        for sink in tuple(self._sinks):
            sink(data, timestamp, keyframe)
        if not self._viewers:
            return
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = self.time_base
        for track in tuple(self._viewers):
            track.push(packet, keyframe)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.keyframes.close()
        for track in tuple(self._viewers):
            track.end_of_source()


class EncodedFrameTap(queue.Queue):
    """Stands in for an RTCRtpReceiver's decoder queue and diverts its encoded frames.

    `put((codec, JitterFrame))` is called on the event loop thread, once per reassembled
    frame; `put(None)` when the receiver stops, which must still reach the decoder thread
    (whichever queue it reads) or `RTCRtpReceiver.stop()` would block joining it.
    """

    def __init__(self, forwarder: TrackForwarder, replaced: queue.Queue) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._replaced = replaced

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None)
            self._replaced.put(None)
            self._forwarder.end()
            return
        codec, frame = item
        self._forwarder.handle_frame(codec.name, frame.data, frame.timestamp)


def publisher_media_ssrcs(receiver: RTCRtpReceiver) -> list[int]:
    """SSRCs the publisher sends media on (not RTX), as seen in the last 10 s."""
    rtx_ssrcs = getattr(receiver, RTX_SSRC_ATTR)
    return [s.source for s in receiver.getSynchronizationSources() if s.source not in rtx_ssrcs]


def tap_receiver(receiver: RTCRtpReceiver, forwarder: TrackForwarder) -> EncodedFrameTap:
    """Divert `receiver`'s encoded frames to `forwarder` and let it send PLIs upstream."""
    replaced = getattr(receiver, DECODER_QUEUE_ATTR)
    if not isinstance(replaced, queue.Queue):
        raise RuntimeError("aiortc receiver has no decoder queue: aiortc internals changed")
    tap = EncodedFrameTap(forwarder, replaced)
    setattr(receiver, DECODER_QUEUE_ATTR, tap)
    if forwarder.kind == "video":
        jitter_buffer = getattr(receiver, JITTER_BUFFER_ATTR)
        if type(jitter_buffer) is not JitterBuffer or jitter_buffer._origin is not None:
            raise RuntimeError("aiortc receiver's jitter buffer is not the expected fresh JitterBuffer")
        setattr(receiver, JITTER_BUFFER_ATTR, MarkerJitterBuffer(jitter_buffer))
    pending: set[asyncio.Future[None]] = set()

    def send_pli() -> None:
        for ssrc in publisher_media_ssrcs(receiver):
            task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
            pending.add(task)
            task.add_done_callback(pending.discard)

    forwarder.set_pli_sender(send_pli)
    return tap


def relay_keyframe_requests(sender: RTCRtpSender, forwarder: TrackForwarder) -> None:
    """A viewer's PLI/FIR becomes a (rate-limited) keyframe request to the publisher."""
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise RuntimeError("aiortc sender has no _send_keyframe: aiortc internals changed")
    sender._send_keyframe = forwarder.request_keyframe  # type: ignore[method-assign]
