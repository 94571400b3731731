"""`roomserver serve` and `roomserver token`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from roomserver import logsafe
from roomserver.auth import DEV_APP, ROLES, mint_token
from roomserver.config import Config, env_default, parse_apps

DEV_SECRET_ENV = "ROOMSERVER_DEV_SECRET"


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server (flags also from ROOMSERVER_<FLAG> env vars)")
    d = Config()
    p.add_argument("--host", default=env_default("host", d.host))
    p.add_argument("--port", type=int, default=env_default("port", d.port))
    p.add_argument(
        "--redis-url", default=env_default("redis-url", None), help="redis://host:port/db (one node)"
    )
    p.add_argument(
        "--redis-cluster", default=env_default("redis-cluster", None), help="host:port,host:port,…"
    )
    p.add_argument("--redis-prefix", default=env_default("redis-prefix", d.redis_prefix))
    p.add_argument(
        "--redis-durable-wait-ms",
        type=int,
        default=env_default("redis-durable-wait-ms", None),
        help="acknowledge orders, claims, grabs, entries and room changes only once a replica has them"
        " (WAIT 1 N); 0 = off. Default: 200 with --redis-cluster, 0 with --redis-url",
    )
    p.add_argument(
        "--redis-durable-events",
        action="store_true",
        default=env_default("redis-durable-events", False),
        help="also wait for a replica after event-only commits (barrage, gifts, likes)",
    )
    p.add_argument(
        "--app",
        action="append",
        default=[env_default("app", "")] if env_default("app", "") else [],
        metavar="KEY:SECRET",
        help="an app whose tokens are accepted (repeatable; none = dev mode)",
    )
    p.add_argument("--flush-ms", type=int, default=env_default("flush-ms", d.flush_ms))
    p.add_argument("--frame-budget", type=int, default=env_default("frame-budget", d.frame_budget))
    p.add_argument("--barrage-cap", type=int, default=env_default("barrage-cap", d.barrage_cap))
    p.add_argument("--history-events", type=int, default=env_default("history-events", d.history_events))
    p.add_argument("--history-age-s", type=int, default=env_default("history-age-s", d.history_age_s))
    p.add_argument(
        "--max-connections-per-user", type=int, default=env_default("max-connections-per-user", 10)
    )
    p.add_argument("--max-connections-per-ip", type=int, default=env_default("max-connections-per-ip", 0))
    p.add_argument(
        "--no-batching",
        action="store_true",
        default=env_default("no-batching", False),
        help="one frame per event per socket (benchmark baseline only)",
    )
    p.add_argument("--gifts", default=env_default("gifts", None), help="JSON file with the gift catalog")
    p.add_argument("--webhook-url", default=env_default("webhook-url", None))
    p.add_argument("--public-ip", default=env_default("public-ip", None))
    p.add_argument("--ice-host", default=env_default("ice-host", None))
    p.add_argument("--media-workers", type=int, default=env_default("media-workers", 0))
    p.add_argument("--node-id", default=env_default("node-id", None))
    p.add_argument(
        "--gc-freeze-s",
        type=float,
        default=env_default("gc-freeze-s", d.gc_freeze_s),
        help="freeze the long-lived heap this often so full GC pauses stay short; 0 = Python's default",
    )
    p.add_argument(
        "--gc-reclaim-s",
        type=float,
        default=env_default("gc-reclaim-s", d.gc_reclaim_s),
        help="at most this long between full collections of a big frozen heap",
    )
    p.add_argument(
        "--gc-young-threshold",
        type=int,
        default=env_default("gc-young-threshold", d.gc_young_threshold),
        help="allocations between young collections (Python's default 700; 0 = leave it)",
    )
    p.add_argument("--log-level", default=env_default("log-level", "INFO"))


def _token_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="mint a token (dev mode secret, or --app KEY:SECRET)")
    p.add_argument("--user", required=True)
    p.add_argument("--role", default="viewer", choices=sorted(ROLES))
    p.add_argument("--room", default=None)
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--name", default=None)
    p.add_argument("--tier", type=int, default=0)
    p.add_argument(
        "--app", default=None, metavar="KEY:SECRET", help=f"default: app 'dev' with ${DEV_SECRET_ENV}"
    )


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
        public_ip=args.public_ip,
        ice_host=args.ice_host,
        media_workers=args.media_workers,
        gc_freeze_s=args.gc_freeze_s,
        gc_reclaim_s=args.gc_reclaim_s,
        gc_young_threshold=args.gc_young_threshold,
    )
    if args.node_id:
        cfg.node_id = args.node_id
    cfg.dev_secret = os.environ.get(DEV_SECRET_ENV) or None
    cfg.load_gifts(args.gifts)
    return cfg


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from roomserver.server import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logsafe.install()  # client text in a log line cannot start a forged line
    cfg = config_from_args(args)
    if cfg.dev_mode:
        secret = cfg.app_secrets()[DEV_APP]
        print(f"dev mode: app key '{DEV_APP}', secret {secret}", flush=True)
        print(
            f"  mint tokens with: {DEV_SECRET_ENV}={secret} roomserver token --user u1 --role host",
            flush=True,
        )
        print(f"  or open http://{cfg.host}:{cfg.port}/ for the dev landing page", flush=True)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # optional speed-up
        pass
    app = create_app(cfg)
    web.run_app(
        app,
        host=cfg.host,
        port=cfg.port,
        shutdown_timeout=cfg.drain_timeout_s,
        print=None,
        access_log_class=logsafe.AccessLogger,
        # Join storms: thousands of connects within seconds overflow the default 128.
        backlog=4096,
    )
    return 0


def token(args: argparse.Namespace) -> int:
    if args.app:
        apps = parse_apps([args.app])
        app, secret = next(iter(apps.items()))
    else:
        secret = os.environ.get(DEV_SECRET_ENV, "")
        app = DEV_APP
        if not secret:
            print(
                f"set ${DEV_SECRET_ENV} to the secret printed by `roomserver serve`, or pass --app",
                file=sys.stderr,
            )
            return 2
    print(
        mint_token(
            app, secret, args.user, args.role, room=args.room, ttl_s=args.ttl, name=args.name, tier=args.tier
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomserver")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    args = parser.parse_args(argv)
    return serve(args) if args.cmd == "serve" else token(args)


if __name__ == "__main__":
    sys.exit(main())
