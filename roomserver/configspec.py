"""How a configuration setting is declared: once, on its ``Config`` field.

A field of ``roomserver.config.Config`` declared with ``setting(...)`` is a setting:
from that one declaration come the ``serve``/``config`` command-line flag
(``--name``), the environment variable (``ROOMSERVER_NAME``), the config-file key
(``name``) and the row of docs/configuration.md. A field declared without it is
internal (not settable). The value parsers take the text of a flag or an
environment variable and raise ``ValueError`` with a message for the user.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

ENV_PREFIX = "ROOMSERVER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def env_name(flag: str) -> str:
    """The environment variable of flag ``--flag``: ``ROOMSERVER_FLAG``."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


# -- value parsers: each takes the text of a flag or an environment variable ----------


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if value < low:
            raise ValueError(f"{value} is below the minimum {low}")
        return value

    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not value >= low:  # also refuses nan
            raise ValueError(f"{text} is below the minimum {low:g}")
        return value

    return parse


def port(text: str) -> int:
    value = int_at_least(1)(text)
    if value > 65535:
        raise ValueError(f"{value} is not a TCP port (1..65535)")
    return value


def redis_url(text: str) -> str:
    u = urlparse(text)
    if u.scheme not in ("redis", "rediss") or not u.netloc:
        raise ValueError("not a redis://[user:password@]host:port[/db] or rediss:// (TLS) URL")
    try:
        u.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError("the URL has a bad port") from None
    if u.path.strip("/") and not u.path.strip("/").isdigit():
        raise ValueError("the database after the / is a number")
    return text


def redis_cluster(text: str) -> str:
    """``host:port,host:port`` or, with credentials or TLS,
    ``redis[s]://[user:password@]host:port,host:port``."""
    nodes = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme not in ("redis", "rediss"):
            raise ValueError("the seed nodes' scheme is redis:// or rediss:// (TLS)")
        nodes = rest.rpartition("@")[2]
    for node in (n.strip() for n in nodes.split(",")):
        host, sep, num = node.rpartition(":")
        if not sep or not host or not num.isdigit():
            raise ValueError(f"{node!r} is not host:port")
    return text


def readable_file(text: str) -> str:
    try:
        with open(text, "rb"):
            return text
    except OSError as exc:
        raise ValueError(f"{text}: {exc.strerror}") from None


def database_url(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be postgresql://user:password@host:port/database")
    return text


def http_url(text: str) -> str:
    u = urlparse(text)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"{text!r} is not an http(s):// URL")
    return text


def origin(text: str) -> str:
    """A CORS origin (``https://shop.example``, with a port if not the scheme's) or ``*``."""
    if text == "*":
        return text
    u = urlparse(text)
    if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/") or u.query:
        raise ValueError(f"{text!r} is not an origin like https://shop.example[:port], or *")
    return f"{u.scheme}://{u.netloc}".lower()


def ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def switch(text: str) -> bool:
    """An environment switch (on the command line a switch takes no value)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not one of 1/true/yes/on, 0/false/no/off")


# -- the declaration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """What a ``Config`` field needs beyond its name and default to be a setting."""

    help: str
    parse: Callable[[str], object] = str
    switch: bool = False
    # Repeatable flag; in the environment a list separated by ``env_sep`` (None: by
    # white space, for values that hold commas themselves), in a file a list.
    repeat: bool = False
    env_sep: str | None = ","
    # The flag's name when it is not the field's (``batching`` is set by ``--no-batching``).
    flag: str | None = None
    # A switch that turns its field off.
    invert: bool = False
    # The flag's value (a list for ``repeat``) -> the field's; ConfigError/ValueError refuse it.
    convert: Callable[[object], object] | None = None
    # How ``roomserver config`` shows a value (e.g. masked); the value itself by default.
    show: Callable[[object], str] | None = None
    shown_default: str | None = None  # for help where the default is not a plain value
    metavar: str | None = None


def setting(default: T, help: str, parse: Callable[[str], object] = str, **kw: object) -> T:
    """A ``Config`` field that is a setting (see the module doc)."""
    meta = {"setting": Setting(help, parse, **kw)}  # type: ignore[arg-type]
    return dataclasses.field(default=default, metadata=meta)


def setting_factory(
    factory: Callable[[], T], help: str, parse: Callable[[str], object] = str, **kw: object
) -> T:
    """``setting`` whose default is made per instance (a list, a dict, a random id)."""
    meta = {"setting": Setting(help, parse, **kw)}  # type: ignore[arg-type]
    return dataclasses.field(default_factory=factory, metadata=meta)


@dataclass(frozen=True, slots=True)
class Flag:
    """One setting as every surface sees it: ``--name``, ``ROOMSERVER_NAME``, file key ``name``."""

    name: str  # flag name, file key
    dest: str  # Config field
    default: object  # the flag's default (None where the field's is made per instance)
    spec: Setting

    @property
    def env(self) -> str:
        return env_name(self.name)

    @property
    def switch(self) -> bool:
        return self.spec.switch

    @property
    def repeat(self) -> bool:
        return self.spec.repeat

    @property
    def shown_default(self) -> str:
        if self.spec.shown_default is not None:
            return self.spec.shown_default
        if self.switch:
            return "on" if self.default else "off"
        if self.default is None:
            return "none"
        if isinstance(self.default, list | tuple):
            return ",".join(map(str, self.default))
        return str(self.default)

    def help_text(self) -> str:
        return f"{self.spec.help} (default: {self.shown_default}; env {self.env})"

    def field_value(self, value: object) -> object:
        """The flag's value (parsed) as the ``Config`` field holds it."""
        if self.spec.convert is not None:
            return self.spec.convert(value)
        if self.spec.invert:
            return not value
        return value


def flags_of(cls: type) -> tuple[Flag, ...]:
    """The settings among the dataclass ``cls``'s fields, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if not isinstance(spec, Setting):
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        if spec.invert:
            default = not default
        out.append(Flag(spec.flag or f.name.replace("_", "-"), f.name, default, spec))
    return tuple(out)
