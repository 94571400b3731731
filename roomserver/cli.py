"""`roomserver serve` and `roomserver token`.

Every ``serve`` flag is declared once, in ``SERVE_FLAGS``: its help, its default
and its environment variable (``ROOMSERVER_<FLAG>``; a flag on the command line
wins over the environment). A value the server cannot run with (a bad flag or
environment value, a bad ``--app``, a port already taken) ends the command with
one line on stderr and exit code 2, before anything is printed or started.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import logging
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

from roomserver import logsafe
from roomserver.auth import DEV_APP, MAX_TOKEN_LIFETIME_S, ROLES, USER_ID_RE, mint_token
from roomserver.config import AUTO_CREATE_CHOICES, Config, ConfigError, env_name, parse_apps

DEV_SECRET_ENV = "ROOMSERVER_DEV_SECRET"
APPS_ENV = env_name("app")
EXIT_USAGE = 2
MAX_TOKEN_TTL_S = MAX_TOKEN_LIFETIME_S  # the server refuses an exp further ahead
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def version() -> str:
    try:
        return metadata.version("roomserver")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


# -- value parsers: each takes the text of a flag or an environment variable ----------


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if value < low:
            raise ValueError(f"{value} is below the minimum {low}")
        return value

    return parse


def _float_at_least(low: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not value >= low:  # also refuses nan
            raise ValueError(f"{text} is below the minimum {low:g}")
        return value

    return parse


def _port(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > 65535:
        raise ValueError(f"{value} is not a TCP port (1..65535)")
    return value


def _redis_url(text: str) -> str:
    u = urlparse(text)
    if u.scheme != "redis" or not u.netloc:
        raise ValueError(f"{text!r} is not a redis://host:port[/db] URL")
    try:
        u.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    return text


def _host_ports(text: str) -> str:
    for node in (n.strip() for n in text.split(",")):
        host, sep, port = node.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{node!r} is not host:port")
    return text


def _http_url(text: str) -> str:
    u = urlparse(text)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"{text!r} is not an http(s):// URL")
    return text


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _switch(text: str) -> bool:
    """An environment switch (on the command line a switch takes no value)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not one of 1/true/yes/on, 0/false/no/off")


# -- the serve flags ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    name: str  # "--name" on the command line, ROOMSERVER_NAME in the environment
    help: str
    default: object = None
    parse: Callable[[str], object] = str
    switch: bool = False
    repeat: bool = False  # repeatable flag; in the environment a comma-separated list
    shown_default: str | None = None  # for help where the default is not a plain value
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return env_name(self.name)

    def help_text(self) -> str:
        shown = self.shown_default
        if shown is None:
            shown = "off" if self.switch else "none" if self.default is None else str(self.default)
        return f"{self.help} (default: {shown}; env {self.env})".replace("%", "%%")

    def from_env(self, environ: dict[str, str] | os._Environ[str]) -> object:
        text = environ.get(self.env)
        if text is None:
            return [] if self.repeat else self.default
        try:
            return [text] if self.repeat else (_switch(text) if self.switch else self.parse(text))
        except ValueError as exc:
            raise ConfigError(f"{self.env}={text!r}: {exc}") from None


def _assistant_mode(text: str) -> str:
    if text not in ("lexical", "hybrid", "off"):
        raise ValueError("must be lexical, hybrid or off")
    return text


_D = Config()

