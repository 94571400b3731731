"""A live HLS rendition of a room's host (issue 14), from the frames the SFU already has.

    TrackForwarder ──sink──► HlsRendition (a PublisherRecording whose container is FFmpeg's
                             `hls` muxer): <directory>/index.m3u8, init.mp4, seg<N>.m4s

Same remux as the recorder: H.264 + Opus in fragmented-MP4 segments (CMAF; Opus cannot go
in MPEG-TS for browsers), cut at keyframes about every `HLS_SEGMENT_S` seconds, the playlist a
sliding window of `HLS_LIST_SIZE` segments (older ones deleted). An H.264 host is remuxed
without transcoding; a VP8 host (the browsers' default) cannot be carried in HLS, so its video
is transcoded to H.264 once per room (transcode.py, on a thread) and then muxed the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

from .forwarding import TrackForwarder
from .recording import PublisherRecording, RecordingTarget
from .transcode import Vp8ToH264

HLS_SEGMENT_S = 1
HLS_LIST_SIZE = 6
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

    def _output(self) -> tuple[str, str, dict[str, str]]:
        directory = Path(self.target.directory)
        options = {
            "hls_time": str(HLS_SEGMENT_S),
            "hls_list_size": str(HLS_LIST_SIZE),
            "hls_segment_type": "fmp4",
            "hls_fmp4_init_filename": "init.mp4",
            "hls_segment_filename": str(directory / "seg%d.m4s"),
            # Segments leave the window and the disk; each starts at a keyframe.
            "hls_flags": "delete_segments+independent_segments+temp_file",
        }
        return str(directory / PLAYLIST), "hls", options

    def _write_manifest(self, ended_at: int | None = None) -> None:
        pass  # the playlist is the manifest
