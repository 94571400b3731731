"""Which servers a run may load: loopback unless ``--allow-remote``; ``--url`` lists; shards.

A load tester pointed at someone else's server by a typo is a denial of service, so a
target that is not this machine needs an explicit ``--allow-remote``. Names other than
``localhost`` count as remote (resolving them would let DNS decide).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)


class RemoteRefused(ValueError):
    """A non-loopback target without ``--allow-remote``."""


def split_urls(values: Iterable[str] | str | None) -> list[str]:
    """Repeated ``--url`` values, each possibly comma-separated, as a list of base URLs."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        out += [u.strip().rstrip("/") for u in v.split(",") if u.strip()]
    return out


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(url: str) -> tuple[str, int]:
    """``http://host:port`` → ``(host, port)``; anything but plain http is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"--url {url}: give a node's plain http://HOST:PORT (the load tester speaks no TLS;"
            " behind a TLS proxy, point it at the nodes or the proxy's internal port)"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"--url {url}: bad port") from None
    return parts.hostname, port


def check_targets(urls: list[str], *, allow_remote: bool) -> list[tuple[str, int]]:
    """Every URL's ``(host, port)``; ``RemoteRefused`` for a remote one without ``allow_remote``."""
    targets = [host_port(u) for u in urls]
    if not allow_remote:
        for url, (host, _) in zip(urls, targets, strict=True):
            if not is_loopback(host):
                raise RemoteRefused(
                    f"{url} is not this machine: pass --allow-remote to load a remote deployment"
                )
    return targets


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0-based index of N shards) → ``(I, N)``."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard {text!r}: say I/N, e.g. 0/2 and 1/2 for two machines") from None
    if not sep or n < 1 or not 0 <= i < n or n > 1000:
        raise ValueError(f"--shard {text!r}: I/N with 0 <= I < N <= 1000")
    return i, n


def share(total: int, index: int, count: int) -> int:
    """Shard ``index``'s part of ``total`` items (the first ``total % count`` get one more)."""
    return total // count + (1 if index < total % count else 0)
