"""Cascade: a publisher held by another node, relayed to this node's viewers.

    viewer ─WHEP─► edge node ──(no local publisher; the bus names the origin)──►
        Upstream.offer: the edge's relay peer connection POSTs a recvonly offer to the
        origin's WHEP endpoint (a node-to-node token) ─► the origin's answer
    origin publisher ─► origin MediaRouter ─► (one viewer: the edge) ─► edge relay
        session (a PublisherSession whose pc is the WHEP client) ─► edge viewers

The router (sfu.py) treats the relay like a local publisher (RTP fan-out, NACK cache,
keyframe gating); a viewer's PLI goes to the relay's receiver, which sends it to the
origin, whose viewer sender relays it to the publisher. One relay per (room, publisher)
per node, whatever the number of local viewers; it closes `relay_idle_s` after its last
local viewer left, or when the origin closes its side (the publisher left).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
import msgspec
from yarl import URL

from .errors import NotFound, Unavailable
from .whip import parse_error_body

logger = logging.getLogger(__name__)

SDP = "application/sdp"
UPSTREAM_TIMEOUT_S = 10.0


@dataclass(eq=False)
class Upstream:
    """One publisher on another node and how to play it there (WHEP, RFC 9725)."""

    room: str  # the room's key on this node
    user: str  # the publisher
    role: str
    url: str  # the origin's WHEP endpoint for this publisher
    token: str  # node-to-node bearer token
    http: aiohttp.ClientSession
    location: str | None = None  # the origin's session URL, once created

    async def offer(self, offer_sdp: str, *, layers: tuple[str, ...] | None = None) -> str:
        """POST the relay's offer (its video m-lines naming `layers`, WHEP `?layers=`); the
        origin's answer SDP. A publisher gone there is NotFound (404), anything else
        Unavailable (503): the client may retry."""
        headers = {"Content-Type": SDP, "Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S)
        url = URL(self.url)
        if layers is not None:
            url = url.update_query(layers=",".join(layers))
        try:
            async with self.http.post(url, data=offer_sdp.encode(), headers=headers, timeout=timeout) as r:
                body = await r.text()
                if r.status == 201 and r.headers.get("Location"):
                    self.location = urljoin(self.url, r.headers["Location"])
                    return body
                code, message = parse_error_body(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the room's media origin did not answer: {exc!r}") from None
        if r.status == 404:
            raise NotFound(f"{self.user} is not publishing: {message}")
        raise Unavailable(f"the room's media origin refused to relay ({r.status} {code}: {message})")

    async def close(self) -> None:
        """DELETE the origin's session (best effort: the origin also closes it when the
        relay's DTLS closes or its ICE consent expires)."""
        if self.location is None:
            return
        location, self.location = self.location, None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, RuntimeError):
            async with self.http.delete(
                location,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
            ) as r:
                if r.status not in (200, 404):
                    logger.info("origin answered %s to closing relay %s", r.status, location)


class _UpstreamFields(msgspec.Struct, frozen=True):
    room: str
    user: str
    role: str
    url: str
    token: str


def encode_upstream(upstream: Upstream) -> str:
    """``upstream`` without its HTTP session, as one header value: a media worker pool
    locates the publisher on the bus and hands the worker this, so the worker opens the
    relay itself (workers have no bus). Base64url: room keys and URLs stay header-safe."""
    fields = _UpstreamFields(upstream.room, upstream.user, upstream.role, upstream.url, upstream.token)
    return base64.urlsafe_b64encode(msgspec.json.encode(fields)).decode()


def decode_upstream(value: str, http: aiohttp.ClientSession) -> Upstream:
    """The inverse of ``encode_upstream``; ValueError when it is not one."""
    try:
        f = msgspec.json.decode(base64.urlsafe_b64decode(value.encode()), type=_UpstreamFields)
    except (binascii.Error, UnicodeError, msgspec.DecodeError) as exc:
        raise ValueError(f"not an upstream: {exc}") from None
    return Upstream(f.room, f.user, f.role, f.url, f.token, http)


# (room key, publisher or None for the host) -> the publisher's upstream, or None when
# it is not published on another node. Raises MediaError when that cannot be told.
UpstreamLocator = Callable[[str, str | None], Awaitable[Upstream | None]]

__all__ = ["Upstream", "UpstreamLocator", "decode_upstream", "encode_upstream"]
