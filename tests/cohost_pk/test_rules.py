"""The pure co-host and PK rules (core/cohost.py, core/pk.py): no I/O, every transition."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomserver.bus.base import AUDIENCE_STAFF, audience_user
from roomserver.core import cohost, pk
from roomserver.core.room import RoomDoc, new_room
from roomserver.protocol import OpError

T0 = 1_000_000


def user(uid: str) -> dict:
    return {"id": uid, "name": uid.upper(), "tier": 1}


HOST = user("host")


def room(rid: str = "r1") -> RoomDoc:
    return new_room(rid, T0)


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(OpError) as info:
        fn(*args, **kwargs)
    return info.value.code


# -- co-host ------------------------------------------------------------------------------


def test_request_then_host_accepts() -> None:
    doc, emits = cohost.request(room(), user("v1"), T0, "q1", is_host=False)
    assert [(e.ev, e.durable, e.audience) for e in emits] == [("cohost.requested", False, AUDIENCE_STAFF)]
    assert emits[0].data == {"id": "q1", "user": user("v1"), "expires_at": T0 + cohost.PENDING_TTL_MS}
    entry = cohost.find(doc, T0 + 1, actor="host", is_host=True, request_id=None, user="v1")
    assert entry["id"] == "q1"
    doc, emits = cohost.accept(doc, "q1", T0 + 2, accepter=HOST)
    expected = [{"id": "v1", "name": "V1", "tier": 1, "since": T0 + 2}]
    assert cohost.cohosts(doc) == expected
    assert [(e.ev, e.durable, e.data) for e in emits] == [("cohost.updated", True, {"cohosts": expected})]
    assert cohost.pending(doc) == {}


def test_invite_then_the_invited_user_accepts_with_their_own_view() -> None:
    doc, emits = cohost.invite(room(), "v2", HOST, T0, "i1")
    assert [(e.ev, e.audience) for e in emits] == [("cohost.invited", audience_user("v2"))]
    assert emits[0].data["by"] == HOST and emits[0].data["user"] == {"id": "v2"}
    # The host cannot accept an invitation, another viewer cannot either.
    assert (
        code_of(cohost.find, doc, T0, actor="host", is_host=True, request_id="i1", user=None) == "not_found"
    )
    assert code_of(cohost.find, doc, T0, actor="v3", is_host=False, request_id=None, user=None) == "not_found"
    assert code_of(cohost.find, doc, T0, actor="v3", is_host=False, request_id=None, user="v2") == "forbidden"
    entry = cohost.find(doc, T0, actor="v2", is_host=False, request_id=None, user="v2")
    doc, _ = cohost.accept(doc, entry["id"], T0, accepter=user("v2"))
    assert cohost.cohost_ids(doc) == {"v2"}
    assert cohost.cohosts(doc)[0]["name"] == "V2"


def test_reject_notifies_staff_and_the_user_and_changes_no_cohosts() -> None:
    doc, _ = cohost.request(room(), user("v1"), T0, "q1", is_host=False)
    doc, emits = cohost.reject(doc, "q1", T0, by=HOST)
    assert {(e.ev, e.durable, e.audience) for e in emits} == {
        ("cohost.rejected", False, AUDIENCE_STAFF),
        ("cohost.rejected", False, audience_user("v1")),
    }
    assert cohost.pending(doc) == {} and cohost.cohosts(doc) == []
    assert code_of(cohost.reject, doc, "q1", T0, by=HOST) == "not_found"


def test_conflicts_and_limits() -> None:
    doc = room()
    assert code_of(cohost.request, doc, HOST, T0, "q0", is_host=True) == "conflict"
    doc, _ = cohost.request(doc, user("v1"), T0, "q1", is_host=False)
    assert code_of(cohost.request, doc, user("v1"), T0, "q2", is_host=False) == "conflict"
    assert code_of(cohost.invite, doc, "v1", HOST, T0, "i1") == "conflict"
    assert code_of(cohost.invite, doc, "host", HOST, T0, "i1") == "bad_request"
    for i in range(cohost.MAX_COHOSTS):
        doc, _ = cohost.invite(doc, f"c{i}", HOST, T0, f"i{i}")
        doc, _ = cohost.accept(doc, f"i{i}", T0, accepter=user(f"c{i}"))
    assert len(cohost.cohosts(doc)) == cohost.MAX_COHOSTS
    assert code_of(cohost.request, doc, user("v9"), T0, "q9", is_host=False) == "limit_reached"
    # The pending request made before the limit cannot be accepted now, and stays pending.
    assert code_of(cohost.accept, doc, "q1", T0, accepter=HOST) == "limit_reached"
    assert "q1" in cohost.pending(doc)
    assert code_of(cohost.invite, doc, "c0", HOST, T0, "ix") == "conflict"  # already a co-host


def test_pending_entries_are_bounded() -> None:
    doc = room()
    for i in range(cohost.MAX_PENDING):
        doc, _ = cohost.request(doc, user(f"v{i}"), T0, f"q{i}", is_host=False)
    assert code_of(cohost.request, doc, user("late"), T0, "ql", is_host=False) == "limit_reached"


def test_expiry_after_60_s_and_not_before() -> None:
    doc, _ = cohost.request(room(), user("v1"), T0, "q1", is_host=False)
    doc, _ = cohost.invite(doc, "v2", HOST, T0 + 10, "i1")
    end = T0 + cohost.PENDING_TTL_MS
    assert not cohost.due(doc, end - 1)
    assert code_of(cohost.expire, doc, end - 1) == "not_open"
    # Expired but not yet removed: no longer answerable.
    assert code_of(cohost.accept, doc, "q1", end, accepter=HOST) == "not_found"
    assert cohost.due(doc, end)
    doc, emits = cohost.expire(doc, end)
    assert {(e.ev, e.audience, e.data["id"]) for e in emits} == {
        ("cohost.expired", AUDIENCE_STAFF, "q1"),
        ("cohost.expired", audience_user("v1"), "q1"),
    }
    assert list(cohost.pending(doc)) == ["i1"]
    doc, emits = cohost.expire(doc, end + 10)
    assert {e.data["kind"] for e in emits} == {"invite"}
    assert cohost.pending(doc) == {} and not cohost.due(doc, end + 10**6)
    # Once expired, the same user may ask again.
    cohost.request(doc, user("v1"), end + 20, "q2", is_host=False)


def test_end_by_host_or_by_the_cohost_only() -> None:
    doc, _ = cohost.invite(room(), "v1", HOST, T0, "i1")
    doc, _ = cohost.accept(doc, "i1", T0, accepter=user("v1"))
    assert code_of(cohost.end, doc, "v1", actor="v2", is_host=False) == "forbidden"
    assert code_of(cohost.end, doc, "v2", actor="host", is_host=True) == "not_found"
    left, emits = cohost.end(doc, "v1", actor="v1", is_host=False)
    assert cohost.cohosts(left) == [] and emits[0].data == {"cohosts": []}
    removed, _ = cohost.end(doc, "v1", actor="host", is_host=True)
    assert cohost.cohosts(removed) == []


def test_clear_at_show_end() -> None:
    assert code_of(cohost.clear, room()) == "not_open"
    doc, _ = cohost.request(room(), user("v1"), T0, "q1", is_host=False)
    cleared, emits = cohost.clear(doc)
    assert emits == [] and cohost.pending(cleared) == {}
    doc, _ = cohost.accept(doc, "q1", T0, accepter=HOST)
    cleared, emits = cohost.clear(doc)
    assert [e.data for e in emits] == [{"cohosts": []}]


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["request", "invite", "accept", "reject", "end", "expire"]),
        st.integers(0, 11),  # which user
        st.integers(0, 30_000),  # time step (ms)
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_invariants_hold_over_any_sequence(actions: list[tuple[str, int, int]]) -> None:
    """≤ 8 co-hosts; a user is at most one of {co-host, one live pending entry}; an
    error never changes the document; every change of the list emits cohost.updated."""
    doc, now, n = room(), T0, 0
    for action, u, step in actions:
        now += step
        uid = f"u{u}"
        before = doc
        try:
            if action == "request":
                n += 1
                doc, emits = cohost.request(doc, user(uid), now, f"q{n}", is_host=False)
            elif action == "invite":
                n += 1
                doc, emits = cohost.invite(doc, uid, HOST, now, f"i{n}")
            elif action in ("accept", "reject"):
                entries = [e for e in cohost.pending(doc).values() if e["user"]["id"] == uid]
                if not entries:
                    continue
                e = entries[0]
                actor, host = ("host", True) if e["kind"] == "request" else (uid, False)
                found = cohost.find(doc, now, actor=actor, is_host=host, request_id=e["id"], user=None)
                if action == "accept":
                    doc, emits = cohost.accept(doc, found["id"], now, accepter=user(uid))
                else:
                    doc, emits = cohost.reject(doc, found["id"], now, by=HOST)
            elif action == "end":
                doc, emits = cohost.end(doc, uid, actor=uid, is_host=False)
            else:
                doc, emits = cohost.expire(doc, now)
        except OpError:
            assert doc is before
            continue
        ids = [c["id"] for c in cohost.cohosts(doc)]
        assert len(ids) <= cohost.MAX_COHOSTS and len(ids) == len(set(ids))
        live = [e["user"]["id"] for e in cohost.pending(doc).values() if e["expires_at"] > now]
        assert len(live) == len(set(live)) and not set(live) & set(ids)
        changed = cohost.cohosts(doc) != cohost.cohosts(before)
        assert changed == any(e.ev == "cohost.updated" for e in emits)


# -- PK -----------------------------------------------------------------------------------


def invitation(duration_s: int = 60) -> dict:
    return pk.new_invite("pk1", "a", "b", HOST, duration_s, T0)


def test_invite_reserves_both_rooms_and_only_the_target_is_told() -> None:
    inv = invitation()
    a, emits_a = pk.reserve(room("a"), inv, T0)
    b, emits_b = pk.reserve(room("b"), inv, T0)
    assert emits_a == []
    assert [(e.ev, e.durable, e.audience) for e in emits_b] == [("pk.invited", False, AUDIENCE_STAFF)]
    assert emits_b[0].data["from_room"] == "a" and emits_b[0].data["expires_at"] == T0 + pk.INVITE_TTL_MS
    assert pk.busy(a, T0) and pk.busy(b, T0)
    other = pk.new_invite("pk2", "c", "b", HOST, 60, T0)
    assert code_of(pk.reserve, b, other, T0) == "conflict"
    # An expired invitation no longer makes a room busy, whether or not it was removed yet.
    assert pk.busy(b, T0 + pk.INVITE_TTL_MS) is None
    assert code_of(pk.reserve, room("x"), inv, T0) == "bad_request"


def test_invite_validation() -> None:
    assert code_of(pk.new_invite, "p", "a", "a", HOST, 60, T0) == "bad_request"
    assert code_of(pk.new_invite, "p", "a", "b", HOST, 0, T0) == "bad_request"
    assert code_of(pk.new_invite, "p", "a", "b", HOST, pk.MAX_DURATION_S + 1, T0) == "bad_request"


def test_start_and_finish_with_a_winner() -> None:
    inv = invitation(duration_s=60)
    hosts = {"a": "ha", "b": "hb"}
    b, _ = pk.reserve(room("b"), inv, T0)
    assert pk.invitation(b, "pk1", T0)["to_room"] == "b"
    assert code_of(pk.invitation, b, "pk1", T0 + pk.INVITE_TTL_MS) == "not_found"
    b, emits = pk.start(b, "pk1", hosts, T0 + 5, T0 + 5 + 60_000)
    assert [(e.ev, e.durable) for e in emits] == [("pk.started", True)]
    assert emits[0].data == {
        "id": "pk1",
        "rooms": ["a", "b"],
        "hosts": hosts,
        "started_at": T0 + 5,
        "ends_at": T0 + 60_005,
        "duration_s": 60,
    }
    assert "pk_invite" not in b.features and pk.active(b, "pk1")["state"] == "started"
    assert pk.busy(b, T0 + 10**9)  # a running battle keeps the room busy, whatever the time
    assert code_of(pk.start, b, "pk1", hosts, T0, T0) == "not_found"  # started once
    ended, emits = pk.finish(b, "pk1", {"a": 20, "b": 500}, T0 + 9, pk.EndReason.ENDED)
    assert [(e.ev, e.durable) for e in emits] == [("pk.ended", True)]
    assert emits[0].data == {
        "id": "pk1",
        "rooms": ["a", "b"],
        "scores": {"a": 20, "b": 500},
        "winner": "b",
        "reason": "ended",
    }
    assert "pk" not in ended.features and ended.features["pk_last"]["winner"] == "b"
    assert code_of(pk.finish, ended, "pk1", {}, T0, pk.EndReason.TIME) == "not_open"  # ends once
    assert pk.busy(ended, T0) is None


def test_draw_has_no_winner_and_missing_rooms_score_zero() -> None:
    assert pk.winner({"a": 7, "b": 7}) is None
    assert pk.winner({"a": 0, "b": 0}) is None
    assert pk.winner({"a": 1}) is None
    assert pk.winner({"a": 1, "b": 0}) == "a"
    b, _ = pk.reserve(room("b"), invitation(), T0)
    b, _ = pk.start(b, "pk1", {"a": "ha", "b": "hb"}, T0, T0 + 1000)
    _, emits = pk.finish(b, "pk1", {}, T0, pk.EndReason.CANCELLED)
    assert emits[0].data["scores"] == {"a": 0, "b": 0} and emits[0].data["winner"] is None


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_winner_is_the_room_with_more_points(x: int, y: int) -> None:
    w = pk.winner({"a": x, "b": y})
    assert w == ("a" if x > y else "b" if y > x else None)


def test_withdraw_rejected_expired_and_rollback() -> None:
    inv = invitation()
    b, _ = pk.reserve(room("b"), inv, T0)
    _, emits = pk.withdraw(b, "pk1", event="pk.rejected", by_room="b")
    assert [(e.ev, e.audience, e.data) for e in emits] == [
        ("pk.rejected", AUDIENCE_STAFF, {"id": "pk1", "rooms": ["a", "b"], "by_room": "b"})
    ]
    gone, emits = pk.withdraw(b, "pk1", event=None)
    assert emits == [] and "pk_invite" not in gone.features
    assert code_of(pk.withdraw, gone, "pk1", event="pk.expired") == "not_open"


def live_features(docs: dict[str, RoomDoc], now: int) -> dict[str, dict]:
    out = {}
    for r, d in docs.items():
        features = dict(d.features)
        if features.get("pk_invite") is not None and features["pk_invite"]["expires_at"] <= now:
            del features["pk_invite"]
        out[r] = features
    return out


PK_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["invite", "accept", "reject", "end", "tick"]),
        st.sampled_from(["r0", "r1", "r2"]),
        st.sampled_from(["r0", "r1", "r2"]),
        st.integers(0, 40_000),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(PK_ACTIONS)
def test_pk_over_three_rooms_any_sequence(actions: list[tuple[str, str, str, int]]) -> None:
    """The handlers' orchestration (each step applied to both rooms, errors skipped) over
    any sequence: a room is in at most one PK; the two rooms of a running PK or a live
    invitation always agree on it;
    a started PK ends exactly once in each room; an error changes no document."""
    docs = {r: room(r) for r in ("r0", "r1", "r2")}
    now, n, ended = T0, 0, []
    for action, x, y, step in actions:
        now += step
        before = dict(docs)
        try:
            if action == "invite":
                n += 1
                inv = pk.new_invite(f"pk{n}", x, y, HOST, 30, now)
                docs[x], _ = pk.reserve(docs[x], inv, now)
                try:
                    docs[y], _ = pk.reserve(docs[y], inv, now)
                except OpError:
                    docs[x], _ = pk.withdraw(docs[x], inv["id"], event=None)  # rollback
                    raise
            elif action == "accept":
                inv = pk.invitation(docs[x], (docs[x].features.get("pk_invite") or {"id": "-"})["id"], now)
                if inv["to_room"] != x:
                    continue
                a = inv["from_room"]
                hosts = {a: "ha", x: "hx"}
                docs[a], _ = pk.start(docs[a], inv["id"], hosts, now, now + 30_000)
                docs[x], _ = pk.start(docs[x], inv["id"], hosts, now, now + 30_000)
            elif action == "reject":
                inv = pk.invitation(docs[x], (docs[x].features.get("pk_invite") or {"id": "-"})["id"], now)
                for r in inv["rooms"]:
                    docs[r], _ = pk.withdraw(docs[r], inv["id"], event="pk.rejected", by_room=x)
            else:  # "end" by a host, or "tick": deadlines (expiry, ends_at)
                for r in ("r0", "r1", "r2"):
                    inv = docs[r].features.get("pk_invite")
                    if action == "tick" and inv is not None and inv["expires_at"] <= now:
                        for rr in inv["rooms"]:
                            with contextlib.suppress(OpError):
                                docs[rr], _ = pk.withdraw(docs[rr], inv["id"], event="pk.expired")
                    battle = docs[r].features.get("pk")
                    if battle is not None and ((action == "end" and r == x) or battle["ends_at"] <= now):
                        for rr in battle["rooms"]:
                            with contextlib.suppress(OpError):
                                docs[rr], _ = pk.finish(docs[rr], battle["id"], {}, now, pk.EndReason.TIME)
                                ended.append((battle["id"], rr))
        except OpError:
            if action in ("invite", "accept", "reject"):
                # A failed step leaves no trace (the invite's rollback restores room x),
                # except that an expired invitation it replaced stays gone: it bound
                # nothing any more (busy() ignores it), so dropping it is harmless.
                assert live_features(docs, now) == live_features(before, now)
            continue
        for r, d in docs.items():
            battle, inv = d.features.get("pk"), d.features.get("pk_invite")
            assert battle is None or inv is None  # at most one PK per room
            if battle is not None:
                assert docs[pk.other_room(battle, r)].features.get("pk") == battle
            if inv is not None and inv["expires_at"] > now:  # an expired one may linger on one side
                assert docs[pk.other_room(inv, r)].features.get("pk_invite") == inv
    assert len(ended) == len(set(ended))  # each room ended each battle once
