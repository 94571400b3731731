"""The room assistant under a barrage storm (issue 18; figures in docs/benchmarks.md).

``python -m loadtest.assistant_bench [--seconds 8 --rounds 3 --rate 200 --viewers 200]``

One server process (``roomserver serve``, the assistant on, lexical path unless
``--mode hybrid``); one room with the eval catalogue's four products, the jacket
pinned; ``--viewers`` sockets read everything; senders barrage ``--rate`` lines/s,
``--questions`` of them questions from the labelled set (the rest chat lines).
Phases alternate in the same run: the room's assistant on (``assistant.set``), then
off, ``--rounds`` times. Per phase: the server's CPU seconds (/proc), deliveries to
the viewers, deliveries per CPU-s; with the assistant on, question → answer latency
(the asker's send to the asker's receipt of ``assistant.answer``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from roomserver.assistant.evaluate import EVAL_DIR
from roomserver.auth import mint_token
from roomserver.client import RoomClient

APP, SECRET = "bench", "bench-secret-0123456789abcdef0123"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines() -> tuple[list[str], list[str]]:
    questions, chat = [], []
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = 18000 + random.randrange(1000)
    proc = subprocess.Popen(
        [
            sys.executable,
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):  # a busy box takes a while to import the server
                try:
                    async with http.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            admin = {"Authorization": "Bearer " + mint_token(APP, SECRET, "admin", "admin")}
            spec = json.loads((EVAL_DIR / "catalog.json").read_text(encoding="utf-8"))
            for pid in spec["room_products"]:
                async with http.put(
                    f"{base}/v1/products/{pid}", json=spec["products"][pid], headers=admin
                ) as r:
                    assert r.status == 200, await r.text()
            return await _phases(args, base, spec, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _phases(
    args: argparse.Namespace, base: str, spec: dict[str, Any], server_pid: int
) -> dict[str, Any]:
    room = "bench-room"
    host = RoomClient(base, mint_token(APP, SECRET, "host", "host"))
    await host.connect()
    await host.join(room)
    await host.pin_product(room, spec["pinned"])
    await host.request("assistant.set", room, products=spec["room_products"])
    deliveries = 0

    def count(_: Any) -> None:
        nonlocal deliveries
        deliveries += 1

    viewers = []
    for i in range(args.viewers):
        v = RoomClient(base, mint_token(APP, SECRET, f"v{i}"))
        await v.connect()
        await v.join(room)
        v.on("*", count)
        viewers.append(v)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    def answered(ev: dict[str, Any]) -> None:
        t = sent_at.pop(ev["data"].get("question_seq") or -1, None)
        if t is not None and ev["data"]["to"] is not None:
            latencies.append((time.perf_counter() - t) * 1000)

    senders = []
    for i in range(args.senders):
        s = RoomClient(base, mint_token(APP, SECRET, f"s{i}"))
        await s.connect()
        await s.join(room)
        s.on("assistant.answer", answered)
        senders.append(s)
    questions, chat = _lines()
    rng = random.Random(7)
    phases = []
    for rnd in range(args.rounds):
        for on in (True, False):
            await host.request("assistant.set", room, enabled=on)
            latencies.clear()
            sent_at.clear()
            d0, c0 = deliveries, _cpu_s(server_pid)
            t_end = time.perf_counter() + args.seconds
            n = asked = 0
            interval = 1.0 / args.rate
            next_at = time.perf_counter()
            pending: set[asyncio.Task[None]] = set()
            while time.perf_counter() < t_end:
                is_q = rng.random() < args.questions
                text = rng.choice(questions if is_q else chat)
                sender = senders[n % len(senders)]
                n += 1
                asked += is_q

                async def send(s: RoomClient = sender, t: str = text, q: bool = is_q) -> None:
                    at = time.perf_counter()
                    with_seq = await s.send_barrage(room, t)
                    if q and with_seq.get("seq"):
                        sent_at[with_seq["seq"]] = at

                task = asyncio.create_task(send())
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(1.0)  # the phase's last answers and flushes
            cpu = _cpu_s(server_pid) - c0
            got = deliveries - d0
            phases.append(
                {
                    "round": rnd,
                    "assistant": on,
                    "sent": n,
                    "questions": asked,
                    "rate": round(n / args.seconds, 1),
                    "deliveries": got,
                    "server_cpu_s": round(cpu, 2),
                    "deliveries_per_cpu_s": round(got / cpu) if cpu else None,
                    "answers_to_askers": len(latencies),
                    "answer_p50_ms": _pct(latencies, 0.5),
                    "answer_p95_ms": _pct(latencies, 0.95),
                }
            )
            print(json.dumps(phases[-1]), flush=True)
    for c in [host, *viewers, *senders]:
        await c.close()
    on_rate = [p["deliveries_per_cpu_s"] for p in phases if p["assistant"]]
    off_rate = [p["deliveries_per_cpu_s"] for p in phases if not p["assistant"]]
    on_mean, off_mean = sum(on_rate) / len(on_rate), sum(off_rate) / len(off_rate)
    return {
        "phases": phases,
        "deliveries_per_cpu_s_on": round(on_mean),
        "deliveries_per_cpu_s_off": round(off_mean),
        "on_vs_off": round(on_mean / off_mean - 1, 4),
        "answer_p95_ms_worst": max((p["answer_p95_ms"] or 0) for p in phases if p["assistant"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--questions", type=float, default=0.2)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--mode", choices=("lexical", "hybrid"), default="lexical")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in summary.items() if k != "phases"}))


if __name__ == "__main__":
    main()
