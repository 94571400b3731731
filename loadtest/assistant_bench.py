"""The room assistant under a barrage storm (issue 18; figures in docs/benchmarks.md).

``python -m loadtest.assistant_bench [--seconds 8 --rounds 3 --rate 200 --viewers 200 1000 2000]``

One server process (``roomserver serve``, the assistant on, lexical path unless
``--mode hybrid``); one room with the eval catalogue's four products, the jacket
pinned; ``--viewers`` sockets read everything (in ``--viewer-procs`` processes of their
own, one per 500 viewers by default, so the load generator's cost per frame is spread and
measured: ``viewer_cpu_s`` per phase, and ``delivered_share``, the deliveries over the
sent lines times the viewers, which falls below 1 when the viewers do not keep up);
several sizes (``--viewers 200 1000 2000``) run one after the other, each with a server
of its own, and each gives its own A/B; senders barrage ``--rate`` lines/s,
``--questions`` of them questions from the labelled set (the rest chat lines).
Phases alternate in the same run: the room's assistant on and off (``assistant.set``),
``--rounds`` times, in the order on-off, off-on, on-off, … (so a drift of the box's
load over the run does not favour one side: A B B A A B …). Each round gives one
ratio (deliveries per CPU-s on / off); the summary reports their median, mean, spread
and a 95 % t interval of the mean, beside the pooled ratio (all on deliveries / all on
CPU-s over the same for off) with a 95 % bootstrap interval (rounds resampled). The
server's CPU is read from /proc/<pid>/task/*/schedstat (ns), not /proc/<pid>/stat's
10 ms ticks. The load average is recorded per phase and around the run (a shared box). ``--redis-url`` runs the server on a Redis bus (the assistant's
catalogue, feedback and board then live there) instead of the embedded one. Per phase: the server's CPU seconds (/proc), deliveries to
the viewers, deliveries per CPU-s; with the assistant on, question → answer latency
(the asker's send to the asker's receipt of the ``assistant.answer`` naming its
question, whether sent to it or to the room), next to ``barrage.send``'s reply
latency in the same phase (how fast the loaded box serves the barrage itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.procs import free_port, wait_http
from roomserver.assistant.evaluate import EVAL_DIR
from roomserver.auth import mint_token
from roomserver.client import RoomClient
from roomserver.cpu_time import process_cpu_seconds

APP, SECRET = "bench", "bench-secret-0123456789abcdef0123"
ADMIN = {"Authorization": "Bearer " + mint_token(APP, SECRET, "admin", "admin")}


async def _flushes(http: aiohttp.ClientSession, base: str) -> tuple[float, float, float]:
    """The server's room flushes so far and the seconds spent in them (/metrics): the
    fan-out's batching, which a busier loop changes (fewer, larger frames); and the
    seconds its cyclic garbage collector has stood the process still (all generations:
    objects the assistant makes cost collections that walk the whole young heap)."""
    async with http.get(base + "/metrics") as r:
        text = await r.text()
    count = total = gc_s = 0.0
    for line in text.splitlines():
        if line.startswith("roomserver_flush_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith("roomserver_flush_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("roomserver_gc_pause_seconds_sum"):
            gc_s += float(line.split()[-1])
    return count, total, gc_s


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _lines() -> tuple[list[str], list[str]]:
    questions: list[str] = []
    chat: list[str] = []
    for line in (EVAL_DIR / "questions.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, text = line.split("\t", 1)
            (chat if label == "chat" else questions).append(text)
    return questions, chat


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * p))], 1)


async def paced_lines(
    args: argparse.Namespace,
    rng: random.Random,
    questions: list[str],
    chat: list[str],
    send: Callable[[int, str, bool], Awaitable[None]],
) -> tuple[int, int]:
    """``args.rate`` lines a second for ``args.seconds``, a share ``args.questions`` of them
    questions, each handed to ``send(index, text, is_question)`` on a fixed schedule (a
    late send shortens the next wait); how many lines were sent, and how many questions."""
    t_end = time.perf_counter() + args.seconds
    n = asked = 0
    interval = 1.0 / args.rate
    next_at = time.perf_counter()
    while time.perf_counter() < t_end:
        is_q = rng.random() < args.questions
        text = rng.choice(questions if is_q else chat)
        await send(n, text, is_q)
        n += 1
        asked += is_q
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return n, asked


def phase_record(
    rnd: int,
    assistant: bool,
    *,
    sent: int,
    asked: int,
    seconds: float,
    deliveries: float,
    cpu: float,
    viewer_cpu: float,
    viewer_procs: int,
    viewers: int,
    flushes: tuple[tuple[float, float, float], tuple[float, float, float]],
    latencies: list[float],
    replies: list[float],
    server: str | None = None,
    client_cpu: float | None = None,
) -> dict[str, Any]:
    """One phase's line of results, shared by this bench and ``assistant_paired``.

    ``flushes`` is ``_flushes`` before and after the phase; ``server`` names the side
    in the paired run; ``client_cpu`` is this process's CPU, which only the one-server
    bench records."""
    got, (f0, f1) = deliveries, flushes
    return {
        "round": rnd,
        **({"server": server} if server is not None else {}),
        "assistant": assistant,
        "sent": sent,
        "questions": asked,
        "rate": round(sent / seconds, 1),
        "deliveries": got,
        "server_cpu_s": round(cpu, 4),
        "deliveries_per_cpu_s": round(got / cpu, 1) if cpu else None,
        "server_cpu_us_per_delivery": round(cpu * 1e6 / got, 3) if got else None,
        **({"client_cpu_s": round(client_cpu, 2)} if client_cpu is not None else {}),
        # the viewer processes' CPU, and their busiest share of a core over the
        # phase: near 1 a viewer process is the bottleneck, not the server
        "viewer_cpu_s": round(viewer_cpu, 2),
        "viewer_core_share": round(viewer_cpu / viewer_procs / (seconds + 1.0), 2),
        "delivered_share": round(got / (sent * viewers), 4) if sent and viewers else None,
        "flushes": int(f1[0] - f0[0]),
        "flush_cpu_s": round(f1[1] - f0[1], 3),
        "gc_s": round(f1[2] - f0[2], 3),
        "loadavg": _loadavg(),
        "answers_to_askers": len(latencies),
        "answer_p50_ms": _pct(latencies, 0.5),
        "answer_p95_ms": _pct(latencies, 0.95),
        "barrage_reply_p95_ms": _pct(replies, 0.95),
    }


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """A ``roomserver serve`` process of the bench's settings, and its base URL."""
    port = free_port()
    # --profile: the server runs under cProfile and writes its profile on exit.
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    proc = subprocess.Popen(
        [
            sys.executable,
            *profile,
            "-m",
            "roomserver.cli",
            "serve",
            "--port",
            str(port),
            "--app",
            f"{APP}:{SECRET}",
            "--assistant",
            args.mode,
            "--max-connections-per-ip",
            "0",
            "--barrage-cap",
            "100000",
            *(["--redis-url", args.redis_url, "--redis-prefix", f"bench-{port}:"] if args.redis_url else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def set_up_catalogue(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Wait for the server, put the eval catalogue's room products; the catalogue spec."""
    # A busy box takes a while to import the server.
    await asyncio.to_thread(wait_http, base + "/readyz", 120, proc)
    spec: dict[str, Any] = json.loads((EVAL_DIR / "catalog.json").read_text(encoding="utf-8"))
    for pid in spec["room_products"]:
        async with http.put(f"{base}/v1/products/{pid}", json=spec["products"][pid], headers=ADMIN) as r:
            assert r.status == 200, await r.text()
    return spec


async def assistant_stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/v1/rooms/bench-room/assistant/stats", headers=ADMIN) as r:
        stats = await r.json()
    return {k: stats[k] for k in ("asked", "answered", "unanswered", "process")}


async def run(args: argparse.Namespace, viewers: int) -> dict[str, Any]:
    """One audience size: its own server, the A/B phases."""
    proc, base = start_server(args)
    try:
        async with aiohttp.ClientSession() as http:
            spec = await set_up_catalogue(http, base, proc)
            summary = await _phases(args, viewers, base, spec, proc.pid)
            summary["stats"] = await assistant_stats(http, base)
            return summary
    finally:
        stop_server(proc)


class _Sender:
    """One asker's raw socket: barrage out, replies (for the seq) and answers in."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, latencies: list[float], replies: list[float]
    ) -> None:
        self.ws = ws
        self.replies = replies  # barrage.send's reply latency: the room's own pace, for comparison
        self.ids = 0
        self.waiting: dict[int, tuple[float, bool]] = {}
        self.asked: dict[int, float] = {}  # question seq -> send time
        self.latencies = latencies

    async def send(self, room: str, text: str, question: bool) -> None:
        self.ids += 1
        self.waiting[self.ids] = (time.perf_counter(), question)
        await self.ws.send_str(json.dumps({"id": self.ids, "op": "barrage.send", "room": room, "text": text}))

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.data
            if '"re":' not in data and "assistant.answer" not in data:
                continue  # the room's broadcast: the viewers count it
            for m in json.loads(data):
                if "re" in m:
                    sent, question = self.waiting.pop(m["re"], (0.0, False))
                    if sent:
                        self.replies.append((time.perf_counter() - sent) * 1000)
                    seq = (m.get("data") or {}).get("seq")
                    if question and seq:
                        self.asked[seq] = sent
                elif m.get("ev") == "assistant.answer":  # to this asker, or to the room for it
                    asked_at = self.asked.pop(m["data"]["question_seq"], None)
                    if asked_at is not None:
                        self.latencies.append((time.perf_counter() - asked_at) * 1000)


async def _viewer(ws: aiohttp.ClientWebSocketResponse, counts: Any, slot: int) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            counts[slot] += msg.data.count('"ev":')


def _viewers_main(base: str, room: str, first: int, n: int, counts: Any, slot: int, ready: Any) -> None:
    """A viewer process: ``n`` sockets that read everything; its deliveries so far in
    ``counts[slot]`` (shared memory, written only by this process)."""

    async def main() -> None:
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sockets = [await _join(http, base, f"v{i}", room) for i in range(first, first + n)]
        readers = [asyncio.create_task(_viewer(ws, counts, slot)) for ws in sockets]
        ready.set()
        await asyncio.gather(*readers)

    asyncio.run(main())


def _start_viewers(
    base: str, room: str, viewers: int, procs: int
) -> tuple[list[multiprocessing.process.BaseProcess], Any]:
    """``viewers`` sockets over ``procs`` processes (spawned: no copy of this loop)."""
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.RawArray("q", procs)
    started = []
    for k in range(procs):
        first, n = k * viewers // procs, (k + 1) * viewers // procs - k * viewers // procs
        ready = ctx.Event()
        p = ctx.Process(target=_viewers_main, args=(base, room, first, n, counts, k, ready), daemon=True)
        p.start()
        started.append((p, ready))
    for p, ready in started:
        while not ready.wait(0.5):
            if not p.is_alive():
                raise RuntimeError(f"a viewer process ended (exit code {p.exitcode}) before its joins")
    return [p for p, _ in started], counts


async def _join(
    http: aiohttp.ClientSession, base: str, user: str, room: str
) -> aiohttp.ClientWebSocketResponse:
    tok = mint_token(APP, SECRET, user)
    ws = await http.ws_connect(f"{base}/v1/ws?token={tok}", max_msg_size=0)
    await ws.send_str(json.dumps({"id": 0, "op": "room.join", "room": room}))
    while True:  # until the join's reply
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"{user}: {msg.type!r} {msg.data!r} {msg.extra!r} before the join reply")
        if '"re":0' in msg.data:
            return ws


async def _phases(
    args: argparse.Namespace, viewers: int, base: str, spec: dict[str, Any], server_pid: int
) -> dict[str, Any]:
    room = "bench-room"
    host = RoomClient(base, mint_token(APP, SECRET, "host", "host"))
    await host.connect()
    await host.join(room)
    await host.pin_product(room, spec["pinned"])
    await host.request("assistant.set", room, products=spec["room_products"])
    procs = args.viewer_procs or max(1, math.ceil(viewers / 500))
    viewer_procs, counts = await asyncio.to_thread(_start_viewers, base, room, viewers, procs)
    try:
        return await _measure(args, viewers, room, host, viewer_procs, counts, server_pid, base)
    finally:
        for p in viewer_procs:
            p.terminate()
            p.join(10)
        await host.close()


async def _measure(
    args: argparse.Namespace,
    viewers: int,
    room: str,
    host: RoomClient,
    viewer_procs: list[multiprocessing.process.BaseProcess],
    counts: Any,
    server_pid: int,
    base: str,
) -> dict[str, Any]:
    latencies: list[float] = []
    replies: list[float] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # one connection per socket
    readers = []
    senders = []
    for i in range(args.senders):
        sender = _Sender(await _join(http, base, f"s{i}", room), latencies, replies)
        readers.append(asyncio.create_task(sender.read()))
        senders.append(sender)
    print(
        f"{viewers} viewers ({len(viewer_procs)} processes) and {args.senders} senders joined",
        file=sys.stderr,
        flush=True,
    )
    questions, chat = _lines()
    rng = random.Random(7)
    phases = []
    for rnd in range(args.rounds):
        for on in [on for on in ((True, False) if rnd % 2 == 0 else (False, True)) if on in args.sides]:
            await host.request("assistant.set", room, enabled=on)
            await asyncio.sleep(0.5)
            latencies.clear()
            replies.clear()
            f0 = await _flushes(http, base)
            v0 = sum(process_cpu_seconds(p.pid or 0) for p in viewer_procs)
            d0, c0, k0 = sum(counts), process_cpu_seconds(server_pid), time.process_time()

            async def send(i: int, text: str, is_q: bool) -> None:
                await senders[i % len(senders)].send(room, text, is_q)

            n, asked = await paced_lines(args, rng, questions, chat, send)
            await asyncio.sleep(1.0)  # the phase's last answers and flushes
            cpu = process_cpu_seconds(server_pid) - c0
            client_cpu = time.process_time() - k0
            viewer_cpu = sum(process_cpu_seconds(p.pid or 0) for p in viewer_procs) - v0
            f1 = await _flushes(http, base)
            got = sum(counts) - d0
            phases.append(
                phase_record(
                    rnd,
                    on,
                    sent=n,
                    asked=asked,
                    seconds=args.seconds,
                    deliveries=got,
                    cpu=cpu,
                    client_cpu=client_cpu,
                    viewer_cpu=viewer_cpu,
                    viewer_procs=len(viewer_procs),
                    viewers=viewers,
                    flushes=(f0, f1),
                    latencies=latencies,
                    replies=replies,
                )
            )
            print(json.dumps(phases[-1]), flush=True)
    for t in readers:
        t.cancel()
    await http.close()
    return {
        "viewers": viewers,
        "viewer_procs": len(viewer_procs),
        "phases": phases,
        **(ab_summary(phases) if len(args.sides) == 2 else {}),
        "answer_p95_ms_worst": max(
            ((p["answer_p95_ms"] or 0) for p in phases if p["assistant"]), default=None
        ),
        "stats": None,
    }


def ab_summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The A/B: per round, deliveries per CPU-s with the assistant on over off."""
    on = {p["round"]: p for p in phases if p["assistant"]}
    off = {p["round"]: p for p in phases if not p["assistant"]}
    ratios = [
        on[r]["deliveries_per_cpu_s"] / off[r]["deliveries_per_cpu_s"]
        for r in sorted(on)
        if r in off and on[r]["deliveries_per_cpu_s"] and off[r]["deliveries_per_cpu_s"]
    ]

    def pooled(side: dict[int, dict[str, Any]]) -> float:
        return sum(p["deliveries"] for p in side.values()) / sum(p["server_cpu_s"] for p in side.values())

    mean = statistics.fmean(ratios)
    sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    half = _t975(len(ratios) - 1) * sd / len(ratios) ** 0.5  # Student's t over the rounds
    rounds = [r for r in sorted(on) if r in off]
    return {
        "deliveries_per_cpu_s_on": round(pooled(on)),
        "deliveries_per_cpu_s_off": round(pooled(off)),
        "on_vs_off": round(pooled(on) / pooled(off) - 1, 4),
        "pooled_ratio": round(pooled(on) / pooled(off), 4),
        "pooled_ratio_95": _bootstrap(on, off, rounds),
        "round_ratios": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_mean": round(mean, 3),
        "ratio_sd": round(sd, 3),
        "ratio_mean_95": [round(mean - half, 3), round(mean + half, 3)],
        **({"cadence_adjusted": adj} if (adj := cadence_adjusted(phases)) else {}),
    }


def cadence_adjusted(phases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The A/B at equal flush counts. A server the box starves of CPU flushes late, so
    it writes fewer, fuller frames and spends less CPU per delivery: on a shared box
    a phase's flush count moves its deliveries per CPU-s whichever side it is. Least
    squares of the phases' server CPU on their flushes and the assistant's switch
    (cpu = a + b * flushes + g * on) gives g, the assistant's extra CPU per phase at
    the same cadence, with a 95 % t interval; the ratio is then the on phases'
    deliveries per CPU-s over the off phases' with their CPU put at the on phases'
    cadence: (D_on / C_on) / (D_off / (C_on - g))."""
    if len(phases) < 4 or any("flushes" not in p for p in phases):
        return None
    y = [p["server_cpu_s"] for p in phases]
    f = [float(p["flushes"]) for p in phases]
    on = [1.0 if p["assistant"] else 0.0 for p in phases]
    if len(set(f)) < 2 or len(set(on)) < 2:
        return None

    def residual(v: list[float]) -> list[float]:  # v less its fit on the flush count
        fit = statistics.linear_regression(f, v)
        return [vi - (fit.intercept + fit.slope * fi) for vi, fi in zip(v, f, strict=True)]

    ry, ron = residual(y), residual(on)
    sxx = sum(r * r for r in ron)
    if sxx < 1e-9:  # the flush counts alone tell the sides apart: no fit (a short run)
        return None
    g = sum(a * b for a, b in zip(ry, ron, strict=True)) / sxx
    rss = sum((a - g * b) ** 2 for a, b in zip(ry, ron, strict=True))
    half = _t975(len(phases) - 3) * (rss / (len(phases) - 3) / sxx) ** 0.5
    d_on = sum(p["deliveries"] for p in phases if p["assistant"])
    d_off = sum(p["deliveries"] for p in phases if not p["assistant"])
    c_on = sum(p["server_cpu_s"] for p in phases if p["assistant"])
    n_on = sum(on)

    def ratio(extra: float) -> float | None:  # extra: the assistant's CPU per phase
        rest = c_on - extra * n_on
        return round((d_on / c_on) / (d_off / rest), 4) if rest > 0 and c_on > 0 and d_off else None

    return {
        "extra_server_cpu_s_per_phase": round(g, 4),
        "extra_server_cpu_s_per_phase_95": [round(g - half, 4), round(g + half, 4)],
        "ratio": ratio(g),
        "ratio_95": [ratio(g + half), ratio(g - half)],
        "flushes_on_mean": round(statistics.fmean(fi for fi, o in zip(f, on, strict=True) if o), 1),
        "flushes_off_mean": round(statistics.fmean(fi for fi, o in zip(f, on, strict=True) if not o), 1),
    }


def _t975(df: int) -> float:
    """Student's t 97.5 % quantile (two-sided 95 %) for small ``df``."""
    table = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    table |= {10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 20: 2.086, 30: 2.042}
    if df <= 0:
        return float("nan")
    return table.get(df) or next((v for k, v in sorted(table.items()) if k >= df), 1.96)


def _bootstrap(
    on: dict[int, dict[str, Any]], off: dict[int, dict[str, Any]], rounds: list[int], n: int = 4000
) -> list[float] | None:
    """A 95 % percentile-bootstrap interval of the pooled ratio, resampling whole rounds
    (a round's on and off phases ran back to back and share the box's load)."""
    if len(rounds) < 2:
        return None
    rng = random.Random(1)
    ratios = []
    for _ in range(n):
        pick = [rng.choice(rounds) for _ in rounds]
        d_on = sum(on[r]["deliveries"] for r in pick) / sum(on[r]["server_cpu_s"] for r in pick)
        d_off = sum(off[r]["deliveries"] for r in pick) / sum(off[r]["server_cpu_s"] for r in pick)
        ratios.append(d_on / d_off)
    ratios.sort()
    return [round(ratios[int(0.025 * n)], 4), round(ratios[int(0.975 * n) - 1], 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--questions", type=float, default=0.2)
    parser.add_argument(
        "--viewers", type=int, nargs="+", default=[200], help="audience sizes, one A/B each (a sweep)"
    )
    parser.add_argument("--viewer-procs", type=int, default=0, help="viewer processes (0: one per 500)")
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--mode", choices=("lexical", "hybrid"), default="lexical")
    parser.add_argument(
        "--redis-url", default="", help="run the server on this Redis (default: embedded bus)"
    )
    parser.add_argument("--profile", default="", help="run the server under cProfile, writing here")
    parser.add_argument(
        "--only",
        choices=("on", "off"),
        help="run only the phases with the assistant on (or off): with --profile, one side's profile",
    )
    args = parser.parse_args()
    args.sides = (True, False) if args.only is None else (args.only == "on",)
    params = {k: v for k, v in vars(args).items() if k not in ("profile", "sides")}
    sizes = []
    for viewers in args.viewers:  # each size its own server: no state carried over
        load_before = _loadavg()
        summary = asyncio.run(run(args, viewers))
        summary["params"] = params
        summary["loadavg_before"], summary["loadavg_after"] = load_before, _loadavg()
        print(json.dumps({k: v for k, v in summary.items() if k != "phases"}), flush=True)
        sizes.append(summary)
    if len(sizes) > 1:  # the sweep at a glance
        keys = ("viewers", "pooled_ratio", "pooled_ratio_95", "loadavg_before", "loadavg_after")
        print(json.dumps({"sweep": [{k: s.get(k) for k in keys} for s in sizes], "params": params}))


if __name__ == "__main__":
    main()
