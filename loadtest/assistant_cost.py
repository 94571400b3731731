"""The room assistant's own server CPU per barrage line and per question (issue 18).

``python -m loadtest.assistant_cost [--questions 3000 --repeat 5]``

The A/B of ``assistant_bench`` measures the assistant through the whole server on a
box shared with other work, where the flush cadence and the CPU's contention move a
phase's cost by more than the assistant adds (docs/benchmarks.md). This measures the
assistant's part alone, in one process with a real server (the app of ``roomserver
serve``, the embedded bus and store, the eval catalogue's room): the CPU time of the
whole process (every thread: the behaviour records' and the bus writes' too) for

- ``offer`` of the labelled set's lines (the barrage handler's only call: the room's
  switch and a list append) and the worker's classifier on them, per line;
- ``handle_batch`` of its questions in batches of 10 (the worker's in the bench's storm),
  one asker in 50 as in the bench, with warm caches (the same texts again), the bus
  writes and records included, per question.

Each is repeated ``--repeat`` times; the median is printed with the spread. From them,
the CPU a storm adds: ``rate * offer + rate * questions * handle`` per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from loadtest.assistant_bench import APP, SECRET, _lines, _loadavg
from roomserver.assistant.evaluate import EVAL_DIR
from roomserver.assistant.service import Assistant, Question
from roomserver.assistant.text import is_question, jieba_ready
from roomserver.auth import mint_token
from roomserver.client import RoomClient
from roomserver.config import Config
from roomserver.protocol import now_ms
from roomserver.server import NODE_KEY, create_app

ROOM = "cost-room"


async def _server() -> tuple[TestServer, Any]:
    config = Config(
        apps={APP: SECRET},
        auto_create="any",
        data_dir=tempfile.mkdtemp(prefix="assistant-cost-"),
        rest_rate_per_token=0.0,
        rest_rate_per_ip=0.0,
        assistant="lexical",
    )
    ts = TestServer(create_app(config), host="127.0.0.1")
    await ts.start_server()
    return ts, ts.app[NODE_KEY]


async def measure(questions: int, repeat: int) -> dict[str, Any]:
    await asyncio.to_thread(jieba_ready)
    ts, node = await _server()
    base = str(ts.make_url("")).rstrip("/")
    admin = {"Authorization": "Bearer " + mint_token(APP, SECRET, "admin", "admin")}
    spec = json.loads((EVAL_DIR / "catalog.json").read_text(encoding="utf-8"))
    async with aiohttp.ClientSession() as http:
        for pid in spec["room_products"]:
            async with http.put(f"{base}/v1/products/{pid}", json=spec["products"][pid], headers=admin) as r:
                assert r.status == 200, await r.text()
    host = RoomClient(base, mint_token(APP, SECRET, "host", "host"))
    await host.connect()
    await host.join(ROOM)
    await host.pin_product(ROOM, spec["pinned"])
    await host.request("assistant.set", ROOM, products=spec["room_products"])
    assistant: Assistant = node.assistant
    room = next(r for r in node._docs if r.endswith("/" + ROOM))
    doc = await node.room(room)
    asked, chat = _lines()
    texts = [t for t in asked if is_question(t)]
    lines = asked + chat
    seq = 0

    async def handle_all(n: int) -> None:
        nonlocal seq
        batch: list[Question] = []
        for i in range(n):
            seq += 1
            batch.append(Question(room, f"s{i % 50}", "", texts[i % len(texts)], seq, now_ms()))
            if len(batch) == 10 or i == n - 1:  # a batch of the worker (0.25 s of the bench's storm)
                await assistant.handle_batch(batch)
                batch = []
                await asyncio.sleep(0)  # the server's loop turns: the records' thread
        await asyncio.sleep(0.6)  # the last records

    def offer_all(n: int) -> None:
        user = {"id": "s0", "name": ""}
        for i in range(n):
            assistant.offer(room, doc, user, lines[i % len(lines)], i + 1)
        assistant.take_questions()  # classified as the worker does (not handled here)

    await handle_all(2 * len(texts))  # warm: every text's choice and rendering kept
    per_question, per_line = [], []
    for _ in range(repeat):
        t0 = time.process_time()
        await handle_all(questions)
        per_question.append((time.process_time() - t0) / questions)
        t0 = time.process_time()
        offer_all(10 * questions)
        per_line.append((time.process_time() - t0) / (10 * questions))
    await host.close()
    await ts.close()
    return {
        "handle_ms_per_question": _summary(per_question),
        "offer_us_per_line": _summary(per_line, 1e6),
        "questions_share_of_lines": round(sum(map(is_question, lines)) / len(lines), 3),
        "processed": assistant.processed.total(),
        "dropped": assistant.dropped.total(),
    }


def _summary(values: list[float], scale: float = 1e3) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values) * scale, 4),
        "min": round(min(values) * scale, 4),
        "max": round(max(values) * scale, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0, help="barrage lines/s of the storm")
    parser.add_argument("--share", type=float, default=0.2, help="the storm's share of questions")
    args = parser.parse_args()
    load_before = _loadavg()
    out = asyncio.run(measure(args.questions, args.repeat))
    handle_ms, offer_us = out["handle_ms_per_question"]["median"], out["offer_us_per_line"]["median"]
    out["storm_cpu_ms_per_s"] = round(args.rate * offer_us / 1000 + args.rate * args.share * handle_ms, 2)
    out["params"] = vars(args)
    out["loadavg_before"] = load_before
    out["loadavg_after"] = _loadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
