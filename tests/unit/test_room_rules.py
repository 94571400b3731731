"""Pure room rules: lifecycle, products, moderation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core import room as rules
from roomserver.core.room import Product
from roomserver.protocol import OpError
from tests.server_fixtures import SNAPSHOT_KEYS

NOW = 1_700_000_000_000


def fresh() -> rules.RoomDoc:
    return rules.new_room("r1", NOW, title="Show")


def test_lifecycle_is_one_way_per_show():
    doc = fresh()
    assert doc.state == "idle"
    doc, emits = rules.start(doc, "h1", NOW + 1, None)
    assert (doc.state, doc.host, doc.show) == ("live", "h1", 1)
    assert [e.ev for e in emits] == ["room.started"]
    with pytest.raises(OpError) as e:
        rules.start(doc, "h1", NOW + 2, None)
    assert e.value.code == "conflict"
    doc, emits = rules.end(doc, NOW + 3, {"likes": 0})
    assert doc.state == "ended" and emits[0].data == {"summary": {"likes": 0}}
    with pytest.raises(OpError):
        rules.end(doc, NOW + 4, {})
    doc, _ = rules.start(doc, "h1", NOW + 5, "Second")
    assert (doc.show, doc.title) == (2, "Second")


def test_document_round_trips():
    doc, _ = rules.pin(fresh(), Product(id="p1", title="Tea", price_cents=990))
    doc, _ = rules.mute(doc, "u1", NOW, 60)
    assert rules.decode_doc(rules.encode_doc(doc)) == doc


@pytest.mark.parametrize(
    "kwargs",
    [{"title": "x" * 101}, {"mode": "tv"}, {"barrage_cap": 0}, {"barrage_cap": 10**6}],
)
def test_new_room_rejects_bad_params(kwargs):
    with pytest.raises(OpError) as e:
        rules.new_room("r1", NOW, **kwargs)
    assert e.value.code == "bad_request"


@pytest.mark.parametrize("room_id", ["", "a b", "x" * 65, "röom", "r/1"])
def test_room_ids_are_restricted(room_id):
    with pytest.raises(OpError):
        rules.validate_room_id(room_id)


def test_pin_validates_and_unpin_needs_a_pinned_product():
    with pytest.raises(OpError):
        rules.pin(fresh(), Product(id="", title="x", price_cents=1))
    with pytest.raises(OpError):
        rules.pin(fresh(), Product(id="p", title="x", price_cents=-1))
    with pytest.raises(OpError) as e:
        rules.unpin(fresh(), None)
    assert e.value.code == "not_found"
    doc, _ = rules.pin(fresh(), Product(id="p1", title="Tea", price_cents=1))
    with pytest.raises(OpError):
        rules.unpin(doc, "p2")
    doc, emits = rules.unpin(doc, "p1")
    assert doc.pinned is None and emits[0].data == {"product": {"id": "p1"}}


def test_mute_expires_and_unmute_lifts():
    doc, emits = rules.mute(fresh(), "u1", NOW, 10)
    assert emits[0].ev == "user.muted"
    assert rules.is_restricted(doc.mutes, "u1", NOW + 9_999)
    assert not rules.is_restricted(doc.mutes, "u1", NOW + 10_000)
    doc, _ = rules.mute(doc, "u2", NOW, None)
    assert rules.is_restricted(doc.mutes, "u2", NOW + 10**9)  # until lifted
    doc, _ = rules.unmute(doc, "u2", NOW)
    assert not rules.is_restricted(doc.mutes, "u2", NOW)
    with pytest.raises(OpError) as e:
        rules.unmute(doc, "u2", NOW)
    assert e.value.code == "not_found"


def test_expired_entries_are_pruned_on_write():
    doc, _ = rules.mute(fresh(), "u1", NOW, 1)
    doc, _ = rules.mute(doc, "u2", NOW + 5_000, 1)
    assert set(doc.mutes) == {"u2"}


def test_kick_targets_the_user_and_closes_with_4003():
    doc, emits = rules.kick(fresh(), "u1", NOW, None, by="h1")
    (e,) = emits
    assert (e.ev, e.durable, e.audience, e.close_code) == ("kicked", False, "user:u1", 4003)
    assert rules.is_restricted(doc.kicks, "u1", NOW + 3_599_000)
    assert not rules.is_restricted(doc.kicks, "u1", NOW + 3_600_000)


def test_slow_mode_bounds():
    doc, emits = rules.slow(fresh(), 5)
    assert doc.slow_s == 5 and emits[0].data == {"slow_s": 5}
    for bad in (-1, 301):
        with pytest.raises(OpError):
            rules.slow(fresh(), bad)


def test_words_are_normalised_and_bounded():
    doc, _ = rules.words(fresh(), ["ＢＡＤ", "Spam"], [])
    assert doc.words == ["bad", "spam"]
    doc, _ = rules.words(doc, [], ["SPAM"])
    assert doc.words == ["bad"]
    with pytest.raises(OpError):
        rules.words(doc, [" "], [])
    with pytest.raises(OpError) as e:
        rules.words(doc, [f"w{i}" for i in range(rules.MAX_ROOM_WORDS + 1)], [])
    assert e.value.code == "limit_reached"


def test_snapshot_has_every_protocol_key():
    snap = rules.snapshot(fresh(), online=3, likes=7, seq=9, epoch="e", gifts=[])["room"]
    assert set(snap) >= SNAPSHOT_KEYS
    assert (snap["online"], snap["likes"], snap["seq"], snap["epoch"]) == (3, 7, 9, "e")


@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 100)), max_size=30))
def test_restriction_table_matches_a_model(ops):
    doc = fresh()
    model: dict[str, int] = {}
    t = NOW
    for user, dur in ops:
        t += 1000
        doc, _ = rules.mute(doc, user, t, dur)
        model[user] = 0 if dur == 0 else t + dur * 1000
    for user in ("u1", "u2", "u3"):
        expected = user in model and (model[user] == 0 or model[user] > t)
        assert rules.is_restricted(doc.mutes, user, t) == expected


def test_a_changed_playback_is_announced_and_an_unchanged_one_is_not() -> None:
    doc, emits = rules.with_settings(fresh(), playback="hls")
    assert doc.features["playback"] == "hls"
    assert [(e.ev, e.data, e.durable) for e in emits] == [("room.playback", {"playback": "hls"}, True)]
    doc, emits = rules.with_settings(doc, playback="hls", record=True)
    assert emits == [] and doc.features["record"] is True
    doc, emits = rules.with_settings(doc, playback=None)
    assert "playback" not in doc.features
    assert [(e.ev, e.data, e.durable) for e in emits] == [("room.playback", {"playback": None}, True)]
    assert rules.with_settings(doc) == (doc, [])
