"""ICE knobs: which local addresses become host candidates, and which address is advertised.

aiortc gathers host candidates through `aioice.ice.get_host_addresses`, a module function
looked up at call time. Pinning it is the only way to choose the addresses (aiortc's
`RTCConfiguration` has no such option), and it is process-wide: every peer connection in
the process, server or client, gathers on the pinned addresses. That is what we want both
in a media worker (one router per process) and in tests (loopback only, both ends).

`--public-ip` is the 1:1-NAT case (a cloud VM): the server listens on its private address
and the answer advertises the public one, the way mediasoup's `announcedIp` works.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from roomserver.core.turn import IceServer

from . import dtls

_original_get_host_addresses = aioice.ice.get_host_addresses
_pinned: tuple[str, ...] | None = None


def pin_host_addresses(addresses: list[str] | tuple[str, ...]) -> None:
    """Gather host candidates only on `addresses` (e.g. ["127.0.0.1"]), process-wide.

    Idempotent for the same addresses; pinning different ones raises, since two routers in
    one process cannot want different interfaces without one silently losing.
    """
    global _pinned
    wanted = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    if not wanted:
        raise ValueError("at least one ICE host address is needed")
    if _pinned is not None and _pinned != wanted:
        raise ValueError(f"ICE host addresses already pinned to {_pinned}, cannot pin {wanted}")
    _pinned = wanted

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in wanted
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    aioice.ice.get_host_addresses = get_host_addresses


def unpin_host_addresses() -> None:
    """Restore aioice's own interface enumeration (tests and shutdown only)."""
    global _pinned
    _pinned = None
    aioice.ice.get_host_addresses = _original_get_host_addresses


def pinned_host_addresses() -> tuple[str, ...] | None:
    return _pinned


def rtc_configuration(
    ice_servers: Sequence[IceServer] = (), *, relay_only: bool = False, max_bundle: bool = False
) -> RTCConfiguration:
    """Only the given ICE servers (clients: from the WHIP/WHEP `Link` headers), never aiortc's
    default of Google's public STUN server, which a server must not depend on (and which makes
    gathering wait for a timeout where there is no Internet). aiortc uses the first STUN and
    the first TURN URL it is given. `relay_only` is the WebRTC `iceTransportPolicy: "relay"`.
    `max_bundle` puts every m-line on one transport from the start (`bundlePolicy:
    "max-bundle"`): with aiortc's default ("balanced") an offer of audio, video, video left
    the second video on a transport of its own that the answer's BUNDLE never replaced, so
    it received nothing (a node's relay of both quality layers, cascade.py).

    Every peer connection we create (server and clients) is configured here, so this is also
    where the DTLS contexts learn the ECDHE-RSA suites (dtls.py)."""
    dtls.install()
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.url, username=s.username, credential=s.credential) for s in ice_servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE if max_bundle else RTCBundlePolicy.BALANCED,
    )


def advertise_public_ip(sdp: str, public_ip: str) -> str:
    """Rewrite host candidates and connection lines of an answer to `public_ip`."""
    ip = ipaddress.ip_address(public_ip)
    family = "IP4" if ip.version == 4 else "IP6"
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:") and " typ host" in line:
            parts = line.split(" ")
            # foundation component transport priority ADDRESS port typ host ...
            if len(parts) > 5:
                parts[4] = str(ip)
            line = " ".join(parts)
        elif line.startswith("c=IN "):
            line = f"c=IN {family} {ip}"
        out.append(line)
    return "\r\n".join(out)
