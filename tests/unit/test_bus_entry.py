"""core/bus_entry.py: the JSON codec shared by media origins and node announcements."""

from __future__ import annotations

from dataclasses import dataclass

from roomserver.core import bus_entry


@dataclass(frozen=True)
class _Entry:
    node: str
    n: int


def test_encode_is_compact_and_decode_reads_it_back() -> None:
    blob = bus_entry.encode(_Entry("a", 2))
    assert blob == b'{"node":"a","n":2}'
    assert bus_entry.decode_object(blob) == {"node": "a", "n": 2}


def test_anything_but_a_json_object_is_none() -> None:
    for bad in (b"", b"\xff\xfe", b"{", b"null", b"[]", b"3", b'"x"'):
        assert bus_entry.decode_object(bad) is None, bad
