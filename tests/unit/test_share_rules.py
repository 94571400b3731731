"""The pure rules of issue 12's share links and reminders: a token verifies only as made
(any change to it is refused, and says why), and each reminder offset is due at most once."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.core import schedule as sched
from roomserver.core import share
from roomserver.core.room import RoomDoc

SECRET = "k" * 40
NOW = 1_700_000_000_000


def mint(**kw: object) -> str:
    args: dict = {"app": "shop", "room": "r1", "sharer": "alice", "expires_at": NOW + 60_000} | kw
    return share.mint_ref(SECRET, **args)


def reason(token: str, *, secret: str = SECRET, app: str = "shop", room: str = "r1", now: int = NOW) -> str:
    with pytest.raises(share.RefError) as info:
        share.verify_ref(secret, token, app=app, room=room, now_ms=now)
    return info.value.reason


def test_a_token_names_its_sharer_for_its_room_until_it_expires() -> None:
    token = mint()
    assert share.verify_ref(SECRET, token, app="shop", room="r1", now_ms=NOW) == "alice"
    assert reason(token, room="r2") == "other_room"
    assert reason(token, app="other") == "other_app"
    assert reason(token, now=NOW + 60_000) == "expired"
    assert reason(token, secret="z" * 40) == "forged"
    for bad in ("", ".", "abc", "abc.", ".abc", "a" * 600 + ".b"):
        assert reason(bad) == "malformed"
    # Signed by the key, but not a payload of ours: refused without reading it as one.
    payload = share._b64(msgspec.json.encode({"x": 1}))
    assert reason(f"{payload}.{share._mac(share.share_key(SECRET), payload)}") == "malformed"


def test_the_share_key_is_derived_not_the_secret() -> None:
    assert share.share_key(SECRET) != SECRET.encode()
    assert len(share.share_key(SECRET)) == 32


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_changed_character_is_refused(position: int, replacement: int) -> None:
    token = mint()
    i = position % len(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    changed = token[:i] + alphabet[replacement % len(alphabet)] + token[i + 1 :]
    if changed == token:
        return
    # The MAC is compared as text over the payload's text: no spare-bit aliasing is accepted.
    with pytest.raises(share.RefError):
        share.verify_ref(SECRET, changed, app="shop", room="r1", now_ms=NOW)


def doc(at: int | None, state: str = "idle") -> RoomDoc:
    return RoomDoc(id="r1", scheduled_at=at, state=state)  # type: ignore[arg-type]


def test_the_due_offset_is_the_nearest_whose_time_came() -> None:
    offsets = (86_400_000, 600_000)
    at = NOW + 2 * 86_400_000
    assert sched.due_offset(doc(at), offsets, at - 86_400_001) is None
    assert sched.due_offset(doc(at), offsets, at - 86_400_000) == 86_400_000
    assert sched.due_offset(doc(at), offsets, at - 600_000) == 600_000
    assert sched.due_offset(doc(at), offsets, at - 1) == 600_000
    assert sched.due_offset(doc(at), offsets, at) is None  # the show's time: nothing
    assert sched.due_offset(doc(at, "live"), offsets, at - 1000) is None
    assert sched.due_offset(doc(None), offsets, NOW) is None
    assert sched.due_offset(doc(at), (), at - 1) is None


@given(
    st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6, unique=True),
    st.lists(st.integers(min_value=0, max_value=12_000), min_size=1, max_size=40),
)
def test_each_offset_is_due_in_one_stretch_and_never_again(offsets: list[int], moments: list[int]) -> None:
    """Checked at any increasing moments, the due offsets never grow back: claiming each once
    sends each at most once, and never a larger one after a smaller."""
    at = 11_000
    ordered = tuple(sorted(offsets, reverse=True))
    seen: list[int] = []
    for now in sorted(moments):
        due = sched.due_offset(doc(at), ordered, now)
        if due is not None and (not seen or seen[-1] != due):
            assert due not in seen
            assert not seen or due < seen[-1]
            seen.append(due)


def test_payload_and_reschedule() -> None:
    view = {"id": "r1", "scheduled_at": NOW + 600_000}
    data = sched.reminder_payload(view, 600_000, NOW + 1_500, ["u1"])
    assert data == {
        "room": view,
        "scheduled_at": NOW + 600_000,
        "offset_s": 600,
        "starts_in_s": 598,
        "followers": ["u1"],
    }
    assert sched.reminder_payload(view, 1_500, NOW, [])["offset_s"] == 1.5
    moved, events = sched.reschedule(doc(NOW), NOW + 1)
    assert moved.scheduled_at == NOW + 1 and events == []
    assert sched.reschedule(doc(NOW), None)[0].scheduled_at is None
    with pytest.raises(Exception, match="live"):
        sched.reschedule(doc(NOW, "live"), NOW + 1)
    assert sched.reminder_key(5) != sched.reminder_key(6)
