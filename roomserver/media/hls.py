"""A live Low-Latency HLS rendition of a room's host (issue 14), from the frames the SFU has.

    TrackForwarder ──sink──► HlsRendition (a PublisherRecording whose container is FFmpeg's
       mp4 muxer, fragmenting every ≈ 0.25 s) ──bytes──► core/cmaf.CmafSplitter ──► init.mp4,
       parts seg<N>.<i>.m4s, segments seg<N>.m4s, index.m3u8 (core/llhls.LivePlaylist)

H.264 + Opus in fragmented MP4 (CMAF; Opus cannot go in MPEG-TS for browsers). Each fragment
the muxer closes is a part; parts make ≈ 1 s segments that start at key frames (asked of the
publisher once a segment is due); the playlist is a sliding window of `HLS_LIST_SIZE` segments
(older files deleted) listing the parts of the last few, so hls.js plays about a second behind
the live edge, and players without LL-HLS play the whole segments. The server's playlist
endpoint blocks on `_HLS_msn`/`_HLS_part` (api/replays.py). An H.264 host is remuxed without
transcoding; a VP8 host (the browsers' default) cannot be carried in HLS, so its video is
transcoded to H.264 once per room (transcode.py, on a thread) and then muxed the same way.
Every file is written whole and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roomserver.core import llhls
from roomserver.core.cmaf import CmafError, CmafSplitter
from roomserver.core.llhls import LivePlaylist

from .forwarding import TrackForwarder
from .recording import PublisherRecording, RecordingTarget
from .transcode import Vp8ToH264

HLS_SEGMENT_S = 1
HLS_LIST_SIZE = 6
FRAGMENT_S = 0.25  # a part; core/llhls.PART_TARGET_S allows for one frame more
PLAYLIST = "index.m3u8"


HLS_VIDEO = {"h264": False, "vp8": True}  # codec → transcoded to H.264


def hls_capable(forwarders: list[TrackForwarder]) -> bool:
    return any(f.kind == "video" and f.choice.name.lower() in HLS_VIDEO for f in forwarders)


class HlsRendition(PublisherRecording):
    """The host's H.264 (or VP8 made H.264) and Opus as a live HLS playlist in `directory`
    (emptied first)."""

    def __init__(self, directory: str, forwarders: list[TrackForwarder], *, user: str) -> None:
        if not hls_capable(forwarders):
            raise ValueError("HLS needs H.264 or VP8 video")
        for old in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if old.suffix in (".m3u8", ".m4s", ".mp4", ".tmp"):
                old.unlink(missing_ok=True)
        self._last_keyframe = time.monotonic()
        self.transcoder: Vp8ToH264 | None = None
        self.playlist = LivePlaylist(segment_s=HLS_SEGMENT_S, window=HLS_LIST_SIZE)
        self._splitter = CmafSplitter()
        self._init_written = False
        self._segment_data: list[bytes] = []  # the parts of the segment being filled
        super().__init__(RecordingTarget(directory, 0, 0), forwarders, user=user, role="host")
        if HLS_VIDEO[self._video_codec]:
            self.transcoder = Vp8ToH264(
                self._transcoded, self._video.request_keyframe, keyframe_s=HLS_SEGMENT_S
            )
            self._video_codec = "h264"

    def frame(self, kind: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        if kind == "video" and self.transcoder is not None:
            self.transcoder.submit(data, timestamp, keyframe)  # its IDRs start the segments
            return
        # Segments can only be cut at keyframes, and publishers (aiortc, OBS with long GOPs)
        # may send one every few seconds or only on request: ask for one per segment (the
        # forwarder's KeyframeRequester rate-limits the PLIs).
        if kind == "video":
            now = time.monotonic()
            if keyframe:
                self._last_keyframe = now
            elif now - self._last_keyframe >= HLS_SEGMENT_S:
                self._video.request_keyframe()
        super().frame(kind, data, timestamp, keyframe)

    def _transcoded(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        super().frame("video", data, timestamp, keyframe)

    def close(self) -> None:
        if self.transcoder is not None:
            self.transcoder.close()
        super().close()

    def _stem(self) -> Path:
        return Path(self.target.directory) / "index"

    def _output(self) -> tuple[str | io.RawIOBase, str, dict[str, str]]:
        # Fragments of ≈ 0.25 s (each key frame starts one), written as they close: the
        # splitter cuts the byte stream into the init section and the parts.
        options = {
            "movflags": "empty_moov+default_base_moof+frag_keyframe+cmaf",
            "frag_duration": str(int(FRAGMENT_S * 1_000_000)),
            "flush_packets": "1",
        }
        return _Sink(self._muxed), "mp4", options

    def _muxed(self, data: bytes) -> None:
        try:
            fragments = self._splitter.feed(data)
        except CmafError as exc:
            raise ValueError(f"unexpected muxer output: {exc}") from exc
        directory = Path(self.target.directory)
        if self._splitter.init is not None and not self._init_written:
            _write_atomically(directory / "init.mp4", self._splitter.init)
            self._init_written = True
        for fragment in fragments:
            if not self.playlist.segments and not fragment.independent:
                continue  # cannot happen: the container opens at a key frame
            added = self.playlist.add_part(fragment.duration, fragment.independent)
            if added.closed is not None:
                self._write_segment(added.closed.name)
            self._segment_data.append(fragment.data)
            _write_atomically(directory / added.part.name, fragment.data)
            for name in added.expired:
                (directory / name).unlink(missing_ok=True)
            self._write_playlist()

    def _write_segment(self, name: str) -> None:
        data, self._segment_data = b"".join(self._segment_data), []
        _write_atomically(Path(self.target.directory) / name, data)

    def _write_playlist(self) -> None:
        _write_atomically(Path(self.target.directory) / PLAYLIST, self.playlist.render().encode())

    def _close_container(self) -> None:
        super()._close_container()  # the trailer: the last fragment reaches _muxed
        if self._init_written and not self.playlist.ended:
            if self.playlist.end() is not None:
                self._write_segment(self.playlist.segments[-1].name)
            self._write_playlist()

    def _write_manifest(self, ended_at: int | None = None) -> None:
        pass  # the playlist is the manifest


class _Sink(io.RawIOBase):
    """What FFmpeg writes, handed on as it comes (a write-only, non-seekable file)."""

    def __init__(self, consume: Callable[[bytes], None]) -> None:
        self._consume = consume

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._consume(bytes(data))
        return len(data)


RELOAD_POLL_S = 0.05
RELOAD_WAIT_TARGETS = 3  # RFC 8216bis §6.2.5.2: 503 if not ready within 3 target durations


async def playlist_when_ready(path: Path, wanted: tuple[int, int | None] | None) -> str | None:
    """The playlist at `path` once it lists `wanted` (msn, part) — LL-HLS blocking reload —,
    None if it does not within 3 target durations. Reads the file every 50 ms: the writer may
    be another process (a media worker). Raises FileNotFoundError, llhls.BadReload."""
    text = path.read_text()
    if wanted is None:
        return text
    deadline = time.monotonic() + RELOAD_WAIT_TARGETS * llhls.target_duration(text)
    while not llhls.reload_ready(text, *wanted):
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(RELOAD_POLL_S)
        text = path.read_text()
    return text


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (the server's file endpoint, another process with media workers) sees the old
    # file or the new one, never half of one.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
