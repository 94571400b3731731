"""The node announces itself on the bus (``core/nodes.py``): address and load, refreshed
every ``--announce-s``, withdrawn on a clean stop. ``GET /v1/nodes`` lists the live ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from roomserver.background import BackgroundTask
from roomserver.config import Config
from roomserver.core import nodes
from roomserver.node import Node

log = logging.getLogger(__name__)


def advertised_address(config: Config) -> str:
    """Where clients and other nodes reach this node (``--advertise-url`` or host:port)."""
    return config.advertise_url or nodes.default_address(config.host, config.port, socket.gethostname())


class Announcer:
    def __init__(self, node: Node, config: Config, media_viewers: Callable[[], int]) -> None:
        self.node = node
        self.period_s = config.announce_s
        self.ttl_ms = nodes.ttl_ms(config.announce_s)
        self.address = advertised_address(config)
        self.media_viewers = media_viewers
        self.started_at = int(time.time() * 1000)
        self._cpu = (time.monotonic(), time.process_time())
        self._loop_task = BackgroundTask("announce")
        self._failing = False

    def load(self) -> nodes.NodeLoad:
        now = (time.monotonic(), time.process_time())
        cpu, self._cpu = nodes.cpu_cores(self._cpu, now), now
        fanout = self.node.fanout
        return nodes.NodeLoad(
            node=self.node.config.node_id,
            address=self.address,
            sockets=len(fanout.connections),
            rooms=len(fanout.channels),
            media_viewers=self.media_viewers(),
            cpu=cpu,
            draining=self.node.draining,
            started_at=self.started_at,
            announced_at=int(time.time() * 1000),
        )

    async def announce(self) -> None:
        await self.node.broker.announce_node(nodes.encode(self.load()), self.ttl_ms)

    def start(self) -> None:
        if self.period_s > 0:
            self._loop_task.start(self._loop())

    async def stop(self) -> None:
        """Withdraw at once: a node that stops cleanly is not listed until its TTL ends."""
        if not await self._loop_task.stop():
            return
        with contextlib.suppress(Exception):
            await self.node.broker.announce_node(b"", 0)

    async def _loop(self) -> None:
        while True:
            try:
                await self.announce()
                if self._failing:
                    log.info("node announcement written again")
                self._failing = False
            except Exception as exc:  # the bus may be down; BusWatch logs the outage itself
                if not self._failing:
                    log.warning("node announcement failed: %s", exc)
                self._failing = True
            await asyncio.sleep(self.period_s)
