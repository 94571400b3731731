"""Issue 13 operator ergonomics through the real `roomserver` command: a TOML config
file, `roomserver config`, JSON logs with room/user/node fields, CORS origins."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import aiohttp
import pytest

from roomserver.client import RoomClient, RoomError
from tests.integration.test_cli import GOOD_SECRET, assert_refused, run
from tests.ports import free_port
from tests.server_fixtures import new_room_id, start_serve_process, token


def test_config_command_prints_effective_values_with_sources_and_masks(tmp_path: Path):
    conf = tmp_path / "rs.toml"
    conf.write_text(
        f'flush-ms = 10\nbarrage-cap = 7\nredis-url = "redis://:hunter2hunter2@127.0.0.1:6390/0"\n[apps]\nshop = "{GOOD_SECRET}"\n'
    )
    r = run("config", "--config", str(conf), "--barrage-cap", "9", ROOMSERVER_FLUSH_MS="20")
    assert r.returncode == 0, r.stderr
    lines = {line.split("=")[0].strip(): line for line in r.stdout.splitlines() if not line.startswith("#")}
    assert lines["flush-ms"].endswith("= 20  # env ROOMSERVER_FLUSH_MS")
    assert lines["barrage-cap"].endswith("= 9  # --barrage-cap")
    assert lines["redis-url"] == f'redis-url                = "redis://:****@127.0.0.1:6390/0"  # file {conf}'
    assert lines["app"].startswith('app                      = "shop:****"')
    assert lines["port"].endswith("= 8080  # default")
    assert "hunter2" not in r.stdout and GOOD_SECRET not in r.stdout


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("flush_mss = 3\n", ["unknown setting 'flush_mss'", "flush-ms"]),
        ("port = 70000\n", ["port", "1..65535"]),
        ("[apps]\nshop = 'tooshort'\n", ["at least 32"]),
        ("port = \n", ["config file"]),
    ],
)
def test_bad_config_file_stops_serve_and_config_in_one_line(tmp_path: Path, text: str, fragments: list[str]):
    conf = tmp_path / "rs.toml"
    conf.write_text(text)
    # A --port flag would win over the file's port: none where the file sets it.
    port = [] if text.startswith("port") else ["--port", str(free_port())]
    for cmd in ("serve", "config"):
        r = run(cmd, "--config", str(conf), *port)
        assert_refused(r, str(conf), *fragments)
        assert "tooshort" not in r.stderr


def test_missing_config_file_is_one_line(tmp_path: Path):
    missing = str(tmp_path / "missing.toml")
    assert_refused(run("serve", "--port", str(free_port()), "--config", missing), missing, "No such file")
    assert_refused(run("config", ROOMSERVER_CONFIG=missing), missing, "No such file")


async def test_json_logs_carry_node_room_and_user():
    room = new_room_id()
    server = await start_serve_process("--log-format", "json", "--log-level", "DEBUG", "--node-id", "edge-1")
    client = RoomClient(server.base_url, token("ann"), reconnect=False)
    try:
        await client.connect()
        with pytest.raises(RoomError):  # not joined: answered not_joined, logged at DEBUG
            await client.send_barrage(room, "hello\u2028FAKE")
    finally:
        await client.close()
        assert server.stop(signal.SIGTERM) == 0
    assert server.proc.stderr is not None
    lines = server.proc.stderr.read().decode().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(r["node"] == "edge-1" for r in records)
    (refusal,) = [r for r in records if r["msg"].startswith("op barrage.send answered not_joined")]
    assert (refusal["room"], refusal["user"], refusal["app"], refusal["level"]) == (
        room,
        "ann",
        "testapp",
        "DEBUG",
    )


async def test_cors_origins_narrow_who_may_read_answers():
    server = await start_serve_process(
        "--cors-origins", "https://shop.example", "--cors-origins", "https://b.example:8443"
    )
    try:
        async with aiohttp.ClientSession() as http:
            url = server.base_url + "/healthz"
            async with http.get(url, headers={"Origin": "https://shop.example"}) as ok:
                assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
                assert ok.headers["Vary"] == "Origin"
            async with http.options(
                server.base_url + "/v1/rooms",
                headers={"Origin": "https://b.example:8443", "Access-Control-Request-Method": "POST"},
            ) as pre:
                assert pre.headers["Access-Control-Allow-Origin"] == "https://b.example:8443"
                assert "POST" in pre.headers["Access-Control-Allow-Methods"]
            async with http.get(url, headers={"Origin": "https://evil.example"}) as other:
                assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    finally:
        server.stop()
    default = await start_serve_process()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(default.base_url + "/healthz", headers={"Origin": "https://any.example"}) as resp,
        ):
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        default.stop()


def test_bad_cors_origin_is_refused():
    assert_refused(
        run("serve", "--port", str(free_port()), "--cors-origins", "shop.example"), "--cors-origins", "origin"
    )
