"""Smoke runs of the real `roomserver-loadtest` CLI (correctness, not speed).

Each run starts its own server on a free loopback port, drives it through the
CLI in a subprocess and reads the JSON result from stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.loadtest import cli_run


def run_cli(*args: str, out: Path, timeout: float = 90) -> tuple[int, dict[str, Any]]:
    return cli_run.run_cli(*args, out=out, timeout=timeout)


def test_barrage_smoke_every_message_reaches_every_viewer_once_in_order(tmp_path: Path) -> None:
    rc, r = run_cli(
        "barrage",
        "--viewers",
        "200",
        "--senders",
        "20",
        "--rate",
        "50",
        "--duration",
        "5",
        "--procs",
        "1",
        out=tmp_path,
    )
    v, sends = r["verification"], r["sends"]
    assert rc == 0 and r["passed"], json.dumps(
        {k: r.get(k) for k in ("verification", "sends", "server_log_tail")}
    )
    assert v["viewers"] == v["ok"] == 200
    assert (v["with_gaps"], v["with_duplicates"], v["incomplete"], v["not_joined"]) == (0, 0, 0, 0)
    # 50/s for 5 s, all under the room's cap of 250/s: nothing shed, nothing refused.
    assert sends["sent"] == 250 and sends["accepted"] == 250 and sends["shed"] == 0 and not sends["errors"]
    # Every accepted barrage got a seq before the final marker's (other durable events may exist).
    assert v["final_seq"] >= 251
    assert r["deliveries"] >= 200 * 250
    assert r["latency_ms"]["count"] > 0 and r["latency_ms"]["p99"] is not None
    assert r["server_cpu_s"] > 0 and r["loadgen_cpu_s"] > 0
    params = r["params"]
    assert (params["viewers"], params["senders"], params["rate"], params["duration"]) == (200, 20, 50.0, 5.0)
    for plot in r["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("fault", "field"), [("gap", "with_gaps"), ("dup", "with_duplicates")])
def test_a_lost_or_repeated_event_fails_the_run(tmp_path: Path, fault: str, field: str) -> None:
    rc, r = run_cli(
        "bare",
        "--viewers",
        "30",
        "--senders",
        "0",
        "--rate",
        "100",
        "--duration",
        "2",
        "--bare-fault",
        fault,
        out=tmp_path,
    )
    assert rc == 1 and not r["passed"]
    assert r["verification"][field] == r["verification"]["viewers"] == 30
    assert r["verification"]["ok"] == 0
