"""Co-host ops through the SDK against the real server: who gets which event, the
durable list in history and snapshots, errors that change nothing, expiry, the limit."""

from __future__ import annotations

from tests.cohost_pk.conftest import expect_error, joined
from tests.server_fixtures import Server


async def test_request_accept_end_round_trip(server: Server, room: str) -> None:
    host, host_rec = await joined(server, room, "h1", "host")
    guest, guest_rec = await joined(server, room, "g1")
    other, other_rec = await joined(server, room, "v1")

    reply = await guest.cohost_request(room)
    request = reply["request"]
    assert set(request) == {"id", "expires_at"}
    (ev,) = await host_rec.wait("cohost.requested")
    assert ev["data"] == {
        "id": request["id"],
        "user": {"id": "g1", "name": "g1", "tier": 0},
        "expires_at": request["expires_at"],
    }
    assert "seq" not in ev  # staff-only events are ephemeral
    await expect_error(guest.cohost_request(room), "conflict")  # one pending request per user

    # A viewer cannot answer someone else's request.
    await expect_error(other.cohost_accept(room, request=request["id"]), "not_found")
    await expect_error(other.cohost_accept(room, user="g1"), "forbidden")

    reply = await host.cohost_accept(room, request=request["id"])
    cohosts = [{"id": "g1", "name": "g1", "tier": 0, "since": reply["cohosts"][0]["since"]}]
    assert reply["cohosts"] == cohosts
    for rec in (host_rec, guest_rec, other_rec):
        (ev,) = await rec.wait("cohost.updated")
        assert ev["data"] == {"cohosts": cohosts} and "seq" in ev
    await expect_error(host.cohost_accept(room, request=request["id"]), "not_found")  # answered once

    late = await server.client("late")
    snap = await late.join(room)
    assert snap["room"]["cohosts"] == cohosts

    await expect_error(other.cohost_end(room, "g1"), "forbidden")
    await guest.cohost_end(room, "g1")  # the co-host leaves the stage
    (ev, ev2) = await other_rec.wait("cohost.updated", count=2)
    assert ev2["data"] == {"cohosts": []} and ev2["seq"] > ev["seq"]
    await expect_error(host.cohost_end(room, "g1"), "not_found")

    await other_rec.quiet()
    assert other_rec.named("cohost.requested") == []  # only staff saw the request
    history = [e["ev"] for e in await server.history(room)]
    assert history.count("cohost.updated") == 2


async def test_invite_only_the_invited_user_is_told_and_accepts(server: Server, room: str) -> None:
    host, host_rec = await joined(server, room, "h1", "host")
    guest, guest_rec = await joined(server, room, "g1")
    other, other_rec = await joined(server, room, "v1")

    await expect_error(host.cohost_invite(room, "nobody-here"), "not_found")
    await expect_error(other.cohost_invite(room, "g1"), "forbidden")  # viewers do not invite
    reply = await host.cohost_invite(room, "g1")
    (ev,) = await guest_rec.wait("cohost.invited")
    assert ev["data"]["id"] == reply["invite"]["id"]
    assert ev["data"]["user"] == {"id": "g1"} and ev["data"]["by"]["id"] == "h1"
    await expect_error(host.cohost_invite(room, "g1"), "conflict")
    # Nobody but the invited user accepts an invitation: not the host, not another viewer.
    await expect_error(host.cohost_accept(room, user="g1"), "not_found")
    await expect_error(other.cohost_accept(room), "not_found")

    await guest.cohost_accept(room, user="g1")
    (ev,) = await other_rec.wait("cohost.updated")
    assert [c["id"] for c in ev["data"]["cohosts"]] == ["g1"]

    await host.cohost_end(room, "g1")
    await other_rec.wait("cohost.updated", count=2)
    await other_rec.quiet()
    assert other_rec.named("cohost.invited") == [] and host_rec.named("cohost.invited") == []


