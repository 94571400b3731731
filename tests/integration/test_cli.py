"""The `roomserver` command as a user runs it: a subprocess, its exit code and what it prints.

Every refusal is one line on stderr, exit code 2, and nothing on stdout (no banner
announcing a server that will not run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from roomserver.auth import TokenVerifier
from roomserver.bus.redis import RedisBroker
from roomserver.buswatch import BusWatch
from roomserver.cli import MAX_TOKEN_TTL_S
from roomserver.config import Config
from tests.ports import free_port, free_port_run, free_ports
from tests.redis_servers import RedisNode

GOOD_SECRET = "0123456789abcdef0123456789abcdef"  # 32 bytes: the minimum
CLI = [sys.executable, "-m", "roomserver.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env(**env))


def assert_refused(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.strip().startswith("roomserver ")
    assert r.stdout.split()[1][0].isdigit()


def test_every_serve_flag_has_help_with_default_and_env():
    out = run("serve", "--help").stdout
    usage, options = out.split("options:")
    in_usage = set(re.findall(r"\[--([a-z-]+)", usage)) - {"help"}
    # Each option's block starts with "  --name" and runs until the next one (argparse wraps it).
    blocks = {
        m[0]: " ".join(m[1].split())
        for m in re.findall(r"^  --([a-z-]+)(.*?)(?=^  -|\Z)", options, re.M | re.S)
    }
    assert len(in_usage) >= 25
    assert in_usage == set(blocks) - {"help"}
    for name in in_usage:
        assert "(default: " in blocks[name], name
        assert blocks[name].endswith(f"env ROOMSERVER_{name.upper().replace('-', '_')})"), blocks[name]


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["--app", "shop"], {}, ["KEY:SECRET"]),
        (["--app", "shop:tooshort"], {}, ["'shop'", "at least 32"]),
        (["--app", f"bad/key:{GOOD_SECRET}"], {}, ["app key 'bad/key'"]),
        ([], {"ROOMSERVER_APP": "shop:tooshort"}, ["at least 32"]),
        ([], {"ROOMSERVER_PORT": "abc"}, ["ROOMSERVER_PORT='abc'", "not an integer"]),
        ([], {"ROOMSERVER_FLUSH_MS": "-5"}, ["ROOMSERVER_FLUSH_MS", "minimum"]),
        ([], {"ROOMSERVER_NO_BATCHING": "maybe"}, ["ROOMSERVER_NO_BATCHING"]),
        (["--port", "70000"], {}, ["--port", "1..65535"]),
        (["--redis-url", "http://127.0.0.1:6379"], {}, ["redis://"]),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-cluster", "127.0.0.1:2"], {}, ["not both"]),
        (["--log-level", "loud"], {}, ["--log-level"]),
        (["--gifts", "/nonexistent/gifts.json"], {}, ["--gifts"]),
        (["--no-such-flag"], {}, ["--no-such-flag"]),
    ],
)
def test_serve_refuses_bad_configuration_in_one_line(
    args: list[str], env: dict[str, str], fragments: list[str]
):
    port = [] if "ROOMSERVER_PORT" in env else ["--port", str(free_port())]
    r = run("serve", *port, *args, **env)
    assert_refused(r, *fragments)
    assert GOOD_SECRET not in r.stderr and "tooshort" not in r.stderr  # secrets are never echoed


def test_busy_port_is_one_line_and_no_banner():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("serve", "--port", str(port))
    assert_refused(r, f"127.0.0.1:{port}", "in use", "--port")


def test_flag_wins_over_environment_and_environment_over_default(monkeypatch: pytest.MonkeyPatch):
    from roomserver import cli

    seen = []
    monkeypatch.setattr(cli, "serve", lambda args: seen.append(args) or 0)
    monkeypatch.setenv("ROOMSERVER_FLUSH_MS", "20")
    monkeypatch.setenv("ROOMSERVER_APP", f"a1:{GOOD_SECRET},a2:{GOOD_SECRET}x")
    cli.main(["serve"])
    cli.main(["serve", "--flush-ms", "30", "--app", f"a3:{GOOD_SECRET}"])
    first, second = (cli.config_from_args(a) for a in seen)
    assert (first.flush_ms, sorted(first.apps)) == (20, ["a1", "a2"])
    assert (second.flush_ms, sorted(second.apps)) == (30, ["a3"])
    assert (first.frame_budget, first.port) == (60_000, 8080)


# -- token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--user", "has space"], "--user"),
        (["--user", "x" * 65], "--user"),
        (["--user", "u1", "--room", "a/b"], "--room"),
        (["--user", "u1", "--ttl", "-1"], "--ttl"),
        (["--user", "u1", "--ttl", "0"], "--ttl"),
        (["--user", "u1", "--ttl", str(MAX_TOKEN_TTL_S + 1)], "--ttl"),
        (["--user", "u1", "--tier", "11"], "--tier"),
        (["--user", "u1", "--tier", "-1"], "--tier"),
        (["--user", "u1", "--role", "owner"], "--role"),
        (["--user", "u1", "--name", "n" * 33], "--name"),
        (["--user", "u1", "--app", "shop:tooshort"], "at least 32"),
        (["--user", "u1", "--app", "shop"], "KEY:SECRET"),
        (["--user", "u1"], "ROOMSERVER_DEV_SECRET"),
    ],
)
def test_token_refuses_what_the_server_would_reject(args: list[str], fragment: str):
    assert_refused(run("token", *args), fragment)


def test_token_for_a_real_app_from_the_servers_environment():
    apps = f"shop:{GOOD_SECRET},blog:{GOOD_SECRET[::-1]}"
    verifier = TokenVerifier({"shop": GOOD_SECRET, "blog": GOOD_SECRET[::-1]})
    r = run(
        "token", "--user", "u:1@x", "--role", "host", "--app", "blog", "--tier", "10", ROOMSERVER_APP=apps
    )
    assert r.returncode == 0, r.stderr
    who = verifier.verify(r.stdout.strip())
    assert (who.app, who.user, who.role, who.tier) == ("blog", "u:1@x", "host", 10)
    inline = run("token", "--user", "u2", "--app", f"shop:{GOOD_SECRET}", "--ttl", str(MAX_TOKEN_TTL_S))
    assert verifier.verify(inline.stdout.strip()).app == "shop"
    assert_refused(run("token", "--user", "u1", ROOMSERVER_APP=apps), "--app KEY")


# -- a running server -------------------------------------------------------------------


def _wait_for_line(path: Path, fragment: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The first line of ``path`` containing ``fragment``; fails if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if fragment in line:
                return line
        assert proc.poll() is None, path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"no {fragment!r} in {path} within {timeout}s:\n{path.read_text()}")


class Serve:
    def __init__(self, tmp: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.out, self.err = tmp / f"out-{self.port}.txt", tmp / f"err-{self.port}.txt"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port), *args], stdout=out, stderr=err, env=_env(**env)
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Serve]]:
    started: list[Serve] = []

    def start(*args: str, **env: str) -> Serve:
        s = Serve(tmp_path, *args, **env)
        started.append(s)
        return s

    yield start  # type: ignore[misc]
    for s in started:
        s.stop()


async def test_dev_banner_hint_works_as_printed(serve):
    s = serve()
    hint = _wait_for_line(s.out, "mint a token", s.proc)
    banner = s.out.read_text()
    assert f"listening on http://127.0.0.1:{s.port}" in banner
    assert "new on each start" in banner
    command = hint.split("shell: ", 1)[1]
    # Run it exactly as printed, in a shell, as a user would paste it.
    minted = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30, env=_env())
    assert minted.returncode == 0, (command, minted.stderr)
    assert shlex.split(command)[-1] == "r1"
    url = f"ws://127.0.0.1:{s.port}/v1/ws?token={minted.stdout.strip()}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json({"id": 1, "op": "room.join", "room": "r1"})
        await ws.send_json({"id": 2, "op": "barrage.send", "room": "r1", "text": "hello"})
        seen: list[dict] = []
        while not any(m.get("ev") == "barrage" for m in seen):
            seen += await ws.receive_json(timeout=10)
    assert {m.get("re"): m.get("ok") for m in seen if "re" in m} == {1: True, 2: True}


def test_unreachable_redis_is_logged_at_start_and_its_recovery(serve, tmp_path: Path):
    port = free_ports(1, cluster_bus=False)[0]
    s = serve("--redis-url", f"redis://127.0.0.1:{port}/0", "--app", f"app:{GOOD_SECRET}")
    down = _wait_for_line(s.err, "unreachable", s.proc)
    assert f"Redis redis://127.0.0.1:{port}/0 is unreachable" in down
    node = RedisNode(port, tmp_path / "redis", ["--save", "", "--appendonly", "no"])
    node.start()
    try:
        up = _wait_for_line(s.err, "reachable again", s.proc)
        assert f"Redis redis://127.0.0.1:{port}/0 is reachable again after" in up
    finally:
        s.stop()
        node.kill()


def test_bus_name_never_shows_a_redis_password():
    cfg = Config(redis_url="redis://:hunter2@10.0.0.5:6379/1")
    assert cfg.bus_name == "Redis redis://10.0.0.5:6379/1"


async def test_an_outage_is_logged_while_it_lasts_not_per_check(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
):
    # The port is held (bound, not listening: a connection is refused as if nothing were
    # there) until the server starts: free for a second, it was once taken meanwhile by
    # another socket (a CI run: "bind: Address already in use").
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", 0))
    port = hold.getsockname()[1]
    broker = RedisBroker.from_url(f"redis://127.0.0.1:{port}/0", node_id="w", op_timeout=0.5)
    watch = BusWatch(broker, "Redis test", period_s=0.01, repeat_s=0.3)
    caplog.set_level(logging.INFO, logger="roomserver.buswatch")
    try:
        assert not await watch.check()
        first = time.monotonic()
        checks = 1
        while time.monotonic() - first < 1.0:  # ends with a check at least 1 s after the first
            assert not await watch.check()
            checks += 1
        elapsed = time.monotonic() - first
        lines = [r.getMessage() for r in caplog.records]
        assert lines[0].startswith("Redis test is unreachable")
        # One line at the start, then one per repeat_s however often it is checked.
        assert checks > 10
        assert 1 <= len(lines) - 1 <= 1 + elapsed / 0.3, lines
        assert all(line.startswith("Redis test is still unreachable (for") for line in lines[1:])
        node = RedisNode(port, tmp_path / "redis", ["--save", "", "--appendonly", "no"])
        hold.close()
        node.start()
        try:
            assert await watch.check()
        finally:
            node.kill()
        assert caplog.records[-1].getMessage().startswith("Redis test is reachable again after")
    finally:
        hold.close()
        await broker.close()


# -- the README's first session, run as printed --------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(lang: str, marker: str) -> str:
    """The README's fenced ``lang`` block that contains ``marker``."""
    blocks = re.findall(rf"^```{lang}\n(.*?)^```$", README.read_text(), re.M | re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} {lang} blocks with {marker!r} in README.md"
    return found[0]