SERVE_FLAGS: tuple[Flag, ...] = (
    Flag("host", "address to listen on (0.0.0.0: every interface)", _D.host),
    Flag("port", "TCP port to listen on (`make serve PORT=…`)", _D.port, _port),
    Flag(
        "redis-url",
        "one Redis server, redis://[:password@]host:port[/db]",
        parse=_redis_url,
        shown_default="none: the embedded in-process bus, one process, nothing kept across restarts",
        metavar="URL",
    ),
    Flag(
        "redis-cluster",
        "Redis Cluster seed nodes host:port,host:port,…",
        parse=_host_ports,
        metavar="NODES",
    ),
    Flag(
        "redis-prefix",
        "prefix of every Redis key and channel of this deployment",
        _D.redis_prefix,
        metavar="PREFIX",
    ),
    Flag(
        "redis-durable-wait-ms",
        "acknowledge orders, claims, grabs, entries and room changes only once a replica has them"
        " (WAIT 1 N); 0 = off",
        parse=_int_at_least(0),
        shown_default="200 with --redis-cluster, 0 with --redis-url",
        metavar="MS",
    ),
    Flag(
        "redis-durable-events",
        "also wait for a replica after event-only commits (barrage, gifts, likes)",
        False,
        switch=True,
    ),
    Flag(
        "app",
        "an app whose tokens are accepted: key 1..32 of [A-Za-z0-9_-], secret at least 32 bytes"
        " (repeatable; in the environment KEY:SECRET,KEY:SECRET)",
        repeat=True,
        shown_default="none = dev mode: app 'dev' with a random secret, new on each start",
        metavar="KEY:SECRET",
    ),
    Flag(
        "flush-ms", "write each socket at most this often, batching its events", _D.flush_ms, _int_at_least(1)
    ),
    Flag(
        "frame-budget",
        "WebSocket frames per second this process writes at most: big rooms flush less often",
        _D.frame_budget,
        _int_at_least(1),
    ),
    Flag(
        "barrage-cap",
        "barrage messages per second a room delivers before shedding (0 = no cap)",
        _D.barrage_cap,
        _int_at_least(0),
    ),
    Flag("history-events", "durable events kept per room for resume", _D.history_events, _int_at_least(1)),
    Flag("history-age-s", "seconds durable events are kept for resume", _D.history_age_s, _int_at_least(1)),
    Flag(
        "max-connections-per-user",
        "sockets one user may hold on this node (more are closed with 4029)",
        _D.max_connections_per_user,
        _int_at_least(1),
    ),
    Flag(
        "max-connections-per-ip",
        "sockets one IP address may hold on this node (0 = no limit)",
        _D.max_connections_per_ip,
        _int_at_least(0),
    ),
    Flag("no-batching", "one frame per event per socket (benchmark baseline only)", False, switch=True),
    Flag(
        "gifts",
        "JSON file with the gift catalog [{id, name, value}]",
        shown_default="4 built-in gifts",
        metavar="FILE",
    ),
    Flag("webhook-url", "send signed webhooks (PROTOCOL §5) to this URL", parse=_http_url, metavar="URL"),
    Flag(
        "assistant",
        "room assistant (docs/assistant.md): lexical, hybrid (adds the embedding model) or off",
        _D.assistant,
        parse=_assistant_mode,
        metavar="MODE",
    ),
    Flag(
        "assistant-llm-url",
        "OpenAI-compatible base URL (…/v1) that rewords the assistant's answers from their facts only",
        parse=_http_url,
        shown_default="none: template answers",
        metavar="URL",
    ),
    Flag(
        "assistant-llm-model",
        "model name sent to --assistant-llm-url",
        _D.assistant_llm_model,
        metavar="NAME",
    ),
    Flag(
        "assistant-llm-key",
        "bearer key for --assistant-llm-url (prefer the environment variable)",
        metavar="KEY",
    ),
    Flag(
        "public-ip",
        "IP address advertised in WebRTC answers instead of the local ones",
        parse=_ip,
        metavar="IP",
    ),
    Flag("ice-host", "gather WebRTC host candidates on this local address only", parse=_ip, metavar="IP"),
    Flag(
        "media-workers",
        "WebRTC media worker processes (0 = media in this process)",
        _D.media_workers,
        _int_at_least(0),
    ),
    Flag("node-id", "this node's name in logs, metrics and presence", shown_default="random", metavar="ID"),
    Flag(
        "gc-freeze-s",
        "freeze the long-lived heap this often so full GC pauses stay short; 0 = Python's default",
        _D.gc_freeze_s,
        _float_at_least(0),
    ),
    Flag(
        "gc-reclaim-s",
        "at most this long between full collections of a big frozen heap",
        _D.gc_reclaim_s,
        _float_at_least(1),
    ),
    Flag(
        "gc-young-threshold",
        "allocations between young collections (Python's default 700; 0 = leave it)",
        _D.gc_young_threshold,
        _int_at_least(0),
    ),
    Flag(
        "auto-create",
        "who creates a room by joining one that does not exist: named = staff or a token naming"
        " the room, any = every token, off = only POST /v1/rooms",
        _D.auto_create,
        _one_of(*AUTO_CREATE_CHOICES),
        shown_default="named; any in dev mode (no --app)",
        metavar="POLICY",
    ),
    Flag(
        "max-rooms-per-app", "rooms one app may have (0 = no limit)", _D.max_rooms_per_app, _int_at_least(0)
    ),
    Flag(
        "room-idle-ttl-s",
        "a room nobody joined, published to or changed for this long is forgotten, keys and all",
        _D.room_idle_ttl_s,
        _int_at_least(1),
    ),
    Flag(
        "rest-rate-per-token",
        "REST requests per second per bearer token (0 = no limit)",
        _D.rest_rate_per_token,
        _float_at_least(0),
    ),
    Flag("rest-burst-per-token", "REST burst per bearer token", _D.rest_burst_per_token, _int_at_least(1)),
    Flag(
        "rest-rate-per-ip",
        "REST requests per second per client IP (0 = no limit; behind a proxy every request has its IP)",
        _D.rest_rate_per_ip,
        _float_at_least(0),
    ),
    Flag("rest-burst-per-ip", "REST burst per client IP", _D.rest_burst_per_ip, _int_at_least(1)),
    Flag("log-level", "one of " + ", ".join(LOG_LEVELS), "INFO", _log_level, metavar="LEVEL"),
)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the full usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _argtype(parse: Callable[[str], object]) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Every flag can also be set as ROOMSERVER_<FLAG>; a flag wins.",
    )
    # SUPPRESS: an absent flag leaves no attribute, so _apply_env can tell it from a given one.
    for f in SERVE_FLAGS:
        if f.switch:
            p.add_argument(f"--{f.name}", action="store_true", default=argparse.SUPPRESS, help=f.help_text())
        else:
            p.add_argument(
                f"--{f.name}",
                action="append" if f.repeat else "store",
                type=_argtype(f.parse),
                default=argparse.SUPPRESS,
                metavar=f.metavar or ("N" if isinstance(f.default, int | float) else f.name.upper()),
                help=f.help_text(),
            )


