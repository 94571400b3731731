"""Co-hosting and PK across two `roomserver serve` processes on one Redis Cluster:
each room's host on a different process, everything shared through the bus."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from roomserver.auth import mint_token
from roomserver.client import RoomClient, RoomError
from tests.server_fixtures import Recorder
from tests.server_procs import APP, SECRET, ServerProcess, start_all, stop_all


def token(user: str, role: str = "viewer") -> str:
    return mint_token(APP, SECRET, user, role)  # type: ignore[arg-type]


@pytest.fixture
def two_servers(redis_cluster, unique_prefix, tmp_path):
    servers = [
        ServerProcess(
            "--redis-cluster",
            redis_cluster.startup,
            "--redis-prefix",
            unique_prefix,
            "--flush-ms",
            "20",
            log_dir=tmp_path,
        )
        for _ in range(2)
    ]
    try:
        start_all(servers)
        yield servers
    finally:
        stop_all(servers)


async def client(url: str, user: str, role: str = "viewer") -> tuple[RoomClient, Recorder]:
    c = RoomClient(url, token(user, role), request_timeout=5.0)
    rec = Recorder(c)
    await c.connect()
    return c, rec


async def test_pk_and_cohost_across_processes(two_servers) -> None:
    s1, s2 = two_servers
    a, b = "a-" + uuid.uuid4().hex[:8], "b-" + uuid.uuid4().hex[:8]
    ha, _ = await client(s1.url, "ha", "host")
    va, va_rec = await client(s1.url, "va")
    hb, hb_rec = await client(s2.url, "hb", "host")
    vb, vb_rec = await client(s2.url, "vb")
    guest, guest_rec = await client(s2.url, "guest")  # in room A, through the other process
    clients = [ha, va, hb, vb, guest]
    try:
        for c, room in ((ha, a), (va, a), (hb, b), (vb, b), (guest, a)):
            await c.join(room)

        # PK: invited on process 1, accepted on process 2, gifts on both, ends by time.
        pk_id = (await ha.pk_invite(a, b, duration_s=2))["pk"]["id"]
        await hb_rec.wait("pk.invited")
        await hb.pk_accept(b, pk_id)
        await va_rec.wait("pk.started")
        await va.send_gift(a, "rocket", 1)
        await vb.send_gift(b, "rose", 2)
        want = {a: 500, b: 20}
        await vb_rec.wait("pk.score", lambda e: e["data"]["scores"] == want, timeout=5)
        for rec in (va_rec, vb_rec):
            (ev,) = await rec.wait("pk.ended", timeout=6)
            assert ev["data"] == {"id": pk_id, "rooms": [a, b], "scores": want, "winner": a, "reason": "time"}

        # Co-host invite for a user joined through the other process: accepted once
        # presence shows room A has members there (reported every second).
        deadline = time.monotonic() + 5
        while True:
            try:
                await ha.cohost_invite(a, "guest")
                break
            except RoomError as err:
                assert err.code == "not_found" and time.monotonic() < deadline, err
                await asyncio.sleep(0.25)
        await guest_rec.wait("cohost.invited")
        await guest.cohost_accept(a)
        (ev,) = await va_rec.wait("cohost.updated")
        assert [c["id"] for c in ev["data"]["cohosts"]] == ["guest"]
    finally:
        for c in clients:
            await c.close()