def test_readme_python_session_works_as_printed(serve):
    s = serve()
    _wait_for_line(s.out, "listening on", s.proc)
    script = readme_block("sh", "RoomClient")
    assert script.startswith(".venv/bin/python - <<'EOF'\n")
    # The only changes: this test's interpreter and port instead of make serve's.
    script = script.replace(".venv/bin/python", shlex.quote(sys.executable), 1).replace("8080", str(s.port))
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "joined r1 seq 0",
        "sent {'seq': 1}",
        "event barrage 1 u1 hello from Python",
    ]


def test_loadtest_without_its_extra_names_the_extra():
    code = "import sys; sys.modules['hdrh'] = None; from loadtest.entry import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=_env())
    assert_refused(r, "roomserver[loadtest]", "make serve")


async def test_make_cluster_script_runs_nodes_on_a_redis_it_starts(tmp_path: Path):
    """tools/cluster.sh (``make cluster``): two nodes share the Redis it started; a barrage sent
    on one node reaches a member on the other; SIGTERM stops the nodes and that Redis."""
    import signal

    from roomserver.client import RoomClient

    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "roomserver").is_file(), "run from the project's venv (make test)"
    port, redis_port = free_port_run(2), free_ports(1, cluster_bus=False)[0]
    while redis_port in (port, port + 1):
        redis_port = free_ports(1, cluster_bus=False)[0]
    out = tmp_path / "cluster.txt"
    script = Path(__file__).resolve().parents[2] / "tools" / "cluster.sh"
    env = _env(BIN=str(bin_dir), PORT=str(port), NODES="2", REDIS_PORT=str(redis_port))
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["bash", str(script)], stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_for_line(out, f"listening on http://127.0.0.1:{port} ", proc)
        _wait_for_line(out, f"listening on http://127.0.0.1:{port + 1} ", proc)
        assert f"started redis-server on 127.0.0.1:{redis_port}" in out.read_text()
        secret = _wait_for_line(out, "dev mode: app 'dev', secret ", proc).split("secret ")[1].split()[0]
        assert out.read_text().count(secret) >= 2  # one dev secret shared by both nodes
        from roomserver.auth import mint_token

        a = RoomClient(f"http://127.0.0.1:{port}", mint_token("dev", secret, "a", room="r1"))
        b = RoomClient(f"http://127.0.0.1:{port + 1}", mint_token("dev", secret, "b", room="r1"))
        async with a, b, a.events("barrage") as seen:
            await a.join("r1")
            await b.join("r1")
            await b.send_barrage("r1", "across nodes")
            event = await asyncio.wait_for(anext(seen), 10)
        assert (event["data"]["user"]["id"], event["data"]["text"]) == ("b", "across nodes")
    finally:
        # The script may have ended already (a failed start): then there is nothing to stop,
        # and the failure above is the one to see.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    # The script waits for what it started: nothing is left listening.
    for p in (port, port + 1, redis_port):
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", p))


def test_the_open_files_soft_limit_is_lifted_to_the_hard_one() -> None:
    """What `serve` and the load tester call at start: each viewer holds descriptors (its
    WebSocket, ICE sockets and their batched-send duplicates), so a process started with a
    soft limit of 256 gets the hard limit."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = (
        "import resource; from roomserver.limits import raise_open_files_limit; "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], raise_open_files_limit())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["256", str(hard)]
