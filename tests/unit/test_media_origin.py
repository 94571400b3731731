"""core/media_origin.py: the bus entry of a publisher's origin, and which one a WHEP request means."""

from __future__ import annotations

from roomserver.core import media_origin as mo


def test_entries_round_trip_and_damaged_ones_are_skipped() -> None:
    origin = mo.Origin("a", "http://10.0.0.1:8080", "host")
    assert mo.decode(mo.encode(origin)) == origin
    for bad in (
        b"",
        b"\xff",
        b"[]",
        b'{"node":"a","address":"http://x"}',
        b'{"node":"","address":"x","role":"h"}',
    ):
        assert mo.decode(bad) is None


def test_pick_the_named_publisher_or_the_host() -> None:
    host = mo.Origin("a", "http://a:1", "host")
    cohost = mo.Origin("b", "http://b:1", "cohost")
    entries = {"h": mo.encode(host), "c": mo.encode(cohost), "x": b"damaged"}
    assert mo.pick(entries, None) == ("h", host)
    assert mo.pick(entries, "c") == ("c", cohost)
    assert mo.pick(entries, "x") is None
    assert mo.pick(entries, "nobody") is None
    assert mo.pick({"c": mo.encode(cohost)}, None) is None  # no host: WHEP without ?publisher= is 404


def test_node_user_is_a_valid_user_id_and_the_url_is_escaped() -> None:
    from roomserver.auth import USER_ID_RE

    assert USER_ID_RE.fullmatch(mo.node_user("n" * 100))
    assert mo.node_user("a1") == "node:a1"
    assert mo.whep_url("http://a:1/", "r:1", "u@x") == "http://a:1/v1/rooms/r%3A1/whep?publisher=u%40x"


def test_merge_keeps_the_entries_of_publishers_live_on_other_nodes() -> None:
    entries = {
        "h": mo.encode(mo.Origin("a", "http://a:1", "host")),
        "c1": mo.encode(mo.Origin("b", "http://b:1", "cohost")),
        "c2": mo.encode(mo.Origin("a", "http://a:1", "cohost")),
    }
    assert mo.others(entries, "a") == {"c1"}
    local = [{"user": "h", "role": "host", "stream": "s2"}]
    stored = [
        {"user": "h", "role": "host", "stream": "s1"},  # this node's own: replaced by the local one
        {"user": "c1", "role": "cohost", "stream": "x"},  # live on b: kept
        {"user": "c2", "role": "cohost", "stream": "y"},  # was here, gone: dropped
        {"user": "p", "role": "pk", "stream": "z", "room": "other"},  # links are the writer's own
    ]
    assert mo.merge_publishers(local, stored, {"c1", "p"}) == [local[0], stored[1]]
    assert mo.merge_publishers([], stored, set()) == []
