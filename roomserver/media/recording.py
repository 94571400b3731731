"""Recording a publisher's encoded frames into a file, without transcoding.

    TrackForwarder.handle_frame ──sink──► PublisherRecording.frame(track, data, rtp_ts, keyframe)
                                               └─ av.open(path, "w"): mux only (VP8+Opus → WebM,
                                                  H.264+Opus → fragmented MP4), no decode/encode

The container opens at the first video keyframe (a VP8 key frame carries the picture size, an
H.264 IDR follows its SPS/PPS; frames before it could not be decoded anyway); audio before it
is dropped. Each track's RTP timestamps are unwrapped and rebased on the wall time its first
frame arrived, so audio and video (whose RTP clocks start at random offsets) line up.

MP4 is written fragmented (`empty_moov`, one fragment per keyframe): a server that dies
mid-show leaves a file that plays up to its last fragment. A manifest `<stem>.json` next to the
file says which show it is and where it starts on the show's clock (`offset_s`), written when
the file opens and again (with `ended_at`, `duration_s`) when it closes.

Muxing runs on the event loop: per frame it is a packet copy and a buffered write (the OS page
cache absorbs the disk), measured in loadtest/ (docs/benchmarks.md, "Recording").
"""

from __future__ import annotations

import fractions
import io
import json
import logging
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from .forwarding import FrameSink, TrackForwarder

logger = logging.getLogger(__name__)

EXTENSIONS = {"vp8": "webm", "h264": "mp4"}
_FORMATS = {"webm": "webm", "mp4": "mp4"}
_MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")
_RTP_WRAP = 1 << 32


@dataclass(frozen=True)
class RecordingTarget:
    """Where a room's show is recorded: `directory` (created on demand), the show number
    and the show's start (unix ms), which the manifest's `offset_s` is measured from."""

    directory: str
    show: int
    started_at: int

    def to_json(self) -> dict[str, Any]:
        return {"directory": self.directory, "show": self.show, "started_at": self.started_at}

    @classmethod
    def from_json(cls, data: Any) -> RecordingTarget:
        if not isinstance(data, dict):
            raise ValueError("a recording target is an object")
        directory, show, started = data.get("directory"), data.get("show"), data.get("started_at")
        if not isinstance(directory, str) or not directory:
            raise ValueError("directory must be a non-empty string")
        if not isinstance(show, int) or isinstance(show, bool) or show < 0:
            raise ValueError("show must be a non-negative integer")
        if not isinstance(started, int) or isinstance(started, bool) or started < 0:
            raise ValueError("started_at must be unix ms")
        return cls(directory, show, started)


def recording_extension(forwarders: list[TrackForwarder]) -> str | None:
    """The container for these tracks (None: nothing recordable, e.g. audio only)."""
    video = next((f for f in forwarders if f.kind == "video"), None)
    return None if video is None else EXTENSIONS.get(video.choice.name.lower())


def file_stem(target: RecordingTarget, role: str, user: str) -> Path:
    """`<show>` for the show's first host file; `<show>.<role>-<user>` for the others, with
    `.2`, `.3`… when the same publisher publishes again (a reconnect) in one show."""
    directory = Path(target.directory)
    base = f"{target.show}" if role == "host" else f"{target.show}.{role}-{_SAFE.sub('_', user)[:64]}"
    name, n = base, 1
    while any((directory / f"{name}.{e}").exists() for e in ("json", *_FORMATS)):
        n += 1
        name = f"{base}.{n}"
    return directory / name


def _with(stem: Path, extension: str) -> Path:
    """`stem` + extension (not `with_suffix`: a stem like `1.2` has a dot of its own)."""
    return stem.parent / f"{stem.name}.{extension}"


class _Clock:
    """One track's RTP timestamps → ticks since the recording's start, on its own clock rate."""

    def __init__(self, clock_rate: int, first_rtp: int, offset_s: float) -> None:
        self.rate = clock_rate
        self.time_base = fractions.Fraction(1, clock_rate)
        self._last = first_rtp
        self._unwrapped = 0
        self._offset = round(offset_s * clock_rate)

    def ticks(self, rtp: int) -> int:
        delta = (rtp - self._last) % _RTP_WRAP
        if delta >= _RTP_WRAP // 2:  # reordered / earlier timestamp
            delta -= _RTP_WRAP
        self._last = rtp
        self._unwrapped += delta
        return self._offset + self._unwrapped


