"""The live playlist of a Low-Latency HLS rendition (issue 14; RFC 8216bis §4.4.4.9, §6.2.5). Pure.

The packager (media/hls.py) hands in each fragment the muxer finishes as a *part* (≈ 0.25 s);
parts make up *segments* (≈ 1 s, each starting at a key frame). The playlist lists the full
segments of a sliding window, so a player without LL-HLS plays it as plain HLS, and the parts
of the last few segments plus the one being filled, so an LL-HLS player (hls.js) can play a
part or two behind the live edge. A player asks for the next playlist with
`_HLS_msn`/`_HLS_part` and the server holds the request until that part is listed
(`reload_ready`): blocking reload instead of polling.

    seg<msn>.m4s          a whole segment (its parts' bytes, concatenated)
    seg<msn>.<i>.m4s      part i of segment msn
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

PART_TARGET_S = 0.4  # the muxer cuts a fragment after 0.25 s (+ one frame, a key frame cuts sooner)
PART_WINDOW = (
    3  # segments whose parts are listed (the RFC asks for at least those of the last 3 target durations)
)


@dataclass(frozen=True)
class Part:
    name: str
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def name(self) -> str:
        return segment_name(self.msn)

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)


def segment_name(msn: int) -> str:
    return f"seg{msn}.m4s"


def part_name(msn: int, index: int) -> str:
    return f"seg{msn}.{index}.m4s"


@dataclass(frozen=True)
class Added:
    """What the packager writes after `add_part`: the part, maybe a segment it just closed
    (whose parts' bytes make its file), and the files that left the window."""

    part: Part
    closed: Segment | None
    expired: list[str]


class LivePlaylist:
    def __init__(self, *, segment_s: float, window: int) -> None:
        self.segment_s = segment_s
        self.window = window
        self.segments: list[Segment] = []
        self.ended = False
        self._target = max(1, math.ceil(segment_s))

    def add_part(self, duration: float, independent: bool) -> Added:
        if self.ended:
            raise ValueError("the playlist has ended")
        current = self.segments[-1] if self.segments else None
        closed = None
        # A key frame asked for once a segment is due arrives a little early or late on the
        # media clock: one that comes in the last fifth already starts the next segment
        # (waiting for the one after would double the segment).
        if current is None or (independent and current.duration >= 0.8 * self.segment_s):
            if current is None and not independent:
                raise ValueError("the first part must start with a key frame")
            if current is not None:
                closed = self._close(current)
            current = Segment(current.msn + 1 if current is not None else 0)
            self.segments.append(current)
        part = Part(part_name(current.msn, len(current.parts)), duration, independent)
        current.parts.append(part)
        return Added(part, closed, self._expire())

    def end(self) -> Segment | None:
        """The show is over: the segment being filled is closed (returned if it has parts)."""
        self.ended = True
        current = self.segments[-1] if self.segments else None
        if current is not None and not current.complete:
            return self._close(current)
        return None

    def _close(self, segment: Segment) -> Segment:
        segment.complete = True
        self._target = max(self._target, math.ceil(segment.duration))
        return segment

    def _expire(self) -> list[str]:
        complete = [s for s in self.segments if s.complete]
        gone: list[str] = []
        while len(complete) > self.window:
            old = complete.pop(0)
            self.segments.remove(old)
            gone += [old.name, *(p.name for p in old.parts)]
        return gone

    def render(self) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{self._target}",
        ]
        if not self.ended:
            lines += [
                f"#EXT-X-PART-INF:PART-TARGET={PART_TARGET_S:.3f}",
                f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * PART_TARGET_S:.3f}",
            ]
        first = self.segments[0].msn if self.segments else 0
        lines += [
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            '#EXT-X-MAP:URI="init.mp4"',
        ]
        with_parts = {s.msn for s in self.segments[-(PART_WINDOW + 1) :]} if not self.ended else set()
        for segment in self.segments:
            if segment.msn in with_parts:
                for part in segment.parts:
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(f'#EXT-X-PART:DURATION={part.duration:.3f},URI="{part.name}"{independent}')
            if segment.complete:
                lines += [f"#EXTINF:{segment.duration:.3f},", segment.name]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- blocking reload (the server)

_PART = re.compile(r'URI="seg([0-9]+)\.([0-9]+)\.m4s"')
_SEGMENT = re.compile(r"^seg([0-9]+)\.m4s$", re.M)
_TARGET = re.compile(r"^#EXT-X-TARGETDURATION:([0-9]{1,3})$", re.M)


class BadReload(ValueError):
    pass


def target_duration(playlist: str) -> int:
    match = _TARGET.search(playlist)
    return int(match.group(1)) if match else 1


def reload_request(msn: str | None, part: str | None) -> tuple[int, int | None] | None:
    """`_HLS_msn`/`_HLS_part` of a playlist request: None (no blocking), or (msn, part)."""
    if msn is None:
        if part is not None:
            raise BadReload("_HLS_part needs _HLS_msn")
        return None
    return _param("_HLS_msn", msn), None if part is None else _param("_HLS_part", part)


def _param(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise BadReload(f"{name} must be a non-negative integer")
    return int(raw)


def reload_ready(playlist: str, msn: int, part: int | None) -> bool:
    """Whether `playlist` holds what the request waits for: part `part` of segment `msn` (or
    anything later), or with no part the whole segment `msn`. An ended playlist holds all
    there will ever be. Raises BadReload for a segment more than two ahead (RFC 8216bis
    §6.2.5.2 answers that with 400)."""
    if "#EXT-X-ENDLIST" in playlist:
        return True
    parts = [(int(m), int(i)) for m, i in _PART.findall(playlist)]
    segments = [int(m) for m in _SEGMENT.findall(playlist)]
    last_part = max(parts, default=(-1, -1))
    last_segment = max(segments, default=-1)
    newest = max(last_part[0], last_segment)
    if msn > newest + 2:
        raise BadReload(f"segment {msn} is more than two ahead of the playlist ({newest})")
    if part is None:
        return last_segment >= msn
    return last_part >= (msn, part) or last_segment >= msn or last_part[0] > msn
