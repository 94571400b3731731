"""The media benchmark runs end to end against both servers (a smoke test of the tool the
load tester will wire in; it asserts that numbers come out, not what they are)."""

from __future__ import annotations

import math

import pytest

from roomserver.media.bench import parser, run_mode


@pytest.mark.parametrize("mode", ["forward", "relay"])
async def test_bench_measures_a_server(mode: str) -> None:
    quick = "--seconds 0.5 --probes 1 --probe-seconds 0.5 --settle 0.3 --width 320 --height 240"
    args = parser().parse_args(quick.split())
    steps = await run_mode(mode, [1], args)
    assert [(s.mode, s.viewers) for s in steps] == [(mode, 0), (mode, 1)]
    step = steps[-1]
    assert step.viewer_fps_mean > 5
    assert step.server_cpu_s > 0 and step.cpu_per_viewer_s > 0
    assert not math.isnan(step.join_to_first_frame_ms[0]) and step.join_to_first_frame_ms[0] > 0
    assert step.latency_ms_p50 is not None and step.latency_ms_p50 > 0
