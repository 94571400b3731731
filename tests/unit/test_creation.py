"""Ids of what staff ops create (roomserver/core/creation.py)."""

from __future__ import annotations

import pytest

from roomserver.core import creation
from roomserver.core.redpacket import PacketParams
from roomserver.protocol import OpError


def packet(**kw: object) -> PacketParams:
    return PacketParams(**{"total_cents": 1000, "count": 5, **kw})  # type: ignore[arg-type]


def test_an_id_is_random_without_a_cid_and_derived_with_one() -> None:
    assert creation.created_id("p-", "a/r1", "u1", None, packet()) != creation.created_id(
        "p-", "a/r1", "u1", None, packet()
    )
    one = creation.created_id("p-", "a/r1", "u1", "c1", packet(cid="c1"))
    assert one == creation.created_id("p-", "a/r1", "u1", "c1", packet(cid="c1"))
    assert one.startswith("p-") and len(one) == 2 + creation.STEM_HEX + creation.TAIL_HEX
    # Room, user and cid each make another stem.
    stem = one[: -creation.TAIL_HEX]
    for other in (("a/r2", "u1", "c1"), ("a/r1", "u2", "c1"), ("a/r1", "u1", "c2"), ("b/r1", "u1", "c1")):
        assert not creation.created_id("p-", *other, packet(cid=other[2])).startswith(stem)


def test_a_retry_is_found_and_a_reused_cid_is_a_conflict() -> None:
    first = creation.created_id("p-", "a/r1", "u1", "c1", packet(cid="c1"))
    assert creation.already_created(["p-other", first], first)
    assert not creation.already_created(["p-other"], first)
    changed = creation.created_id("p-", "a/r1", "u1", "c1", packet(cid="c1", count=4))
    assert changed[: -creation.TAIL_HEX] == first[: -creation.TAIL_HEX] and changed != first
    with pytest.raises(OpError) as info:
        creation.already_created([first], changed)
    assert info.value.code == "conflict"
