"""core/cmaf.py against FFmpeg's own fragmented MP4 (H.264 + Opus, as the LL-HLS packager
writes it): the init section, each fragment whole, its start, duration and key frame, however
the bytes are chopped; broken input is a CmafError."""

from __future__ import annotations

import fractions
import io
import itertools
import struct
from typing import Any

import av
import numpy as np
import pytest

from roomserver.core.cmaf import CmafError, CmafSplitter


def fragmented_mp4(frames: int = 60, keyframe_every: int = 15) -> bytes:
    out = io.BytesIO()
    options = {"movflags": "empty_moov+default_base_moof+frag_keyframe+cmaf", "frag_duration": "250000"}
    with av.open(out, "w", format="mp4", options=options) as container:
        video: Any = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 128, "yuv420p"
        video.codec_context.options = {"tune": "zerolatency", "sc_threshold": "0"}
        audio: Any = container.add_stream("libopus", rate=48000)
        audio.layout = "stereo"
        tone = np.zeros((1, 960 * 2), dtype=np.int16)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((128, 160, 3), i * 3 % 256, dtype=np.uint8), format="rgb24"
            )
            frame.pts = i
            frame.time_base = fractions.Fraction(1, 30)
            if i % keyframe_every == 0:
                frame.pict_type = av.video.frame.PictureType.I
            for packet in video.encode(frame):
                container.mux(packet)
            if i % 3 == 0:  # 60 ms of audio per 3 frames (100 ms): enough to interleave
                samples = av.AudioFrame.from_ndarray(tone, format="s16", layout="stereo")
                samples.sample_rate, samples.pts = 48000, i * 1600
                for packet in audio.encode(samples):
                    container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 30])
def test_fragments_are_found_whole_with_their_timing_and_key_frames(chunk: int) -> None:
    data = fragmented_mp4()
    splitter = CmafSplitter()
    fragments = []
    for at in range(0, len(data), chunk):
        fragments += splitter.feed(data[at : at + chunk])
    assert splitter.init is not None and splitter.init[4:8] == b"ftyp"
    assert sum(len(f.data) for f in fragments) + len(splitter.init) <= len(data)
    assert all(f.data[4:8] == b"moof" for f in fragments)
    starts = [round(f.start, 3) for f in fragments]
    assert starts == sorted(starts) and starts[0] == 0
    for f, after in itertools.pairwise(fragments):
        assert after.start == pytest.approx(f.start + f.duration, abs=1e-6)  # no gap, no overlap
        assert f.duration <= 0.25 + 1 / 30 + 1e-6
    # Every key frame (each 0.5 s) starts a fragment that says so; no other fragment does.
    independent = [round(f.start, 3) for f in fragments if f.independent]
    assert independent == [0.0, 0.5, 1.0, 1.5]
    assert sum(f.duration for f in fragments) == pytest.approx(2.0, abs=1 / 30 + 1e-6)
    # The init section and the fragments decode again as the same 60 frames.
    rebuilt = splitter.init + b"".join(f.data for f in fragments)
    with av.open(io.BytesIO(rebuilt)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x04moof",  # a size below the header's
        b"\x00\x00\x00\x10mdat" + bytes(8),  # media data before any fragment header
    ],
)
def test_broken_streams_are_refused(data: bytes) -> None:
    with pytest.raises(CmafError):
        CmafSplitter().feed(data)


def test_a_fragment_before_the_init_section_is_refused() -> None:
    data = fragmented_mp4(frames=20)
    splitter = CmafSplitter()
    splitter.feed(data)
    moof_at = data.index(b"moof") - 4
    with pytest.raises(CmafError):
        CmafSplitter().feed(data[moof_at:])


def _box(kind: bytes, *children: bytes) -> bytes:
    payload = b"".join(children)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full(kind: bytes, flags: int, *fields: int) -> bytes:
    return _box(kind, flags.to_bytes(4, "big"), *(struct.pack(">I", f) for f in fields))


# trex: track 1 (video, 1000 ticks a second), default duration 40, default flags non-sync.
_INIT = _box(
    b"moov",
    _box(
        b"trak",
        _full(b"tkhd", 0, 0, 0, 1),
        _box(b"mdia", _full(b"mdhd", 0, 0, 0, 1000), _box(b"hdlr", bytes(8), b"vide")),
    ),
    _box(b"mvex", _full(b"trex", 0, 1, 1, 40, 0, 0x10000)),
)


@pytest.mark.parametrize(
    ("tfhd", "trun", "duration", "independent"),
    [
        # trex's defaults: 3 samples of 40, non-sync.
        (_full(b"tfhd", 0, 1), _full(b"trun", 0, 3), 0.12, False),
        # tfhd's defaults (base_data_offset and sample_description_index stepped over):
        # duration 50, sync flags.
        (_full(b"tfhd", 0x2B, 1, 0, 0, 7, 50, 0), _full(b"trun", 0, 2), 0.1, True),
        # trun: data_offset stepped over, first_sample_flags sync, then per sample a duration,
        # a size and a composition offset stepped over.
        (_full(b"tfhd", 0, 1), _full(b"trun", 0xB05, 2, 8, 0, 10, 99, 5, 20, 99, 5), 0.03, True),
        # per-sample flags: the first sample's decide.
        (_full(b"tfhd", 0, 1), _full(b"trun", 0x400, 2, 0x10000, 0), 0.08, False),
        (_full(b"tfhd", 0, 1), _full(b"trun", 0x400, 2, 0, 0x10000), 0.08, True),
    ],
)
def test_tfhd_and_trun_optional_fields(tfhd: bytes, trun: bytes, duration: float, independent: bool) -> None:
    moof = _box(b"moof", _box(b"traf", tfhd, _full(b"tfdt", 0, 2000), trun))
    [fragment] = CmafSplitter().feed(_INIT + moof + _box(b"mdat"))
    assert (fragment.start, fragment.independent) == (2.0, independent)
    assert fragment.duration == pytest.approx(duration)
