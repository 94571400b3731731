"""Nodes announce themselves on the bus: GET /v1/nodes lists the live ones with their load;
a node killed with SIGKILL drops out once its TTL has passed, a stopped one at once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
import uuid

import pytest

from roomserver.client import RoomClient
from tests.server_procs import ServerProcess, start_all, stop_all, token

ANNOUNCE_S = 0.5  # TTL 1.5 s


def get_nodes(url: str, role: str = "admin") -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/v1/nodes", headers={"Authorization": f"Bearer {token('ops', role)}"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def until(cond, timeout: float = 30.0, step: float = 0.05) -> float:
    """Poll ``cond`` (bounded); how long it took."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(cond):
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(step)
    return time.monotonic() - t0


@pytest.fixture
def nodes(redis_single, unique_prefix, tmp_path):
    made = [
        ServerProcess(
            *("--redis-url", redis_single.url, "--redis-prefix", unique_prefix),
            *("--announce-s", str(ANNOUNCE_S), "--node-id", f"n{i}"),
            *(("--advertise-url", "http://edge-1.example:8080") if i == 1 else ()),
            log_dir=tmp_path,
        )
        for i in range(2)
    ]
    start_all(made)
    yield made
    stop_all(made)


async def test_live_nodes_are_listed_with_their_load_and_a_killed_one_expires(nodes):
    a, b = nodes

    def both() -> bool:
        return {n["node"] for n in get_nodes(a.url)[1]["nodes"]} == {"n0", "n1"}

    await until(both)
    room = "r-" + uuid.uuid4().hex[:8]
    async with RoomClient(b.url, token("v1")) as c1, RoomClient(b.url, token("v2")) as c2:
        await c1.join(room)
        await c2.join(room)

        def b_counts_its_sockets() -> bool:
            listed = {n["node"]: n for n in get_nodes(a.url)[1]["nodes"]}
            return listed["n1"]["sockets"] == 2 and listed["n1"]["rooms"] == 1

        await until(b_counts_its_sockets)
    listed = {n["node"]: n for n in get_nodes(a.url)[1]["nodes"]}
    assert listed["n0"]["address"] == a.url and listed["n1"]["address"] == "http://edge-1.example:8080"
    for n in listed.values():
        assert n["media_viewers"] == 0 and n["draining"] is False and n["cpu"] >= 0
        assert 0 < n["expires_in_ms"] <= ANNOUNCE_S * 3 * 1000
        assert n["started_at"] <= n["announced_at"] <= time.time() * 1000 + 5000

    # A viewer cannot see the deployment's nodes.
    status, body = get_nodes(a.url, role="viewer")
    assert status == 403 and body["error"]["code"] == "forbidden"

    # kill -9: no goodbye; the entry stays until its TTL (1.5 s) has passed, then goes.
    assert b.proc is not None
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    killed = time.monotonic()

    def b_gone() -> bool:
        return {n["node"] for n in get_nodes(a.url)[1]["nodes"]} == {"n0"}

    await until(b_gone, step=0.05)
    assert time.monotonic() - killed <= ANNOUNCE_S * 3 + 5  # TTL plus a loaded machine's slack


async def test_a_stopped_node_withdraws_at_once(nodes):
    a, b = nodes

    def both() -> bool:
        return len(get_nodes(a.url)[1]["nodes"]) == 2

    await until(both)
    # Announcements every 0.5 s, TTL 1.5 s: SIGTERM withdraws, so the entry goes before
    # its TTL would have ended.
    b.stop()
    stopped = time.monotonic()

    def b_gone() -> bool:
        return [n["node"] for n in get_nodes(a.url)[1]["nodes"]] == ["n0"]

    await until(b_gone)
    assert time.monotonic() - stopped < ANNOUNCE_S * 3
