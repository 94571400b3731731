"""The assistant benchmark (loadtest/assistant_bench.py): its A/B summary, and a run
at a size a test can afford, viewers in processes of their own."""

from __future__ import annotations

import argparse
from typing import Any

from loadtest.assistant_bench import ab_summary, phase_record, run
from loadtest.assistant_cost import measure
from loadtest.assistant_paired import run as paired_run


def _phase(rnd: int, on: bool, deliveries: int, cpu: float) -> dict[str, Any]:
    return {
        "round": rnd,
        "assistant": on,
        "deliveries": deliveries,
        "server_cpu_s": cpu,
        "deliveries_per_cpu_s": deliveries / cpu,
    }


def test_ab_summary_pools_rounds_and_bounds_the_pooled_ratio() -> None:
    phases = [
        _phase(0, True, 1000, 1.0),
        _phase(0, False, 1000, 0.9),
        _phase(1, False, 2000, 1.0),
        _phase(1, True, 2000, 1.0),
        _phase(2, True, 1000, 1.1),
        _phase(2, False, 1000, 1.0),
    ]
    s = ab_summary(phases)
    assert s["pooled_ratio"] == round((4000 / 3.1) / (4000 / 2.9), 4)
    assert s["round_ratios"] == [0.9, 1.0, round(1 / 1.1, 3)]
    low, high = s["pooled_ratio_95"]
    assert low <= s["pooled_ratio"] <= high and low < high


async def test_bench_run_counts_every_viewer_process() -> None:
    args = argparse.Namespace(
        seconds=1.5,
        rounds=1,
        rate=40.0,
        questions=0.5,
        senders=10,
        viewer_procs=2,
        mode="lexical",
        redis_url="",
        profile="",
        sides=(True, False),
    )
    summary = await run(args, 12)
    assert summary["viewers"] == 12 and summary["viewer_procs"] == 2
    assert [p["assistant"] for p in summary["phases"]] == [True, False]
    for p in summary["phases"]:
        # Each line reaches all 12 viewers (a process's count lost would halve it);
        # a loaded box may carry a phase's last lines over into the next one.
        assert 0.6 < p["delivered_share"] < 1.5, p
        assert p["server_cpu_s"] > 0 and p["viewer_cpu_s"] > 0
    assert summary["stats"]["asked"] > 0 and summary["pooled_ratio"] > 0


def test_cadence_adjusted_recovers_the_assistants_cpu_at_equal_flushes() -> None:
    # The off phases flushed less (a starved server): CPU 0.01 s per flush, +0.2 s on.
    flushes = {(0, True): 400, (0, False): 300, (1, False): 380, (1, True): 390, (2, True): 350}
    flushes[(2, False)] = 320
    phases = []
    for (rnd, on), n in flushes.items():
        p = _phase(rnd, on, 1000, 0.01 * n + (0.2 if on else 0.0))
        phases.append({**p, "flushes": n})
    adj = ab_summary(phases)["cadence_adjusted"]
    assert adj["extra_server_cpu_s_per_phase"] == 0.2
    assert adj["extra_server_cpu_s_per_phase_95"] == [0.2, 0.2]  # an exact fit
    c_on = sum(0.01 * n + 0.2 for (_, on), n in flushes.items() if on)
    assert adj["ratio"] == round((c_on - 0.6) / c_on, 4)
    assert adj["flushes_on_mean"] == 380.0 and adj["flushes_off_mean"] == 333.3


async def test_assistant_cost_measures_offer_and_handle() -> None:
    out = await measure(40, 1)
    assert out["handle_ms_per_question"]["median"] > 0 and out["offer_us_per_line"]["median"] > 0
    assert out["processed"] > 40 and out["dropped"] == 0


async def test_paired_run_swaps_the_assistant_between_two_servers() -> None:
    args = argparse.Namespace(
        seconds=1.5,
        rounds=2,
        rate=40.0,
        questions=0.5,
        senders=10,
        viewer_procs=1,
        mode="lexical",
        redis_url="",
        profile="",
    )
    summary = await paired_run(args, 10)
    on = [(p["round"], p["server"]) for p in summary["phases"] if p["assistant"]]
    assert on == [(0, "A"), (1, "B")]  # one server on per round, swapped
    for p in summary["phases"]:
        assert 0.6 < p["delivered_share"] < 1.5, p
    assert summary["stats"]["A"]["asked"] > 0 and summary["stats"]["B"]["asked"] > 0
    assert len(summary["round_ratios"]) == 2


def test_cadence_adjusted_gives_no_fit_when_flushes_tell_the_sides_apart() -> None:
    phases = [
        {**_phase(r, on, 1000, 1.0 + on * 0.1), "flushes": 300 if on else 200}
        for r in range(2)
        for on in (True, False)
    ]
    assert "cadence_adjusted" not in ab_summary(phases)


def test_phase_record_names_the_server_or_the_client_cpu_and_derives_the_ratios() -> None:
    kw: dict[str, Any] = dict(
        sent=100,
        asked=10,
        seconds=4.0,
        deliveries=1000,
        cpu=0.5,
        viewer_cpu=2.5,
        viewer_procs=2,
        viewers=10,
        flushes=((10.0, 1.0, 0.5), (50.0, 1.25, 0.75)),
        latencies=[30.0, 10.0, 20.0],
        replies=[],
    )
    one = phase_record(3, True, client_cpu=0.123, **kw)
    paired = phase_record(3, False, server="B", **kw)
    assert list(one)[:3] == ["round", "assistant", "sent"] and "server" not in one
    assert list(paired)[:3] == ["round", "server", "assistant"] and "client_cpu_s" not in paired
    assert one["client_cpu_s"] == 0.12 and paired["server"] == "B"
    assert one["rate"] == 25.0 and one["deliveries_per_cpu_s"] == 2000.0
    assert one["server_cpu_us_per_delivery"] == 500.0 and one["delivered_share"] == 1.0
    assert one["viewer_core_share"] == 0.25  # 2.5 s over 2 processes and 5 s
    assert (one["flushes"], one["flush_cpu_s"], one["gc_s"]) == (40, 0.25, 0.25)
    assert one["answers_to_askers"] == 3 and one["answer_p50_ms"] == 20.0
    assert one["barrage_reply_p95_ms"] is None
    assert phase_record(0, True, **{**kw, "cpu": 0.0, "deliveries": 0})["deliveries_per_cpu_s"] is None
