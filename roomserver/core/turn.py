"""TURN: time-limited credentials and the ICE servers announced to WHIP/WHEP clients.

coturn (`use-auth-secret` + `static-auth-secret`) checks credentials with the "TURN REST API"
convention every client and TURN server knows: the username is `"<expiry unix>:<user>"` and
the password is `base64(HMAC-SHA1(secret, username))`. coturn recomputes the HMAC and refuses
an expired username, so the server never talks to coturn and a leaked credential dies within
`--turn-ttl-s`.

Clients learn the servers from `Link` headers (RFC 9725 §4.6), one per URL:

    Link: <turn:turn.example.com:3478?transport=udp>; rel="ice-server"; username="1767225600:u1";
          credential="…"; credential-type="password"

Everything here is pure: `now` is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

# turn:host[:port][?transport=udp|tcp], turns:host[:port][?transport=tcp], stun:host[:port]
# (RFC 7064/7065). Hosts are names, IPv4 or [IPv6].
TURN_URL = re.compile(
    r"^(?P<scheme>turns?|stun):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)
_LINK = re.compile(r"^\s*<(?P<url>[^>]*)>\s*;(?P<params>.*)$")
_PARAM = re.compile(r'\s*([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]+))\s*;?')


@dataclass(frozen=True)
class IceServer:
    url: str
    username: str | None = None
    credential: str | None = None


def check_turn_url(url: str) -> str:
    """`url` if it is a TURN/STUN URL we can announce, else ValueError (config parsing)."""
    match = TURN_URL.match(url)
    if match is None:
        raise ValueError(f"not a turn:, turns: or stun: URL (RFC 7065): {url!r}")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"turns: runs over TLS, so over TCP only: {url!r}")
    if match["scheme"] == "stun" and match["transport"] is not None:
        raise ValueError(f"stun: URLs take no transport: {url!r}")
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ValueError(f"bad port in {url!r}")
    return url


def turn_credentials(secret: str, user: str, now: float, ttl_s: int) -> tuple[str, str]:
    """(username, credential) valid until `now + ttl_s` on a coturn with `static-auth-secret`."""
    username = f"{int(now) + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    urls: tuple[str, ...] | list[str], secret: str, user: str, now: float, ttl_s: int
) -> list[IceServer]:
    """The servers a client of `user` is given: TURN URLs with fresh credentials, STUN without."""
    username, credential = turn_credentials(secret, user, now, ttl_s)
    return [
        IceServer(url) if url.startswith("stun:") else IceServer(url, username, credential) for url in urls
    ]


def link_header(server: IceServer) -> str:
    """One RFC 9725 §4.6 `Link` header value (RFC 8288 quoted strings)."""
    value = f'<{server.url}>; rel="ice-server"'
    if server.username is not None and server.credential is not None:
        value += (
            f'; username="{_quoted(server.username)}"; credential="{_quoted(server.credential)}"'
            '; credential-type="password"'
        )
    return value


def parse_link_headers(values: list[str]) -> list[IceServer]:
    """The ICE servers among `Link` header values (clients: the Python SDK, tests). Values
    may hold several comma-separated links; links of other relations are skipped."""
    servers = []
    for value in values:
        for link in _split_links(value):
            match = _LINK.match(link)
            if match is None:
                continue
            params = {
                m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                for m in _PARAM.finditer(match["params"])
            }
            if params.get("rel") != "ice-server":
                continue
            servers.append(
                IceServer(
                    match["url"], _unquoted(params.get("username")), _unquoted(params.get("credential"))
                )
            )
    return servers


def _unquoted(text: str | None) -> str | None:
    return None if text is None else re.sub(r"\\(.)", r"\1", text)


def _quoted(text: str) -> str:
    """An RFC 8288 quoted-string body. User ids are [A-Za-z0-9_.:@-] (auth.USER_ID_RE); anything
    that could break the header line is refused rather than sent."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("control characters cannot go into a Link header")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _split_links(value: str) -> list[str]:
    """Split at commas outside <…> and quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    in_url = in_quote = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quote and char == "\\":
            escaped = True
        elif char == '"' and not in_url:
            in_quote = not in_quote
        elif char == "<" and not in_quote:
            in_url = True
        elif char == ">" and not in_quote:
            in_url = False
        elif char == "," and not in_url and not in_quote:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]
