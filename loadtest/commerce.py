"""Live-commerce scenarios: ``flashsale``, ``lottery``, ``redpacket`` (parent side).

Reuses the barrage run's machinery (``runner.Run``: servers incl. a throw-away
Redis Cluster, the room, CPU snapshots) with its own workers
(``commerce_worker``: one socket per user). A run, every step bounded:

1. servers, room, a host socket (aiohttp) that creates the sale / packet /
   lottery;
2. ``procs`` workers connect and join their users;
3. window: CPU snapshot, ``go`` (the op at ``rate``/s or ``--max``), one
   progress line a second, wait for every attempt's final answer, snapshot;
4. the scenario's checks (orders listing, audit list, amounts); the run
   fails (exit 1) on any violation.

Definitions (also in the JSON under ``definitions``): see ``DEFINITIONS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import histo
from loadtest.commerce_worker import CommerceConfig, commerce_worker_main
from loadtest.procs import machine
from loadtest.runner import Options, Run, WorkerHandle
from roomserver.auth import mint_token
from roomserver.core.lottery import verify_draw
from roomserver.limits import raise_open_files_limit

DEFINITIONS = {
    "attempt": "one operation with its own client id (sale.buy: a new cid; lottery.enter and "
    "redpacket.grab: once per user); retried with the same cid on unavailable or no answer "
    "within retry_timeout_s (a retry is not a new attempt; an attempt gives up after 6 sends); "
    "rate_limited is sent again with the same cid after retry_after_ms (limited_resends, never "
    "counted toward giving up)",
    "answers_per_s": "replies to attempt requests other than rate_limited (ok, sold_out, limit_reached, "
    "unavailable, ...) divided by load_span_s (first request sent -> last such reply received): "
    "the rate at which the server decided attempts; the issue's 'attempts/s'",
    "latency_ms": "request sent -> its reply received, per request (rate_limited replies excluded, "
    "reported apart)",
    "attempt_ms": "an attempt's first request sent -> its final answer (retries included)",
}


@dataclass
class CommerceOptions(Options):
    users: int = 1000
    rate: float = 1000.0  # attempts per second over all users; 0 = --max
    inflight: int = 1
    stock: int = 1000
    limit: int = 1
    shares: int = 1000
    total_cents: int = 100_000
    winners: int = 10
    retry_timeout_s: float = 5.0
    durable_wait_ms: int | None = None
    event_timeout_s: float = 30.0

    def validate(self) -> None:
        if self.users < 1 or self.procs < 1 or self.duration <= 0 or self.inflight < 1:
            raise ValueError("users, procs, duration and inflight must be positive")
        if self.users > 200_000 or self.duration > 3600:
            raise ValueError("runs are bounded: users <= 200000, duration <= 3600 s")
        if self.servers > 1 and not self.redis_cluster and not self.url:
            raise ValueError("--servers > 1 needs --redis-cluster")
        if self.url and not self.app:
            raise ValueError("--url needs --app KEY:SECRET (to mint tokens)")


class CommerceRun(Run):
    def __init__(self, o: CommerceOptions) -> None:
        super().__init__(o)
        self.o: CommerceOptions = o
        self.outcomes_series: dict[int, Counter[str]] = {}
        self.answers_series: dict[int, int] = {}
        self.worker_errors: list[str] = []

    # -- servers and host ---------------------------------------------------------

    def _server_flags(self, cluster: str | None) -> list[str]:
        if cluster and self.o.durable_wait_ms is not None:
            return ["--redis-durable-wait-ms", str(self.o.durable_wait_ms)]
        return []

    async def _host(self, http: aiohttp.ClientSession) -> Host:
        token = mint_token(self.app_key, self.app_secret, "lt-host", "host", room=self.room, ttl_s=7200)
        ws = await http.ws_connect(f"{self.base_urls[0]}/v1/ws?token={token}", max_msg_size=0)
        host = Host(ws, self.room)
        host.reader = asyncio.get_running_loop().create_task(host.read())
        await host.call("room.join")
        return host

    # -- workers --------------------------------------------------------------------

    def _spawn(self, prefix: str) -> None:
        o = self.o
        first = 0
        for i in range(o.procs):
            share = o.users // o.procs + (1 if i < o.users % o.procs else 0)
            cfg = CommerceConfig(
                index=i,
                users=share,
                first_user=first,
                user_prefix=prefix,
                targets=self.targets,
                room=self.room,
                app_key=self.app_key,
                app_secret=self.app_secret,
                connect_rate=max(1.0, o.connect_rate / o.procs),
                connect_timeout_s=o.connect_timeout_s,
                tls=self.tls,
            )
            first += share
            handle = self._start_worker(i, commerce_worker_main, cfg, "loadtest-commerce")
            handle.inbox["done"] = asyncio.Queue()
            # add_reader made it non-blocking: a big message (the acknowledged orders) must be read whole.
            os.set_blocking(handle.pipe.fileno(), True)

    def _handle_worker_message(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        kind = msg["kind"]
        if kind == "error":
            self.worker_errors.append(f"worker {w.index}: {msg['error']}")
        if kind == "tick" and self.window_start:
            second = int(msg["wall"] - self.window_start)
            self.series.add(second, msg["deliveries"] - w.last["deliveries"], msg.get("hist", b""))
            self.outcomes_series.setdefault(second, Counter()).update(msg.get("outcomes", {}))
            lags = self.series.loadgen_lag_ms
            lags[second] = max(lags.get(second, 0.0), msg.get("lag_ms", 0.0))
        if kind in ("tick", "snap", "ready"):
            w.last.update({k: msg[k] for k in ("joined", "deliveries", "frames", "failed") if k in msg})
        if kind in w.inbox:
            w.inbox[kind].put_nowait(msg)

    async def _connect_users(self, prefix: str, progress: Any) -> float:
        o = self.o
        self._spawn(prefix)
        t0 = time.monotonic()
        deadline = t0 + o.users / o.connect_rate + o.connect_timeout_s + 30
        pending = set(range(len(self.workers)))
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                with contextlib.suppress(asyncio.TimeoutError):
                    await self.workers[i].expect("ready", 1.0)
                    pending.discard(i)
            print(
                f"{o.label or o.scenario}: connecting {self._joined()}/{o.users}", file=sys.stderr, flush=True
            )
        if pending:
            raise RuntimeError(f"workers {sorted(pending)} did not finish connecting")
        return time.monotonic() - t0

    async def _window(self, op: str, params: dict[str, Any], *, once: bool) -> dict[str, Any]:
        """Run the load; returns the merged ``done`` reports and the CPU snapshots."""
        o = self.o
        self.window_start = time.time()
        before = await self._snap()
        for w in self.workers:
            w.send(
                {
                    "cmd": "go",
                    "op": op,
                    "params": params,
                    "rate": o.rate / o.procs if o.rate > 0 else 0,
                    "inflight": o.inflight,
                    "duration": o.duration,
                    "once": once,
                    "retry_timeout_s": o.retry_timeout_s,
                }
            )
        dones: list[dict[str, Any]] = []
        sending = o.duration + (o.users / o.rate if once and o.rate > 0 else 0)
        limit = time.monotonic() + sending + o.retry_timeout_s * 6 + 60
        pending = list(self.workers)
        while pending and time.monotonic() < limit and not self.worker_errors:
            for w in list(pending):
                with contextlib.suppress(asyncio.TimeoutError):
                    dones.append(await w.expect("done", 0.25))
                    pending.remove(w)
            self._parent_tick()
            self._progress()
        if pending:
            raise RuntimeError(f"workers did not finish the load: {self.worker_errors or 'timeout'}")
        after = await self._snap()
        return {"before": before, "after": after, "dones": dones}

    def _progress(self) -> None:
        now = time.time()
        second = int(now - self.window_start) - 1
        if second < 0 or getattr(self, "_shown", -1) == second:
            return
        self._shown = second
        outs = self.outcomes_series.get(second, Counter())
        print(
            f"{self.o.label or self.o.scenario}: t={second}s answers {self.series.deliveries.get(second, 0)}/s "
            f"{dict(outs)}",
            file=sys.stderr,
            flush=True,
        )

    # -- results ----------------------------------------------------------------------

    def _load_summary(self, win: dict[str, Any]) -> dict[str, Any]:
        before, after, dones = win["before"], win["after"], win["dones"]
        outcomes: Counter[str] = Counter()
        for d in dones:
            outcomes.update(d["outcomes"])
        answers = sum(d["answers"] for d in dones)
        # The rate over the seconds in which answers arrived (the window also holds the wait for stragglers).
        busy = [s for s, n in self.series.deliveries.items() if n > 0]
        wall = after["wall"] - before["wall"]
        server_cpu = after["server_cpu"] - before["server_cpu"]
        loadgen_cpu = after["loadgen_cpu"] - before["loadgen_cpu"]
        redis_cpu = after["redis_cpu"] - before["redis_cpu"]
        machine_busy = after["machine_busy"] - before["machine_busy"]
        # The load's span: first request sent -> last answer received, over all workers.
        load_s = max(d["last_answer"] for d in dones) - min(d["first_send"] for d in dones)
        rows = []
        for s in sorted(self.series.deliveries):
            h = self.series.latency.get(s) or histo.new()
            rows.append(
                {
                    "t": s,
                    "answers": self.series.deliveries[s],
                    "outcomes": dict(self.outcomes_series.get(s, {})),
                    "server_cores": self.series.server_cores.get(s),
                    "loadgen_lag_ms": self.series.loadgen_lag_ms.get(s),
                    **{k: v for k, v in histo.summary_ms(h).items() if k != "mean"},
                }
            )
        return {
            "requests": sum(d["requests"] for d in dones),
            "attempts": sum(d["attempts"] for d in dones),
            "answers": answers,
            "retries": sum(d["retries"] for d in dones),
            "limited_resends": sum(d["limited_resends"] for d in dones),
            "gave_up": sum(d["gave_up"] for d in dones),
            "open_attempts": sum(d["open_attempts"] for d in dones),
            "late_replies": sum(d["late_replies"] for d in dones),
            "outcomes": dict(outcomes),
            "load_span_s": round(load_s, 3),
            "answers_per_s": round(answers / load_s) if load_s > 0 else None,
            "last_answer_wall": max(d["last_answer"] for d in dones),
            "answers_per_s_peak_second": max(self.series.deliveries.values(), default=0),
            "busy_seconds": len(busy),
            "latency_ms": histo.summary_ms(histo.merge([d["latency"] for d in dones])),
            "attempt_ms": histo.summary_ms(histo.merge([d["attempt_latency"] for d in dones])),
            "rate_limited_ms": histo.summary_ms(histo.merge([d["limited_latency"] for d in dones])),
            "window_s": round(wall, 3),
            "server_cpu_s": round(server_cpu, 2),
            "server_cores": round(server_cpu / wall, 3) if wall else None,
            "server_cores_each": [
                round((a - b) / wall, 3)
                for a, b in zip(after["server_each"], before["server_each"], strict=True)
            ],
            "server_us_per_answer": round(server_cpu * 1e6 / answers, 1) if answers else None,
            "redis_cores": round(redis_cpu / wall, 3) if wall else None,
            "loadgen_cores": round(loadgen_cpu / wall, 3) if wall else None,
            "machine_busy_cores": round(machine_busy / wall, 3) if wall else None,
            "other_tenants_cores": round((machine_busy - server_cpu - loadgen_cpu - redis_cpu) / wall, 3)
            if wall
            else None,
            "series": rows,
        }

    async def execute(self) -> dict[str, Any]:
        raise_open_files_limit()
        o = self.o
        started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        mach = machine()
        t_begin = time.monotonic()
        host: Host | None = None
        try:
            self._start_servers()
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60), connector=self.http_connector()
            ) as http:
                await self._create_room(http)
                host = await self._host(http)
                scenario = {
                    "flashsale": self._flashsale,
                    "lottery": self._lottery,
                    "redpacket": self._redpacket,
                }
                body = await scenario[o.scenario](http, host)
        finally:
            if host is not None:
                await host.close()
            with contextlib.suppress(Exception):
                self._stop_workers()
            logs = {s.name: s.log_tail(15) for s in self.started}
            self._stop_servers()
        result: dict[str, Any] = {
            "scenario": o.scenario,
            "label": o.label or o.scenario,
            "params": {**asdict(o), "room": self.room, "app": None},
            "definitions": DEFINITIONS,
            "started_at": started_at,
            "machine": mach | {"loadavg_end": list(os.getloadavg())},
            "elapsed_s": round(time.monotonic() - t_begin, 2),
            **body,
        }
        result["passed"] = not result["violations"]
        if not result["passed"]:
            result["server_log_tail"] = logs
        return result

    # -- flash sale ---------------------------------------------------------------------------

    async def _flashsale(self, http: aiohttp.ClientSession, host: Host) -> dict[str, Any]:
        o = self.o
        connect_s = await self._connect_users("b", None)
        product = {"id": "lt-p1", "title": "load test product", "price_cents": 990}
        sale = (
            await host.call(
                "sale.create", product=product, price_cents=990, stock=o.stock, limit_per_user=o.limit
            )
        )["sale"]
        await asyncio.sleep(o.settle_s)
        win = await self._window("sale.buy", {"sale": sale["id"], "qty": 1}, once=False)
        summary = self._load_summary(win)
        await asyncio.sleep(0.5)  # the close follows the last take in the background
        url = f"{self.base_urls[0]}/v1/rooms/{self.room}/sales/{sale['id']}/orders"
        async with http.get(url, headers=self._admin_headers()) as r:
            if r.status != 200:
                raise RuntimeError(f"orders listing: HTTP {r.status} {await r.text()}")
            listing = await r.json()
        acked = [a for d in win["dones"] for a in d["acked"]]
        listed = {x["id"]: x for x in listing["orders"]}
        per_user = Counter(x["user"] for x in listing["orders"])
        acked_ids = {a[1] for a in acked}
        violations: list[str] = []
        demand = min(o.users * o.limit, summary["attempts"])
        sold = listing["sold"]
        if demand >= o.stock and (sold != o.stock or len(listed) != o.stock):
            violations.append(
                f"demand {demand} >= stock {o.stock} but sold {sold}, {len(listed)} orders listed"
            )
        if len(listed) > o.stock or sold > o.stock:
            violations.append(f"oversold: {len(listed)} orders, sold {sold}, stock {o.stock}")
        if listing["problems"]:
            violations.append(f"reconciliation problems: {listing['problems'][:5]}")
        missing = sorted(acked_ids - set(listed))
        if missing:
            violations.append(f"{len(missing)} acknowledged orders not listed, e.g. {missing[:3]}")
        over = {u: n for u, n in per_user.items() if n > o.limit}
        if over:
            violations.append(f"{len(over)} users over the limit {o.limit}, e.g. {list(over.items())[:3]}")
        if summary["open_attempts"] or summary["gave_up"]:
            violations.append(f"{summary['open_attempts']} attempts unanswered, {summary['gave_up']} gave up")
        finals = await self._finals(0.1)
        return {
            "connect_phase_s": round(connect_s, 2),
            **summary,
            "sale": {"id": sale["id"], "stock": o.stock, "limit_per_user": o.limit},
            "verification": {
                "sold": sold,
                "orders_listed": len(listed),
                "orders_acknowledged": len(acked_ids),
                "acknowledged_not_listed": len(missing),
                "listed_not_acknowledged": len(set(listed) - acked_ids),
                "max_orders_per_user": max(per_user.values(), default=0),
                "problems": listing["problems"],
                "demand": demand,
                "sale_state": listing["sale"].get("state"),
                "join_failures": self._merge(finals, "join_failures"),
            },
            "violations": violations,
        }

    async def _watch(self, event: str) -> None:
        """Every socket times its first receipt of ``event`` from now on."""
        for w in self.workers:
            w.send({"cmd": "watch", "event": f'"ev":"{event}"'})
        await asyncio.sleep(0.2)  # the watch reaches the workers before the event can

    # -- lottery ------------------------------------------------------------------------------

    async def _lottery(self, http: aiohttp.ClientSession, host: Host) -> dict[str, Any]:
        o = self.o
        connect_s = await self._connect_users("e", None)
        lot = (
            await host.call(
                "lottery.create", prize="load test prize", winners=o.winners, duration_ms=3_600_000
            )
        )["lottery"]
        await asyncio.sleep(o.settle_s)
        win = await self._window("lottery.enter", {"lottery": lot["id"]}, once=True)
        summary = self._load_summary(win)
        accepted = {a[0] for d in win["dones"] for a in d["acked"]}
        # Close: the host draws. Every socket times the lottery.drawn event from here.
        await self._watch("lottery.drawn")
        t0 = time.time()
        drawn = (await host.call("lottery.draw", lottery=lot["id"]))["lottery"]
        t_reply = time.time() - t0
        # The audit is polled from the draw's reply on, while the host's event travels.
        host_event = asyncio.ensure_future(host.wait_event("lottery.drawn", o.event_timeout_s))
        url = f"{self.base_urls[0]}/v1/rooms/{self.room}/lotteries/{lot['id']}"
        audit: dict[str, Any] = {}
        t_audit = None
        audit_get: dict[str, float] = {}  # the complete GET: sent, headers, body parsed (s after close)
        deadline = time.monotonic() + o.event_timeout_s
        while time.monotonic() < deadline:
            sent = time.time() - t0
            async with http.get(url, headers=self._admin_headers()) as r:
                headers = time.time() - t0
                if r.status == 200:
                    audit = await r.json()
                    if audit.get("state") == "drawn" and audit.get("entrants_count") == len(accepted):
                        t_audit = time.time() - t0
                        audit_get = {"sent": sent, "headers": headers, "parsed": t_audit}
                        break
            await asyncio.sleep(0.01)
        t_host_event = await host_event
        t_host_event = t_host_event - t0 if t_host_event else None
        finals = await self._finals(o.event_timeout_s)
        seen = sum(len(f["watch_times"]) for f in finals)
        alive = sum(f["alive"] for f in finals)
        violations: list[str] = []
        entrants = audit.get("entrants", [])
        if set(entrants) != accepted:
            violations.append(f"audit lists {len(entrants)} entrants, {len(accepted)} entries were accepted")
        if drawn.get("entrants") != len(accepted):
            violations.append(
                f"lottery.drawn says {drawn.get('entrants')} entrants, accepted {len(accepted)}"
            )
        ok = bool(audit) and verify_draw(
            audit.get("seed", ""), audit.get("seed_hash", ""), entrants, audit.get("winners", [])
        )
        if not ok:
            violations.append("verify_draw failed on the audit document")
        if audit.get("seed_hash") != lot["seed_hash"]:
            violations.append("seed_hash changed between create and audit")
        if len(audit.get("winners", [])) != min(o.winners, len(accepted)):
            violations.append(f"{len(audit.get('winners', []))} winners for {o.winners} prizes")
        if t_audit is None:
            violations.append(f"audit list not complete within {o.event_timeout_s}s")
        if seen < alive:
            violations.append(f"lottery.drawn reached {seen} of {alive} entrant sockets")
        if summary["open_attempts"] or summary["gave_up"] or len(accepted) != o.users:
            violations.append(
                f"{len(accepted)}/{o.users} entries accepted ({summary['open_attempts']} open, "
                f"{summary['gave_up']} gave up, outcomes {summary['outcomes']})"
            )
        return {
            "connect_phase_s": round(connect_s, 2),
            **summary,
            "lottery": {"id": lot["id"], "winners": o.winners},
            "close_to_ms": {
                "draw_reply": round(t_reply * 1000, 1),
                "drawn_event_host": round(t_host_event * 1000, 1) if t_host_event else None,
                "drawn_event_entrants": _since(t0, finals),
                "audit_complete": round(t_audit * 1000, 1) if t_audit else None,
                "audit_get": {k: round(v * 1000, 1) for k, v in audit_get.items()},
            },
            "verification": {
                "accepted_entries": len(accepted),
                "audit_entrants": len(entrants),
                "drawn_event_entrants": drawn.get("entrants"),
                "verify_draw": ok,
                "winners": len(audit.get("winners", [])),
                "drawn_event_seen_by": seen,
                "sockets_alive": alive,
                "join_failures": self._merge(finals, "join_failures"),
            },
            "violations": violations,
        }

    # -- red packet ---------------------------------------------------------------------------

    async def _redpacket(self, http: aiohttp.ClientSession, host: Host) -> dict[str, Any]:
        o = self.o
        connect_s = await self._connect_users("g", None)
        packet = (
            await host.call("redpacket.send", total_cents=o.total_cents, count=o.shares, message="load test")
        )["packet"]
        await asyncio.sleep(o.settle_s)
        await self._watch("redpacket.finished")
        t0 = time.time()
        win = await self._window("redpacket.grab", {"packet": packet["id"]}, once=True)
        summary = self._load_summary(win)
        t_host = await host.wait_event("redpacket.finished", o.event_timeout_s)
        finals = await self._finals(o.event_timeout_s)
        grabs = [a for d in win["dones"] for a in d["acked"]]
        per_user = Counter(g[0] for g in grabs)
        amounts = [g[1] for g in grabs if isinstance(g[1], int) and not isinstance(g[1], bool)]
        seen = sum(len(f["watch_times"]) for f in finals)
        alive = sum(f["alive"] for f in finals)
        expected = min(o.users, o.shares)
        violations: list[str] = []
        if len(grabs) != expected:
            violations.append(f"{len(grabs)} grabs for {o.shares} shares and {o.users} users")
        if o.users >= o.shares and sum(amounts) != o.total_cents:
            violations.append(f"amounts sum to {sum(amounts)}, total is {o.total_cents}")
        if len(amounts) != len(grabs):
            violations.append(f"{len(grabs) - len(amounts)} grabs without a known amount")
        if any(a < 1 for a in amounts):
            violations.append("a share below 1 cent")
        if any(n > 1 for n in per_user.values()):
            violations.append("a user grabbed twice")
        if o.users >= o.shares and (t_host is None or seen < alive):
            violations.append(f"redpacket.finished: host {t_host is not None}, {seen}/{alive} user sockets")
        if summary["open_attempts"] or summary["gave_up"]:
            violations.append(f"{summary['open_attempts']} grabs unanswered, {summary['gave_up']} gave up")
        return {
            "connect_phase_s": round(connect_s, 2),
            **summary,
            "packet": {"id": packet["id"], "shares": o.shares, "total_cents": o.total_cents},
            "finished_after_ms": {
                "host": round((t_host - t0) * 1000, 1) if t_host else None,
                "host_after_last_grab_answer": round((t_host - summary["last_answer_wall"]) * 1000, 1)
                if t_host
                else None,
                "users": _since(t0, finals),
            },
            "verification": {
                "grabs": len(grabs),
                "sum_cents": sum(amounts),
                "min_cents": min(amounts, default=None),
                "max_cents": max(amounts, default=None),
                "max_grabs_per_user": max(per_user.values(), default=0),
                "finished_seen_by": seen,
                "sockets_alive": alive,
                "join_failures": self._merge(finals, "join_failures"),
            },
            "violations": violations,
        }

    async def _finals(self, timeout: float) -> list[dict[str, Any]]:
        for w in self.workers:
            w.send({"cmd": "final", "timeout": timeout})
        return [await w.expect("final", timeout + 30) for w in self.workers]

    @staticmethod
    def _merge(finals: list[dict[str, Any]], key: str) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in finals:
            total.update(f.get(key, {}))
        return dict(total)


def _since(t0: float, finals: list[dict[str, Any]]) -> dict[str, Any]:
    """When each socket first saw the watched event, in ms after ``t0`` (HDR summary)."""
    h = histo.new()
    for f in finals:
        for t in f["watch_times"]:
            h.record_value(min(histo.HIGHEST_US, max(1, int((t - t0) * 1e6))))
    return histo.summary_ms(h)


class Host:
    """The host's socket (aiohttp): a few ops and the events it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: str) -> None:
        self.ws = ws
        self.room = room
        self.ids = iter(range(1, 1 << 30))
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[str, float] = {}  # first receipt (wall) per event name
        self.reader: asyncio.Task | None = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.time()
            for m in msg.json():
                if "re" in m:
                    fut = self.replies.pop(m["re"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(m)
                elif "ev" in m:
                    self.events.setdefault(m["ev"], now)

    async def call(self, op: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        rid = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        await self.ws.send_json({"id": rid, "op": op, "room": self.room, **params})
        m = await asyncio.wait_for(fut, timeout)
        if not m.get("ok"):
            raise RuntimeError(f"{op}: {m.get('error')}")
        return m.get("data") or {}

    async def wait_event(self, name: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while name not in self.events and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.events.get(name)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


def plot_commerce(result: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Answers per second (stacked by outcome) and reply latency p50/p99/max per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.get("series", [])
    if not rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    p = result["params"]
    title = (
        f"{result['label']}: {p['users']} users, rate {'max' if p['rate'] <= 0 else p['rate']}, "
        f"in flight {p['inflight']}, {p['servers']} server(s)"
        + (" redis-cluster" if p["redis_cluster"] else "")
    )
    t = [r["t"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
    codes = sorted({c for r in rows for c in r["outcomes"]})
    bottom = [0.0] * len(rows)
    for c in codes:
        v = [r["outcomes"].get(c, 0) / 1000 for r in rows]
        a1.bar(t, v, bottom=bottom, label=c)
        bottom = [b + x for b, x in zip(bottom, v, strict=True)]
    a1.set_xlabel("seconds since the load started")
    a1.set_ylabel("replies (thousand/s)")
    a1.legend(fontsize=8)
    for key in ("p50", "p99", "max"):
        v = [r.get(key) for r in rows]
        a2.plot(t, v, label=key, marker=".")
    a2.set_xlabel("seconds since the load started")
    a2.set_ylabel("request -> reply (ms)")
    a2.set_yscale("log")
    a2.legend(fontsize=8)
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=9)
    path = out_dir / f"{stem}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
