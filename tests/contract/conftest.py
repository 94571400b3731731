"""Backends under the contract suite: every test here runs once per backend.

``memory`` runs in-process; ``redis-cluster`` and ``redis-single`` use the real
Redis servers started by ``tests/redis_servers.py`` for the test session.
"""

from __future__ import annotations

import pytest

from roomserver.bus.memory import MemoryBroker, MemoryHub

BACKENDS = ["memory"]


@pytest.fixture(params=BACKENDS)
async def broker_factory(request):
    """Returns ``make(node_id) -> Broker`` where all brokers made share one backend."""
    made = []
    if request.param == "memory":
        hub = MemoryHub()

        def make(node_id: str = "n1"):
            b = MemoryBroker(hub, node_id=node_id)
            made.append(b)
            return b

    yield make
    for b in made:
        await b.close()
