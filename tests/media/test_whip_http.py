"""WHIP/WHEP over HTTP (RFC 9725 shapes) with real tokens, real aiortc peers and bad input."""

from __future__ import annotations

import re

from roomserver.media.client import Publisher, Viewer, delete_session, post_offer
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack

from .conftest import MediaServer, make_token


async def test_publish_and_play_over_http(media_server: MediaServer, router: MediaRouter) -> None:
    publisher = Publisher([CounterVideoTrack()])
    viewer = Viewer()
    try:
        reply = await post_offer(
            media_server.http,
            media_server.url("/v1/rooms/r1/whip"),
            await publisher.offer(),
            make_token("h1", "host"),
        )
        assert reply.status == 201
        assert reply.content_type == "application/sdp"
        assert re.fullmatch(r"/v1/rooms/r1/whip/[A-Za-z0-9_-]+", reply.location)
        assert reply.body.startswith("v=0")
        assert "a=candidate:" in reply.body and "127.0.0.1" in reply.body  # gathered before answering
        await publisher.accept(reply.body)
        whip_location = reply.location

        reply = await post_offer(
            media_server.http, media_server.url("/v1/rooms/r1/whep"), await viewer.offer(), make_token("v1")
        )
        assert reply.status == 201 and re.fullmatch(r"/v1/rooms/r1/whep/[A-Za-z0-9_-]+", reply.location)
        await viewer.accept(reply.body)
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=10)

        # DELETE of someone else's session is refused; the owner's works.
        reply = await delete_session(media_server.http, media_server.url(whip_location), make_token("v1"))
        assert reply.status == 403 and reply.json()["error"]["code"] == "forbidden"
        reply = await delete_session(
            media_server.http, media_server.url(whip_location), make_token("h1", "host")
        )
        assert reply.status == 200
        reply = await delete_session(
            media_server.http, media_server.url(whip_location), make_token("h1", "host")
        )
        assert reply.status == 404 and reply.json()["error"]["code"] == "not_found"
        assert router.peer_connections == 0  # the viewer session went with its publisher
    finally:
        await viewer.close()
        await publisher.close()


async def test_bad_requests_get_clear_errors_and_leave_no_peer_connection(
    media_server: MediaServer, router: MediaRouter
) -> None:
    http, url = media_server.http, media_server.url
    publisher = Publisher([CounterVideoTrack()])
    offer = await publisher.offer()
    host = make_token("h1", "host")

    async def expect(status: int, code: str, reply) -> None:
        assert (reply.status, reply.json()["error"]["code"]) == (status, code), reply.body
        assert reply.json()["error"]["message"]

    await expect(401, "unauthorized", await post_offer(http, url("/v1/rooms/r1/whip"), offer, None))
    await expect(401, "unauthorized", await post_offer(http, url("/v1/rooms/r1/whip"), offer, "not-a-jwt"))
    forged = make_token("h1", "host", secret="another-secret-0123456789-abcdef")
    await expect(401, "unauthorized", await post_offer(http, url("/v1/rooms/r1/whip"), offer, forged))
    expired = make_token("h1", "host", ttl=-60)
    await expect(401, "unauthorized", await post_offer(http, url("/v1/rooms/r1/whip"), offer, expired))
    viewer_token = make_token("v1")
    await expect(403, "forbidden", await post_offer(http, url("/v1/rooms/r1/whip"), offer, viewer_token))
    other_room = make_token("h1", "host", room="r2")
    await expect(403, "forbidden", await post_offer(http, url("/v1/rooms/r1/whip"), offer, other_room))
    await expect(
        415,
        "bad_request",
        await post_offer(http, url("/v1/rooms/r1/whip"), offer, host, content_type="text/plain"),
    )
    for garbage in ("garbage", "v=0\r\nm=video x\r\n", "v=0\r\n"):
        await expect(400, "bad_request", await post_offer(http, url("/v1/rooms/r1/whip"), garbage, host))
    tampered = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith("a=ice-ufrag"))
    await expect(400, "bad_request", await post_offer(http, url("/v1/rooms/r1/whip"), tampered, host))
    await expect(
        413, "too_large", await post_offer(http, url("/v1/rooms/r1/whip"), "v=0\r\n" + "a" * 70000, host)
    )
    await expect(400, "bad_request", await post_offer(http, url("/v1/rooms/bad%20room/whip"), offer, host))
    # Playing what is not published.
    await expect(404, "not_found", await post_offer(http, url("/v1/rooms/r1/whep"), offer, viewer_token))
    await expect(
        404, "not_found", await post_offer(http, url("/v1/rooms/r1/whep?publisher=h9"), offer, viewer_token)
    )
    # Sessions that do not exist.
    await expect(404, "not_found", await delete_session(http, url("/v1/rooms/r1/whip/nope"), host))
    # PATCH is trickle ICE (tests/media/test_trickle.py): other bodies are 415 with Accept-Patch.
    async with http.patch(url("/v1/rooms/r1/whip/nope"), headers={"Authorization": f"Bearer {host}"}) as resp:
        assert resp.status == 415 and resp.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
    assert router.peer_connections == 0
    assert router.publishers("r1") == []
    await publisher.close()


async def test_cohosts_and_call_rooms_may_publish(media_server: MediaServer, router: MediaRouter) -> None:
    media_server.roster.cohosts["r1"] = {"c1"}
    media_server.roster.call_rooms.add("call1")
    publishers = []
    try:
        for room, user, role in (("r1", "h1", "host"), ("r1", "c1", "viewer"), ("call1", "u1", "viewer")):
            publisher = Publisher([CounterVideoTrack()])
            publishers.append(publisher)
            reply = await post_offer(
                media_server.http,
                media_server.url(f"/v1/rooms/{room}/whip"),
                await publisher.offer(),
                make_token(user, role),
            )
            assert reply.status == 201, reply.body
            await publisher.accept(reply.body)
        assert [(p["user"], p["role"]) for p in router.publishers("r1")] == [("h1", "host"), ("c1", "cohost")]
        assert [(p["user"], p["role"]) for p in router.publishers("call1")] == [("u1", "call")]
        viewer = Viewer()
        reply = await post_offer(
            media_server.http,
            media_server.url("/v1/rooms/r1/whep?publisher=c1"),
            await viewer.offer(),
            make_token("v1", room="r1"),
        )
        assert reply.status == 201
        await viewer.accept(reply.body)
        assert await viewer.wait_for(lambda v: len(v.video) >= 5, timeout=10)
        await viewer.close()
    finally:
        for publisher in publishers:
            await publisher.close()
