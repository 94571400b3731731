"""Fixtures for tests that run real server processes on the session's Redis Cluster."""

from __future__ import annotations

import pytest

from tests.server_procs import ServerProcess, start_all, stop_all


@pytest.fixture
def two_servers(redis_cluster, unique_prefix, tmp_path):
    """Two `roomserver serve` processes sharing one Redis Cluster (own key prefix)."""
    seeds = redis_cluster.startup
    servers = [
        ServerProcess(
            "--redis-cluster", seeds, "--redis-prefix", unique_prefix, "--flush-ms", "20", log_dir=tmp_path
        )
        for _ in range(2)
    ]
    start_all(servers)
    yield servers
    stop_all(servers)
