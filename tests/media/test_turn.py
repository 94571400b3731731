"""TURN with a real coturn (Debian's package): credentials minted by the server are accepted,
WHIP/WHEP answers and OPTIONS carry the ICE servers (RFC 9725 §4.6), and a viewer that can reach
only coturn's TCP port (its own network namespace) still receives video through the relay."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from loadtest.coturn import coturn
from roomserver.core.turn import ice_servers, link_header
from roomserver.media.client import Publisher, Viewer, fetch_ice_servers, post_offer
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack
from roomserver.media.whip import IceServers, MediaPrincipal

from .conftest import make_token, serve_media
from .netns import namespace

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def turn_links(urls: list[str], secret: str, ttl_s: int = 600) -> IceServers:
    def links(principal: MediaPrincipal) -> list[str]:
        return [link_header(s) for s in ice_servers(urls, secret, principal.user, time.time(), ttl_s)]

    return links


async def test_relay_only_viewer_plays_through_turn_over_udp(router: MediaRouter) -> None:
    async with coturn() as turn, serve_media(router, turn_links([turn.url("udp")], turn.secret)) as server:
        publisher = Publisher([CounterVideoTrack()])
        try:
            reply = await post_offer(
                server.http,
                server.url("/v1/rooms/n1/whip"),
                await publisher.offer(),
                make_token("h1", "host"),
            )
            assert reply.status == 201
            assert [s.url for s in reply.ice_servers] == [turn.url("udp")]  # the 201's Link headers
            await publisher.accept(reply.body)

            servers = await fetch_ice_servers(server.http, server.url("/v1/rooms/n1/whep"), make_token("v1"))
            assert len(servers) == 1 and servers[0].username.endswith(":v1")  # minted for this caller
            viewer = Viewer(ice_servers=servers, relay_only=True)
            try:
                offer = await viewer.offer()
                assert "typ relay" in offer and "typ host" not in offer
                reply = await post_offer(
                    server.http, server.url("/v1/rooms/n1/whep"), offer, make_token("v1")
                )
                assert reply.status == 201
                await viewer.accept(reply.body)
                assert await viewer.wait_for(lambda v: len(v.video) >= 20, timeout=15)
                assert {local for local, _ in viewer.selected_candidate_types()} == {"relay"}
            finally:
                await viewer.close()
        finally:
            await publisher.close()


async def test_relay_only_viewer_plays_through_turn_over_tls(
    router: MediaRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """turns: (TURN over TLS, RFC 7065), the path through firewalls that let only TLS out."""
    async with (
        coturn(tls=True) as turn,
        serve_media(router, turn_links([turn.tls_url()], turn.secret)) as server,
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.ca_file))  # aioice verifies coturn's certificate
        publisher = Publisher([CounterVideoTrack()])
        viewer: Viewer | None = None
        try:
            reply = await post_offer(
                server.http,
                server.url("/v1/rooms/n3/whip"),
                await publisher.offer(),
                make_token("h1", "host"),
            )
            await publisher.accept(reply.body)
            servers = await fetch_ice_servers(server.http, server.url("/v1/rooms/n3/whep"), make_token("v1"))
            assert [s.url for s in servers] == [turn.tls_url()]
            viewer = Viewer(ice_servers=servers, relay_only=True)
            offer = await viewer.offer()
            assert "typ relay" in offer
            reply = await post_offer(server.http, server.url("/v1/rooms/n3/whep"), offer, make_token("v1"))
            await viewer.accept(reply.body)
            assert await viewer.wait_for(lambda v: len(v.video) >= 20, timeout=15)
            assert {local for local, _ in viewer.selected_candidate_types()} == {"relay"}
        finally:
            if viewer is not None:
                await viewer.close()
            await publisher.close()


async def test_a_wrong_turn_credential_gets_no_relay(router: MediaRouter) -> None:
    """coturn really checks the HMAC: a credential for another secret allocates nothing."""
    async with coturn() as turn:
        forged = ice_servers([turn.url("udp")], "not-the-secret", "v1", time.time(), 600)
        viewer = Viewer(ice_servers=forged, relay_only=True)
        try:
            assert "typ relay" not in await viewer.offer()
        finally:
            await viewer.close()


async def viewer_in(ns_command: list[str], turn_url: str, username: str, credential: str, *extra: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        *ns_command,
        sys.executable, "-m", "tests.media.netns_viewer",
        "--turn-url", turn_url, "--username", username, "--credential", credential, *extra,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
    )  # fmt: skip


async def play_from_namespace(server, proc, timeout: float = 40) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    async with asyncio.timeout(timeout):
        offer = json.loads(await proc.stdout.readline())["offer"]
        reply = await post_offer(server.http, server.url("/v1/rooms/n2/whep"), offer, make_token("v1"))
        assert reply.status == 201, reply.body
        proc.stdin.write((json.dumps({"answer": reply.body}) + "\n").encode())
        await proc.stdin.drain()
        result = json.loads(await proc.stdout.readline())
        assert await proc.wait() == 0
        return {"offer": offer, **result}


async def test_a_viewer_that_reaches_only_turn_tcp_plays(router: MediaRouter) -> None:
    with namespace() as ns:
        async with (
            coturn(listen_ip=ns.outer_ip, relay_ip="127.0.0.1", udp=False) as turn,
            serve_media(router, turn_links([turn.url("tcp")], turn.secret)) as server,
        ):
            publisher = Publisher([CounterVideoTrack()])
            procs = []
            try:
                reply = await post_offer(
                    server.http,
                    server.url("/v1/rooms/n2/whip"),
                    await publisher.offer(),
                    make_token("h1", "host"),
                )
                await publisher.accept(reply.body)
                (link,) = await fetch_ice_servers(
                    server.http, server.url("/v1/rooms/n2/whep"), make_token("v1")
                )
                assert link.url == f"turn:{ns.outer_ip}:{turn.port}?transport=tcp"

                procs.append(await viewer_in(ns.command(), link.url, link.username, link.credential))
                result = await play_from_namespace(server, procs[-1])
                assert "typ relay" in result["offer"] and ns.inner_ip in result["offer"]
                assert result["frames"] >= 30, result
                assert {local for local, _ in result["pairs"]} == {"relay"}, result["pairs"]

                # The control: the same viewer with a credential coturn refuses has no path.
                procs.append(
                    await viewer_in(
                        ns.command(), link.url, link.username, "d3Jvbmc=", "--frames", "1", "--timeout", "6"
                    )
                )
                result = await play_from_namespace(server, procs[-1])
                assert "typ relay" not in result["offer"]
                assert result["frames"] == 0 and result["pairs"] == []
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                await publisher.close()
