"""Issue 15/13: one declaration per setting drives the Config fields, the flags, the
ROOMSERVER_* names, the config file and docs/configuration.md; precedence is
flags > environment > file > defaults; `roomserver config` masks secrets."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path

import pytest

from roomserver import logsetup
from roomserver.config import SETTINGS, Config, ConfigError
from roomserver.configload import describe, mask_url, resolve, with_table

ROOT = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef0123456789abcdef"


def test_docs_table_is_current():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert with_table(doc) == doc, "regenerate with: python -m roomserver.configload"


def test_every_setting_is_a_field_and_every_flag_has_a_unique_env_name():
    fields = {f.name for f in dataclasses.fields(Config)}
    assert {s.dest for s in SETTINGS} <= fields
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    internal = fields - {s.dest for s in SETTINGS}
    # Internal on purpose; a new field is a setting unless added here with a reason.
    assert internal == {
        "dev_secret",  # ROOMSERVER_DEV_SECRET, shared with `roomserver token`
        "socket_buffer_limit",
        "socket_buffer_soft",
        "banned_words_file",
        "drain_timeout_s",
        "webhook_poll_s",  # a worker's idle poll: tests shorten it, operators need not
        "webhook_log_retention",
    }


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "roomserver.toml"
    path.write_text(text)
    return str(path)


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path):
    path = write(
        tmp_path,
        'flush-ms = 10\nbarrage_cap = 7\nhost = "0.0.0.0"\nno-batching = true\n'
        f'cors-origins = ["https://Shop.example"]\n[apps]\nshop = "{SECRET}"\n',
    )
    env = {"ROOMSERVER_FLUSH_MS": "20", "ROOMSERVER_BARRAGE_CAP": "8"}
    r = resolve({"flush-ms": 30}, env, path)
    c = r.config
    assert (c.flush_ms, c.barrage_cap, c.host, c.port) == (30, 8, "0.0.0.0", 8080)
    assert (c.batching, c.apps, c.cors_origins) == (False, {"shop": SECRET}, ["https://shop.example"])
    assert r.sources["flush-ms"] == "--flush-ms"
    assert r.sources["barrage-cap"] == "env ROOMSERVER_BARRAGE_CAP"
    assert r.sources["host"] == f"file {path}"
    assert r.sources["port"] == "default"
    # ROOMSERVER_CONFIG names the file when --config does not.
    assert resolve({}, {"ROOMSERVER_CONFIG": path}).config.barrage_cap == 7


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("flush_mss = 3\n", ["unknown setting 'flush_mss'", "did you mean 'flush-ms'"]),
        ("flush-ms = -1\n", ["flush-ms", "minimum"]),
        ('flush-ms = "fast"\n', ["flush-ms", "not an integer"]),
        ("no-batching = 1\n", ["no-batching", "true or false"]),
        ("flush-ms = 1\nflush_ms = 2\n", ["given twice"]),
        ("flush-ms = \n", ["config file"]),
        ('[apps]\nshop = "short"\n', ["app 'shop'", "at least 32"]),
        ('redis-url = "http://x"\n', ["redis-url", "redis://"]),
        ("[redis]\nurl = 1\n", ["unknown setting 'redis'"]),
    ],
)
def test_bad_file_is_one_clear_line(tmp_path: Path, text: str, fragments: list[str]):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        resolve({}, {}, path)
    message = str(err.value)
    assert "\n" not in message and path in message
    for fragment in fragments:
        assert fragment in message, message
    assert "short" not in message.replace("shop", "")  # the secret is not echoed


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="No such file"):
        resolve({}, {}, str(tmp_path / "nope.toml"))


def test_describe_masks_secrets_and_names_sources(tmp_path: Path):
    path = write(
        tmp_path, f'redis-cluster = "rediss://ops:hunter2hunter2@h1:7000,h2:7000"\napp = ["a:{SECRET}"]\n'
    )
    env = {"ROOMSERVER_WEBHOOK_URL": "https://hook:pw123456@example.com/x"}
    text = describe(resolve({"port": 9000}, env, path))
    assert "hunter2" not in text and SECRET not in text and "pw123456" not in text
    assert 'redis-cluster            = "rediss://ops:****@h1:7000,h2:7000"  # file ' in text
    assert 'app                      = "a:****"' in text
    assert (
        'webhook-url              = "https://hook:****@example.com/x"  # env ROOMSERVER_WEBHOOK_URL' in text
    )
    assert "port                     = 9000  # --port" in text
    assert "# node-id                  = (random)  # default" in text


def test_mask_url():
    assert mask_url("redis://:pw@h:1/0") == "redis://:****@h:1/0"
    assert mask_url("rediss://u:pw@h:1") == "rediss://u:****@h:1"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    assert mask_url("h1:1,h2:2") == "h1:1,h2:2"


def test_bus_name_never_shows_a_password():
    assert "pw" not in Config(redis_cluster="rediss://u:pw@h1:1,h2:2").bus_name
    assert "pw" not in Config(redis_url="rediss://u:pw@h1:1/0").bus_name


def test_json_log_lines_carry_context_and_stay_one_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logsetup.formatter("json", "node-7"))
    logger = logging.getLogger("tests.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside any socket")
        logsetup.bind_user("shop", "u\u202e1")
        token = logsetup.bind_room("r1\nFAKE")
        try:
            raise ValueError("bad\u2028input")
        except ValueError:
            logger.exception("op %s failed", "x\r\nFAKE")
        logsetup.ROOM.reset(token)
    finally:
        logger.removeHandler(handler)
        logsetup.APP.set(None)
        logsetup.USER.set(None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    first, second = map(json.loads, lines)
    assert first["node"] == "node-7" and "room" not in first and "user" not in first
    assert (second["app"], second["user"], second["room"]) == ("shop", "u\\u202e1", "r1\\x0aFAKE")
    assert second["msg"] == "op x\\x0d\\x0aFAKE failed" and second["level"] == "ERROR"
    assert "ValueError: bad\\u2028input" in second["exc"]
    for line in lines:  # what a log reader sees: no raw breaker or bidi control
        assert not any(c in line for c in "\u2028\u2029\u202e\x85")
