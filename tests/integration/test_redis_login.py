"""Issue 13: Redis as managed services run it — an ACL user with a password, the
default user's `requirepass`, TLS (`rediss://`) and a Redis Cluster with both. Real
`redis-server`s (Debian's is built with TLS) with a certificate made here; a wrong
password or an untrusted certificate stops `roomserver serve` with one line."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from loadtest.coturn import self_signed
from roomserver.bus.base import CommitStatus, Delivery, Draft, HistoryLimits, StockStatus
from roomserver.bus.redis import RedisBroker
from roomserver.protocol import encode_event
from tests.integration.test_cli import assert_refused, run
from tests.ports import free_port, free_ports
from tests.redis_servers import REDIS_CLI, RedisNode

PASSWORD = "pw-0f1e2d3c4b5a69788796a5b4"
WRONG = "pw-wrong-5e4d3c2b1a"
ACL_USER = f"user shop on >{PASSWORD} ~* &* +@all"
HOUR_MS = 3_600_000


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    self_signed("127.0.0.1", cert_file, key_file)
    return cert_file, key_file


class LoginNode(RedisNode):
    """A server that wants a login (and maybe TLS); ``ping`` logs in as the tests' client."""

    def __init__(self, port: int, workdir: Path, extra: list[str], ca: Path | None = None) -> None:
        super().__init__(port, workdir, extra)
        self.ca = ca

    def client(self) -> redis.Redis:
        tls = {"ssl": True, "ssl_ca_certs": str(self.ca)} if self.ca else {}
        return redis.Redis(
            host="127.0.0.1", port=self.port, username="shop", password=PASSWORD, socket_timeout=0.5, **tls
        )

    def ping(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False


def tls_flags(port: int, cert: Path, key: Path) -> list[str]:
    # --port 0 after RedisNode's --port: the plain port is off, only TLS is served.
    return [
        "--port", str(free_port()), "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def acl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginNode]:
    (port,) = free_ports(1, cluster_bus=False)
    extra = ["--save", "", "--requirepass", PASSWORD, "--user", *ACL_USER.split()[1:]]
    node = LoginNode(port, tmp_path_factory.mktemp("acl"), extra)
    node.start()
    yield node
    node.kill()


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path]) -> Iterator[LoginNode]:
    (port,) = free_ports(1, cluster_bus=False)
    extra = ["--save", "", "--user", *ACL_USER.split()[1:], *tls_flags(port, *cert)]
    node = LoginNode(port, tmp_path_factory.mktemp("tlsnode"), extra, ca=cert[0])
    node.start()
    yield node
    node.kill()


async def sell_one(broker: RedisBroker, room: str) -> None:
    """A round trip through the broker's scripts (a stock created and taken) and through
    pub/sub (a committed event reaches this node's subscription)."""
    delivered: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
    await broker.start(lambda d: delivered.done() or delivered.set_result(d))
    try:
        assert await broker.stock_create(room, "sale:1", 1, ttl_ms=HOUR_MS)
        res = await broker.stock_take(room, "sale:1", user="u", qty=1, per_user_limit=1, record=b"o", cid="c")
        assert (res.status, res.left) == (StockStatus.OK, 0)
        await broker.subscribe(room)
        body = encode_event("note", room, {"over": "tls"})
        assert (await broker.commit(room, [Draft(body)])).status == CommitStatus.OK
        delivery = await asyncio.wait_for(delivered, 10)
        assert delivery.room == room and len(delivery.events) == 1
    finally:
        await broker.close()


@pytest.mark.parametrize("login", [f"shop:{PASSWORD}", f":{PASSWORD}"], ids=["acl-user", "requirepass"])
async def test_broker_logs_in_with_user_or_default_password(acl_node: LoginNode, login: str):
    broker = RedisBroker.from_url(
        f"redis://{login}@127.0.0.1:{acl_node.port}/0", limits=HistoryLimits(), prefix="rs-login:"
    )
    await sell_one(broker, f"app1/room-{login[:4]}")


async def test_broker_over_tls_verifies_the_certificate(tls_node: LoginNode, cert: tuple[Path, Path]):
    url = f"rediss://shop:{PASSWORD}@127.0.0.1:{tls_node.port}/0"
    await sell_one(RedisBroker.from_url(url, ca_file=str(cert[0]), prefix="rs-tls:"), "app1/tls-room")


def test_wrong_password_stops_serve_in_one_line(acl_node: LoginNode):
    r = run(
        "serve",
        "--port",
        str(free_port()),
        "--redis-url",
        f"redis://shop:{WRONG}@127.0.0.1:{acl_node.port}/0",
        timeout=60,
    )
    assert_refused(r, "refused the login", f"127.0.0.1:{acl_node.port}")
    assert WRONG not in r.stderr
    no_login = run("serve", "--port", str(free_port()), "--redis-url", f"redis://127.0.0.1:{acl_node.port}/0")
    assert_refused(no_login, "refused the login")


def test_untrusted_certificate_stops_serve_in_one_line(tls_node: LoginNode):
    # No --redis-ca-file: the system's CAs do not know the test certificate.
    url = f"rediss://shop:{PASSWORD}@127.0.0.1:{tls_node.port}/0"
    r = run("serve", "--port", str(free_port()), "--redis-url", url)
    assert_refused(r, "TLS failed", "CERTIFICATE_VERIFY_FAILED")
    assert PASSWORD not in r.stderr


def test_tls_cluster_with_user_and_password(tmp_path: Path, cert: tuple[Path, Path]):
    """3 primaries (no replicas: login and TLS are the point) speaking TLS among themselves,
    with an ACL user; the seed list is a rediss:// URL; CLUSTER SLOTS hands out TLS ports."""
    ports = free_ports(3, cluster_bus=True)
    nodes = []
    for port in ports:
        extra = [
            "--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
            "--tls-cluster", "yes", "--tls-replication", "yes", "--masteruser", "shop", "--masterauth", PASSWORD,
            "--user", *ACL_USER.split()[1:], *tls_flags(port, *cert),
        ]  # fmt: skip
        nodes.append(LoginNode(port, tmp_path / f"n{port}", extra, ca=cert[0]))
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [REDIS_CLI, "--tls", "--cacert", str(cert[0]), "--user", "shop", "--pass", PASSWORD,
             "--cluster", "create", *(n.addr for n in nodes), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with nodes[0].client() as c:
                if c.cluster("info")["cluster_state"] == "ok":
                    break
            time.sleep(0.05)
        seeds = f"rediss://shop:{PASSWORD}@{nodes[0].addr},{nodes[1].addr}"

        async def three_rooms() -> None:  # rooms on different primaries
            for n in range(3):
                await sell_one(
                    RedisBroker.from_cluster(seeds, ca_file=str(cert[0]), prefix="rs-tlsc:"), f"a/r{n}"
                )

        asyncio.run(three_rooms())
        wrong = f"rediss://shop:{WRONG}@{nodes[0].addr}"
        r = run(
            "serve", "--port", str(free_port()), "--redis-cluster", wrong, "--redis-ca-file", str(cert[0])
        )
        assert_refused(r, "refused the login")
        assert WRONG not in r.stderr
    finally:
        for node in nodes:
            node.kill()
