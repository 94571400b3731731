"""Smoke test of the `media` load scenario: a real serve process with one media worker,
a publisher and two viewers; the result has the fields docs/benchmarks.md reports.
Functional only (frames arrive, CPU is attributed to the server's process tree), no
performance thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_media_scenario_runs_against_a_serve_process_with_a_worker(tmp_path: Path) -> None:
    out = tmp_path / "media.json"
    args = ["--viewers", "2", "--workers", "1", "--relay-viewers", "", "--seconds", "1", "--probes", "1"]
    args += [
        "--settle",
        "0.5",
        "--probe-seconds",
        "0.5",
        "--width",
        "320",
        "--height",
        "240",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.media", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    baseline, step = result["steps"]
    assert (baseline["viewers"], step["viewers"]) == (0, 2)
    assert step["mode"] == "server/1w/rtp" and step["workers"] == 1 and step["forwarding"] == "rtp"
    assert step["viewer_fps_min"] > 5  # frames flowed from the worker to both viewers
    assert step["lost_packets"] == 0 and step["viewers_not_connected"] == 0
    assert len(step["process_cpu_s"]) == 2  # the main process and its media worker
    assert step["process_cpu_s"][1] > 0  # forwarding happens in the worker
    assert step["cpu_per_viewer_s"] is not None and step["latency_ms_p95"] is not None
    assert len(step["join_to_first_frame_ms"]) == 1 and step["join_to_first_frame_ms"][0] > 0
    assert "| server/1w/rtp | 2 |" in proc.stderr  # the markdown table
