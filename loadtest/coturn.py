"""coturn for tests and benchmarks: Debian's `turnserver` on free ports with its own config file, REST-API
shared secret (`use-auth-secret` + `static-auth-secret`), stopped (by its own pid) afterwards.

Peers on loopback must be allowed (`allow-loopback-peers`): the test media server's ICE is
pinned to 127.0.0.1, and the relay addresses are on 127.0.0.1 too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .procs import free_port

TURNSERVER = "/usr/bin/turnserver"


@dataclass
class Coturn:
    listen_ip: str
    port: int
    secret: str
    log: Path
    pid: int
    tls_port: int = 0
    ca_file: Path | None = None

    def url(self, transport: str) -> str:
        return f"turn:{self.listen_ip}:{self.port}?transport={transport}"

    def tls_url(self) -> str:
        return f"turns:{self.listen_ip}:{self.tls_port}?transport=tcp"


def self_signed(ip: str, cert_file: Path, key_file: Path) -> None:
    """A self-signed certificate (its own CA) for the IP address `ip` (aioice checks the
    host name against it), and its key; the TLS tests of coturn and of Redis use it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o644)  # coturn may drop privileges before reading it


@contextlib.asynccontextmanager
async def coturn(
    listen_ip: str = "127.0.0.1",
    relay_ip: str = "127.0.0.1",
    secret: str = "turn-test-secret",
    udp: bool = True,
    tls: bool = False,
) -> AsyncIterator[Coturn]:
    """coturn on free ports; `tls` adds a TLS listener (`tls_port`) with a self-signed
    certificate for `listen_ip`, written to `ca_file` for clients to trust (SSL_CERT_FILE)."""
    with tempfile.TemporaryDirectory(prefix="coturn-") as folder:
        port = free_port(listen_ip, udp=True)  # coturn listens on both
        tls_port = free_port(listen_ip, udp=True, avoid=[port]) if tls else 0
        relay_low = 49152 + (os.getpid() % 150) * 100  # coturn skips ports already taken
        log = Path(folder, "turn.log")
        config = Path(folder, "turnserver.conf")
        lines = [
            f"listening-ip={listen_ip}",
            f"listening-port={port}",
            f"relay-ip={relay_ip}",
            f"min-port={relay_low}",
            f"max-port={relay_low + 99}",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            "realm=roomserver.test",
            "fingerprint",
            "allow-loopback-peers",
            "no-dtls",
            "no-cli",
            "no-multicast-peers",
            f"userdb={folder}/turndb",
            f"pidfile={folder}/turn.pid",
            f"log-file={log}",
            "simple-log",
            "verbose",
        ]
        if not udp:
            lines.append("no-udp")
        ca_file = Path(folder, "cert.pem")
        if tls:
            self_signed(listen_ip, ca_file, Path(folder, "key.pem"))
            lines += [f"tls-listening-port={tls_port}", f"cert={ca_file}", f"pkey={folder}/key.pem"]
        else:
            lines.append("no-tls")
        config.write_text("\n".join(lines) + "\n")
        proc = await asyncio.create_subprocess_exec(
            TURNSERVER,
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:  # ready when its TCP listener accepts
                try:
                    _, writer = await asyncio.open_connection(listen_ip, port)
                    writer.close()
                    break
                except OSError:
                    if proc.returncode is not None or time.monotonic() > deadline:
                        started = log.read_text()[-2000:] if log.exists() else ""
                        raise RuntimeError(f"coturn did not start: {started}") from None
                    await asyncio.sleep(0.05)
            yield Coturn(listen_ip, port, secret, log, proc.pid, tls_port, ca_file)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