class PublisherRecording:
    """One publisher session's tracks muxed into one file under `target.directory`."""

    def __init__(
        self, target: RecordingTarget, forwarders: list[TrackForwarder], *, user: str, role: str
    ) -> None:
        self.target = target
        self.user = user
        self.role = role
        video = next(f for f in forwarders if f.kind == "video")
        audio = next((f for f in forwarders if f.kind == "audio"), None)
        ext = recording_extension(forwarders)
        if ext is None:
            raise ValueError("only VP8 and H.264 video can be recorded")
        self.extension = ext
        self._video, self._audio = video, audio
        self._codecs = {f.kind: f.choice.name for f in (video, audio) if f is not None}
        self._video_codec = video.choice.name.lower()  # of the frames written (hls.py transcodes)
        Path(target.directory).mkdir(parents=True, exist_ok=True)
        self.stem = self._stem()
        self.path = _with(self.stem, ext)
        self._container: Any = None
        self._streams: dict[str, Any] = {}
        self._clocks: dict[str, _Clock] = {}
        self._last_pts: dict[str, int] = {}
        self._t0 = 0.0
        self.started_at_ms: int | None = None
        self.frames = {"video": 0, "audio": 0}
        self.closed = False
        self.failed = False
        self._sinks: list[tuple[TrackForwarder, FrameSink]] = []
        for forwarder in (video, audio):
            if forwarder is not None:
                sink = self._sink_for(forwarder.kind)
                forwarder.add_sink(sink)
                self._sinks.append((forwarder, sink))
        video.request_keyframe()  # start now, not at the publisher's next periodic keyframe

    def _stem(self) -> Path:
        return file_stem(self.target, self.role, self.user)

    def _output(self) -> tuple[str | io.RawIOBase, str, dict[str, str]]:
        """(path or writable file, FFmpeg format, muxer options) of the container."""
        options = _MP4_OPTIONS if self.extension == "mp4" else {}
        return str(self.path), _FORMATS[self.extension], options

    def _sink_for(self, kind: str) -> FrameSink:
        def sink(data: bytes, timestamp: int, keyframe: bool) -> None:
            self.frame(kind, data, timestamp, keyframe)

        return sink

    # ------------------------------------------------------------------ frames

    def frame(self, kind: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self.closed or self.failed:
            return
        try:
            if self._container is None:
                if kind != "video" or not keyframe:
                    return
                self._open(data)
            self._write(kind, data, timestamp, keyframe)
        except (av.FFmpegError, OSError, ValueError) as exc:
            # A recording must never break forwarding: log, stop recording this publisher.
            logger.error("recording %s failed: %r", self.path, exc)
            self.failed = True
            self._close_container()

    def _open(self, keyframe_data: bytes) -> None:
        path, container_format, options = self._output()
        template = _video_template(self._video_codec, keyframe_data)
        container = av.open(path, "w", format=container_format, options=options)
        try:
            # From a demuxed template: stream parameters (size, H.264 SPS/PPS) without opening
            # an encoder, which would invent parameters of its own.
            vstream = container.add_stream_from_template(template.streams.video[0], opaque=True)
            vstream.time_base = fractions.Fraction(1, self._video.choice.codec.clockRate)
            self._streams["video"] = vstream
            if self._audio is not None:
                # Opus needs only its header (OpusHead), which the encoder context provides;
                # it never encodes anything.
                astream = container.add_stream("libopus", rate=48000)
                astream.layout = "stereo"
                astream.time_base = fractions.Fraction(1, self._audio.choice.codec.clockRate)
                self._streams["audio"] = astream
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        finally:
            template.close()
        self._container = container
        self._t0 = time.monotonic()
        self.started_at_ms = int(time.time() * 1000)
        self._write_manifest()

    def _write(self, kind: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        stream = self._streams.get(kind)
        if stream is None:
            return
        clock = self._clocks.get(kind)
        if clock is None:
            rate = (self._video if kind == "video" else self._audio).choice.codec.clockRate  # type: ignore[union-attr]
            clock = self._clocks[kind] = _Clock(rate, timestamp, time.monotonic() - self._t0)
        pts = clock.ticks(timestamp)
        last = self._last_pts.get(kind)
        if last is not None and pts <= last:
            return  # a late or duplicate frame: containers need increasing timestamps
        self._last_pts[kind] = pts
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = clock.time_base  # the muxer rescales to its own (WebM: 1 ms)
        if keyframe:
            packet.is_keyframe = True
        self._container.mux(packet)
        self.frames[kind] += 1

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Finish the file (trailer, manifest); idempotent."""
        if self.closed:
            return
        self.closed = True
        for forwarder, sink in self._sinks:
            forwarder.remove_sink(sink)
        had_file = self._container is not None
        self._close_container()
        if had_file:
            self._write_manifest(ended_at=int(time.time() * 1000))

    def _close_container(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError) as exc:
                logger.error("closing recording %s failed: %r", self.path, exc)

    def duration_s(self) -> float:
        clock = self._clocks.get("video")
        last = self._last_pts.get("video")
        if clock is None or last is None:
            return 0.0
        return last / clock.rate

    def _write_manifest(self, ended_at: int | None = None) -> None:
        started = self.started_at_ms or 0
        manifest = {
            "show": self.target.show,
            "file": self.path.name,
            "user": self.user,
            "role": self.role,
            "codecs": self._codecs,
            "show_started_at": self.target.started_at,
            "started_at": started,
            "offset_s": round(max(0, started - self.target.started_at) / 1000, 3),
            "ended_at": ended_at,
            "duration_s": round(self.duration_s(), 3) if ended_at is not None else None,
            "frames": dict(self.frames),
        }
        tmp = _with(self.stem, "json.tmp")
        tmp.write_text(json.dumps(manifest, separators=(",", ":")))
        os.replace(tmp, _with(self.stem, "json"))


def _video_template(codec: str, keyframe: bytes) -> Any:
    """An input container holding just `keyframe`, whose stream is the output's template:
    VP8 in an IVF wrapper (size from the key frame header, RFC 6386 9.1), H.264 as raw Annex B
    (FFmpeg reads size and SPS/PPS from it)."""
    if codec == "vp8":
        if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
            raise ValueError("not a VP8 key frame")
        width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
        height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
        header = b"DKIF" + struct.pack("<HHIHHIII", 0, 32, 0x30385056, width, height, 30, 1, 1) + bytes(4)
        blob = header + struct.pack("<IQ", len(keyframe), 0) + keyframe
        return av.open(io.BytesIO(blob), format="ivf")
    return av.open(io.BytesIO(keyframe), format="h264")
