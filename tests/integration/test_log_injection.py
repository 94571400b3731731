"""Issue 16 point 5: client text cannot forge log lines, in the access log of a real
`roomserver serve` process and in every record that quotes client data."""

from __future__ import annotations

import asyncio
import io
import logging
import signal

from roomserver.logsafe import SafeFormatter, clean
from tests.server_fixtures import start_serve_process

# Every character str.splitlines() (the strictest notion of a line) breaks on,
# plus a bidi override, which makes a line read differently from how it parses.
BREAKERS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\u202e"]


def test_clean_escapes_every_line_breaker_and_bidi_control() -> None:
    for c in BREAKERS:
        out = clean(f"a{c}FAKE")
        assert len(out.splitlines()) == 1 and c not in out, repr(out)
    assert clean("tea 茶 ok") == "tea 茶 ok"  # ordinary text is untouched


def test_formatter_escapes_messages_and_exception_text() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(logging.Formatter("%(levelname)s %(message)s")))
    logger = logging.getLogger("tests.log_injection")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("room %s op %s", "r1\r\nERROR forged", "x\u2028FAKE")
        client_text = "bad input\nERROR forged\u2029FAKE"
        try:
            raise ValueError(client_text)
        except ValueError:
            logger.exception("op failed for %s", "u1\x85FAKE")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if line.startswith(("ERROR forged", "FAKE"))], lines
    assert sum("FAKE" in line for line in lines) == 3, lines
    assert lines[-1].startswith("ValueError: bad input\\x0aERROR forged\\u2029FAKE"), lines


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_access_log_has_one_line_per_request_whatever_the_path_and_headers() -> None:
    server = await start_serve_process("--log-level", "INFO")
    try:
        paths = ["/x%0d%0aFAKE-1", "/x%e2%80%a8FAKE-2", "/v1/rooms/r%0aFAKE-3/history", "/x%c2%85FAKE-4"]
        agents = ["ua\xe2\x80\xa8FAKE-5", "ua\xc2\x85FAKE-6", "ua\xe2\x80\xaeFAKE-7"]
        for path in paths:
            reply = await raw_request(
                server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            assert reply.startswith(b"HTTP/1.1 "), reply
        for agent in agents:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n"
            reply = await raw_request(server.port, request % agent.encode("latin-1"))
            assert reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert server.proc.stderr is not None
    log = server.proc.stderr.read().decode("utf-8", "surrogateescape")
    lines = log.splitlines()
    for n in range(1, 8):
        mine = [line for line in lines if f"FAKE-{n}" in line]
        assert len(mine) == 1, (n, mine, log[-3000:])
        assert "aiohttp.access" in mine[0], mine
    assert not [line for line in lines if line.lstrip().startswith("FAKE")], log[-3000:]
