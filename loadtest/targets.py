"""Which servers a run may load: loopback unless ``--allow-remote``; ``--url`` lists; shards.

A target is ``http://`` or ``https://`` (``ws://`` and ``wss://`` name the same servers and are
read as those); ``https``/``wss`` means TLS to every target (loadtest/tls.py), so a run's
targets all use TLS or none does.

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
        out += [rest_base(u.strip().rstrip("/")) for u in v.split(",") if u.strip()]
    return out


def rest_base(url: str) -> str:
    """The base URL of a node's REST API: ``ws(s)://`` read as ``http(s)://``."""
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.lower().startswith(ws):
            return http + url[len(ws) :]
    return url


def uses_tls(urls: list[str]) -> bool:
    """True when the targets are ``https``; ``ValueError`` when some are and some are not."""
    schemes = {urlsplit(u).scheme for u in urls}
    if schemes == {"http", "https"}:
        raise ValueError("--url: give every target with TLS (https://, wss://) or none")
    return schemes == {"https"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(url: str) -> tuple[str, int]:
    """``http(s)://host:port`` → ``(host, port)``; other schemes are refused."""
    parts = urlsplit(rest_base(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url {url}: give a node's http(s)://HOST:PORT (or ws(s)://HOST:PORT)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
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
