"""Webhook rules without I/O (core/webhooks.py) and the flags that configure them."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from roomserver import cli
from roomserver.config import ConfigError
from roomserver.core.webhooks import (
    LEGACY_EVENTS,
    Endpoint,
    EndpointSpecError,
    RetryPolicy,
    SignatureError,
    parse_endpoint,
    retry_after_s,
    signature_v2,
    verify,
)
from roomserver.webhooks import endpoints_for

SECRET = "w" * 40
BODY = b'{"id":"1","event":"room.started"}'


def test_signature_verifies_and_refuses_tampering_other_secrets_and_old_timestamps() -> None:
    now = time.time()
    header = signature_v2(SECRET, BODY, int(now))
    assert verify(SECRET, BODY, header, now_s=now) == int(now)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY + b" ", header, now_s=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify("x" * 40, BODY, header, now_s=now)
    # A replay 6 minutes later is refused (default tolerance 5 minutes) ...
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, header, now_s=now + 360)
    # ... so is a timestamp from the future, and a forged t (the HMAC covers it).
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, BODY, signature_v2(SECRET, BODY, int(now) + 400), now_s=now)
    forged = header.replace(f"t={int(now)}", f"t={int(now) + 360}")
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY, forged, now_s=now + 360)
    assert verify(SECRET, BODY, header, now_s=now + 3000, tolerance_s=3600)
    for bad in ("", "v1=abc", "t=x,v1=abc"):
        with pytest.raises(SignatureError, match="timestamp"):
            verify(SECRET, BODY, bad, now_s=now)


def test_filters_match_events_and_families() -> None:
    e = parse_endpoint("shop:orders:order.created,room.*:https://example.com/h?a=1:2")
    assert e == Endpoint("shop", "orders", "https://example.com/h?a=1:2", ("order.created", "room.*"))
    assert e.wants("order.created") and e.wants("room.started") and e.wants("room.members")
    assert not e.wants("lottery.drawn") and not e.wants("roomx.started")
    assert parse_endpoint("shop:all:*:http://x/h").wants("pk.ended")
    # --webhook-url keeps what it had: no room.members unless asked for.
    (legacy,) = endpoints_for("http://x/h", [], ["shop"])
    assert legacy.events == LEGACY_EVENTS and not legacy.wants("room.members") and legacy.wants("room.ended")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("shop:orders:https://x/h", "APP:ID:EVENTS:URL"),
        ("shop:bad id:*:https://x/h", "endpoint id"),
        ("shop:o::https://x/h", "EVENTS is empty"),
        ("shop:o:order.made:https://x/h", "unknown event 'order.made'"),
        ("shop:o:nope.*:https://x/h", "unknown event 'nope.*'"),
        ("shop:o:*:ftp://x/h", "not an http(s) URL"),
    ],
)
def test_bad_endpoint_specs_say_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(EndpointSpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_endpoint(spec)


def test_backoff_grows_is_capped_and_jittered() -> None:
    p = RetryPolicy(base_s=1, max_s=60, give_up_s=3600)
    rng = random.Random(7)
    waits = [p.backoff_s(a, rng) for a in range(1, 12)]
    for a, w in enumerate(waits, 1):
        ceiling = min(60, 2 ** (a - 1))
        assert ceiling / 2 <= w <= ceiling
    assert len({round(p.backoff_s(3), 6) for _ in range(20)}) > 1  # jitter


def test_retry_after_seconds_and_http_dates() -> None:
    now = time.time()
    assert retry_after_s("7", now) == 7.0
    when = datetime.fromtimestamp(now, UTC) + timedelta(seconds=30)
    assert 28 <= (retry_after_s(format_datetime(when, usegmt=True), now) or 0) <= 31
    assert retry_after_s(None, now) is None and retry_after_s("soon", now) is None


def serve_config(monkeypatch: pytest.MonkeyPatch, *args: str):
    seen: list = []
    monkeypatch.setattr(cli, "serve", lambda a: seen.append(a) or 0)
    cli.main(["serve", "--app", f"shop:{SECRET}", *args])
    return cli.config_from_args(seen[0])


def test_webhook_and_moderation_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = serve_config(
        monkeypatch,
        "--webhook",
        "shop:a:room.*:http://h/1",
        "--webhook",
        "shop:b:*:http://h/2",
        "--moderation-callback",
        "shop:https://m/check",
        "--moderation-fail",
        "closed",
        "--webhook-give-up-s",
        "3600",
    )
    assert [(e.id, e.events) for e in cfg.webhooks] == [("a", ("room.*",)), ("b", ())]
    assert cfg.moderation_urls == {"shop": "https://m/check"} and cfg.moderation_fail_closed
    assert cfg.webhook_give_up_s == 3600
    monkeypatch.setenv("ROOMSERVER_WEBHOOK", "shop:a:*:http://h/1 shop:b:order.created:http://h/2")
    assert [e.id for e in serve_config(monkeypatch).webhooks] == ["a", "b"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--webhook", "other:a:*:http://h/1"], "no app 'other'"),
        (["--webhook", "shop:a:*:http://h/1", "--webhook", "shop:a:*:http://h/2"], "given twice"),
        (["--webhook", "shop:a:order.maybe:http://h/1"], "unknown event"),
        (["--moderation-callback", "shop"], "APP:URL"),
        (["--moderation-callback", "nope:http://m/c"], "no app 'nope'"),
        (["--moderation-callback", "shop:mailto:x"], "not an http"),
    ],
)
def test_bad_webhook_flags_are_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        serve_config(monkeypatch, *args)


def test_bad_numeric_webhook_flags_stop_the_parser(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for args in (
        ["--moderation-fail", "maybe"],
        ["--webhook-give-up-s", "0"],
        ["--moderation-timeout-ms", "x"],
    ):
        with pytest.raises(SystemExit):
            serve_config(monkeypatch, *args)
        assert args[0] in capsys.readouterr().err
