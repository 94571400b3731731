"""Session-wide fixtures: real Redis servers, started on first use.

``redis_cluster`` (3 primaries + 3 replicas) and ``redis_single`` (one
standalone node) start once per test session (about 2 s) on free ports and are
killed at session end (see ``tests/redis_servers.py``). They are never flushed:
tests isolate themselves with unique room ids or key prefixes
(``unique_prefix``), which also keeps parallel use safe.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Every event and reply the server sends is checked against its contract
# (roomserver/contract/check.py), here and in every server process the tests start
# (they inherit the environment); set before roomserver is imported.
os.environ.setdefault("ROOMSERVER_CONTRACT_CHECK", "1")

# The suite starts many Python processes (server processes, media workers, load
# generators). With PYTHONDONTWRITEBYTECODE set (this machine's environment sets it) each
# compiled roomserver's ~130 modules from source again: about 0.4 s of CPU per process.
# They share one bytecode cache for the session instead, kept out of the source tree.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None and "PYTHONPYCACHEPREFIX" not in os.environ:
    _pycache = tempfile.mkdtemp(prefix="roomserver-pycache-")
    os.environ["PYTHONPYCACHEPREFIX"] = _pycache
    atexit.register(shutil.rmtree, _pycache, ignore_errors=True)

from tests.pg_server import PostgresServer
from tests.redis_servers import RedisCluster, RedisNode, RedisServers

# Property tests must not depend on the machine being idle: Hypothesis's default
# 200 ms per-example deadline and its too_slow health check failed
# tests/unit/test_redpacket.py under load (docs/testing.md). Examples are still
# random; a failure found is replayed from the example database.
settings.register_profile("roomserver", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("roomserver")


@pytest.fixture(scope="session")
def redis_servers() -> Iterator[RedisServers]:
    servers = RedisServers()
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def redis_cluster(redis_servers: RedisServers) -> RedisCluster:
    return redis_servers.start_cluster()


@pytest.fixture(scope="session")
def redis_single(redis_servers: RedisServers) -> RedisNode:
    return redis_servers.start_single()


@pytest.fixture
def unique_prefix() -> str:
    """A Redis key prefix no other test uses (``rs-<hex>:``)."""
    return f"rs-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL (tests/pg_server.py), started on first use."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the private server, for one test."""
    return postgres_server.database()
