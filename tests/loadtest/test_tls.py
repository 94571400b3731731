"""The load tester against a deployment behind TLS (https:// and wss:// targets).

`roomserver serve` speaks plain HTTP: a deployment terminates TLS in front of the nodes (the load
balancer, deploy/haproxy.cfg). Here a TLS-terminating proxy with a self-signed certificate (a
thread of this test) forwards to a real `roomserver serve`; the load tester trusts it with
``--ca-file``, or checks nothing with ``--insecure``, and refuses it otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.coturn import self_signed
from tests.loadtest import cli_run
from tests.server_procs import APP, SECRET, ServerProcess

APP_ARG = f"{APP}:{SECRET}"
SMALL = ("--viewers", "30", "--senders", "3", "--rate", "15", "--duration", "3", "--procs", "1")


class TlsProxy:
    """TLS on ``port`` in front of ``backend``'s plain HTTP, on its own event loop thread;
    counts the TLS connections it accepted."""

    def __init__(self, cert: Path, key: Path, backend: tuple[str, int]) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.backend = backend
        self.accepted = 0
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, b_writer), self._pipe(b_reader, writer))

    def start(self) -> int:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx), self.loop
        )
        self.server = started.result(10)
        return self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def behind_tls(tmp_path: Path) -> Iterator[tuple[int, Path, TlsProxy]]:
    """(TLS port, its CA file, the proxy) in front of a running node."""
    node = ServerProcess("--flush-ms", "20", log_dir=tmp_path).start()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed("127.0.0.1", cert, key)
    proxy = TlsProxy(cert, key, ("127.0.0.1", node.port))
    try:
        yield proxy.start(), cert, proxy
    finally:
        proxy.stop()
        node.stop()


def test_https_and_wss_targets_trusted_with_a_ca_file(tmp_path: Path, behind_tls) -> None:
    port, ca_file, proxy = behind_tls
    code, result = cli_run.run_cli(
        "barrage",
        *("--url", f"https://127.0.0.1:{port}", "--url", f"wss://127.0.0.1:{port}/"),
        *("--app", APP_ARG, "--ca-file", str(ca_file), *SMALL),
        out=tmp_path / "out",
        timeout=240,
    )
    assert code == 0 and result["passed"], result.get("verification", result)
    assert result["deliveries"] > 0
    # Every viewer and sender socket and the REST calls went through the TLS proxy.
    assert proxy.accepted >= 30 + 3 + 1


def test_insecure_accepts_a_self_signed_target(tmp_path: Path, behind_tls) -> None:
    port, _, proxy = behind_tls
    code, result = cli_run.run_cli(
        "barrage",
        *("--url", f"https://127.0.0.1:{port}", "--app", APP_ARG, "--insecure", *SMALL),
        out=tmp_path / "out",
        timeout=240,
    )
    assert code == 0 and result["passed"], result.get("verification", result)
    assert proxy.accepted >= 30 + 3 + 1


def run_refused(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "barrage", *args, *SMALL, "--out", str(tmp_path / "out")],
        cwd=cli_run.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stderr[-2000:])
    return proc.stderr


def test_an_untrusted_certificate_is_refused_clearly(tmp_path: Path, behind_tls) -> None:
    port, _, _ = behind_tls
    err = run_refused(tmp_path, "--url", f"https://127.0.0.1:{port}", "--app", APP_ARG)
    assert "CERTIFICATE_VERIFY_FAILED" in err or "certificate verify failed" in err, err


@pytest.mark.parametrize(
    ("urls", "flags", "says"),
    [
        (["http://127.0.0.1:9"], ["--insecure"], "are for https:// or wss:// targets"),
        (["https://127.0.0.1:9", "http://127.0.0.1:8"], [], "with TLS (https://, wss://) or none"),
        (["https://127.0.0.1:9"], ["--ca-file", "/nonexistent/ca.pem"], "--ca-file /nonexistent/ca.pem"),
    ],
)
def test_tls_options_that_cannot_work_are_refused(tmp_path: Path, urls, flags, says) -> None:
    err = run_refused(tmp_path, *(a for u in urls for a in ("--url", u)), "--app", APP_ARG, *flags)
    assert says in err, err
