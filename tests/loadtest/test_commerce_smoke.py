"""Smoke runs of the live-commerce scenarios of `roomserver-loadtest` (correctness only, never speed).

Each run starts its own server on a free loopback port through the real CLI in a
subprocess and reads the JSON result from stdout; small numbers keep each run
to a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.loadtest import cli_run


def run_cli(*args: str, out: Path, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    return cli_run.run_cli(*args, out=out, timeout=timeout)


def test_flashsale_sells_exactly_the_stock_within_the_limit_and_lists_every_acknowledged_order(
    tmp_path: Path,
) -> None:
    rc, r = run_cli(
        *("flashsale", "--buyers", "40", "--stock", "30", "--limit", "2", "--max", "--inflight", "2"),
        *("--duration", "2"),
        out=tmp_path,
    )
    v = r["verification"]
    assert rc == 0 and r["passed"] and r["violations"] == [], json.dumps(r.get("violations"))
    assert v["sold"] == v["orders_listed"] == v["orders_acknowledged"] == 30
    assert v["acknowledged_not_listed"] == v["listed_not_acknowledged"] == 0
    assert v["problems"] == [] and v["max_orders_per_user"] <= 2
    out = r["outcomes"]
    assert out["ok"] == 30 and out.get("sold_out", 0) > 0  # the buyers kept trying after the sell-out
    assert r["answers"] == sum(n for code, n in out.items() if code not in ("rate_limited", "timeout"))
    assert r["latency_ms"]["count"] == r["answers"] and r["server_cpu_s"] > 0
    assert (r["params"]["users"], r["params"]["stock"], r["params"]["limit"], r["params"]["rate"]) == (
        40,
        30,
        2,
        0.0,
    )
    assert Path(r["plots"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flashsale_with_more_stock_than_demand_is_not_a_violation_and_sells_what_was_bought(
    tmp_path: Path,
) -> None:
    rc, r = run_cli(
        *(
            "flashsale",
            "--buyers",
            "10",
            "--stock",
            "1000",
            "--limit",
            "1",
            "--rate",
            "50",
            "--duration",
            "1",
        ),
        out=tmp_path,
    )
    assert rc == 0 and r["passed"], json.dumps(r.get("violations"))
    assert r["verification"]["sold"] == r["verification"]["orders_listed"] == 10  # one each: the limit


def test_lottery_accepts_every_entrant_and_the_draw_verifies_from_the_audit_list(tmp_path: Path) -> None:
    rc, r = run_cli("lottery", "--entrants", "200", "--rate", "400", "--winners", "5", out=tmp_path)
    v = r["verification"]
    assert rc == 0 and r["passed"], json.dumps(r.get("violations"))
    assert v["accepted_entries"] == v["audit_entrants"] == v["drawn_event_entrants"] == 200
    assert v["verify_draw"] is True and v["winners"] == 5
    assert v["drawn_event_seen_by"] == v["sockets_alive"] == 200
    close = r["close_to_ms"]
    assert close["audit_complete"] is not None and close["drawn_event_entrants"]["count"] == 200


def test_redpacket_amounts_sum_exactly_one_grab_per_user_and_finished_reaches_everyone(
    tmp_path: Path,
) -> None:
    rc, r = run_cli(
        *("redpacket", "--users", "150", "--shares", "100", "--total-cents", "777", "--rate", "300"),
        out=tmp_path,
    )
    v = r["verification"]
    assert rc == 0 and r["passed"], json.dumps(r.get("violations"))
    assert v["grabs"] == 100 and v["sum_cents"] == 777 and v["min_cents"] >= 1
    assert v["max_grabs_per_user"] == 1
    assert r["outcomes"] == {"ok": 100, "sold_out": 50}
    assert v["finished_seen_by"] == v["sockets_alive"] == 150
