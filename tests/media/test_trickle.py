"""Trickle ICE over PATCH (RFC 9725 §4.3): a client that offers without candidates and sends
them in an `application/trickle-ice-sdpfrag` PATCH; ICE restarts answered 422; bad PATCHes
answered with the 4xx the RFC and RFC 9110 name, leaving the session as it was."""

from __future__ import annotations

from roomserver.media.client import Publisher, Viewer, post_offer
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack
from roomserver.media.trickle import TRICKLE_CONTENT_TYPE

from .conftest import MediaServer, make_token


def split_offer(sdp: str) -> tuple[str, str]:
    """(the offer without its candidates, the sdpfrag that trickles them): a trickle client."""
    lines = sdp.split("\r\n")
    offer = "\r\n".join(
        line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    )
    first_mid = next(line for line in lines if line.startswith("a=mid:"))
    ice = [line for line in lines if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))][:2]
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    assert candidates, "aiortc gathered no candidates"
    fragment = "\r\n".join(
        [*ice, "m=video 9 UDP/TLS/RTP/SAVPF 0", first_mid, *candidates, "a=end-of-candidates"]
    )
    return offer, fragment + "\r\n"


def remote_candidates(router: MediaRouter, session_id: str) -> int:
    session = router.session(session_id)
    assert session is not None
    return session.pc.remoteDescription.sdp.count("a=candidate:")


async def test_a_trickled_viewer_plays(media_server: MediaServer, router: MediaRouter) -> None:
    publisher = Publisher([CounterVideoTrack()])
    viewer = Viewer()
    http, url = media_server.http, media_server.url
    try:
        reply = await post_offer(
            http, url("/v1/rooms/t1/whip"), await publisher.offer(), make_token("h1", "host")
        )
        await publisher.accept(reply.body)
        offer, fragment = split_offer(await viewer.offer())
        token = {"Authorization": f"Bearer {make_token('v1')}"}
        async with http.post(
            url("/v1/rooms/t1/whep"), data=offer, headers={**token, "Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 201
            assert resp.headers["Accept-Patch"] == TRICKLE_CONTENT_TYPE
            etag, location, answer = resp.headers["ETag"], resp.headers["Location"], await resp.text()
        session_id = location.rsplit("/", 1)[-1]
        assert remote_candidates(router, session_id) == 0
        await viewer.accept(answer)

        async with http.options(url(location)) as resp:
            assert resp.status == 204
            assert resp.headers["Accept-Patch"] == TRICKLE_CONTENT_TYPE
            assert "PATCH" in resp.headers["Allow"]
        headers = {**token, "Content-Type": TRICKLE_CONTENT_TYPE, "If-Match": etag}
        async with http.patch(url(location), data=fragment, headers=headers) as resp:
            assert resp.status == 204, await resp.text()
            assert resp.headers["ETag"] == etag
        assert remote_candidates(router, session_id) == fragment.count("a=candidate:")
        # A repeated end-of-candidates is harmless; a candidate after it is not.
        ice_only = "\r\n".join([*fragment.split("\r\n")[:2], "a=end-of-candidates", ""])
        async with http.patch(url(location), data=ice_only, headers=headers) as resp:
            assert resp.status == 204
        async with http.patch(url(location), data=fragment, headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=10)
    finally:
        await viewer.close()
        await publisher.close()


async def test_bad_patches_get_the_rfc_answers(media_server: MediaServer, router: MediaRouter) -> None:
    publisher = Publisher([CounterVideoTrack()])
    http, url = media_server.http, media_server.url
    host = make_token("h1", "host")
    try:
        offer, fragment = split_offer(await publisher.offer())
        async with http.post(
            url("/v1/rooms/t2/whip"),
            data=offer,
            headers={"Authorization": f"Bearer {host}", "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            etag, location = resp.headers["ETag"], resp.headers["Location"]
        session_id = location.rsplit("/", 1)[-1]

        async def patch(body: str, token: str | None = host, **headers: str) -> tuple[int, dict]:
            sent = {"Content-Type": TRICKLE_CONTENT_TYPE, **headers}
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            async with http.patch(url(location), data=body, headers=sent) as resp:
                return resp.status, (await resp.json() if resp.status != 204 else {})

        restart = fragment.replace("a=ice-ufrag:", "a=ice-ufrag:new").replace("a=ice-pwd:", "a=ice-pwd:new")
        cases = [
            ((fragment, None), 401, "unauthorized"),
            ((fragment, make_token("v1")), 403, "forbidden"),
            ((fragment, host, {"Content-Type": "application/sdp"}), 415, "bad_request"),
            ((fragment, host, {"If-Match": "*"}), 422, "bad_request"),  # an ICE restart
            ((restart, host), 422, "bad_request"),  # new credentials: also a restart
            ((fragment, host, {"If-Match": '"someone-else"'}), 412, "conflict"),
            (("garbage", host), 400, "bad_request"),
            (("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", host), 400, "bad_request"),  # no ICE creds
            ((fragment.replace(" typ host", " typ"), host), 400, "bad_request"),
            ((fragment + "a=x\r\n" * 20000, host), 413, "too_large"),
        ]
        for args, status, code in cases:
            body, token, *extra = args
            got = await patch(body, token, **(extra[0] if extra else {}))
            assert (got[0], got[1].get("error", {}).get("code")) == (status, code), (args[0][:40], got)
            assert remote_candidates(router, session_id) == 0  # nothing applied
        async with http.patch(
            url("/v1/rooms/t2/whip/nope"),
            data=fragment,
            headers={"Authorization": f"Bearer {host}", "Content-Type": TRICKLE_CONTENT_TYPE},
        ) as resp:
            assert resp.status == 404
        assert await patch(fragment, host, **{"If-Match": etag}) == (204, {})
        assert remote_candidates(router, session_id) == fragment.count("a=candidate:")
    finally:
        await publisher.close()
