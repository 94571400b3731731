"""The media plot is drawn from a run's steps (one line per server mode)."""

from __future__ import annotations

from pathlib import Path

from loadtest.plots import media_runs, plot_media


def _step(mode: str, viewers: int, cpu: float, p95: float) -> dict:
    return {
        "mode": mode,
        "viewers": viewers,
        "seconds": 8.0,
        "server_cpu_s": cpu,
        "latency_ms_p95": p95,
        "latency_all_ms_p95": p95 + 5,
    }


def test_plot_media_writes_a_png(tmp_path: Path) -> None:
    steps = [_step("server/0w", 0, 0.1, 40), _step("server/0w", 20, 1.0, 50), _step("relay", 1, 1.3, 80)]
    path = plot_media(steps, tmp_path / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_media_runs_side_by_side_keep_each_runs_label() -> None:
    base = {"steps": [_step("server/0w/rtp", 300, 7.5, 180)]}
    new = {"steps": [_step("server/0w/rtp", 300, 5.2, 80), _step("server/0w/frame", 300, 8.0, 440)]}
    modes = [s["mode"] for s in media_runs([("base r1", base), ("new r1", new)])]
    assert modes == ["base r1 rtp", "new r1 rtp", "new r1 frame"]
