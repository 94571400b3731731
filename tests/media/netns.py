"""A network namespace joined to this one by a veth pair, for reachability tests.

    with namespace() as ns:           # ns.outer_ip on our side, ns.inner_ip inside
        ns.command("python", ...)     # argv that runs inside the namespace
        ns.link(up=False)             # the link goes down (from inside), and up again

``label`` and ``net`` keep the namespaces and subnets of different tests apart (the TURN
test and the partition fault test may run at the same time in other processes).

The namespace has no default route: from inside, only `outer_ip` (this side of the veth) is
reachable, and only on what listens on that address. Everything is created with names unique
to this process and removed in `finally` (deleting the namespace deletes its veth end, which
takes the peer with it; the outer end is deleted explicitly if it survived). No other
interface is touched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

IP = "/usr/sbin/ip"


@dataclass(frozen=True)
class Namespace:
    name: str
    outer_if: str
    outer_ip: str
    inner_ip: str
    inner_if: str

    def command(self, *argv: str) -> list[str]:
        return [IP, "netns", "exec", self.name, *argv]

    def link(self, *, up: bool) -> None:
        """Set the namespace's end of the veth up or down: from either side, the other
        becomes unreachable (the outer end loses its carrier but keeps its address, so
        what listens on ``outer_ip`` stays reachable from this namespace)."""
        _ip("netns", "exec", self.name, IP, "link", "set", self.inner_if, "up" if up else "down")


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespace(label: str = "turn", net: int = 213) -> Iterator[Namespace]:
    tag = f"{os.getpid() % 100000}"
    subnet = 16 + os.getpid() % 200  # 10.<net>.<subnet>.0/30, per process
    short = label[0]
    inner_if = f"rs{short}{tag}i"
    ns = Namespace(
        f"rs-{label}-{tag}", f"rs{short}{tag}o", f"10.{net}.{subnet}.1", f"10.{net}.{subnet}.2", inner_if
    )
    try:
        _ip("netns", "add", ns.name)
        _ip("link", "add", ns.outer_if, "type", "veth", "peer", "name", inner_if)
        _ip("link", "set", inner_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.outer_ip}/30", "dev", ns.outer_if)
        _ip("link", "set", ns.outer_if, "up")
        _ip("netns", "exec", ns.name, IP, "addr", "add", f"{ns.inner_ip}/30", "dev", inner_if)
        _ip("netns", "exec", ns.name, IP, "link", "set", inner_if, "up")
        _ip("netns", "exec", ns.name, IP, "link", "set", "lo", "up")
        yield ns
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", ns.name)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", ns.outer_if)  # normally gone with the namespace
