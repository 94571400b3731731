"""Ports a test picks before something listens on them.

The kernel hands out ephemeral ports (outgoing connections' source ports) from 32768 up
(net.ipv4.ip_local_port_range): a port there that is free now can be taken by any
outgoing connection before the server binds it. That failed `make cluster`'s test
(session 7) and deploy/local-cluster.sh's (session 13's CI), so every port picked here is
below that range, a Redis cluster bus (port + 10000) included. Binding port 0 would not help: it picks from the same range.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from loadtest.procs import port_bindable

EPHEMERAL_FIRST = 32768
LOWEST = 20000
CLUSTER_BUS_OFFSET = 10000  # Redis listens for its cluster bus on port + 10000


def _usable(port: int, cluster_bus: bool) -> bool:
    return port_bindable(port) and (not cluster_bus or port_bindable(port + CLUSTER_BUS_OFFSET))


def _highest(cluster_bus: bool) -> int:
    return EPHEMERAL_FIRST - (CLUSTER_BUS_OFFSET if cluster_bus else 0)


def free_port_run(n: int, *, cluster_bus: bool = False, avoid: Iterable[int] = ()) -> int:
    """The first of ``n`` consecutive free loopback ports, for a script that listens on
    PORT, PORT+1, … (``make cluster``, deploy/local-cluster.sh), none in ``avoid``."""
    avoided = set(avoid)
    for _ in range(2000):
        first = random.randrange(LOWEST, _highest(cluster_bus) - n)
        run = range(first, first + n)
        if avoided.isdisjoint(run) and all(_usable(p, cluster_bus) for p in run):
            return first
    raise RuntimeError("no free port run")


def free_ports(n: int, *, cluster_bus: bool) -> list[int]:
    """``n`` free loopback ports (and ``port + 10000`` free too for the cluster bus)."""
    ports: list[int] = []
    for _ in range(2000):
        p = random.randrange(LOWEST, _highest(cluster_bus))
        taken = {*ports, *(q + CLUSTER_BUS_OFFSET for q in ports), 6379}
        if p in taken or p + CLUSTER_BUS_OFFSET in taken or not _usable(p, cluster_bus):
            continue
        ports.append(p)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free ports")


def free_port() -> int:
    return free_ports(1, cluster_bus=False)[0]