def _apply_env(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> None:
    """Fill each flag not given on the command line from the environment, else its default."""
    for f in SERVE_FLAGS:
        if not hasattr(args, f.dest):
            setattr(args, f.dest, f.from_env(environ))


def _token_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "token",
        help="mint a token for a user",
        description=(
            f"Mint a token. The app: --app KEY:SECRET; or --app KEY (or nothing) with the server's"
            f" ${APPS_ENV}; or, in dev mode, app 'dev' with ${DEV_SECRET_ENV} (the secret"
            " `roomserver serve` printed: a new one on each start)."
        ),
    )
    p.add_argument("--user", required=True, help="user id, 1..64 characters of [A-Za-z0-9_.:@-]")
    p.add_argument("--role", default="viewer", choices=sorted(ROLES), help="(default: viewer)")
    p.add_argument("--room", default=None, help="the only room the token admits (default: any)")
    p.add_argument("--ttl", type=_argtype(_int_at_least(1)), default=3600, help="seconds (default: 3600)")
    p.add_argument("--name", default=None, help="display name, at most 32 characters (default: the user id)")
    p.add_argument("--tier", type=_argtype(_int_at_least(0)), default=0, help="0..10 (default: 0)")
    p.add_argument("--app", default=None, metavar="KEY[:SECRET]", help="the app that signs the token")


