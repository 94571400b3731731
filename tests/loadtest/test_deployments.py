"""The load tester against running deployments: remote refusal, several --urls, ramps, and
two worker shards merged into one report (loopback, small and bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.loadtest import cli_run
from tests.server_procs import APP, SECRET, ServerProcess

ROOT = cli_run.ROOT
APP_ARG = f"{APP}:{SECRET}"


@pytest.fixture
def node(tmp_path: Path):
    server = ServerProcess("--flush-ms", "20", log_dir=tmp_path).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8080", "http://example.com", "http://127.0.0.1:9,http://192.0.2.1:9"]
)
def test_a_remote_url_without_allow_remote_is_refused_with_one_line(tmp_path: Path, url: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.cli",
            "barrage",
            "--url",
            url,
            "--app",
            "a:b",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0] and "is not this machine" in lines[0], proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may run before the refusal"


def test_a_worker_refuses_a_remote_url_too(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.cli",
            "worker",
            "--shard",
            "0/2",
            "--url",
            "http://10.0.0.9:80",
            *("--app", "a:b", "--room", "r", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_ramp_over_two_urls_connects_grows_and_shrinks_and_verifies(
    tmp_path: Path, node: ServerProcess
) -> None:
    # Two --url flags naming the same node (one as localhost): the round robin takes both.
    rc, r = cli_run.run_cli(
        "barrage",
        "--url",
        node.url,
        "--url",
        node.url.replace("127.0.0.1", "localhost"),
        "--app",
        APP_ARG,
        "--senders",
        "6",
        "--ramp",
        "0:20@10,2s:60@30,3s:60,4s:30",
        out=tmp_path,
        timeout=120,
    )
    v = r["verification"]
    assert rc == 0 and r["passed"], json.dumps({k: r.get(k) for k in ("verification", "sends")})
    # 60 at the peak, 30 closed by the ramp going down, the other 30 saw every event.
    assert (v["viewers"], v["left"], v["ok"]) == (30, 30, 30)
    # The rate's integral: (10+30)/2 * 2 s + 30 * 1 s + 30 * 1 s.
    assert r["sends"]["sent"] == 100
    assert r["params"]["duration"] == 4.0 and r["ramp"][1] == {"at_s": 2.0, "viewers": 60, "rate": 30.0}
    peak = max(row.get("viewers", 0) for row in r["series"])
    assert 40 <= peak <= 60


def _worker(node: ServerProcess, out: Path, shard: str, room: str, start_at: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "loadtest.cli",
                "worker",
                "--shard",
                shard,
                "--start-at",
                f"{start_at:.3f}",
            ),
            *("--url", node.url, "--app", APP_ARG, "--room", room, "--viewers", "41", "--senders", "8"),
            *("--rate", "30", "--duration", "2", "--out", str(out)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    stdout, stderr = proc.communicate(timeout=120)
    assert stdout.strip(), stderr[-3000:]
    return proc.returncode, json.loads(stdout)


def test_two_workers_and_merge_give_one_report_whose_counts_are_the_sums(
    tmp_path: Path, node: ServerProcess
) -> None:
    room = "lt-shards"
    start_at = time.time() + 20  # both connected by then, even on a loaded machine
    procs = [_worker(node, tmp_path / f"w{i}", f"{i}/2", room, start_at) for i in range(2)]
    shards = [_finish(p) for p in procs]
    for rc, r in shards:
        assert rc == 0 and r["passed"], json.dumps({k: r.get(k) for k in ("verification", "sends", "shard")})
    a, b = (r for _, r in shards)
    assert (a["verification"]["viewers"], b["verification"]["viewers"]) == (21, 20)  # 41 split
    rc, m = cli_run.run_cli(
        "merge",
        str(tmp_path / "w0" / "worker.json"),
        str(tmp_path / "w1" / "worker.json"),
        out=tmp_path / "m",
        timeout=60,
    )
    assert rc == 0 and m["passed"] and m["shards"] == {"count": 2, "merged": [0, 1], "missing": []}
    for key in ("viewers", "ok", "with_gaps", "with_duplicates", "incomplete", "not_joined"):
        assert m["verification"][key] == a["verification"][key] + b["verification"][key], key
    assert m["verification"]["ok"] == 41
    for key in ("sent", "accepted", "shed"):
        assert m["sends"][key] == a["sends"][key] + b["sends"][key], key
    assert m["sends"]["sent"] == 60  # 15/s for 2 s on each shard
    assert m["deliveries"] == a["deliveries"] + b["deliveries"]
    assert m["latency_ms"]["count"] == a["latency_ms"]["count"] + b["latency_ms"]["count"] > 0
    assert m["sends"]["ack_ms"]["count"] == a["sends"]["ack_ms"]["count"] + b["sends"]["ack_ms"]["count"]
    assert m["join_ms"]["join"]["count"] == 41
    assert sum(row["deliveries"] for row in m["series"]) == sum(
        sum(int(n) for n in r["raw"]["deliveries"].values()) for r in (a, b)
    )
    assert m["window_start_spread_s"] < 1.0


def test_merge_refuses_a_file_that_is_not_a_shard_result(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"scenario": "barrage", "passed": True}))
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "merge", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not a shard's result" in proc.stderr
