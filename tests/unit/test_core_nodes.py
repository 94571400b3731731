"""core/nodes.py: the node announcement's encoding and helpers."""

from __future__ import annotations

from roomserver.core import nodes


def test_round_trip_and_bad_entries() -> None:
    load = nodes.NodeLoad("n1", "http://a:1", 3, 1, 2, 0.5, False, 10, 20)
    entry = nodes.decode("n1", nodes.encode(load), 900)
    assert entry == {
        "node": "n1",
        "address": "http://a:1",
        "sockets": 3,
        "rooms": 1,
        "media_viewers": 2,
        "cpu": 0.5,
        "draining": False,
        "started_at": 10,
        "announced_at": 20,
        "expires_in_ms": 900,
    }
    assert nodes.decode("x", b"\xff\xfe", 1) is None
    assert nodes.decode("x", b"[1]", 1) is None
    # Another version's announcement: known fields read, the rest None, the key wins.
    assert nodes.decode("x", b'{"node": "y", "sockets": 4, "extra": 1}', 5) == {
        **dict.fromkeys(nodes.NodeLoad.__dataclass_fields__),
        "node": "x",
        "sockets": 4,
        "expires_in_ms": 5,
    }


def test_helpers() -> None:
    assert nodes.cpu_cores((0.0, 1.0), (2.0, 2.0)) == 0.5
    assert nodes.cpu_cores((1.0, 1.0), (1.0, 5.0)) == 0.0
    assert nodes.default_address("127.0.0.1", 80, "box") == "http://127.0.0.1:80"
    assert nodes.default_address("0.0.0.0", 80, "box") == "http://box:80"
    assert nodes.default_address("::1", 80, "box") == "http://[::1]:80"
    assert nodes.ttl_ms(5) == 15_000
