"""DTLS cipher suites: offer ECDHE-RSA next to aiortc's ECDHE-ECDSA.

aiortc (pinned ==1.16.0) builds every DTLS context in `RTCCertificate._create_ssl_context` and
limits it to ECDHE-ECDSA suites, which only fit its own ECDSA certificates. When the peer is
the DTLS server and holds an RSA certificate (GStreamer webrtcbin's default, OpenSSL-based
stacks, some hardware encoders), the handshake fails with "no shared cipher". We wrap that one
method: call aiortc's, then widen the list to the ECDHE-RSA suites as well. Our own certificate
stays ECDSA, so when we are the DTLS server the ECDSA suites are still the ones chosen.

`install()` is idempotent and process-wide (every RTCPeerConnection, server or client);
`tests/media/test_aiortc_hooks.py` fails if aiortc renames the method or changes its list.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtcdtlstransport import RTCCertificate
from OpenSSL import SSL

# aiortc 1.16.0's list, kept first so the ECDSA preference order is unchanged.
AIORTC_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
)
RSA_CIPHERS = (
    b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
)
CIPHERS = AIORTC_CIPHERS + b":" + RSA_CIPHERS

_original = RTCCertificate._create_ssl_context


def _create_ssl_context(self: RTCCertificate, srtp_profiles: list[Any]) -> SSL.Context:
    ctx = _original(self, srtp_profiles)
    ctx.set_cipher_list(CIPHERS)
    return ctx


def install() -> None:
    """Offer ECDHE-RSA suites in every aiortc DTLS handshake of this process."""
    RTCCertificate._create_ssl_context = _create_ssl_context  # type: ignore[method-assign]


def installed() -> bool:
    return RTCCertificate._create_ssl_context is _create_ssl_context
