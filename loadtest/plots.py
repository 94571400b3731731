"""PNG plots of a run (matplotlib, Agg backend): latency percentiles and delivered rate over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(result: dict[str, Any], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in result.get("series", []) if r.get(key) is not None]
    return [r["t"] for r in rows], [r[key] for r in rows]


def plot_run(result: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Two PNGs for one barrage run; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{result.get('label', stem)}: {_params_line(result)}"
    paths = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key, style in (("p50", "-"), ("p90", "-"), ("p99", "-"), ("max", ":")):
        t, v = _series(result, key)
        if t:
            ax.plot(t, v, style, label=key, marker="." if len(t) < 40 else None)
    ax.set_xlabel("seconds since the barrage started")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    p = out_dir / f"{stem}-latency.png"
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    t, v = _series(result, "deliveries")
    ax.plot(t, [x / 1000 for x in v], marker="." if len(t) < 40 else None)
    ax.set_xlabel("seconds since the barrage started")
    ax.set_ylabel("delivered (thousand messages/s, all sockets)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    t, v = _series(result, "server_cores")
    if t:
        ax2 = ax.twinx()
        ax2.plot(t, v, color="tab:red", alpha=0.7, label="server cores")
        ax2.set_ylabel("server CPU (cores)", color="tab:red")
        ax2.set_ylim(0, max(1.0, max(v) * 1.1))
    p = out_dir / f"{stem}-rate.png"
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


def plot_compare(results: list[dict[str, Any]], out_dir: Path, stem: str) -> list[Path]:
    """Side by side: p99 over time and delivered rate over time, one line per run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for r in results:
        label = r.get("label", "?")
        t, v = _series(r, "p99")
        if t:
            a1.plot(t, v, label=label)
        t, v = _series(r, "deliveries")
        if t:
            a2.plot(t, [x / 1000 for x in v], label=label)
    a1.set_title("p99 end-to-end latency per second (ms)", fontsize=10)
    a1.set_yscale("log")
    a2.set_title("delivered, thousand messages/s", fontsize=10)
    for ax in (a1, a2):
        ax.set_xlabel("seconds since the barrage started")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    p = out_dir / f"{stem}-compare.png"
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [r.get("label", "?") for r in results]
    values = [(r.get("deliveries_per_server_cpu_s") or 0) / 1000 for r in results]
    ax.bar(labels, values)
    ax.set_ylabel("thousand deliveries per server CPU-second")
    ax.set_title("Efficiency: deliveries per server CPU-second", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    p2 = out_dir / f"{stem}-efficiency.png"
    fig.tight_layout()
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return [p, p2]


def _params_line(result: dict[str, Any]) -> str:
    p = result.get("params", {})
    return (
        f"{p.get('viewers')} viewers, {p.get('senders')} senders, {p.get('rate')} msg/s, "
        f"flush {p.get('flush_ms')} ms, target {p.get('target')}"
        + (f", {p.get('servers')} servers redis-cluster" if p.get("redis_cluster") else "")
        + ("" if p.get("batching", True) else ", batching off")
    )


def plot_media(steps: list[dict[str, Any]], path: Path) -> Path:
    """One PNG for a media run: per viewer step, server cores (left) and latency p95 (right),
    one line per server mode (in-process, N workers, MediaRelay)."""
    fig, (ax_cpu, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.5))
    for mode in dict.fromkeys(s["mode"] for s in steps):
        rows = sorted((s for s in steps if s["mode"] == mode and s["viewers"]), key=lambda s: s["viewers"])
        if not rows:
            continue
        viewers = [s["viewers"] for s in rows]
        ax_cpu.plot(viewers, [s["server_cpu_s"] / s["seconds"] for s in rows], marker="o", label=mode)
        ax_lat.plot(viewers, [s["latency_ms_p95"] for s in rows], marker="o", label=f"{mode} steady")
        ax_lat.plot(viewers, [s["latency_all_ms_p95"] for s in rows], ":", marker=".", label=f"{mode} all")
    ax_cpu.set_xlabel("viewers")
    ax_cpu.set_ylabel("server CPU (cores)")
    ax_lat.set_xlabel("viewers")
    ax_lat.set_ylabel("publisher -> viewer latency p95 (ms)")
    ax_lat.axhline(100, color="grey", linestyle="--", linewidth=0.8)
    for ax in (ax_cpu, ax_lat):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_ab_rounds(runs: list[tuple[str, dict[str, Any]]], path: Path, bound: float = 0.95) -> Path:
    """One PNG for ``assistant_paired`` runs: each round's on ÷ off ratio (dots) and the
    run's pooled ratio with its 95 % interval (bar), one column per run; ``bound`` dashed."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(runs)), 4.5))
    for x, (_, summary) in enumerate(runs):
        rounds = summary["round_ratios"]
        ax.plot([x - 0.15] * len(rounds), rounds, "o", color="grey", alpha=0.6, markersize=4)
        lo, hi = summary["pooled_ratio_95"]
        pooled = summary["pooled_ratio"]
        ax.errorbar([x + 0.1], [pooled], yerr=[[pooled - lo], [hi - pooled]], fmt="s", color="C0", capsize=4)
    ax.axhline(bound, color="C3", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(runs)), [label for label, _ in runs], fontsize=8)
    ax.set_ylabel("deliveries per server CPU-s, on ÷ off")
    ax.set_title("assistant A/B: rounds (grey) and pooled ratio with 95 % interval (blue)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def media_runs(runs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The steps of several `media` runs as one run's, each mode prefixed with its run's label
    (``base r1 rtp``), so `plot_media` draws side-by-side runs (an A/B) on one PNG."""
    return [
        {**step, "mode": f"{label} {step['mode'].rsplit('/', 1)[-1]}"}
        for label, run in runs
        for step in run["steps"]
    ]


def main() -> None:
    """``python -m loadtest.plots ab OUT.png LABEL=RUN.jsonl ...``: the plot of
    ``assistant_paired`` runs (the last line of each file is its summary);
    ``python -m loadtest.plots media OUT.png LABEL=RUN.json ...``: `media` runs side by side."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kind", choices=["ab", "media"])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", help="LABEL=FILE.jsonl (ab) or LABEL=FILE.json (media)")
    args = parser.parse_args()
    runs = []
    for spec in args.runs:
        label, _, file = spec.partition("=")
        text = Path(file).read_text().strip()
        runs.append((label, json.loads(text.splitlines()[-1] if args.kind == "ab" else text)))
    print(plot_ab_rounds(runs, args.out) if args.kind == "ab" else plot_media(media_runs(runs), args.out))


if __name__ == "__main__":
    main()
