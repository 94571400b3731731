"""The bare broadcast server: the stack's limit, for comparison with roomserver.

A minimal aiohttp server that does only the unavoidable part of fan-out: every
``flush_ms`` it encodes the barrage generated in that window ONCE, wraps it in
one WebSocket text frame and writes the same bytes to every socket with
``transport.write``. No auth, no bus, no history, no per-socket state beyond
membership. It speaks just enough of the protocol for the load tester's
viewers: ``room.join`` gets a snapshot reply ``{"room":{"id","seq","epoch"}}``,
events carry ``seq`` and a ``t=<unix ns>`` stamp (the notional send time,
spread evenly over the window like real senders), and ``POST
/v1/rooms/{room}/events`` publishes a marker event (the end of a run).

    python -m loadtest.bare_server --port 8099 --rate 200 --flush-ms 50

``POST /bare/rate {"rate": R}`` changes the generated rate (0 = pause), so the
load tester can start the barrage once every viewer has joined.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import struct
import time

import msgspec
from aiohttp import WSMsgType, web

_encode = msgspec.json.Encoder().encode


def ws_text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Broadcaster:
    def __init__(self, room: str, rate: float, flush_ms: int, fault: str = "") -> None:
        self.room = room
        # Fault injection for the load tester's own tests: "gap" skips one seq,
        # "dup" repeats one event; both must be reported as verification failures.
        self.fault = fault
        self.rate = rate
        self.interval = flush_ms / 1000
        self.seq = 0
        self.members: set[asyncio.Transport] = set()
        self.frames = 0
        self.deliveries = 0
        self._debt = 0.0  # fractional messages owed to the next window
        self._last = time.time_ns()
        self._extra: list[bytes] = []

    def _barrage(self, t_ns: int) -> bytes:
        self.seq += 1
        user = f"s{self.seq % 200}"
        return _encode(
            {
                "seq": self.seq,
                "ev": "barrage",
                "room": self.room,
                "ts": t_ns // 1_000_000,
                "data": {
                    "id": secrets.token_hex(8),
                    "user": {"id": user, "name": user, "tier": 0},
                    "text": f"t={t_ns} lt",
                    "cid": f"c{self.seq}",
                },
            }
        )

    def marker(self, ev: str, data: dict) -> int:
        self.seq += 1
        self._extra.append(
            _encode(
                {
                    "seq": self.seq,
                    "ev": "custom." + ev,
                    "room": self.room,
                    "ts": time.time_ns() // 10**6,
                    "data": data,
                }
            )
        )
        return self.seq

    def flush(self) -> None:
        now = time.time_ns()
        span = now - self._last
        self._last = now
        due = self._debt + self.rate * span / 1e9
        n = int(due)
        self._debt = due - n
        bodies = [self._barrage(now - span + (i + 1) * span // n) for i in range(n)] if n else []
        if self._extra:
            bodies += self._extra
            self._extra = []
        if self.fault and len(bodies) >= 2 and self.seq > 20:
            if self.fault == "gap":
                del bodies[0]
            elif self.fault == "dup":
                bodies.insert(1, bodies[0])
            self.fault = ""
        if not bodies:
            return
        frame = ws_text_frame(b"[" + b",".join(bodies) + b"]")
        for transport in self.members:
            transport.write(frame)
        self.frames += len(self.members)
        self.deliveries += len(self.members) * len(bodies)

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += self.interval
            wait = next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                next_at = time.monotonic()  # slow flush: go again at once, don't pile up
            self.flush()


BROADCASTER = web.AppKey("broadcaster", Broadcaster)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    b = request.app[BROADCASTER]
    ws = web.WebSocketResponse(compress=False, heartbeat=None)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = msgspec.json.decode(msg.data)
            if req.get("op") == "room.join":
                reply = {
                    "re": req.get("id"),
                    "ok": True,
                    "data": {"room": {"id": b.room, "seq": b.seq, "epoch": "bare"}},
                }
                transport.write(ws_text_frame(b"[" + _encode(reply) + b"]"))
                b.members.add(transport)
            elif req.get("id") is not None:
                err = {
                    "re": req["id"],
                    "ok": False,
                    "error": {"code": "bad_request", "message": "bare server"},
                }
                transport.write(ws_text_frame(b"[" + _encode(err) + b"]"))
    finally:
        b.members.discard(transport)
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def stats(request: web.Request) -> web.Response:
    b = request.app[BROADCASTER]
    return web.json_response(
        {"sockets": len(b.members), "seq": b.seq, "frames": b.frames, "deliveries": b.deliveries}
    )


async def set_rate(request: web.Request) -> web.Response:
    b = request.app[BROADCASTER]
    b.rate = float((await request.json())["rate"])
    b._last, b._debt = time.time_ns(), 0.0
    return web.json_response({"rate": b.rate})


async def create_room(request: web.Request) -> web.Response:
    return web.json_response({"room": {"id": request.app[BROADCASTER].room}}, status=201)


async def publish(request: web.Request) -> web.Response:
    body = await request.json()
    seq = request.app[BROADCASTER].marker(str(body.get("ev", "marker")), body.get("data") or {})
    return web.json_response({"seq": seq}, status=201)


def make_app(room: str, rate: float, flush_ms: int, fault: str = "") -> web.Application:
    app = web.Application()
    b = Broadcaster(room, rate, flush_ms, fault)
    app[BROADCASTER] = b
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/bare/stats", stats)
    app.router.add_post("/bare/rate", set_rate)
    app.router.add_get("/v1/ws", ws_handler)
    app.router.add_post("/v1/rooms", create_room)
    app.router.add_post("/v1/rooms/{room}/events", publish)

    async def start(app: web.Application) -> None:
        task = asyncio.get_running_loop().create_task(b.run())
        app.on_cleanup.append(lambda _: _cancel(task))

    app.on_startup.append(start)
    return app


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.bare_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0, help="barrage/s generated (0 = wait for /bare/rate)")
    p.add_argument("--flush-ms", type=int, default=50)
    p.add_argument("--room", default="bare")
    p.add_argument(
        "--fault", choices=["", "gap", "dup"], default="", help="inject one delivery fault (tests)"
    )
    args = p.parse_args(argv)
    from roomserver.limits import raise_open_files_limit

    raise_open_files_limit()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(
        make_app(args.room, args.rate, args.flush_ms, args.fault),
        host=args.host,
        port=args.port,
        print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
