"""VP8 → H.264, once per room, for the live HLS rendition (issue 14).

Browsers publish VP8 by default and HLS cannot carry VP8, so a VP8 host's rendition is
transcoded: the host's frames are decoded and re-encoded with libx264 (both in the FFmpeg that
PyAV's wheels ship) on a thread of the rendition's own, never on the event loop. The encoded
packets come back to the loop (`call_soon_threadsafe`) and are muxed there exactly like an
H.264 host's frames, carrying the RTP timestamp of the frame they were made from.

    event loop: submit(vp8, rtp_ts, key) ──bounded queue──► thread: decode VP8, scale to the
    first frame's size, encode H.264 (IDR every `keyframe_s`) ──call_soon_threadsafe──► deliver

Overload: the queue holds `QUEUE_FRAMES`; a frame that does not fit is dropped, and so is
everything up to the host's next key frame (a VP8 decoder cannot start elsewhere), which is
requested at once. HLS viewers then see a short freeze, WebRTC viewers nothing at all.
A picture-size change by the host's encoder (browsers lower it on a weak uplink) is scaled back
to the first size: a rendition's stream has one size.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import av

logger = logging.getLogger(__name__)

QUEUE_FRAMES = 60  # 2 s at 30 fps
RTP_CLOCK = 90_000
_RTP_WRAP = 1 << 32
# veryfast + zerolatency: one packet out per frame in, no B-frames, no lookahead (decode and
# encode ≈ 5.5 ms of CPU per textured 640×480 frame on this machine: docs/benchmarks.md,
# "HLS of a VP8 host").
ENCODER_OPTIONS = {"preset": "veryfast", "tune": "zerolatency"}
ENCODER_BIT_RATE = 1_500_000

Deliver = Callable[[bytes, int, bool], None]  # (H.264 Annex B access unit, rtp_ts, keyframe)


class Vp8ToH264:
    def __init__(
        self,
        deliver: Deliver,
        request_keyframe: Callable[[], None],
        *,
        keyframe_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._deliver = deliver
        self._request_keyframe = request_keyframe
        self._keyframe_s = keyframe_s
        self._loop = loop or asyncio.get_running_loop()
        self._queue: queue.Queue[tuple[bytes, int, bool] | None] = queue.Queue(QUEUE_FRAMES)
        self._await_keyframe = True  # the decoder starts at a key frame
        self._closed = False
        self.dropped = 0  # frames not transcoded (overload or undecodable)
        self.encoded = 0
        self.failed = False
        self.cpu_s = 0.0  # of the transcoder thread (decoder and encoder run on it alone)
        # The thread's own state.
        self._decoder: Any = None
        self._encoder: Any = None
        self._first_rtp: int | None = None
        self._last_rtp = 0
        self._unwrapped = 0
        self._frame_pts: int | None = None
        self._last_idr = 0.0
        self._thread = threading.Thread(target=self._run, name="hls-vp8-h264", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ event loop side

    def submit(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self._closed or self.failed:
            return
        if self._await_keyframe:
            if not keyframe:
                self.dropped += 1
                return
            self._await_keyframe = False
        try:
            self._queue.put_nowait((data, timestamp, keyframe))
        except queue.Full:
            self.dropped += 1
            self._restart_at_keyframe()

    def _restart_at_keyframe(self) -> None:
        self._await_keyframe = True
        self._request_keyframe()

    def close(self) -> None:
        """Stop the thread after the frame it is on (not joined: the event loop must not wait
        for an encoder; what it still delivers arrives at a closed rendition)."""
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes a thread waiting on an empty queue

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _from_thread(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            self._loop.call_soon_threadsafe(callback, *args)

    # ------------------------------------------------------------ transcoder thread

    def _run(self) -> None:
        self._decoder = av.CodecContext.create("vp8", "r")
        self._decoder.thread_count = 1  # one core at most per room, and its CPU is this thread's
        while not self._closed and (item := self._queue.get()) is not None:
            started = time.thread_time()
            try:
                self._transcode(*item)
            except av.FFmpegError as exc:  # not a bad input frame (those are skipped): give up
                logger.error("HLS transcoder: H.264 encoding failed, no more video: %r", exc)
                self.failed = True
                return
            finally:
                self.cpu_s += time.thread_time() - started

    def _transcode(self, data: bytes, rtp: int, _keyframe: bool) -> None:
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.FFmpegError as exc:
            logger.info("HLS transcoder: undecodable VP8 frame (%r), waiting for a key frame", exc)
            self.dropped += 1
            self._from_thread(self._restart_at_keyframe)
            return
        if self._first_rtp is None:
            self._first_rtp = self._last_rtp = rtp
        # RTP timestamps wrap at 2^32; the encoder needs increasing ones (frames come in order
        # from the jitter buffer, so a step back can only be a wrap).
        self._unwrapped += (rtp - self._last_rtp) % _RTP_WRAP
        self._last_rtp = rtp
        for frame in frames:
            if self._encoder is None:
                self._encoder = _open_encoder(frame.width, frame.height)
            encoder = self._encoder
            if (frame.width, frame.height) != (
                encoder.width,
                encoder.height,
            ) or frame.format.name != "yuv420p":
                frame = frame.reformat(encoder.width, encoder.height, format="yuv420p")
            if self._frame_pts is not None and self._unwrapped <= self._frame_pts:
                continue  # the decoder gave a second frame for one timestamp
            frame.pts = self._frame_pts = self._unwrapped
            now = time.monotonic()
            if now - self._last_idr >= self._keyframe_s:
                frame.pict_type = av.video.frame.PictureType.I  # a segment may start here
                self._last_idr = now
            for packet in encoder.encode(frame):
                self.encoded += 1
                pts = packet.pts if packet.pts is not None else self._unwrapped
                self._from_thread(
                    self._deliver, bytes(packet), (self._first_rtp + pts) % _RTP_WRAP, packet.is_keyframe
                )


def _open_encoder(width: int, height: int) -> Any:
    encoder: Any = av.CodecContext.create("libx264", "w")
    # H.264 4:2:0 needs even dimensions.
    encoder.width, encoder.height = width - width % 2, height - height % 2
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, RTP_CLOCK)
    # Rate control divides the bit rate by the frame rate, which x264 otherwise takes from the
    # time base (90,000 fps: a grey picture of a few bytes per frame).
    encoder.framerate = fractions.Fraction(30)
    encoder.bit_rate = ENCODER_BIT_RATE
    encoder.gop_size = 10 * 30  # IDRs are forced per segment; this is only a backstop
    encoder.thread_count = 1
    encoder.options = dict(ENCODER_OPTIONS)
    encoder.open()
    return encoder
