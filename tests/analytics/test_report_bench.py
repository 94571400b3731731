"""The report benchmark's generator and run, at a size a test can afford."""

from __future__ import annotations

from pathlib import Path

from loadtest.report_bench import generate, run


def test_generated_show_is_in_time_order_with_unique_ids() -> None:
    events = generate(200, 0.25)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.id for e in events}) == len(events)
    assert events[0].kind == "show.start" and events[-1].kind == "show.end"
    assert generate(200, 0.25) == events  # seeded: the same show every run


async def test_bench_run_keeps_the_report(tmp_path: Path) -> None:
    result = await run(None, tmp_path, viewers=60, hours=0.2, repeat=2)
    assert result["engine"] == "sqlite" and result["cached"] is True
    assert result["records"] == len(generate(60, 0.2)) and result["viewers"] == 60
    assert len(result["ready_s"]) == 2 and result["peak_concurrent"] > 0