async def test_reject_by_host_or_by_the_invited_user(server: Server, room: str) -> None:
    host, host_rec = await joined(server, room, "h1", "host")
    guest, guest_rec = await joined(server, room, "g1")
    viewer, viewer_rec = await joined(server, room, "v1")

    request = (await viewer.cohost_request(room))["request"]
    await host.cohost_reject(room, user="v1")
    (ev,) = await viewer_rec.wait("cohost.rejected")
    assert ev["data"]["id"] == request["id"] and ev["data"]["kind"] == "request"
    await host_rec.wait("cohost.rejected")

    await host.cohost_invite(room, "g1")
    await guest.cohost_reject(room)
    (ev,) = await guest_rec.wait("cohost.rejected")
    assert ev["data"]["kind"] == "invite" and ev["data"]["by"]["id"] == "g1"
    await host_rec.wait("cohost.rejected", count=2)
    await expect_error(guest.cohost_accept(room), "not_found")
    await viewer_rec.quiet()
    assert viewer_rec.named("cohost.updated") == []  # nothing changed on stage


async def test_requests_and_invitations_expire(server: Server, room: str, short_expiry: int) -> None:
    host, host_rec = await joined(server, room, "h1", "host")
    guest, guest_rec = await joined(server, room, "g1")
    viewer, viewer_rec = await joined(server, room, "v1")
    request = (await viewer.cohost_request(room))["request"]
    invite = (await host.cohost_invite(room, "g1"))["invite"]

    (ev,) = await viewer_rec.wait("cohost.expired", timeout=3)
    assert ev["data"] == {
        "id": request["id"],
        "kind": "request",
        "user": {"id": "v1", "name": "v1", "tier": 0},
    }
    (ev,) = await guest_rec.wait("cohost.expired", timeout=3)
    assert ev["data"]["id"] == invite["id"] and ev["data"]["kind"] == "invite"
    expired = await host_rec.wait("cohost.expired", count=2, timeout=3)
    assert {e["data"]["id"] for e in expired} == {request["id"], invite["id"]}

    await expect_error(host.cohost_accept(room, request=request["id"]), "not_found")
    await expect_error(guest.cohost_accept(room), "not_found")
    await host_rec.quiet(0.6)
    assert len(host_rec.named("cohost.expired")) == 2  # once each, however many deadline ticks
    # Expired means free again.
    await viewer.cohost_request(room)


async def test_at_most_eight_cohosts(server: Server, room: str) -> None:
    host, _ = await joined(server, room, "h1", "host")
    guests = [await joined(server, room, f"g{i}") for i in range(9)]
    for i, (guest, _) in enumerate(guests[:8]):
        await host.cohost_invite(room, f"g{i}")
        await guest.cohost_accept(room)
    last, _ = guests[8]
    await expect_error(last.cohost_request(room), "limit_reached")
    await expect_error(host.cohost_invite(room, "g8"), "limit_reached")
    snap = await (await server.client("watcher")).join(room)
    assert len(snap["room"]["cohosts"]) == 8
    await host.cohost_end(room, "g0")
    await last.cohost_request(room)  # a seat is free again


async def test_show_end_clears_the_stage(server: Server, room: str) -> None:
    host, _ = await joined(server, room, "h1", "host")
    guest, _ = await joined(server, room, "g1")
    _, viewer_rec = await joined(server, room, "v1")
    await host.start(room)
    await host.cohost_invite(room, "g1")
    await guest.cohost_accept(room)
    await viewer_rec.wait("cohost.updated")
    await host.end(room)
    (_, ev) = await viewer_rec.wait("cohost.updated", count=2)
    assert ev["data"] == {"cohosts": []}
    assert [e["ev"] for e in viewer_rec.durable()][-2:] == ["room.ended", "cohost.updated"]


async def test_kicked_cohost_leaves_the_stage(server: Server, room: str) -> None:
    host, _ = await joined(server, room, "h1", "host")
    guest, _ = await joined(server, room, "g1")
    _, viewer_rec = await joined(server, room, "v1")
    await host.cohost_invite(room, "g1")
    await guest.cohost_accept(room)
    await viewer_rec.wait("cohost.updated")
    await host.kick(room, "g1")
    (_, ev) = await viewer_rec.wait("cohost.updated", count=2)
    assert ev["data"] == {"cohosts": []}