def config_from_args(args: argparse.Namespace) -> Config:
    cfg = Config(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        redis_cluster=args.redis_cluster,
        redis_prefix=args.redis_prefix,
        redis_durable_wait_ms=args.redis_durable_wait_ms,
        redis_durable_events=args.redis_durable_events,
        apps=parse_apps(args.app),
        flush_ms=args.flush_ms,
        frame_budget=args.frame_budget,
        barrage_cap=args.barrage_cap,
        history_events=args.history_events,
        history_age_s=args.history_age_s,
        max_connections_per_user=args.max_connections_per_user,
        max_connections_per_ip=args.max_connections_per_ip,
        batching=not args.no_batching,
        webhook_url=args.webhook_url,
        assistant=args.assistant,
        assistant_llm_url=args.assistant_llm_url,
        assistant_llm_model=args.assistant_llm_model,
        assistant_llm_key=args.assistant_llm_key,
        public_ip=args.public_ip,
        ice_host=args.ice_host,
        media_workers=args.media_workers,
        gc_freeze_s=args.gc_freeze_s,
        gc_reclaim_s=args.gc_reclaim_s,
        gc_young_threshold=args.gc_young_threshold,
        auto_create=args.auto_create,
        max_rooms_per_app=args.max_rooms_per_app,
        room_idle_ttl_s=args.room_idle_ttl_s,
        rest_rate_per_token=args.rest_rate_per_token,
        rest_burst_per_token=args.rest_burst_per_token,
        rest_rate_per_ip=args.rest_rate_per_ip,
        rest_burst_per_ip=args.rest_burst_per_ip,
    )
    if cfg.redis_url and cfg.redis_cluster:
        raise ConfigError("give --redis-url (one server) or --redis-cluster, not both")
    if args.node_id:
        cfg.node_id = args.node_id
    cfg.dev_secret = os.environ.get(DEV_SECRET_ENV) or None
    cfg.load_gifts(args.gifts)
    return cfg


def check_listen(host: str, port: int) -> None:
    """Bind and release ``host:port`` on every address it resolves to, as the server will
    (SO_REUSEADDR like aiohttp), so that a taken port fails before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                raise ConfigError(_listen_error(host, port, exc)) from None


def _listen_error(host: str, port: int, exc: OSError) -> str:
    hint = " (another server is on it: pick a free one with --port, or PORT= for make serve)"
    return f"cannot listen on {host}:{port}: {exc.strerror}" + (hint if exc.errno == errno.EADDRINUSE else "")


def self_command() -> str:
    """How to run this roomserver again from this shell, as a copy-paste hint: the
    console script by its path (``.venv/bin/roomserver``), or the module."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "roomserver" and argv0.is_file():
        if shutil.which("roomserver") == str(argv0):
            return "roomserver"
        return _short_path(argv0)
    return f"{_short_path(Path(sys.executable))} -m roomserver.cli"


def _short_path(path: Path) -> str:
    path = path.absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def banner(cfg: Config) -> str:
    """What ``serve`` prints once it listens: where, on which bus, and in dev mode how to get in."""
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{host}:{cfg.port}"
    lines = [f"roomserver {version()} listening on {url} with {cfg.bus_name}"]
    if not cfg.dev_mode:
        return "\n".join([*lines, f"  apps: {', '.join(sorted(cfg.apps))}"])
    secret = cfg.app_secrets()[DEV_APP]
    kept = os.environ.get(DEV_SECRET_ENV) == secret
    return "\n".join(
        [
            *lines,
            f"  open {url}/ : the dev landing page mints tokens and opens the host, viewer and call pages",
            f"  dev mode: app '{DEV_APP}', secret {secret}"
            + (
                f" (from ${DEV_SECRET_ENV})"
                if kept
                else f" (new on each start; set ${DEV_SECRET_ENV} to keep one)"
            ),
            f"  mint a token in another shell: {DEV_SECRET_ENV}={secret} {self_command()} token"
            " --user u1 --role host --room r1",
        ]
    )


def serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_listen(cfg.host, cfg.port)

    from aiohttp import web

    from roomserver.server import create_app

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafe.install()  # client text in a log line cannot start a forged line
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # optional speed-up
        pass
    app = create_app(cfg)

    def on_listening(_: str) -> None:  # aiohttp calls it once the port is bound
        print(banner(cfg), flush=True)

    try:
        web.run_app(
            app,
            host=cfg.host,
            port=cfg.port,
            shutdown_timeout=cfg.drain_timeout_s,
            print=on_listening,
            access_log_class=logsafe.AccessLogger,
            # Join storms: thousands of connects within seconds overflow the default 128.
            backlog=4096,
        )
    except OSError as exc:
        # The port was taken between check_listen and the bind: still one line.
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise ConfigError(_listen_error(cfg.host, cfg.port, exc)) from None
    return 0


def token_app(choice: str | None, environ: dict[str, str] | os._Environ[str]) -> tuple[str, str]:
    """``(app key, secret)`` that ``token`` signs with (see the ``token`` description)."""
    if choice and ":" in choice:
        return next(iter(parse_apps([choice]).items()))
    configured = environ.get(APPS_ENV)
    if configured:
        try:
            apps = parse_apps([configured])
        except ConfigError as exc:
            raise ConfigError(f"{APPS_ENV}: {exc}") from None
        if choice:
            if choice not in apps:
                raise ConfigError(f"app {choice!r} is not in ${APPS_ENV} (it has {', '.join(sorted(apps))})")
            return choice, apps[choice]
        if len(apps) > 1:
            raise ConfigError(f"${APPS_ENV} has several apps: choose one with --app KEY")
        return next(iter(apps.items()))
    if choice and choice != DEV_APP:
        raise ConfigError(f"--app {choice}: give KEY:SECRET, or set ${APPS_ENV}=KEY:SECRET")
    secret = environ.get(DEV_SECRET_ENV, "")
    if not secret:
        raise ConfigError(
            f"set {DEV_SECRET_ENV} to the secret `roomserver serve` printed (a new one on each start),"
            " or pass --app KEY:SECRET"
        )
    return DEV_APP, secret


def validate_claims(args: argparse.Namespace) -> None:
    """Refuse what the server would refuse: a token it rejects is worse than no token."""
    if not USER_ID_RE.fullmatch(args.user):
        raise ConfigError(f"--user {args.user!r}: user ids are 1..64 characters of [A-Za-z0-9_.:@-]")
    if args.room not in (None, "*") and not USER_ID_RE.fullmatch(args.room):
        raise ConfigError(f"--room {args.room!r}: room ids are 1..64 characters of [A-Za-z0-9_.:@-]")
    if args.ttl > MAX_TOKEN_TTL_S:
        raise ConfigError(f"--ttl {args.ttl}: at most a year ({MAX_TOKEN_TTL_S} s)")
    if args.tier > 10:
        raise ConfigError(f"--tier {args.tier}: tiers are 0..10")
    if args.name is not None and not 0 < len(args.name) <= 32:
        raise ConfigError("--name: 1..32 characters")


def token(args: argparse.Namespace) -> int:
    validate_claims(args)
    app, secret = token_app(args.app, os.environ)
    print(
        mint_token(
            app, secret, args.user, args.role, room=args.room, ttl_s=args.ttl, name=args.name, tier=args.tier
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="roomserver", description="Real-time livestream room server.")
    parser.add_argument("--version", action="version", version=f"roomserver {version()}")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    _serve_parser(sub)
    _token_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "serve":
            _apply_env(args, os.environ)
            return serve(args)
        return token(args)
    except ConfigError as exc:
        print(f"roomserver {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
