"""A slow consumer that never reads again is cut, not kept: after the 4008 decision
the server waits ``close_timeout`` (2 s) for the closing handshake, then aborts the
transport and resets the TCP connection, freeing its megabytes of unsent bytes.

The peer is a raw TCP client with a tiny receive buffer that completes the
WebSocket handshake, joins a room and then never reads, while the room is
flooded with 7 KB events through the admin REST API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from roomserver.tenancy import room_key
from tests.integration.test_delivery import EVENT_PAD, StalledSocket
from tests.polling import until
from tests.server_fixtures import APP, Server, token


def tcp_sockets(local_port: int, remote_port: int) -> list[str]:
    """The kernel's IPv4 TCP sockets from ``local_port`` to ``remote_port`` on this host
    (any state: an orphan still flushing its send queue counts)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
            found.append(state)
    return found


async def test_a_consumer_that_never_reads_is_cut_soon_after_4008(make_server, room: str) -> None:
    server: Server = await make_server()  # the default 2 MiB socket buffer limit
    fanout = server.node.fanout
    host, port = server.test_server.host, server.test_server.port
    assert port is not None
    stalled = await StalledSocket.open(host, port, token("slowpoke"))
    try:
        client_port = stalled.sock.getsockname()[1]
        await stalled.send_json({"id": 1, "op": "room.join", "room": room})
        key = room_key(APP, room)  # the fan-out knows the app's room by its key
        await until(lambda: key in fanout.channels and fanout.channels[key].members, 10, "the join")
        (conn,) = fanout.channels[key].members
        transport = conn.transport
        assert tcp_sockets(port, client_port) == ["01"]  # ESTABLISHED

        published = 0
        deadline = time.monotonic() + 60
        while fanout.stats.slow_closes == 0:
            assert published < 3000 and time.monotonic() < deadline, f"no 4008 after {published} events"
            status, _ = await server.admin(
                "POST", f"/v1/rooms/{room}/events", {"ev": "bulk", "data": {"i": published, "pad": EVENT_PAD}}
            )
            assert status == 201
            published += 1
        decided = time.monotonic()
        held = transport.get_write_buffer_size()
        assert held > fanout.buffer_limit  # what the server keeps for a peer that does not read

        # Within the close timeout and a margin: the transport aborted, its buffer gone,
        # the kernel socket gone (reset, not an orphan still flushing), the gateway done.
        await until(
            lambda: transport.is_closing() and not tcp_sockets(port, client_port) and not fanout.connections,
            fanout.close_timeout + 5,
            "the cut",
        )
        elapsed = time.monotonic() - decided
        assert elapsed < fanout.close_timeout + 5
        assert transport.get_write_buffer_size() == 0
        assert fanout.stats.cut_connections == 1
        assert not server.gateway.sessions
        status, metrics = await server.rest("GET", "/metrics")
        assert "roomserver_cut_connections_total 1.0" in metrics.splitlines()
        # The peer learns it from a reset: no close frame came through the backlog.
        with pytest.raises(ConnectionResetError):
            while await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled.sock, 1 << 20), 10):
                pass
        print(f"4008 after {published} events, {held} bytes held, cut {elapsed:.2f} s after the decision")
    finally:
        stalled.close()


async def test_a_slow_consumer_that_reads_again_in_time_gets_its_4008(make_server, room: str) -> None:
    """The other side of the timeout: a client that reads within it still gets the
    close frame after its backlog, and the connection is closed, not cut."""
    server: Server = await make_server(socket_buffer_limit=256 * 1024, socket_buffer_soft=64 * 1024)
    fanout = server.node.fanout
    fanout.close_timeout = 30.0  # ample for reading the backlog on a loaded machine
    host, port = server.test_server.host, server.test_server.port
    assert port is not None
    stalled = await StalledSocket.open(host, port, token("slowpoke"))
    try:
        await stalled.send_json({"id": 1, "op": "room.join", "room": room})
        key = room_key(APP, room)
        await until(lambda: key in fanout.channels and fanout.channels[key].members, 10, "the join")
        published = 0
        while fanout.stats.slow_closes == 0:
            assert published < 3000, f"no 4008 after {published} events"
            await server.admin(
                "POST", f"/v1/rooms/{room}/events", {"ev": "bulk", "data": {"i": published, "pad": EVENT_PAD}}
            )
            published += 1
        code, frames = await stalled.read_to_close(timeout=15)
        assert code == 4008 and 0 < frames < published
        assert fanout.stats.cut_connections == 0
    finally:
        stalled.close()
