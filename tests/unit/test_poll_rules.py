"""Pure poll and announcement rules."""

from __future__ import annotations

import pytest

from roomserver.core import poll as rules
from roomserver.core.room import new_room
from roomserver.protocol import OpError

NOW = 1_700_000_000_000


def params(**kw):
    base = {"question": "Which color?", "options": ["red", "blue"], "duration_ms": 60_000}
    base.update(kw)
    return rules.PollParams(**base)


def test_open_vote_close():
    doc, emits = rules.open_poll(new_room("r", NOW), params(), NOW, poll_id="p1")
    poll = doc.features["poll"]
    assert emits[0].ev == "poll.opened" and poll["closes_at"] == NOW + 60_000
    assert rules.check_vote(doc, rules.VoteParams(poll="p1", option=1), NOW)["id"] == "p1"
    doc, emits = rules.close_poll(doc, "p1", {"0": 3, "1": 5})
    assert emits[0].data == {"id": "p1", "counts": [3, 5]}
    with pytest.raises(OpError) as e:
        rules.check_vote(doc, rules.VoteParams(poll="p1", option=0), NOW)
    assert e.value.code == "not_open"
    with pytest.raises(OpError):
        rules.close_poll(doc, "p1", {})


def test_one_open_poll_at_a_time_but_an_expired_one_does_not_block():
    doc, _ = rules.open_poll(new_room("r", NOW), params(), NOW, poll_id="p1")
    with pytest.raises(OpError) as e:
        rules.open_poll(doc, params(), NOW + 1)
    assert e.value.code == "conflict"
    doc, _ = rules.open_poll(doc, params(), NOW + 60_000, poll_id="p2")
    assert doc.features["poll"]["id"] == "p2"


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"options": ["a", "a"]}, "bad_request"),
        ({"options": [" ", "b"]}, "bad_request"),
        ({"question": "  "}, "bad_request"),
    ],
)
def test_bad_polls(kw, code):
    with pytest.raises(OpError) as e:
        rules.open_poll(new_room("r", NOW), params(**kw), NOW)
    assert e.value.code == code


def test_vote_errors():
    doc, _ = rules.open_poll(new_room("r", NOW), params(), NOW, poll_id="p1")
    with pytest.raises(OpError) as e:
        rules.check_vote(doc, rules.VoteParams(poll="nope", option=0), NOW)
    assert e.value.code == "not_found"
    with pytest.raises(OpError) as e:
        rules.check_vote(doc, rules.VoteParams(poll="p1", option=2), NOW)
    assert e.value.code == "bad_request"
    with pytest.raises(OpError) as e:
        rules.check_vote(doc, rules.VoteParams(poll="p1", option=0), NOW + 60_000)
    assert e.value.code == "not_open"


def test_announcement_pins_and_clears():
    doc, emits = rules.announce(
        new_room("r", NOW), rules.AnnounceParams(text="Sale at 8", countdown_to=NOW + 5), NOW
    )
    assert doc.features["announcement"] == {"text": "Sale at 8", "countdown_to": NOW + 5}
    assert emits[0].ev == "room.announcement"
    doc, _ = rules.announce(doc, rules.AnnounceParams(text=""), NOW)
    assert "announcement" not in doc.features
    with pytest.raises(OpError):
        rules.announce(doc, rules.AnnounceParams(text="x", countdown_to=NOW - 1), NOW)
