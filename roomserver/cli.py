"""`roomserver serve`, `roomserver config` and `roomserver token`.

The ``serve`` flags are the settings declared on ``Config`` (roomserver/config.py):
each also an environment variable (``ROOMSERVER_<FLAG>``) and a ``--config`` file
key; flags win over the environment, the environment over the file
(roomserver/configload.py). ``config`` prints what ``serve`` would run with. A value
the server cannot run with (a bad flag, environment or file value, a bad ``--app``,
a port already taken) ends the command with one line on stderr and exit code 2,
before anything is printed or started.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import errno
import os
import shutil
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from roomserver import logsafe, logsetup
from roomserver.auth import DEV_APP, MAX_TOKEN_LIFETIME_S, ROLES, USER_ID_RE, mint_token
from roomserver.config import SETTINGS, Config, ConfigError, env_name, parse_apps
from roomserver.configload import CONFIG_ENV, Resolved, describe, resolve
from roomserver.configspec import Flag, int_at_least
from roomserver.limits import raise_open_files_limit

DEV_SECRET_ENV = "ROOMSERVER_DEV_SECRET"
APPS_ENV = env_name("app")
EXIT_USAGE = 2
MAX_TOKEN_TTL_S = MAX_TOKEN_LIFETIME_S  # the server refuses an exp further ahead


def version() -> str:
    try:
        return metadata.version("roomserver")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


# -- the serve flags: one per Config setting (roomserver/config.py) ---------------------

SERVE_FLAGS = SETTINGS


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


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file of settings, keys named like the flags; flags and the environment win"
        f" (default: none; env {CONFIG_ENV})",
    )
    # SUPPRESS: an absent flag leaves no attribute, so resolve() can tell it from a given one.
    for f in SETTINGS:
        if f.switch:
            p.add_argument(
                f"--{f.name}", action="store_true", default=argparse.SUPPRESS, help=_help(f.help_text())
            )
        else:
            p.add_argument(
                f"--{f.name}",
                action="append" if f.repeat else "store",
                type=_argtype(f.spec.parse),
                default=argparse.SUPPRESS,
                metavar=f.spec.metavar or ("N" if isinstance(f.default, int | float) else f.name.upper()),
                help=_help(f.help_text()),
            )


def _dest(f: Flag) -> str:
    """The argparse attribute of a setting's flag (``--no-batching``: ``no_batching``)."""
    return f.name.replace("-", "_")


def _help(text: str) -> str:
    return text.replace("%", "%%")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Every flag can also be set as ROOMSERVER_<FLAG> or in a --config"
        " file; a flag wins over the environment, the environment over the file.",
    )
    _add_setting_flags(p)


def _config_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="print the effective configuration",
        description="Print the configuration `serve` would run with (the same flags, environment and"
        " --config file), each setting with its source; secrets are masked.",
    )
    _add_setting_flags(p)


def resolve_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Resolved:
    given = {f.name: getattr(args, _dest(f)) for f in SETTINGS if hasattr(args, _dest(f))}
    return resolve(given, environ, args.config)


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
    p.add_argument("--ttl", type=_argtype(int_at_least(1)), default=3600, help="seconds (default: 3600)")
    p.add_argument("--name", default=None, help="display name, at most 32 characters (default: the user id)")
    p.add_argument("--tier", type=_argtype(int_at_least(0)), default=0, help="0..10 (default: 0)")
    p.add_argument("--app", default=None, metavar="KEY[:SECRET]", help="the app that signs the token")


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config of parsed ``serve`` arguments (``main`` resolved them with the
    environment and the config file of that moment)."""
    resolved: Resolved = args.resolved
    cfg = copy.copy(resolved.config)
    cfg.dev_secret = os.environ.get(DEV_SECRET_ENV) or None
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


def check_redis_login(cfg: Config) -> None:
    """Refuse to start when Redis refuses our login or TLS (a wrong password would
    otherwise look like an outage: every op answered `unavailable`). Redis not
    answering at all is no reason to refuse: the server rides out outages."""
    target = cfg.redis_cluster or cfg.redis_url
    if not target:
        return
    from roomserver.bus.redis_client import LoginRefused, SlotRouter, Timeouts, parse_target

    async def login() -> None:
        seeds, db, credentials = parse_target(target, cfg.redis_ca_file)
        router = SlotRouter(
            seeds, cluster=bool(cfg.redis_cluster), db=db, credentials=credentials, timeouts=Timeouts(op=3.0)
        )
        try:
            await router.check_login()
        finally:
            await router.close()

    try:
        asyncio.run(login())
    except LoginRefused as exc:
        raise ConfigError(f"{cfg.bus_name}: {exc}") from None
    except (OSError, ssl.SSLError) as exc:  # the CA file is not a certificate
        raise ConfigError(f"--redis-ca-file {cfg.redis_ca_file}: {exc}") from None


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
    check_redis_login(cfg)

    from aiohttp import web

    from roomserver.server import create_app

    logsetup.configure(cfg.log_level, cfg.log_format, cfg.node_id)
    raise_open_files_limit()
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
    _config_parser(sub)
    _token_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.cmd in ("serve", "config"):
            # The argument names of the settings are their field names (dest).
            args.resolved = resolve_args(args, os.environ)
        if args.cmd == "serve":
            return serve(args)
        if args.cmd == "config":
            print(describe(args.resolved))
            return 0
        return token(args)
    except ConfigError as exc:
        print(f"roomserver {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
