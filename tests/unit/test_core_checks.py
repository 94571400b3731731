"""The checks handlers call before they commit, as pure rules in core/: barrage
sending, gift prices, one open lottery, drawing, sale start, PK acceptance, whom
staff may mute or kick."""

from __future__ import annotations

import msgspec
import pytest

from roomserver.auth import Identity, Role
from roomserver.core import barrage, gifts, pk
from roomserver.core import flashsale as fs
from roomserver.core import lottery as lt
from roomserver.core import room as rules
from roomserver.core.moderation import WordFilter
from roomserver.protocol import OpError

NOW = 1_000_000
WORDS = WordFilter(["spoiler"])


def room(**changes: object) -> rules.RoomDoc:
    return msgspec.structs.replace(rules.new_room("r1", 0), **changes)


def send_error(
    doc: rules.RoomDoc, text: str = "hello", *, staff: bool = False, last: int = 0
) -> OpError | None:
    try:
        barrage.check_send(doc, user="u1", staff=staff, text=text, now_ms=NOW, last_sent_ms=last, words=WORDS)
    except OpError as exc:
        return exc
    return None


def test_barrage_passes_a_plain_message() -> None:
    assert send_error(room()) is None


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_barrage_refuses_blank_text(text: str) -> None:
    exc = send_error(room(), text)
    assert exc is not None and exc.code == "bad_request"


def test_barrage_refuses_a_muted_user_until_the_mute_ends() -> None:
    exc = send_error(room(mutes={"u1": NOW + 1}))
    assert exc is not None and exc.code == "muted"
    assert send_error(room(mutes={"u1": NOW - 1})) is None
    assert send_error(room(mutes={"u2": NOW + 1})) is None


def test_slow_mode_waits_for_viewers_not_for_staff() -> None:
    doc = room(slow_s=5)
    exc = send_error(doc, last=NOW - 2_000)
    assert exc is not None and exc.code == "rate_limited" and exc.retry_after_ms == 3_000
    assert send_error(doc, last=NOW - 5_000) is None
    assert send_error(doc, last=NOW - 1, staff=True) is None


def test_barrage_refuses_blocked_words_from_everyone() -> None:
    for staff in (False, True):
        exc = send_error(room(), "no SPOILER please", staff=staff)
        assert exc is not None and exc.code == "blocked_content"


def test_the_first_failing_check_decides() -> None:
    exc = send_error(room(mutes={"u1": NOW + 1}, slow_s=5), "spoiler", last=NOW)
    assert exc is not None and exc.code == "muted"


CATALOG = [{"id": "rose", "name": "Rose", "value": 10}, {"id": "bad", "name": "Bad", "value": "10"}]


def test_gift_price_is_value_times_count() -> None:
    assert gifts.price(CATALOG, "rose", 3) == ({"id": "rose", "name": "Rose", "value": 10}, 30)


@pytest.mark.parametrize("gift_id", ["tulip", "bad"])
def test_unknown_or_badly_priced_gift_is_bad_request(gift_id: str) -> None:
    with pytest.raises(OpError) as err:
        gifts.price(CATALOG, gift_id, 1)
    assert err.value.code == "bad_request"


def test_one_open_lottery_per_room() -> None:
    lt.check_none_open(None)
    lt.check_none_open({"id": "L0", "state": "drawn"})
    with pytest.raises(OpError) as err:
        lt.check_none_open({"id": "L0", "state": "open"})
    assert err.value.code == "conflict"


def test_only_an_open_lottery_is_drawn() -> None:
    lot = lt.open_lottery(
        lt.parse_params({"prize": "Phone", "winners": 1, "duration_ms": 60_000}),
        lottery_id="L1",
        now_ms=NOW,
        seed=bytes(32),
    )
    lt.check_drawable(lot)
    drawn, _ = lt.draw(lot, ["a"], now_ms=NOW + 1)
    with pytest.raises(OpError) as err:
        lt.check_drawable(drawn)
    assert err.value.code == "not_open"


def test_a_sale_is_bought_from_its_start() -> None:
    params = fs.parse_params(
        {
            "product": {"id": "p", "title": "P", "price_cents": 100},
            "price_cents": 100,
            "stock": 5,
            "limit_per_user": 1,
            "starts_at": NOW + 10_000,
        }
    )
    sale = fs.new_sale(params, sale_id="s1", now_ms=NOW)
    with pytest.raises(OpError) as err:
        fs.check_started(sale, NOW)
    assert (err.value.code, err.value.retry_after_ms) == ("not_open", 10_000)
    fs.check_started(sale, NOW + 10_000)


def test_only_the_invited_room_accepts_a_pk() -> None:
    invite = {"id": "pk-1", "from_room": "a", "to_room": "b"}
    pk.check_accepter(invite, "b")
    with pytest.raises(OpError) as err:
        pk.check_accepter(invite, "a")
    assert err.value.code == "forbidden"


@pytest.mark.parametrize(("actor", "target"), [("m1", "m1"), ("m1", "host1")])
def test_staff_cannot_target_themselves_or_the_host(actor: str, target: str) -> None:
    with pytest.raises(OpError) as err:
        rules.check_target(room(host="host1"), actor=actor, target=target)
    assert err.value.code == "forbidden"


def test_staff_may_target_a_viewer() -> None:
    rules.check_target(room(host="host1"), actor="m1", target="v1")


def who(user: str, role: Role = "viewer", room: str | None = None) -> Identity:
    return Identity(app="a", user=user, name=user, role=role, exp=0, room=room)


def test_join_needs_a_token_for_the_room_and_no_kick() -> None:
    doc = room(kicks={"v1": NOW + 1})
    rules.check_admitted(doc, who("v2"), NOW)
    rules.check_admitted(doc, who("v2", room="r1"), NOW)
    rules.check_admitted(doc, who("v1", "moderator"), NOW)  # staff are never kept out
    rules.check_admitted(doc, who("v1"), NOW + 1)  # the kick is over
    for refused in (who("v2", room="r2"), who("v1")):
        with pytest.raises(OpError) as err:
            rules.check_admitted(doc, refused, NOW)
        assert err.value.code == "forbidden"
