"""deploy/grafana/roomserver.json: a Grafana dashboard whose every query names metrics (and
labels) that a roomserver node exports, so a renamed metric cannot leave a blank panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from roomserver.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "roomserver.json"
# Labels Prometheus adds when it scrapes, and the bucket bound of histograms.
SCRAPE_LABELS = {"instance", "job", "le"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
}


def exported() -> dict[str, set[str]]:
    """Every series name a node exports -> its labels (a child made for each labelled metric)."""
    m = Metrics()
    m.count_op("app", "op", "ok")
    for value in vars(m).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*["x"] * len(value._labelnames))
    names: dict[str, set[str]] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def metric_names(expr: str) -> set[str]:
    """The series an expression selects: identifiers that are not functions (followed by
    ``(``), keywords, label names (in ``{}`` or ``by (...)``), strings or ranges."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    found = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        name, rest = m.group(), e[m.end() :].lstrip()
        if rest.startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        found.add(name)
    return found


def label_names(expr: str) -> set[str]:
    labels = set()
    for block in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", block))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    return labels


def test_the_extractor_finds_metrics_and_not_functions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, instance) (rate(roomserver_flush_seconds_bucket{job=~"$job", '
        'instance=~"a|b"}[$__rate_interval]))) / on (instance) group_left process_open_fds and time()'
    )
    assert metric_names(expr) == {"roomserver_flush_seconds_bucket", "process_open_fds"}
    assert label_names(expr) == {"le", "instance", "job"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_every_query_names_exported_metrics_and_their_labels(dashboard: dict[str, Any]) -> None:
    names = exported()
    seen: set[str] = set()
    for title, expr in queries(dashboard):
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr!r}"
        unknown = used - set(names)
        assert not unknown, f"{title}: {sorted(unknown)} is not exported (docs/metrics.md)"
        allowed = SCRAPE_LABELS.union(*(names[n] for n in used))
        assert label_names(expr) <= allowed, f"{title}: labels {sorted(label_names(expr) - allowed)}"
        seen |= used
    # The dashboard covers the fan-out, ops and process metrics at least.
    for core in ("roomserver_sockets", "roomserver_deliveries_total", "roomserver_ops_total"):
        assert core in seen
    assert "process_cpu_seconds_total" in seen


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "roomserver" and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for _, expr in [(panel["title"], t["expr"]) for t in panel["targets"]]:
            assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, (panel["title"], expr)
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
