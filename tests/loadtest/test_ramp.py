"""Ramp profiles and target rules (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.ramp import load_ramp_file, parse_duration, parse_ramp
from loadtest.targets import RemoteRefused, check_targets, parse_shard, share, split_urls, uses_tls


def test_parse_and_interpolate() -> None:
    r = parse_ramp("0:100@20, 30s:1000@200, 1m:1000, 90:0", default_rate=5)
    assert r.duration_s == 90 and r.peak_viewers == 1000 and r.peak_rate == 200
    assert [r.viewers_at(t) for t in (0, 15, 30, 45, 60, 75, 90, 999)] == [
        100,
        550,
        1000,
        1000,
        1000,
        500,
        0,
        0,
    ]
    assert r.rate_at(15) == 110 and r.rate_at(80) == 200
    # The integral: (20+200)/2*30 + 200*30 + 200*30.
    assert r.sends_by(30) == 3300 and r.sends_by(90) == 3300 + 6000 + 6000 and r.sends_by(1e9) == 15300


def test_first_rate_defaults_to_rate_flag() -> None:
    r = parse_ramp("0:10,5:10", default_rate=7)
    assert r.sends_by(5) == 35


@pytest.mark.parametrize(
    "text",
    ["", "0:10", "5:10,10:20", "0:10,0:20", "0:10,5:-1", "0:ten,5:1", "0-10,5:1", "0:1,x:2", "0:1@-3,5:1"],
)
def test_bad_profiles_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ramp(text, default_rate=1)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("30", "30s", "1.5m", "500ms", "1h")] == [30, 30, 90, 0.5, 3600]
    for bad in ("", "-1", "abc", "inf"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_files(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[[stage]]\nat = "0s"\nviewers = 10\nrate = 4\n[[stage]]\nat = 10\nviewers = 30\n')
    js = tmp_path / "p.json"
    js.write_text('{"stage": [{"at": "0s", "viewers": 10, "rate": 4}, {"at": "10s", "viewers": 30}]}')
    assert load_ramp_file(toml, 1) == load_ramp_file(js, 1) == parse_ramp("0:10@4,10:30", 1)
    js.write_text('{"stage": [{"at": 0, "viewers": 10, "speed": 4}, {"at": 1, "viewers": 1}]}')
    with pytest.raises(ValueError, match="unknown keys"):
        load_ramp_file(js, 1)
    js.write_text("{")
    with pytest.raises(ValueError):
        load_ramp_file(js, 1)


def test_shares_add_up() -> None:
    r = parse_ramp("0:101@30,10:7@9", 1)
    parts = [r.share(i, 3) for i in range(3)]
    for t in (0, 10):
        assert sum(p.viewers_at(t) for p in parts) == r.viewers_at(t)
    assert sum(p.sends_by(10) for p in parts) in (r.sends_by(10) - 2, r.sends_by(10) - 1, r.sends_by(10))
    assert [share(10, i, 3) for i in range(3)] == [4, 3, 3]


def test_targets() -> None:
    assert split_urls(["http://a:1, http://b:2/", "http://c:3"]) == ["http://a:1", "http://b:2", "http://c:3"]
    assert check_targets(
        ["http://127.0.0.1:8", "http://localhost:9", "http://[::1]:7"], allow_remote=False
    ) == [
        ("127.0.0.1", 8),
        ("localhost", 9),
        ("::1", 7),
    ]
    with pytest.raises(RemoteRefused):
        check_targets(["http://127.0.0.1:8", "http://10.0.0.1:8"], allow_remote=False)
    assert check_targets(["http://10.0.0.1"], allow_remote=True) == [("10.0.0.1", 80)]
    for bad in ("ftp://127.0.0.1:8", "127.0.0.1:8", "http://127.0.0.1:notaport"):
        with pytest.raises(ValueError):
            check_targets([bad], allow_remote=True)
    # TLS: wss:// is read as https://, default port 443; all targets or none.
    assert split_urls(["wss://h:1/", "WS://g:2"]) == ["https://h:1", "http://g:2"]
    assert check_targets(["https://127.0.0.1", "wss://127.0.0.1:9"], allow_remote=False) == [
        ("127.0.0.1", 443),
        ("127.0.0.1", 9),
    ]
    assert uses_tls(["https://a:1", "https://b:2"]) and not uses_tls(["http://a:1"])
    with pytest.raises(ValueError, match="TLS"):
        uses_tls(["https://a:1", "http://b:2"])


def test_shards() -> None:
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
