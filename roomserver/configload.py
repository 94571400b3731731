"""The effective configuration: flags > environment > config file > defaults.

``resolve`` takes the flags given on the command line (already parsed), the
environment and an optional TOML file, and returns the ``Config`` with the source
of every setting; ``describe`` prints it with secrets masked (``roomserver config``).
Anything the server cannot run with raises ``ConfigError`` whose message is one line
naming where the bad value came from.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from roomserver.config import SETTINGS, Config, ConfigError, check_apps
from roomserver.configspec import Flag, env_name, switch

CONFIG_ENV = env_name("config")
DEFAULT = "default"


@dataclass(slots=True)
class Resolved:
    config: Config
    sources: dict[str, str]  # flag name -> "default", "--flag", "env ROOMSERVER_X", "file PATH"


def _by_key() -> dict[str, Flag]:
    keys = {f.name: f for f in SETTINGS}
    keys |= {f.name.replace("-", "_"): f for f in SETTINGS}
    keys["apps"] = keys["app"]  # reads better as a table: [apps]
    return keys


def _from_env(f: Flag, text: str) -> object:
    try:
        if f.repeat:
            return [f.spec.parse(part.strip()) for part in text.split(f.spec.env_sep) if part.strip()]
        return switch(text) if f.switch else f.spec.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{f.env}={text!r}: {exc}") from None


def _from_toml(f: Flag, value: object, where: str) -> object:
    """A file value as the flag's parsed value: TOML types where they fit, else text parsed
    like a flag's."""
    try:
        if f.switch:
            if not isinstance(value, bool):
                raise ValueError("expects true or false")
            return value
        if f.repeat:
            if isinstance(value, dict):  # [apps] key = "secret"
                value = [f"{k}:{v}" for k, v in value.items()]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expects a list of strings")
            return [f.spec.parse(v) for v in value]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("expects a string or a number")
        return f.spec.parse(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: {f.name}: {exc}") from None


def read_file(path: str) -> dict[str, tuple[Flag, object]]:
    """The settings of a TOML file, each parsed: ``{flag name: (flag, value)}``."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    keys = _by_key()
    out: dict[str, tuple[Flag, object]] = {}
    for key, value in doc.items():
        f = keys.get(key)
        if f is None:
            near = difflib.get_close_matches(key, [s.name for s in SETTINGS], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else " (see roomserver serve --help)"
            raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}")
        if f.name in out:
            raise ConfigError(f"config file {path}: {f.name!r} is given twice")
        out[f.name] = (f, _from_toml(f, value, f"config file {path}"))
    return out


def resolve(
    given: Mapping[str, object], environ: Mapping[str, str], config_file: str | None = None
) -> Resolved:
    """``given``: flag name -> parsed value of the flags on the command line."""
    path = config_file or environ.get(CONFIG_ENV) or None
    in_file = read_file(path) if path else {}
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for f in SETTINGS:
        if f.name in given:
            raw, where = given[f.name], f"--{f.name}"
        elif f.env in environ:
            raw, where = _from_env(f, environ[f.env]), f"env {f.env}"
        elif f.name in in_file:
            raw, where = in_file[f.name][1], f"file {path}"
        else:
            sources[f.name] = DEFAULT
            continue
        try:
            values[f.dest] = f.field_value(raw)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{where.replace('file ', 'config file ')}: {exc}") from None
        sources[f.name] = where
    cfg = Config(**values)  # type: ignore[arg-type]
    check_apps(cfg)
    if cfg.redis_url and cfg.redis_cluster:
        raise ConfigError("give --redis-url (one server) or --redis-cluster, not both")
    return Resolved(cfg, sources)


# -- roomserver config -----------------------------------------------------------------


def mask_url(text: str) -> str:
    """``scheme://user:****@host…``: the password of every URL in ``text`` (a
    comma-separated seed list has one) replaced."""
    if "://" not in text:
        return text
    u = urlsplit(text)
    userinfo, at, hostinfo = u.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return text if not at or not userinfo else text.replace(userinfo + "@", "****@", 1)
    user = userinfo.partition(":")[0]
    return urlunsplit(u._replace(netloc=f"{user}:****@{hostinfo}"))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(resolved: Resolved) -> str:
    """Every setting as a TOML line with its source; secrets masked. Settings left at a
    default that is not a plain value (none, random, mode-dependent) are comments."""
    cfg = resolved.config
    lines = ["# roomserver effective configuration (flags > environment > config file > defaults)"]
    width = max(len(f.name) for f in SETTINGS)
    for f in SETTINGS:
        value = getattr(cfg, f.dest)
        if f.spec.invert:
            value = not value
        source = resolved.sources[f.name]
        if source == DEFAULT and f.spec.shown_default is not None:
            shown = None
        elif f.spec.show is not None:
            shown = _toml_value(f.spec.show(value))
        elif value is None:
            shown = None
        else:
            shown = _toml_value(mask_url(value) if isinstance(value, str) else value)
        if shown is None:
            lines.append(f"# {f.name:<{width}} = ({f.shown_default})  # {source}")
        else:
            lines.append(f"{f.name:<{width}} = {shown}  # {source}")
    return "\n".join(lines)


# -- docs/configuration.md ----------------------------------------------------------------

DOC_BEGIN = "<!-- settings table: generated by `python -m roomserver.configload`; do not edit -->"
DOC_END = "<!-- end of settings table -->"


def settings_table() -> str:
    """The Markdown table of every setting, from the declarations on ``Config``."""
    rows = ["| flag / file key | environment | default | meaning |", "|---|---|---|---|"]
    for f in SETTINGS:
        flag = f"`--{f.name}`" + (" (repeatable)" if f.repeat else "") + (" (switch)" if f.switch else "")
        cells = [flag, f"`{f.env}`", f.shown_default, f.spec.help]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def with_table(doc: str) -> str:
    """``doc`` with the text between the table markers replaced by the current table."""
    head, _, rest = doc.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    return f"{head}{DOC_BEGIN}\n{settings_table()}\n{DOC_END}{tail}"


if __name__ == "__main__":  # regenerate the table in docs/configuration.md
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/configuration.md")
    path.write_text(with_table(path.read_text()))
