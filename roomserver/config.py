"""Server configuration: the ``Config`` dataclass, whose fields declare the settings.

Each setting is a flag, a ROOMSERVER_* environment variable and a config-file key
(roomserver/configspec.py: the declaration; roomserver/configload.py: precedence).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from roomserver import configspec as cs
from roomserver.auth import DEV_APP
from roomserver.configspec import env_name, flags_of, setting, setting_factory
from roomserver.core import loyalty
from roomserver.core import schedule as sched
from roomserver.core.turn import check_turn_url
from roomserver.core.webhooks import (
    Endpoint,
    EndpointSpecError,
    check_endpoints,
    check_http_url,
    parse_endpoint,
)
from roomserver.tenancy import APP_KEY_RE

DEFAULT_GIFTS: list[dict[str, object]] = [
    {"id": "heart", "name": "Heart", "value": 1},
    {"id": "rose", "name": "Rose", "value": 10},
    {"id": "rocket", "name": "Rocket", "value": 500},
    {"id": "castle", "name": "Castle", "value": 2000},
]


AutoCreate = Literal["named", "any", "off"]
AUTO_CREATE_CHOICES = ("named", "any", "off")
LogFormat = Literal["text", "json"]
LOG_FORMATS = ("text", "json")

# Long enough for a replica on another host to acknowledge (normally < 1 ms on a
# LAN), short enough that a shard without replicas answers `unavailable` well
# within the broker's 1 s op timeout.
DEFAULT_CLUSTER_DURABLE_WAIT_MS = 200


def _without_login(url: str) -> str:
    """``redis[s]://user:password@hosts`` -> ``redis[s]://hosts``: fit for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def _load_gifts(path: object) -> list[dict[str, object]]:
    try:
        gifts = msgspec.json.decode(Path(str(path)).read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(gifts, list) or not all(isinstance(g, dict) for g in gifts):
        raise ConfigError(f"{path}: not a JSON list of {{id, name, value}} objects")
    return gifts


def _apps(values: object) -> dict[str, str]:
    return parse_apps([str(v) for v in values]) if isinstance(values, list) else {}


def _masked_apps(apps: object) -> str:
    return ", ".join(f"{key}:****" for key in sorted(apps)) if isinstance(apps, dict) else ""


def _endpoints(values: object) -> list[Endpoint]:
    """``--webhook`` values; the apps they name are checked in ``check_apps``."""
    try:
        return [parse_endpoint(str(spec)) for spec in values] if isinstance(values, list) else []
    except EndpointSpecError as exc:
        raise ConfigError(str(exc)) from None


def _endpoint_ids(endpoints: object) -> str:
    return ", ".join(f"{e.app}:{e.id}" for e in endpoints) if isinstance(endpoints, list) else ""


def _moderation_urls(values: object) -> dict[str, str]:
    """``--moderation-callback APP:URL`` values."""
    urls: dict[str, str] = {}
    for spec in values if isinstance(values, list) else []:
        app, sep, url = str(spec).partition(":")
        if not sep or url.startswith("//"):
            raise ConfigError(f"--moderation-callback takes APP:URL, got {spec!r}")
        if app in urls:
            raise ConfigError(f"--moderation-callback {app} is given twice")
        try:
            urls[app] = check_http_url(url)
        except EndpointSpecError as exc:
            raise ConfigError(f"--moderation-callback {app}: {exc}") from None
    return urls


def _gift_count(gifts: object) -> str:
    return f"{len(gifts)} gifts" if isinstance(gifts, list) else str(gifts)


# Every setting is declared once, here: `setting(default, help, parser, ...)` on a field
# makes the flag --field-name, the variable ROOMSERVER_FIELD_NAME, the file key
# field-name and a row of docs/configuration.md (roomserver/configspec.py). A field
# without `setting` is internal.
@dataclass(slots=True)
class Config:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(8080, "TCP port to listen on (`make serve PORT=…`)", cs.port)
    redis_url: str | None = setting(
        None,
        "one Redis server, redis://[user:password@]host:port[/db]; rediss:// for TLS",
        cs.redis_url,
        shown_default="none: the embedded in-process bus, one process, nothing kept across restarts",
        metavar="URL",
    )
    redis_cluster: str | None = setting(
        None,
        "Redis Cluster seed nodes host:port,host:port,… or redis[s]://[user:password@]host:port,…",
        cs.redis_cluster,
        metavar="NODES",
    )
    redis_prefix: str = setting(
        "rs:", "prefix of every Redis key and channel of this deployment", metavar="PREFIX"
    )
    redis_ca_file: str | None = setting(
        None,
        "CA certificate file that rediss:// servers are verified against",
        cs.readable_file,
        shown_default="the system's CAs",
        metavar="FILE",
    )
    # WAIT for one replica after money and state writes (ms; 0 = off). None = the
    # mode's default: on for --redis-cluster, off for --redis-url (see durable_wait_ms).
    redis_durable_wait_ms: int | None = setting(
        None,
        "acknowledge orders, claims, grabs, entries and room changes only once a replica has them"
        " (WAIT 1 N); 0 = off",
        cs.int_at_least(0),
        shown_default="200 with --redis-cluster, 0 with --redis-url",
        metavar="MS",
    )
    # Also wait after event-only commits (barrage, gifts, likes): slower, see docs.
    redis_durable_events: bool = setting(
        False, "also wait for a replica after event-only commits (barrage, gifts, likes)", switch=True
    )
    # app key -> secret. Empty = dev mode (app "dev" with a random secret).
    apps: dict[str, str] = setting_factory(
        dict,
        "an app whose tokens are accepted: key 1..32 of [A-Za-z0-9_-], secret at least 32 bytes"
        " (repeatable; in the environment KEY:SECRET,KEY:SECRET; in a file a table [app])",
        repeat=True,
        flag="app",
        convert=_apps,
        show=_masked_apps,
        shown_default="none = dev mode: app 'dev' with a random secret, new on each start",
        metavar="KEY:SECRET",
    )
    dev_secret: str | None = None
    flush_ms: int = setting(
        50, "write each socket at most this often, batching its events", cs.int_at_least(1)
    )
    # Upper bound on WebSocket frames written per second by this process; the
    # flush interval of big rooms stretches so that sockets/interval stays under it.
    frame_budget: int = setting(
        60_000,
        "WebSocket frames per second this process writes at most: big rooms flush less often",
        cs.int_at_least(1),
    )
    barrage_cap: int = setting(
        100, "barrage messages per second a room delivers before shedding (0 = no cap)", cs.int_at_least(0)
    )
    history_events: int = setting(2000, "durable events kept per room for resume", cs.int_at_least(1))
    history_age_s: int = setting(1800, "seconds durable events are kept for resume", cs.int_at_least(1))
    # A socket whose unsent bytes exceed this is a slow consumer: closed with 4008.
    socket_buffer_limit: int = 2 * 1024 * 1024
    # Above this, ephemeral events are skipped for the socket (shed low priority first).
    socket_buffer_soft: int = 256 * 1024
    max_connections_per_user: int = setting(
        10, "sockets one user may hold on this node (more are closed with 4029)", cs.int_at_least(1)
    )
    # Sockets per client IP (0 = no limit). Viewers behind one carrier NAT share an
    # IP: raise it for such audiences (and for load tests from one machine).
    max_connections_per_ip: int = setting(
        200, "sockets one IP address may hold on this node (0 = no limit)", cs.int_at_least(0)
    )
    # off = one frame per event per socket (benchmark baseline)
    batching: bool = setting(
        True,
        "one frame per event per socket (benchmark baseline only)",
        switch=True,
        flag="no-batching",
        invert=True,
    )
    gifts: list[dict[str, object]] = setting_factory(
        lambda: list(DEFAULT_GIFTS),
        "JSON file with the gift catalog [{id, name, value}]",
        convert=_load_gifts,
        show=_gift_count,
        shown_default="4 built-in gifts",
        metavar="FILE",
    )
    banned_words_file: str | None = None
    webhook_url: str | None = setting(
        None, "send signed webhooks (PROTOCOL §5) to this URL", cs.http_url, metavar="URL"
    )
    # -- webhooks and the moderation callback (roomserver/webhooks.py, moderation_hook.py) --
    # Endpoints per app with event filters; --webhook-url adds endpoint "default" (the
    # events it always had) to every app. Apps named here are checked in ``check_apps``.
    webhooks: list[Endpoint] = setting_factory(
        list,
        "a webhook endpoint of an app: EVENTS is * or a comma list (room.*, order.created, …)"
        " (repeatable; in the environment separated by spaces)",
        repeat=True,
        env_sep=None,
        flag="webhook",
        convert=_endpoints,
        show=_endpoint_ids,
        shown_default="none",
        metavar="APP:ID:EVENTS:URL",
    )
    webhook_backoff_s: float = setting(
        1.0, "first webhook retry after about this long", cs.float_at_least(0.001), metavar="S"
    )
    webhook_backoff_max_s: float = setting(
        600.0, "longest wait between webhook retries", cs.float_at_least(0.001), metavar="S"
    )
    webhook_give_up_s: float = setting(
        24 * 3600.0,
        "a webhook not delivered this long after its event is marked failed",
        cs.float_at_least(1),
        metavar="S",
    )
    webhook_timeout_s: float = setting(
        5.0, "one webhook POST's timeout", cs.float_at_least(0.01), metavar="S"
    )
    # How often an idle endpoint's worker looks for events other nodes queued.
    webhook_poll_s: float = 1.0
    webhook_log_retention: int = 10_000
    members_batch_s: float = setting(
        5.0,
        "room.members webhooks (joined/left lists) at most this often per room and node",
        cs.float_at_least(0.01),
        metavar="S",
    )
    # app -> URL called before a barrage is published (allow / block / replace).
    moderation_urls: dict[str, str] = setting_factory(
        dict,
        "URL the app's barrage is sent to before publishing: allow, block or replace"
        " (repeatable; in the environment separated by spaces)",
        repeat=True,
        env_sep=None,
        flag="moderation-callback",
        convert=_moderation_urls,
        shown_default="none",
        metavar="APP:URL",
    )
    moderation_timeout_ms: int = setting(
        300, "a moderation callback not answered within this is a failure", cs.int_at_least(1), metavar="MS"
    )
    # On timeout or error: block (closed) or allow (open).
    moderation_fail_closed: bool = setting(
        False,
        "on a moderation callback failure: open = publish, closed = refuse (blocked_content)",
        cs.one_of("open", "closed"),
        flag="moderation-fail",
        convert=lambda v: v == "closed",
        show=lambda v: "closed" if v else "open",
        shown_default="open",
        metavar="open|closed",
    )
    moderation_concurrency: int = setting(
        64,
        "moderation callbacks in flight per node; beyond it a barrage is treated as on a failure",
        cs.int_at_least(1),
    )
    # The analytics store (issue 12, docs/analytics.md): the behaviour log, reports,
    # profiles and points. Embedded (SQLite under --data-dir) unless --database-url.
    analytics: bool = setting(
        True,
        "no behaviour log and no analytics store (reports, profiles, points, share attribution)",
        switch=True,
        flag="no-analytics",
        invert=True,
    )
    data_dir: str = setting(
        "roomserver-data",
        "directory of the embedded analytics store (analytics.sqlite3), relative to the working directory",
        metavar="DIR",
    )
    # Issue 14: shows recorded without transcoding under <data-dir>/recordings/<app>/<room>/;
    # a room's own `record` (PATCH /v1/rooms/{room}) overrides this default.
    record: bool = setting(
        False,
        "record every show's publishers (unless the room says otherwise) under DIR/recordings",
        switch=True,
    )
    # Issue 14: a live HLS rendition of each live room's host (H.264 remuxed, VP8 transcoded to
    # H.264 once per room) under <data-dir>/hls/<app>/<room>/, at /v1/rooms/{room}/hls/index.m3u8.
    hls: bool = setting(
        False,
        "a live HLS rendition of every live room's host (VP8 is transcoded to H.264) under DIR/hls",
        switch=True,
    )
    database_url: str | None = setting(
        None,
        "PostgreSQL for the analytics store (clustered deployments), instead of the embedded file",
        cs.database_url,
        shown_default="none: embedded SQLite in --data-dir",
        metavar="URL",
    )
    # -- share links, follows and reminders (issue 12: roomserver/handlers/share.py, reminders.py) --
    share_link_ttl_s: int = setting(
        7 * 24 * 3600,
        "a share link (share.link) attributes joins for this long after it was made",
        cs.int_at_least(60),
        metavar="S",
    )
    reminder_offsets: tuple[int, ...] = setting(
        sched.DEFAULT_OFFSETS_MS,
        "room.reminder webhooks this long before a room's scheduled_at (comma list of 24h, 10m, 30s…;"
        " none = off)",
        sched.parse_offsets,
        show=sched.show_offsets,
        shown_default="24h,10m",
        metavar="LIST",
    )
    # Loyalty (docs/analytics.md "Profiles, tags, points and tiers"): points rules with
    # daily caps, member tier thresholds, and the day the caps count in.
    points_rules: str = setting(
        loyalty.DEFAULT_POINTS_RULES,
        "loyalty points per rule, RULE=POINTS[/PER][:DAILY_CAP],… (rules: watch per minute, barrage,"
        " like, gift and order per yuan, share per new viewer brought; a rule left out earns nothing)",
        loyalty.check_points_rules,
        metavar="SPEC",
    )
    member_tiers: str = setting(
        loyalty.DEFAULT_TIERS,
        "lifetime points earned for member tier 1, 2, … (ascending, at most 10); the room takes"
        " the higher of this tier and the token's `tier`",
        loyalty.check_tiers,
        metavar="LIST",
    )
    points_day_offset_min: int = setting(
        loyalty.DEFAULT_DAY_OFFSET_MIN,
        "minutes east of UTC of the day daily point caps count in (480: China time)",
        loyalty.check_day_offset,
    )
    retention_days: int = setting(
        365,
        "keep behaviour log records this many days (older ones are purged hourly; docs/analytics.md)",
        cs.int_at_least(1),
        metavar="DAYS",
    )
    # The room assistant (docs/assistant.md): lexical (BM25), hybrid (+ the embedding
    # model of the `assistant` extra, when installed) or off.
    assistant: str = setting(
        "lexical",
        "room assistant: lexical, hybrid (adds the embedding model) or off",
        cs.one_of("lexical", "hybrid", "off"),
        metavar="MODE",
    )
    # Optional LLM phrasing of the assistant's answers (OpenAI-compatible; off when None).
    assistant_llm_url: str | None = setting(
        None,
        "OpenAI-compatible base URL (…/v1) that rewords the assistant's answers from their facts only",
        cs.http_url,
        shown_default="none: template answers",
        metavar="URL",
    )
    assistant_llm_model: str = setting(
        "gpt-4o-mini", "model name sent to --assistant-llm-url", metavar="NAME"
    )
    assistant_llm_key: str | None = setting(
        None,
        "bearer key for --assistant-llm-url (prefer the environment variable)",
        show=lambda v: "****" if v else "",
        metavar="KEY",
    )
    public_ip: str | None = setting(
        None, "IP address advertised in WebRTC answers instead of the local ones", cs.ip, metavar="IP"
    )
    ice_host: str | None = setting(
        None, "gather WebRTC host candidates on this local address only", cs.ip, metavar="IP"
    )
    # TURN (roomserver/core/turn.py): coturn with use-auth-secret + static-auth-secret; each
    # WHIP/WHEP caller gets the URLs with credentials that expire after turn_ttl_s.
    turn_urls: list[str] = setting_factory(
        list,
        "a TURN (or STUN) server announced to WebRTC clients: turn:host:port?transport=udp|tcp,"
        " turns:host:port?transport=tcp (repeatable; in the environment separated by spaces)",
        check_turn_url,
        repeat=True,
        env_sep=None,
        flag="turn-url",
        shown_default="none",
        metavar="URL",
    )
    turn_secret: str | None = setting(
        None,
        "coturn's static-auth-secret: TURN credentials are HMAC-SHA1(secret, '<expiry>:<user>')",
        show=lambda v: "****" if v else "",
        metavar="SECRET",
    )
    turn_ttl_s: int = setting(
        6 * 3600,
        "how long a TURN credential handed to a client stays valid",
        cs.int_at_least(60),
        metavar="S",
    )
    media_workers: int = setting(
        0, "WebRTC media worker processes (0 = media in this process)", cs.int_at_least(0)
    )
    media_forwarding: str = setting(
        "rtp",
        "how media reaches viewers: rtp = publisher RTP packets rewritten per viewer (NACKs from a"
        " packet cache); frame = frames reassembled and re-packetized per viewer (the earlier path)",
        cs.one_of("rtp", "frame"),
        metavar="MODE",
    )
    node_id: str = setting_factory(
        lambda: secrets.token_hex(4),
        "this node's name in logs, metrics and presence",
        shown_default="random",
        metavar="ID",
    )
    advertise_url: str | None = setting(
        None,
        "where clients and load balancers reach this node, as listed by GET /v1/nodes "
        "(default http://HOST:PORT, the machine's name when HOST is 0.0.0.0)",
        cs.http_url,
        metavar="URL",
    )
    announce_s: float = setting(
        5.0,
        "how often this node writes its address and load to the bus (GET /v1/nodes); "
        "it is listed until 3 periods pass without one; 0 = never",
        cs.float_at_least(0.0),
    )
    drain_timeout_s: float = 5.0
    # Freeze the long-lived heap every gc_freeze_s so full collections stay short
    # (0 = leave Python's collector alone); see roomserver/gcpolicy.py.
    gc_freeze_s: float = setting(
        1.0,
        "freeze the long-lived heap this often so full GC pauses stay short; 0 = Python's default",
        cs.float_at_least(0),
    )
    gc_reclaim_s: float = setting(
        3600.0, "at most this long between full collections of a big frozen heap", cs.float_at_least(1)
    )
    # Allocations between young collections while the policy runs (Python's own: 700).
    gc_young_threshold: int = setting(
        10_000,
        "allocations between young collections (Python's default 700; 0 = leave it)",
        cs.int_at_least(0),
    )
    # Who creates a room by joining one that does not exist (see handlers/rooms.py);
    # None = the mode's default (room_auto_create).
    auto_create: AutoCreate | None = setting(
        None,
        "who creates a room by joining one that does not exist: named = staff or a token naming"
        " the room, any = every token, off = only POST /v1/rooms",
        cs.one_of(*AUTO_CREATE_CHOICES),
        shown_default="named; any in dev mode (no --app)",
        metavar="POLICY",
    )
    # Rooms one app may have (0 = no limit); creating more answers limit_reached.
    max_rooms_per_app: int = setting(10_000, "rooms one app may have (0 = no limit)", cs.int_at_least(0))
    # A room nobody joined, published to or changed for this long is forgotten, keys and all.
    room_idle_ttl_s: int = setting(
        7 * 24 * 3600,
        "a room nobody joined, published to or changed for this long is forgotten, keys and all",
        cs.int_at_least(1),
    )
    # REST requests per second and burst, per bearer token and per client IP
    # (roomserver/api/ratelimit.py); a rate of 0 = no limit. Behind a proxy every
    # request has the proxy's IP: turn the per-IP limit off there.
    rest_rate_per_token: float = setting(
        50.0, "REST requests per second per bearer token (0 = no limit)", cs.float_at_least(0)
    )
    rest_burst_per_token: int = setting(100, "REST burst per bearer token", cs.int_at_least(1))
    rest_rate_per_ip: float = setting(
        100.0,
        "REST requests per second per client IP (0 = no limit; behind a proxy every request has its IP)",
        cs.float_at_least(0),
    )
    rest_burst_per_ip: int = setting(200, "REST burst per client IP", cs.int_at_least(1))
    # Origins whose pages may call the REST API and read its answers (CORS). Tokens are
    # bearer tokens, never cookies, so "*" exposes nothing a page could not send anyway;
    # a list narrows it for operators whose policy wants that.
    cors_origins: list[str] = setting_factory(
        lambda: ["*"],
        "origins allowed to call the API from a browser (repeatable; * = any)",
        cs.origin,
        repeat=True,
        shown_default="*",
        metavar="ORIGIN",
    )
    log_level: str = setting("INFO", "one of " + ", ".join(cs.LOG_LEVELS), cs.log_level, metavar="LEVEL")
    log_format: LogFormat = setting(
        "text",
        "text: one line per record; json: one JSON object per line with node, room and user fields",
        cs.one_of(*LOG_FORMATS),
        metavar="FORMAT",
    )

    @property
    def durable_wait_ms(self) -> int:
        """The Redis broker's ``durable_wait_ms``. A cluster has replicas (a primary
        without one cannot fail over), so it waits by default; a single ``--redis-url``
        node usually has none and WAIT would refuse every write there."""
        if self.redis_durable_wait_ms is not None:
            return self.redis_durable_wait_ms
        return DEFAULT_CLUSTER_DURABLE_WAIT_MS if self.redis_cluster else 0

    @property
    def bus_name(self) -> str:
        """The bus as logs and the banner name it (never with a password)."""
        if self.redis_cluster:
            return f"Redis Cluster {_without_login(self.redis_cluster)}"
        if self.redis_url:
            return f"Redis {_without_login(self.redis_url)}"
        return "the embedded bus (one process)"

    @property
    def dev_mode(self) -> bool:
        return not self.apps

    @property
    def room_auto_create(self) -> AutoCreate:
        """``named`` for real apps; in dev mode (one developer's sandbox on loopback)
        ``any``, so a viewer page opened before the host's still finds its room."""
        if self.auto_create is not None:
            return self.auto_create
        return "any" if self.dev_mode else "named"

    def loyalty_rules(self) -> loyalty.LoyaltyRules:
        return loyalty.LoyaltyRules(
            loyalty.parse_points_rules(self.points_rules),
            loyalty.parse_tiers(self.member_tiers),
            self.points_day_offset_min,
        )

    def app_secrets(self) -> dict[str, str]:
        """The apps whose tokens are accepted; dev mode adds app ``dev``."""
        if self.apps:
            return dict(self.apps)
        if self.dev_secret is None:
            self.dev_secret = secrets.token_urlsafe(24)
        return {DEV_APP: self.dev_secret}


class ConfigError(ValueError):
    """A flag or environment value the server cannot run with; the message is one line for the user."""


# HS256 keys shorter than the hash (RFC 7518 §3.2) make tokens forgeable by brute force.
MIN_APP_SECRET_BYTES = 32


def validate_app(key: str, secret: str) -> None:
    """Refuse an app the server must not run with (``ConfigError``): a key that cannot
    name a tenant (it is part of every bus key) or a secret short enough to brute-force."""
    if not APP_KEY_RE.fullmatch(key):
        raise ConfigError(f"app key {key!r} must be 1..32 characters of [A-Za-z0-9_-]")
    if len(secret.encode()) < MIN_APP_SECRET_BYTES:
        raise ConfigError(
            f"app {key!r}: the secret is {len(secret.encode())} bytes, at least {MIN_APP_SECRET_BYTES} are needed"
            " (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def parse_apps(values: list[str]) -> dict[str, str]:
    """``["KEY:SECRET", "K2:S2,K3:S3"]`` -> ``{key: secret}``, each app validated."""
    apps: dict[str, str] = {}
    for item in values:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, secret = part.partition(":")
            if not sep or not key or not secret:
                raise ConfigError(f"--app takes KEY:SECRET, got {_redacted(part)!r}")
            validate_app(key, secret)
            if key in apps and apps[key] != secret:
                raise ConfigError(f"app {key!r} is given twice with different secrets")
            apps[key] = secret
    return apps


def _redacted(app: str) -> str:
    """An ``--app`` value fit for an error message: never echo a secret."""
    key, sep, secret = app.partition(":")
    return f"{key}:…" if sep and secret else app


SETTINGS = flags_of(Config)
__all__ = ["SETTINGS", "Config", "ConfigError", "env_name"]


def check_apps(cfg: Config) -> None:
    """Settings that name apps must name configured ones (dev mode: app ``dev``)."""
    apps = set(cfg.apps) or {DEV_APP}
    try:
        check_endpoints(cfg.webhooks, apps)
    except EndpointSpecError as exc:
        raise ConfigError(str(exc)) from None
    for app in cfg.moderation_urls:
        if app not in apps:
            raise ConfigError(f"--moderation-callback {app}: no app {app!r} is configured (--app)")
    if any(url.startswith("turn") for url in cfg.turn_urls) and not cfg.turn_secret:
        raise ConfigError("--turn-url turn:/turns: needs --turn-secret (coturn's static-auth-secret)")
