"""Fragmented MP4 (CMAF) as a byte stream cut into its pieces, for LL-HLS (issue 14). Pure.

FFmpeg's mp4 muxer, fragmenting, writes `ftyp moov` (the init section) and then one
`moof mdat` pair per fragment. `CmafSplitter.feed(bytes)` returns each piece once it is whole,
with what a playlist needs to know about a fragment: its start and duration on the video
track's clock and whether it starts with a sync sample (a key frame: a part a player can start
at, and where a segment may begin). ISO/IEC 14496-12 boxes used: tkhd, mdhd, trex, tfhd, tfdt,
trun.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf"}
_NON_SYNC = 0x0001_0000  # sample_is_non_sync_sample in sample flags
# The optional fields of tfhd, trun and a trun's sample, in the order they are stored:
# (flag, bytes, read). A field is there when the box's flags have its flag; the ones not
# read are only stepped over.
_TFHD_FIELDS = (
    (0x01, 8, False),  # base_data_offset
    (0x02, 4, False),  # sample_description_index
    (0x08, 4, True),  # default_sample_duration
    (0x10, 4, False),  # default_sample_size
    (0x20, 4, True),  # default_sample_flags
)
_TRUN_FIELDS = ((0x01, 4, False), (0x04, 4, True))  # data_offset, first_sample_flags
_SAMPLE_FIELDS = (
    (0x100, 4, True),  # sample_duration
    (0x200, 4, False),  # sample_size
    (0x400, 4, True),  # sample_flags
    (0x800, 4, False),  # sample_composition_time_offset
)


class CmafError(ValueError):
    pass


@dataclass(frozen=True)
class Fragment:
    data: bytes  # moof + mdat
    start: float  # seconds on the video track's clock (tfdt)
    duration: float  # seconds of video it holds
    independent: bool  # starts with a video key frame


@dataclass
class _Track:
    timescale: int = 0
    default_duration: int = 0
    default_flags: int = 0


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    found = []
    while start < end:
        if end - start < 8:
            raise CmafError("truncated box header")
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, start + 8)[0]
            header = 16
        if size < header or start + size > end:
            raise CmafError(f"bad size of box {kind!r}")
        found.append((kind, start + header, start + size))
        start += size
    return found


def _walk(
    data: bytes, start: int, end: int, path: tuple[bytes, ...] = ()
) -> list[tuple[tuple[bytes, ...], int, int]]:
    out = []
    for kind, payload, box_end in boxes(data, start, end):
        here = (*path, kind)
        out.append((here, payload, box_end))
        if kind in _CONTAINERS:
            out += _walk(data, payload, box_end, here)
    return out


def _optional_fields(
    data: bytes, at: int, flags: int, fields: tuple[tuple[int, int, bool], ...]
) -> tuple[list[int | None], int]:
    """The read ``fields`` (32-bit) from ``at`` on, None for one ``flags`` says is absent,
    and where the fields end."""
    values: list[int | None] = []
    for flag, size, read in fields:
        present = bool(flags & flag)
        if read:
            values.append(struct.unpack_from(">I", data, at)[0] if present else None)
        at += size if present else 0
    return values, at


class CmafSplitter:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self.init: bytes | None = None
        self._tracks: dict[int, _Track] = {}
        self._video_id: int | None = None
        self._pending_moof: bytes | None = None

    def feed(self, data: bytes) -> list[Fragment]:
        """The fragments completed by `data` (the init section is kept in `self.init`)."""
        self._buffer += data
        fragments = []
        while len(self._buffer) >= 8:
            size, kind = struct.unpack_from(">I4s", self._buffer, 0)
            if size == 1:
                if len(self._buffer) < 16:
                    break
                size = struct.unpack_from(">Q", self._buffer, 8)[0]
            if size < 8:
                raise CmafError(f"bad size of box {kind!r}")
            if len(self._buffer) < size:
                break
            box = bytes(self._buffer[:size])
            del self._buffer[:size]
            fragment = self._box(kind, box)
            if fragment is not None:
                fragments.append(fragment)
        return fragments

    def _box(self, kind: bytes, box: bytes) -> Fragment | None:
        if kind in (b"ftyp", b"styp"):
            if self.init is None:
                self._ftyp = box
        elif kind == b"moov":
            self._read_moov(box)
            self.init = getattr(self, "_ftyp", b"") + box
        elif kind == b"moof":
            self._pending_moof = box
        elif kind == b"mdat":
            if self._pending_moof is None:
                raise CmafError("mdat without moof")
            moof, self._pending_moof = self._pending_moof, None
            return self._fragment(moof, box)
        return None  # sidx, free, mfra…: not needed by a playlist

    def _read_moov(self, moov: bytes) -> None:
        track_id = 0
        for path, payload, _ in _walk(moov, 0, len(moov)):
            version = moov[payload]
            if path[-1] == b"tkhd":
                track_id = struct.unpack_from(">I", moov, payload + (20 if version == 1 else 12))[0]
                self._tracks.setdefault(track_id, _Track())
            elif path[-1] == b"mdhd":
                self._tracks[track_id].timescale = struct.unpack_from(
                    ">I", moov, payload + (20 if version == 1 else 12)
                )[0]
            elif path[-1] == b"hdlr" and moov[payload + 8 : payload + 12] == b"vide":
                self._video_id = self._video_id or track_id
            elif path[-1] == b"trex":
                tid, _, duration, _, flags = struct.unpack_from(">IIIII", moov, payload + 4)
                track = self._tracks.setdefault(tid, _Track())
                track.default_duration, track.default_flags = duration, flags

    def _fragment(self, moof: bytes, mdat: bytes) -> Fragment:
        if self._video_id is None:
            raise CmafError("fragment before an init section with a video track")
        track = self._tracks[self._video_id]
        start_ticks = duration_ticks = 0
        independent = False
        seen_sample = in_video = False
        default_duration, default_flags = track.default_duration, track.default_flags
        for path, payload, _ in _walk(moof, 0, len(moof)):
            kind = path[-1]
            flags = int.from_bytes(moof[payload + 1 : payload + 4], "big")
            if kind == b"tfhd":
                in_video = struct.unpack_from(">I", moof, payload + 4)[0] == self._video_id
                (duration, sample_flags), _ = _optional_fields(moof, payload + 8, flags, _TFHD_FIELDS)
                default_duration = track.default_duration if duration is None else duration
                default_flags = track.default_flags if sample_flags is None else sample_flags
            elif kind == b"tfdt" and in_video:
                version = moof[payload]
                start_ticks = struct.unpack_from(">Q" if version == 1 else ">I", moof, payload + 4)[0]
            elif kind == b"trun" and in_video:
                count = struct.unpack_from(">I", moof, payload + 4)[0]
                (first_flags,), at = _optional_fields(moof, payload + 8, flags, _TRUN_FIELDS)
                for index in range(count):
                    (duration, sample_flags), at = _optional_fields(moof, at, flags, _SAMPLE_FIELDS)
                    if not seen_sample:
                        first = first_flags if first_flags is not None and index == 0 else sample_flags
                        independent = not (default_flags if first is None else first) & _NON_SYNC
                        seen_sample = True
                    duration_ticks += default_duration if duration is None else duration
        scale = track.timescale or 1
        return Fragment(moof + mdat, start_ticks / scale, duration_ticks / scale, independent)
