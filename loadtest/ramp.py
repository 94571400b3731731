"""Ramp profiles: how many viewers and how many barrage messages per second, over time.

A profile is a list of points ``(at_s, viewers, rate)``; between two points both values
move linearly (as k6's stages do), after the last point the run ends. From the command line:

    --ramp 0:100@20,30s:1000@200,60s:1000,90s:0

``TIME:VIEWERS[@RATE]``: TIME in seconds (``30``, ``30s``, ``1.5m``), a point without
``@RATE`` keeps the previous point's rate (the first point's default is ``--rate``). The
same profile as a file (``--ramp-file profile.toml`` or ``.json``):

    [[stage]]               # JSON: {"stage": [{"at": "0s", "viewers": 100, "rate": 20}, ...]}
    at = "0s"
    viewers = 100
    rate = 20

Pure: no I/O besides reading the file in ``load_ramp_file``.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

MAX_POINTS = 100


@dataclass(frozen=True, slots=True)
class Point:
    at_s: float
    viewers: int
    rate: float


@dataclass(frozen=True, slots=True)
class Ramp:
    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        pts = self.points
        if len(pts) < 2:
            raise ValueError("a ramp needs at least two points (a start and an end)")
        if len(pts) > MAX_POINTS:
            raise ValueError(f"a ramp has at most {MAX_POINTS} points")
        if pts[0].at_s != 0:
            raise ValueError("a ramp starts at time 0")
        for a, b in pairwise(pts):
            if b.at_s <= a.at_s:
                raise ValueError(f"ramp times must increase ({a.at_s:g}s then {b.at_s:g}s)")
        for p in pts:
            if p.viewers < 0 or p.rate < 0 or not math.isfinite(p.rate):
                raise ValueError("ramp viewers and rates must be >= 0")

    @property
    def duration_s(self) -> float:
        return self.points[-1].at_s

    @property
    def peak_viewers(self) -> int:
        return max(p.viewers for p in self.points)

    @property
    def peak_rate(self) -> float:
        return max(p.rate for p in self.points)

    def _segment(self, t: float) -> tuple[Point, Point, float]:
        """The points around ``t`` and how far ``t`` is from the first to the second (0..1)."""
        pts = self.points
        if t <= 0:
            return pts[0], pts[1], 0.0
        for a, b in pairwise(pts):
            if t <= b.at_s:
                return a, b, (t - a.at_s) / (b.at_s - a.at_s)
        return pts[-2], pts[-1], 1.0

    def viewers_at(self, t: float) -> int:
        a, b, f = self._segment(t)
        return round(a.viewers + (b.viewers - a.viewers) * f)

    def rate_at(self, t: float) -> float:
        a, b, f = self._segment(t)
        return a.rate + (b.rate - a.rate) * f

    def sends_by(self, t: float) -> int:
        """Messages due by ``t``: the integral of the rate from 0 (a trapezoid per segment)."""
        t = min(max(t, 0.0), self.duration_s)
        total = 0.0
        for a, b in pairwise(self.points):
            if t <= a.at_s:
                break
            end = min(t, b.at_s)
            rate_end = a.rate + (b.rate - a.rate) * (end - a.at_s) / (b.at_s - a.at_s)
            total += (a.rate + rate_end) / 2 * (end - a.at_s)
        return int(total + 1e-9)

    def share(self, index: int, count: int) -> Ramp:
        """This shard's part of the load: viewers split as evenly as integers allow, rate / count."""
        return Ramp(
            tuple(
                Point(p.at_s, p.viewers // count + (1 if index < p.viewers % count else 0), p.rate / count)
                for p in self.points
            )
        )

    def describe(self) -> list[dict[str, Any]]:
        return [{"at_s": p.at_s, "viewers": p.viewers, "rate": p.rate} for p in self.points]


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``1.5m``, ``500ms`` → seconds."""
    s = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if s.endswith(suffix):
            s, unit = s[: -len(suffix)], scale
            break
    else:
        unit = 1.0
    try:
        value = float(s) * unit
    except ValueError:
        raise ValueError(f"not a time: {text!r} (say 30, 30s or 1.5m)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a time: {text!r}")
    return value


def parse_ramp(text: str, default_rate: float) -> Ramp:
    """``0:100@20,30s:1000@200,60s:1000`` → a ``Ramp`` (see the module's docstring)."""
    points: list[Point] = []
    rate = default_rate
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        at, sep, rest = part.partition(":")
        if not sep:
            raise ValueError(f"ramp point {part!r}: say TIME:VIEWERS[@RATE]")
        viewers, at_sign, rate_text = rest.partition("@")
        try:
            n = int(viewers)
            if at_sign:
                rate = float(rate_text)
        except ValueError:
            raise ValueError(f"ramp point {part!r}: say TIME:VIEWERS[@RATE]") from None
        points.append(Point(parse_duration(at), n, rate))
    return Ramp(tuple(points))


def ramp_from_data(data: Any, default_rate: float) -> Ramp:
    """A ramp from a parsed TOML/JSON document: ``{"stage": [{"at", "viewers", "rate"?}, ...]}``."""
    stages = data.get("stage") if isinstance(data, dict) else None
    if not isinstance(stages, list):
        raise ValueError('a ramp file holds a list of stages ([[stage]] in TOML, "stage": [...] in JSON)')
    points: list[Point] = []
    rate = default_rate
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or "at" not in st or "viewers" not in st:
            raise ValueError(f"stage {i + 1}: needs 'at' and 'viewers'")
        unknown = set(st) - {"at", "viewers", "rate"}
        if unknown:
            raise ValueError(f"stage {i + 1}: unknown keys {sorted(unknown)}")
        at, viewers = st["at"], st["viewers"]
        if isinstance(viewers, bool) or not isinstance(viewers, int):
            raise ValueError(f"stage {i + 1}: viewers must be an integer")
        if "rate" in st:
            if isinstance(st["rate"], bool) or not isinstance(st["rate"], int | float):
                raise ValueError(f"stage {i + 1}: rate must be a number")
            rate = float(st["rate"])
        at_s = (
            float(at) if isinstance(at, int | float) and not isinstance(at, bool) else parse_duration(str(at))
        )
        points.append(Point(at_s, viewers, rate))
    return Ramp(tuple(points))


def load_ramp_file(path: Path, default_rate: float) -> Ramp:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return ramp_from_data(data, default_rate)
