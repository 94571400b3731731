"""TURN REST-API credentials and RFC 9725 §4.6 Link headers (roomserver/core/turn.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.config import ConfigError
from roomserver.configload import resolve
from roomserver.core.turn import (
    IceServer,
    check_turn_url,
    ice_servers,
    link_header,
    parse_link_headers,
    turn_credentials,
)


def test_credentials_follow_the_turn_rest_api_convention() -> None:
    # Reference value: printf %s 1700000600:alice | openssl dgst -sha1 -hmac north-secret -binary | base64
    assert turn_credentials("north-secret", "alice", 1_700_000_000.7, 600) == (
        "1700000600:alice",
        "EdbFJ9kE5DnzTiD/imsvvWqUMAs=",
    )


def test_ice_servers_give_turn_urls_credentials_and_stun_none() -> None:
    servers = ice_servers(["turn:t.example:3478?transport=udp", "stun:s.example"], "k", "u1", 100, 60)
    assert servers[0].username == "160:u1" and servers[0].credential
    assert servers[1] == IceServer("stun:s.example")
    assert link_header(servers[1]) == '<stun:s.example>; rel="ice-server"'
    assert link_header(servers[0]) == (
        f'<turn:t.example:3478?transport=udp>; rel="ice-server"; username="160:u1"; '
        f'credential="{servers[0].credential}"; credential-type="password"'
    )


USER_CHARS = "abcXYZ019_.:@-" + '"\\ ,;<>=中'  # user ids, plus what quoting must survive


@given(
    st.text(USER_CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(["udp", "tcp"]), min_size=1, max_size=3),
)
def test_link_headers_round_trip(user: str, transports: list[str]) -> None:
    urls = [f"turn:turn.example:{3478 + i}?transport={t}" for i, t in enumerate(transports)]
    servers = ice_servers(urls, "secret", user, 1_000, 60)
    headers = [link_header(s) for s in servers]
    assert parse_link_headers(headers) == servers
    assert parse_link_headers([", ".join(headers)]) == servers  # folded into one field


def test_control_characters_never_reach_a_header() -> None:
    with pytest.raises(ValueError):
        link_header(ice_servers(["turn:t"], "k", "a\r\nSet-Cookie: x", 0, 60)[0])


def test_other_links_are_skipped() -> None:
    assert parse_link_headers(['</next>; rel="next"', "garbage", '<stun:a>; rel="ice-server"']) == [
        IceServer("stun:a")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "turn:a.example",
        "turn:10.0.0.1:3478?transport=tcp",
        "turns:a.example:5349?transport=tcp",
        "stun:[::1]:3478",
    ],
)
def test_good_turn_urls(url: str) -> None:
    assert check_turn_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://a.example",
        "turn:",
        "turn:a.example?transport=sctp",
        "turns:a.example?transport=udp",
        "stun:a.example?transport=udp",
        "turn:a.example:0",
        "turn:a b",
    ],
)
def test_bad_turn_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_turn_url(url)


def test_turn_settings() -> None:
    given = {"turn-url": ["turn:t:3478?transport=udp", "turns:t:5349"], "turn-secret": "s"}
    cfg = resolve(given, {}).config
    assert cfg.turn_urls == ["turn:t:3478?transport=udp", "turns:t:5349"] and cfg.turn_secret == "s"
    assert cfg.turn_ttl_s == 6 * 3600
    with pytest.raises(ConfigError, match="--turn-secret"):
        resolve({"turn-url": ["turn:t"]}, {})
    with pytest.raises(ConfigError, match="turn"):
        resolve({}, {"ROOMSERVER_TURN_URL": "http://t", "ROOMSERVER_TURN_SECRET": "s"})
    env = resolve([], {"ROOMSERVER_TURN_URL": "turn:a turn:b", "ROOMSERVER_TURN_SECRET": "s"}).config
    assert env.turn_urls == ["turn:a", "turn:b"]
