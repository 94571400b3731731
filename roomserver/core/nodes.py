"""What a node announces about itself on the bus, and how the list is read back (pure).

Each node writes its announcement every ``announce_s`` with a TTL of ``ANNOUNCE_PERIODS``
periods, so one lost write does not drop it and a killed node is gone within the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roomserver.core import bus_entry

ANNOUNCE_PERIODS = 3  # the TTL in announcement periods
MAX_INFO_BYTES = 4096
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True, slots=True)
class NodeLoad:
    node: str
    address: str  # where clients and load balancers reach it (--advertise-url)
    sockets: int  # client WebSockets
    rooms: int  # rooms with a socket here
    media_viewers: int  # WHEP sessions
    cpu: float  # cores this process used over the last period (1.0 = one core busy)
    draining: bool
    started_at: int  # unix ms
    announced_at: int  # unix ms, this node's clock


def encode(load: NodeLoad) -> bytes:
    return bus_entry.encode(load)


def decode(node: str, blob: bytes, expires_in_ms: int) -> dict[str, Any] | None:
    """One entry of ``GET /v1/nodes``; None for an entry this version cannot read
    (another version's, or damaged): one bad entry must not hide the others."""
    data = bus_entry.decode_object(blob)
    if data is None:
        return None
    fields = NodeLoad.__dataclass_fields__
    entry = {k: data.get(k) for k in fields}
    entry["node"] = node  # the bus's key is the truth
    entry["expires_in_ms"] = expires_in_ms
    return entry


def cpu_cores(prev: tuple[float, float], now: tuple[float, float]) -> float:
    """Cores used between two (wall s, process CPU s) readings."""
    wall = now[0] - prev[0]
    return round(max(0.0, now[1] - prev[1]) / wall, 3) if wall > 0 else 0.0


def default_address(host: str, port: int, hostname: str) -> str:
    """``http://host:port``, with the machine's name when the node listens on every interface."""
    name = hostname if host in WILDCARD_HOSTS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"http://{name}:{port}"


def ttl_ms(announce_s: float) -> int:
    return int(announce_s * ANNOUNCE_PERIODS * 1000)
