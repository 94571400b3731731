"""Synthetic media for tests, benchmarks and the load tester.

`CounterVideoTrack` draws its frame number into each frame as black/white 16×16 blocks
(16 bits, then their complements on a second row), aligned to macroblocks so lossy coding
keeps them readable; `read_counter` recovers it from a decoded frame and refuses frames
where a bit and its complement disagree. Both sides record `time.monotonic()` (one clock
for all processes of a Linux host), which gives frame latency and join-to-first-frame.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import OrderedDict

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms, Opus' frame size in aiortc

COUNTER_BITS = 16
BLOCK = 16
_BLACK, _WHITE = 16, 235


class CounterVideoTrack(MediaStreamTrack):
    """Paced video frames (yuv420p) carrying their frame number; `sent_at[n]` = capture time.

    `detail` pans a random 8×8-block texture so the encoder has to spend bits (VP8 at 640×480
    reaches 1.5 Mbps; for bitrate-realistic benchmarks); plain frames are cheap (for tests).
    """

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30, detail: bool = False) -> None:
        super().__init__()
        if width < COUNTER_BITS * BLOCK or height < 4 * BLOCK:
            raise ValueError("frame too small for the counter")
        self.width, self.height, self.fps = width, height, fps
        self.detail = detail
        self.count = 0
        self.sent_at: OrderedDict[int, float] = OrderedDict()
        self._start: float | None = None
        self._rng = np.random.default_rng(1)
        self._texture = None
        if detail:
            blocks = self._rng.integers(0, 255, size=(height // 4, width // 4), dtype=np.uint8)
            self._texture = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))  # 2× the frame, to pan over
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = self.count
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + n / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self._image(n), format="yuv420p")
        frame.pts = n * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.count = n + 1
        self.sent_at[n] = time.monotonic()
        if len(self.sent_at) > 20000:
            self.sent_at.popitem(last=False)
        return frame

    def _image(self, n: int) -> np.ndarray:
        h, w = self.height, self.width
        if self._texture is not None:
            dy, dx = (n * 3) % h, (n * 5) % w
            luma = self._texture[dy : dy + h, dx : dx + w].copy()
        else:
            ramp = ((np.arange(w, dtype=np.int32) + 4 * n) % 200 + 28).astype(np.uint8)
            luma = np.broadcast_to(ramp, (h, w)).copy()
        draw_counter(luma, n)
        return np.concatenate([luma, self._chroma])


def draw_counter(luma: np.ndarray, n: int) -> None:
    for bit in range(COUNTER_BITS):
        on = (n >> bit) & 1
        x = bit * BLOCK
        luma[0:BLOCK, x : x + BLOCK] = _WHITE if on else _BLACK
        luma[BLOCK : 2 * BLOCK, x : x + BLOCK] = _BLACK if on else _WHITE
    luma[2 * BLOCK : 3 * BLOCK, 0 : COUNTER_BITS * BLOCK] = 128  # guard band against the background


def read_counter(frame: av.VideoFrame) -> int | None:
    """The frame number drawn by `CounterVideoTrack`, or None if the blocks are unreadable."""
    luma = frame.to_ndarray(format="yuv420p")[: frame.height]
    value = 0
    quarter = BLOCK // 4
    for bit in range(COUNTER_BITS):
        x = bit * BLOCK
        top = luma[quarter : BLOCK - quarter, x + quarter : x + BLOCK - quarter].mean()
        bottom = luma[BLOCK + quarter : 2 * BLOCK - quarter, x + quarter : x + BLOCK - quarter].mean()
        if (top > 128) == (bottom > 128):
            return None
        if top > 128:
            value |= 1 << bit
    return value


class ToneAudioTrack(MediaStreamTrack):
    """Paced 20 ms frames of a sine tone (s16 mono, 48 kHz)."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: int = 8000) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = self.count
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + n * AUDIO_SAMPLES / AUDIO_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(AUDIO_SAMPLES) + n * AUDIO_SAMPLES) / AUDIO_RATE
        samples = (self.amplitude * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.count = n + 1
        return frame


LOW_LAYER_BITRATE = 150_000  # bit/s: fits a 300 kbit/s link with room for audio and resends


def layer_pair(fps: int = 30) -> tuple[CounterVideoTrack, CounterVideoTrack]:
    """A publisher's two quality layers of one synthetic camera (WHIP `?layers=high,low`):
    high is 640×480 with texture (VP8 spends up to its 1.5 Mbit/s cap on it), low 320×240
    plain, to be capped at LOW_LAYER_BITRATE (`Publisher(max_bitrates=...)`). Frame widths
    tell a viewer which one it gets."""
    return CounterVideoTrack(640, 480, fps, detail=True), CounterVideoTrack(320, 240, fps)
