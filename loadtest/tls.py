"""TLS to the targets: ``https://``/``wss://`` URLs, trusted through the system's CAs, a CA file
(``--ca-file``, e.g. a deployment's own or a self-signed certificate) or not checked at all
(``--insecure``, for a self-signed test deployment: the traffic is still encrypted).

Settings cross to the worker processes as this picklable dataclass; each process builds its
``ssl.SSLContext`` once (a context is not picklable, and one per socket would cost a CA load
per connection).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """A client context: verifies against ``ca_file`` (or the system's CAs), or nothing
        when ``insecure``. Raises ``ValueError`` for a CA file that cannot be read."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--ca-file {self.ca_file}: {exc}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def connect_kwargs(ctx: ssl.SSLContext | None, host: str) -> dict[str, Any]:
    """``create_connection``'s TLS arguments for one target (none without TLS)."""
    return {"ssl": ctx, "server_hostname": host} if ctx is not None else {}
