"""How fast one endpoint's queue drains: ``python -m tests.webhooks.bench_delivery [N]``.

Queues N webhooks for one endpoint (a local aiohttp receiver) on one Redis node
started for the run, then times their delivery (one at a time, in order, each
logged and acknowledged). Prints deliveries per second."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from roomserver.bus.redis import RedisBroker
from roomserver.core.webhooks import Endpoint
from roomserver.webhooks import Webhooks
from tests.polling import until
from tests.redis_servers import start_standalone
from tests.webhooks.receiver import Receiver

SECRET = "b" * 40


async def main(n: int) -> None:
    node = start_standalone(Path(tempfile.mkdtemp()) / "redis")
    rx = await Receiver(SECRET).up()
    broker = RedisBroker.from_url(node.url, prefix="bench:", op_timeout=10.0)
    hooks = Webhooks(broker, {"app": SECRET}, [Endpoint("app", "ep", rx.url)], node_id="n1", poll_s=0.1)
    try:
        t0 = time.monotonic()
        hooks.start()
        for i in range(n):
            hooks.emit("order.created", "app/r", {"n": i})
        await until(lambda: not hooks._local, 600, "queued on the bus")
        queued = time.monotonic() - t0
        await until(lambda: len(rx.got) == n, 600, "deliveries")
        dt = time.monotonic() - t0
        print(
            f"{n} webhooks on the bus after {queued:.2f} s, delivered after {dt:.2f} s:"
            f" {n / dt:.0f}/s (one endpoint, in order)"
        )
    finally:
        await hooks.stop(0.1)
        await broker.close()
        await rx.down()
        node.kill()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
