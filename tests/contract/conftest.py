"""Backends under the contract suite: every test here runs once per backend.

``memory`` runs in-process; ``redis-cluster`` and ``redis-single`` use the real
Redis servers started by ``tests/redis_servers.py`` for the test session. Each
``make()`` is a separate node with its own connections; all nodes of one test
share the servers and a key prefix unique to the test.
"""

from __future__ import annotations

import pytest

from roomserver.bus.memory import MemoryBroker, MemoryHub
from roomserver.bus.redis import RedisBroker

BACKENDS = ["memory", "redis-single", "redis-cluster"]
# The contract is about results, not speed: the production op timeout (1 s) made
# report_presence over 300 rooms fail with NotExecuted on a loaded machine
# (docs/testing.md). Timeout behaviour has its own tests (test_redis_failover.py).
OP_TIMEOUT_S = 10.0


@pytest.fixture(params=BACKENDS)
async def broker_factory(request, unique_prefix):
    """Returns ``make(node_id, **options) -> Broker`` where all brokers made share
    one backend; ``options`` go to the constructor (e.g. ``idle_ttl_ms``)."""
    made = []
    if request.param == "memory":
        hub = MemoryHub()

        def make(node_id: str = "n1", **options):
            b = MemoryBroker(hub, node_id=node_id, **options)
            made.append(b)
            return b

    elif request.param == "redis-single":
        url = request.getfixturevalue("redis_single").url

        def make(node_id: str = "n1", **options):
            options.setdefault("op_timeout", OP_TIMEOUT_S)
            b = RedisBroker.from_url(url, node_id=node_id, prefix=unique_prefix, **options)
            made.append(b)
            return b

    else:
        startup = request.getfixturevalue("redis_cluster").startup

        def make(node_id: str = "n1", **options):
            options.setdefault("op_timeout", OP_TIMEOUT_S)
            b = RedisBroker.from_cluster(startup, node_id=node_id, prefix=unique_prefix, **options)
            made.append(b)
            return b

    yield make
    for b in made:
        await b.close()
