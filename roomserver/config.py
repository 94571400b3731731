"""Server configuration: command-line flags, each also settable from ROOMSERVER_* env vars."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import msgspec

from roomserver.auth import DEV_APP
from roomserver.tenancy import APP_KEY_RE

DEFAULT_GIFTS: list[dict[str, object]] = [
    {"id": "heart", "name": "Heart", "value": 1},
    {"id": "rose", "name": "Rose", "value": 10},
    {"id": "rocket", "name": "Rocket", "value": 500},
    {"id": "castle", "name": "Castle", "value": 2000},
]


AutoCreate = Literal["named", "any", "off"]
AUTO_CREATE_CHOICES = ("named", "any", "off")

# Long enough for a replica on another host to acknowledge (normally < 1 ms on a
# LAN), short enough that a shard without replicas answers `unavailable` well
# within the broker's 1 s op timeout.
DEFAULT_CLUSTER_DURABLE_WAIT_MS = 200


@dataclass(slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    redis_cluster: str | None = None
    redis_prefix: str = "rs:"
    # WAIT for one replica after money and state writes (ms; 0 = off). None = the
    # mode's default: on for --redis-cluster, off for --redis-url (see durable_wait_ms).
    redis_durable_wait_ms: int | None = None
    # Also wait after event-only commits (barrage, gifts, likes): slower, see docs.
    redis_durable_events: bool = False
    # app key -> secret. Empty = dev mode (app "dev" with a random secret).
    apps: dict[str, str] = field(default_factory=dict)
    dev_secret: str | None = None
    flush_ms: int = 50
    # Upper bound on WebSocket frames written per second by this process; the
    # flush interval of big rooms stretches so that sockets/interval stays under it.
    frame_budget: int = 60_000
    barrage_cap: int = 100
    history_events: int = 2000
    history_age_s: int = 1800
    # A socket whose unsent bytes exceed this is a slow consumer: closed with 4008.
    socket_buffer_limit: int = 2 * 1024 * 1024
    # Above this, ephemeral events are skipped for the socket (shed low priority first).
    socket_buffer_soft: int = 256 * 1024
    max_connections_per_user: int = 10
    # Sockets per client IP (0 = no limit). Viewers behind one carrier NAT share an
    # IP: raise it for such audiences (and for load tests from one machine).
    max_connections_per_ip: int = 200
    batching: bool = True  # off = one frame per event per socket (benchmark baseline)
    gifts: list[dict[str, object]] = field(default_factory=lambda: list(DEFAULT_GIFTS))
    banned_words_file: str | None = None
    webhook_url: str | None = None
    # The room assistant (issue 18): "lexical" (BM25), "hybrid" (+ the embedding model
    # of the `assistant` extra, if installed), or "off".
    assistant: str = "lexical"
    # Optional LLM phrasing of the assistant's answers (OpenAI-compatible; off when None).
    assistant_llm_url: str | None = None
    assistant_llm_model: str = "gpt-4o-mini"
    assistant_llm_key: str | None = None
    public_ip: str | None = None
    ice_host: str | None = None
    media_workers: int = 0
    node_id: str = field(default_factory=lambda: secrets.token_hex(4))
    drain_timeout_s: float = 5.0
    # Freeze the long-lived heap every gc_freeze_s so full collections stay short
    # (0 = leave Python's collector alone); see roomserver/gcpolicy.py.
    gc_freeze_s: float = 1.0
    gc_reclaim_s: float = 3600.0
    # Allocations between young collections while the policy runs (Python's own: 700).
    gc_young_threshold: int = 10_000
    # Who creates a room by joining one that does not exist (see handlers/rooms.py);
    # None = the mode's default (room_auto_create).
    auto_create: AutoCreate | None = None
    # Rooms one app may have (0 = no limit); creating more answers limit_reached.
    max_rooms_per_app: int = 10_000
    # A room nobody joined, published to or changed for this long is forgotten, keys and all.
    room_idle_ttl_s: int = 7 * 24 * 3600
    # REST requests per second and burst, per bearer token and per client IP
    # (roomserver/api/ratelimit.py); a rate of 0 = no limit. Behind a proxy every
    # request has the proxy's IP: turn the per-IP limit off there.
    rest_rate_per_token: float = 50.0
    rest_burst_per_token: int = 100
    rest_rate_per_ip: float = 100.0
    rest_burst_per_ip: int = 200

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
            return f"Redis Cluster {self.redis_cluster}"
        if self.redis_url:
            u = urlparse(self.redis_url)
            return f"Redis {u._replace(netloc=u.netloc.rpartition('@')[2]).geturl()}"
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

    def app_secrets(self) -> dict[str, str]:
        """The apps whose tokens are accepted; dev mode adds app ``dev``."""
        if self.apps:
            return dict(self.apps)
        if self.dev_secret is None:
            self.dev_secret = secrets.token_urlsafe(24)
        return {DEV_APP: self.dev_secret}

    def load_gifts(self, path: str | None) -> None:
        if not path:
            return
        try:
            self.gifts = msgspec.json.decode(Path(path).read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"--gifts {path}: {exc}") from None


class ConfigError(ValueError):
    """A flag or environment value the server cannot run with; the message is one line for the user."""


# HS256 keys shorter than the hash (RFC 7518 §3.2) make tokens forgeable by brute force.
MIN_APP_SECRET_BYTES = 32


ENV_PREFIX = "ROOMSERVER_"


def env_name(flag: str) -> str:
    """The environment variable of flag ``--flag``: ``ROOMSERVER_FLAG``."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


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
