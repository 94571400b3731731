"""docs/metrics.md lists every metric of a server's registry, as generated."""

from __future__ import annotations

from pathlib import Path

from roomserver.metrics import Metrics, metrics_table, with_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_metrics_doc_is_current():
    doc = DOC.read_text()
    assert with_table(doc, metrics_table()) == doc, "regenerate with: python -m roomserver.metrics"


def test_totals_are_counters_and_counters_are_totals():
    for family in Metrics().registry.collect():
        if family.type == "counter":
            continue  # exposed with _total (prometheus_client adds it to every counter)
        assert not family.name.endswith("_total"), family.name
