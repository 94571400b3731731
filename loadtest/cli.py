"""`roomserver-loadtest`: barrage, joinstorm, bare and suite scenarios.

    roomserver-loadtest barrage --viewers 5000 --senders 200 --rate 200 --duration 30 --procs 2
    roomserver-loadtest joinstorm --viewers 5000 --duration 10 --procs 2
    roomserver-loadtest bare --viewers 5000 --rate 200 --duration 30 --procs 2
    roomserver-loadtest suite --viewers 5000 --senders 200 --rate 200 --duration 30 --procs 2
    roomserver-loadtest flashsale --buyers 2000 --stock 1000 --limit 2 --max --inflight 4 --duration 10
    roomserver-loadtest lottery --entrants 100000 --rate 10000 --procs 2
    roomserver-loadtest redpacket --users 10000 --shares 10000 --total-cents 1000000 --rate 5000
    roomserver-loadtest barrage --url http://10.0.0.1:8080 --url http://10.0.0.2:8080 --allow-remote \
        --app shop:SECRET --senders 50 --ramp 0:1000@50,60s:20000@200,120s:20000
    roomserver-loadtest worker --shard 0/2 --start-at 1767000000 --url ... --room r1 --out a  # machine A
    roomserver-loadtest worker --shard 1/2 --start-at 1767000000 --url ... --room r1 --out b  # machine B
    roomserver-loadtest merge a/worker.json b/worker.json --out merged
    roomserver-loadtest barrage --url wss://lb.example:443 --allow-remote --ca-file ca.pem --app shop:SECRET

Without ``--url`` the servers are started here (loopback, free ports, a
generated app key) and stopped at the end. ``--url`` (repeatable, or
comma-separated) names running nodes; viewers and senders go to them round
robin. A ``--url`` that is not this machine needs ``--allow-remote``. Progress goes to stderr once a
second, the JSON result to stdout (and ``--out DIR`` with the PNG plots).
Exit status: 0 when delivery verification passed, 1 when it failed, 2 on a
usage or setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest.ramp import Ramp, load_ramp_file, parse_ramp
from loadtest.runner import Options, Run
from loadtest.targets import RemoteRefused, check_targets, parse_shard, share, split_urls

URL_HELP = "a running node's http://HOST:PORT; repeat (or comma-separate) to spread the load round robin"


def _common(p: argparse.ArgumentParser, *, viewers: int, duration: float) -> None:
    p.add_argument("--viewers", type=int, default=viewers, help="simulated viewer sockets")
    p.add_argument("--duration", type=float, default=duration, help="seconds of barrage (joinstorm: ramp)")
    p.add_argument("--procs", type=int, default=1, help="load-generator worker processes")
    _target_args(p)
    p.add_argument("--room", default=None, help="room id (default: a fresh lt-<hex>)")
    p.add_argument("--flush-ms", type=int, default=50)
    p.add_argument("--frame-budget", type=int, default=None, help="server --frame-budget (default: its own)")
    p.add_argument("--barrage-cap", type=int, default=250, help="the room's barrage cap (msg/s)")
    p.add_argument("--connect-rate", type=float, default=1000.0, help="new sockets per second (all procs)")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=None, help="directory for result.json and PNG plots")
    p.add_argument("--label", default="")
    p.add_argument(
        "--server-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="a `roomserver serve` flag for servers started here (repeatable): --server-flag=--no-analytics",
    )
    p.add_argument(
        "--poll-ms",
        type=int,
        default=200,
        help="plain viewers read their socket this often (0 = on every frame)",
    )


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", action="append", default=None, help=URL_HELP)
    p.add_argument("--app", default=None, metavar="KEY:SECRET", help="the app of --url's tokens")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="--url may name other machines (otherwise loopback only: a typo must not load someone's server)",
    )
    tls = p.add_mutually_exclusive_group()
    tls.add_argument(
        "--ca-file",
        default=None,
        metavar="PEM",
        help="https:// or wss:// targets: trust the CA certificates in this file instead of the system's",
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="https:// or wss:// targets: do not check their certificates (a self-signed test deployment)",
    )


def _ramp_args(p: argparse.ArgumentParser) -> None:
    ramp = p.add_mutually_exclusive_group()
    ramp.add_argument(
        "--ramp",
        default=None,
        metavar="T:VIEWERS[@RATE],...",
        help="viewers and barrage rate over time, linear between points, e.g. 0:100@20,30s:1000@200,60s:1000 "
        "(replaces --viewers, --rate and --duration; docs/deploy.md)",
    )
    ramp.add_argument("--ramp-file", type=Path, default=None, help="the same profile as TOML or JSON")


def _barrage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--senders", type=int, default=20)
    p.add_argument("--rate", type=float, default=50.0, help="barrage messages per second (all senders)")
    p.add_argument("--sample-pct", type=float, default=2.0, help="%% of viewers that decode and time")
    p.add_argument("--servers", type=int, default=1, help="server processes (needs --redis-cluster if > 1)")
    p.add_argument(
        "--redis-cluster",
        default=None,
        help="host:port,... of a cluster, or 'auto' to start a throw-away one",
    )
    p.add_argument(
        "--no-batching", action="store_true", help="server baseline: one frame per event per socket"
    )
    p.add_argument("--verify-timeout", type=float, default=20.0)
    p.add_argument("--max-p99-ms", type=float, default=None, help="also fail when p99 exceeds this")
    p.add_argument("--bare-fault", choices=["", "gap", "dup"], default="", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomserver-loadtest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("barrage", help="viewers + senders in one room; latency and exact delivery")
    _common(b, viewers=200, duration=5.0)
    _barrage_args(b)
    _ramp_args(b)
    w = sub.add_parser(
        "worker",
        help="one machine's share of a barrage run on a deployment (--shard I/N); `merge` joins the results",
    )
    _common(w, viewers=200, duration=5.0)
    _barrage_args(w)
    _ramp_args(w)
    w.add_argument("--shard", required=True, help="I/N: this machine is shard I (from 0) of N")
    w.add_argument(
        "--start-at",
        type=float,
        default=None,
        help="unix time at which every shard starts sending (give all shards the same one)",
    )
    m = sub.add_parser("merge", help="one report from the worker shards' JSON results")
    m.add_argument("results", nargs="+", type=Path, help="each shard's worker.json")
    m.add_argument("--out", type=Path, default=None, help="directory for merged.json and PNG plots")
    j = sub.add_parser("joinstorm", help="N sockets connect and join within --duration seconds")
    _common(j, viewers=1000, duration=10.0)
    bare = sub.add_parser("bare", help="the same viewer load against the bare broadcast server")
    _common(bare, viewers=200, duration=5.0)
    _barrage_args(bare)
    s = sub.add_parser(
        "suite", help="full vs bare vs no-batching (memory), and Redis Cluster x2, side by side"
    )
    _common(s, viewers=200, duration=5.0)
    _barrage_args(s)
    s.add_argument("--skip", default="", help="comma-separated runs to skip: bare,nobatch,redis,joinstorm")
    s.add_argument("--joinstorm-viewers", type=int, default=None)
    _commerce_parsers(sub)
    _media_parser(sub)
    return parser


def _commerce_common(p: argparse.ArgumentParser, *, users_flag: str, users: int, rate: float) -> None:
    p.add_argument(users_flag, dest="users", type=int, default=users, help="users, one socket each")
    rates = p.add_mutually_exclusive_group()
    rates.add_argument("--rate", type=float, default=rate, help="new attempts per second (all users)")
    rates.add_argument(
        "--max", dest="rate", action="store_const", const=0.0, help="no pacing: each answer starts the next"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of load (at most); lottery/redpacket, where each user sends once at --rate: "
        "at most this long after the last send was due",
    )
    p.add_argument("--procs", type=int, default=1, help="load-generator worker processes")
    p.add_argument("--servers", type=int, default=1, help="server processes (needs --redis-cluster if > 1)")
    p.add_argument("--redis-cluster", default=None, help="host:port,... or 'auto' (a throw-away cluster)")
    p.add_argument(
        "--redis-durable-wait-ms",
        dest="durable_wait_ms",
        type=int,
        default=None,
        help="server flag (default: its own)",
    )
    p.add_argument(
        "--frame-budget",
        type=int,
        default=None,
        help="server --frame-budget: frames/s per process (with more processes than cores, divide)",
    )
    _target_args(p)
    p.add_argument("--room", default=None)
    p.add_argument("--connect-rate", type=float, default=1000.0, help="new sockets per second (all procs)")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--retry-timeout", type=float, default=5.0, help="resend an unanswered attempt after s")
    p.add_argument("--event-timeout", type=float, default=30.0, help="wait for events and the audit list")
    p.add_argument("--out", type=Path, default=None, help="directory for the JSON result and PNG plot")
    p.add_argument("--label", default="")


def _commerce_parsers(sub: Any) -> None:
    f = sub.add_parser("flashsale", help="buyers hammer one sale; exact stock, limits, orders listing")
    _commerce_common(f, users_flag="--buyers", users=200, rate=1000.0)
    f.add_argument("--stock", type=int, default=100)
    f.add_argument("--limit", type=int, default=1, help="the sale's limit_per_user")
    f.add_argument("--inflight", type=int, default=1, help="attempts each buyer keeps open (distinct cids)")
    lot = sub.add_parser("lottery", help="entrants enter one lottery; the host draws; audit list")
    _commerce_common(lot, users_flag="--entrants", users=1000, rate=1000.0)
    lot.add_argument("--winners", type=int, default=10)
    rp = sub.add_parser("redpacket", help="users grab one red packet; exact sum, one grab each")
    _commerce_common(rp, users_flag="--users", users=1000, rate=1000.0)
    rp.add_argument("--shares", type=int, default=1000)
    rp.add_argument("--total-cents", type=int, default=100_000)


def _media_parser(sub: Any) -> None:
    from loadtest import media

    media.add_arguments(
        sub.add_parser("media", help="WebRTC viewers of one publisher vs aiortc's MediaRelay")
    )


def commerce_options(args: argparse.Namespace) -> Any:
    from loadtest.commerce import CommerceOptions

    extra = {
        k: getattr(args, k)
        for k in ("stock", "limit", "inflight", "winners", "shares", "total_cents")
        if hasattr(args, k)
    }
    return CommerceOptions(
        scenario=args.cmd,
        users=args.users,
        viewers=args.users,
        rate=args.rate,
        duration=args.duration,
        procs=args.procs,
        servers=args.servers,
        redis_cluster=args.redis_cluster,
        durable_wait_ms=args.durable_wait_ms,
        frame_budget=args.frame_budget,
        url=",".join(split_urls(args.url)) or None,
        allow_remote=args.allow_remote,
        ca_file=args.ca_file,
        insecure=args.insecure,
        app=args.app,
        room=args.room,
        connect_rate=args.connect_rate,
        connect_timeout_s=args.connect_timeout,
        retry_timeout_s=args.retry_timeout,
        event_timeout_s=args.event_timeout,
        label=args.label,
        **extra,
    )


def run_commerce(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from loadtest.commerce import CommerceRun, plot_commerce

    o = commerce_options(args)
    try:
        import uvloop

        result = uvloop.run(CommerceRun(o).execute())
    except ImportError:  # optional speed-up
        result = asyncio.run(CommerceRun(o).execute())
    out.mkdir(parents=True, exist_ok=True)
    result["plots"] = [str(p) for p in plot_commerce(result, out, args.cmd)]
    (out / f"{args.cmd}.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def options_from(args: argparse.Namespace, scenario: str) -> Options:
    o = Options(
        scenario=scenario,
        viewers=args.viewers,
        duration=args.duration,
        procs=args.procs,
        url=",".join(split_urls(args.url)) or None,
        allow_remote=args.allow_remote,
        ca_file=args.ca_file,
        insecure=args.insecure,
        app=args.app,
        room=args.room,
        flush_ms=args.flush_ms,
        frame_budget=args.frame_budget,
        barrage_cap=args.barrage_cap,
        connect_rate=args.connect_rate,
        connect_timeout_s=args.connect_timeout,
        label=args.label,
        poll_ms=args.poll_ms,
        server_flags=tuple(args.server_flag),
    )
    if scenario == "barrage":
        o = replace(
            o,
            senders=args.senders,
            rate=args.rate,
            sample_pct=args.sample_pct,
            servers=args.servers,
            redis_cluster=args.redis_cluster,
            batching=not args.no_batching,
            verify_timeout_s=args.verify_timeout,
            bare_fault=args.bare_fault,
        )
        ramp = _ramp(args)
        if ramp is not None:
            o = replace(
                o, ramp=ramp, viewers=ramp.peak_viewers, duration=ramp.duration_s, rate=ramp.peak_rate
            )
    if getattr(args, "shard", None):
        o = _shard_options(o, parse_shard(args.shard), args.start_at)
    return o


def _ramp(args: argparse.Namespace) -> Ramp | None:
    if getattr(args, "ramp", None):
        return parse_ramp(args.ramp, args.rate)
    if getattr(args, "ramp_file", None):
        return load_ramp_file(args.ramp_file, args.rate)
    return None


def _shard_options(o: Options, shard: tuple[int, int], start_at: float | None) -> Options:
    """Shard ``i`` of ``n``: its part of the viewers, senders and rate (the others run the rest)."""
    i, n = shard
    ramp = o.ramp.share(i, n) if o.ramp else None
    return replace(
        o,
        shard=shard,
        start_at=start_at,
        ramp=ramp,
        viewers=ramp.peak_viewers if ramp else share(o.viewers, i, n),
        senders=max(1, share(o.senders, i, n)),
        rate=ramp.peak_rate if ramp else o.rate / n,
        label=o.label or f"shard {i}/{n}",
    )


def _run(o: Options) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(Run(o).execute())
    except ImportError:  # optional speed-up
        return asyncio.run(Run(o).execute())


def _out_dir(args: argparse.Namespace, scenario: str) -> Path:
    if args.out is not None:
        return args.out
    return Path("/tmp/roomserver-loadtest") / f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario}"


def _write(result: dict[str, Any], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if result.get("series"):
        from loadtest.plots import plot_run

        result["plots"] = [str(p) for p in plot_run(result, out, stem)]
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))


def _check_p99(result: dict[str, Any], limit: float | None) -> None:
    if limit is None:
        return
    p99 = (result.get("latency_ms") or {}).get("p99")
    result["p99_limit_ms"] = limit
    if p99 is None or p99 > limit:
        result["passed"] = False


def suite(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The issue's side-by-side comparisons in one run."""
    if args.url:
        raise ValueError("suite starts its own servers (bare, batching off, Redis Cluster); drop --url")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    base = options_from(args, "barrage")
    plan: list[tuple[str, Options]] = [
        ("full", replace(base, label=f"roomserver memory x1 (flush {base.flush_ms} ms)"))
    ]
    if "bare" not in skip:
        plan.append(("bare", replace(base, target="bare", label="bare aiohttp broadcast")))
    if "nobatch" not in skip:
        plan.append(("nobatch", replace(base, batching=False, label="roomserver, batching off")))
    if "redis" not in skip:
        plan.append(
            (
                "redis",
                replace(
                    base,
                    servers=2,
                    redis_cluster=base.redis_cluster or "auto",
                    label="roomserver redis-cluster x2",
                ),
            )
        )
    runs: dict[str, dict[str, Any]] = {}
    for key, o in plan:
        print(f"== {key}: {o.label}", file=sys.stderr, flush=True)
        try:
            runs[key] = _run(o)
        except Exception as exc:  # one failed variant must not lose the others
            runs[key] = {"label": o.label, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
        _write(runs[key], out, key)
    if "joinstorm" not in skip:
        js = replace(
            options_from(args, "joinstorm"),
            viewers=args.joinstorm_viewers or args.viewers,
            duration=10.0,
            label="join storm",
        )
        print("== joinstorm", file=sys.stderr, flush=True)
        try:
            runs["joinstorm"] = _run(js)
        except Exception as exc:
            runs["joinstorm"] = {"label": js.label, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
        _write(runs["joinstorm"], out, "joinstorm")
    barrage_runs = [r for k, r in runs.items() if k != "joinstorm" and r.get("series")]
    plots: list[str] = []
    if barrage_runs:
        from loadtest.plots import plot_compare

        plots = [str(p) for p in plot_compare(barrage_runs, out, "suite")]
    table = [
        {
            "run": k,
            "label": r.get("label"),
            "passed": r.get("passed"),
            "deliveries_per_s": r.get("deliveries_per_s"),
            "server_cores": r.get("server_cores"),
            "deliveries_per_server_cpu_s": r.get("deliveries_per_server_cpu_s"),
            "sockets": r.get("sockets"),
            "server_cores_each": r.get("server_cores_each"),
            "redis_cores": r.get("redis_cores"),
            "loadgen_cores": r.get("loadgen_cores"),
            "other_tenants_cores": r.get("other_tenants_cores"),
            "p50_ms": (r.get("latency_ms") or {}).get("p50"),
            "p99_ms": (r.get("latency_ms") or {}).get("p99"),
            "max_ms": (r.get("latency_ms") or {}).get("max"),
            "shed": (r.get("sends") or {}).get("shed"),
            "viewers_ok": (r.get("verification") or {}).get("ok"),
            "error": r.get("error"),
        }
        for k, r in runs.items()
        if k != "joinstorm"
    ]
    full, bare = runs.get("full", {}), runs.get("bare", {})
    ratio = None
    if full.get("deliveries_per_server_cpu_s") and bare.get("deliveries_per_server_cpu_s"):
        ratio = round(full["deliveries_per_server_cpu_s"] / bare["deliveries_per_server_cpu_s"], 3)
    must_pass = [r for k, r in runs.items() if k in ("full", "redis")]
    return {
        "scenario": "suite",
        "passed": all(r.get("passed") for r in must_pass),
        "table": table,
        "full_vs_bare_efficiency": ratio,
        "joinstorm": {
            k: runs["joinstorm"].get(k)
            for k in ("passed", "joined", "refused", "all_joined_after_s", "join_ms")
        }
        if "joinstorm" in runs
        else None,
        "plots": plots,
        "runs": runs,
    }


def check_remote(args: argparse.Namespace) -> None:
    """Refuse a remote ``--url`` without ``--allow-remote`` before anything starts."""
    urls = split_urls(getattr(args, "url", None))
    if urls:
        check_targets(urls, allow_remote=getattr(args, "allow_remote", False))


def merge_cmd(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.merge import load, merge

    result = merge(load(args.results))
    out = args.out or _out_dir(args, "merge")
    _write(result, out, "merged")
    print(f"results in {out}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "media":
        from loadtest import media

        return media.cli(args)
    try:
        check_remote(args)
        if args.cmd == "merge":
            result = merge_cmd(args)
            json.dump(result, sys.stdout, indent=2, default=str)
            print()
            return 0 if result.get("passed") else 1
    except (ValueError, OSError) as exc:
        kind = "" if isinstance(exc, RemoteRefused) else f"{type(exc).__name__}: "
        print(f"roomserver-loadtest: {kind}{exc}", file=sys.stderr)
        return 2
    out = _out_dir(args, args.cmd)
    try:
        if args.cmd in ("flashsale", "lottery", "redpacket"):
            result = run_commerce(args, out)
        elif args.cmd == "suite":
            result = suite(args, out)
            (out / "suite.json").write_text(json.dumps(result, indent=2, default=str))
        else:
            scenario = "joinstorm" if args.cmd == "joinstorm" else "barrage"  # worker: a barrage shard
            o = options_from(args, scenario)
            if args.cmd == "bare":
                o = replace(o, target="bare", label=o.label or "bare aiohttp broadcast")
            result = _run(o)
            if scenario == "barrage":
                _check_p99(result, args.max_p99_ms)
            _write(result, out, args.cmd)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"roomserver-loadtest: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"results in {out}", file=sys.stderr)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
