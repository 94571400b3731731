"""Versioned maps on the bus: small shared documents that every node reads and caches.

A map ``name`` holds entries ``field -> (version, data)`` and a map version. One
atomic step per write (``vmap_put``):

- ``expect`` (optional) must equal the entry's current version (0 = absent), else
  ``conflict`` and nothing changes: two editors cannot overwrite each other;
- ``data`` None deletes the entry (``not_found`` if absent);
- a new entry beyond ``max_fields`` is refused (``limit_reached``);
- otherwise the entry's version becomes its old one + 1 (a deleted entry starts
  again at 1) and the map version goes up by one.

The map version only ever grows, so a node keeps a copy of the map and checks
``vmap_version`` (one cheap read) before using it: the copy is reloaded
(``vmap_read``) only when another node wrote. Used by the room assistant
(the app's product catalogue, the per-product feedback).

On Redis a map ``m`` is one hash ``<prefix>m:{m}`` (the name is the hash tag: one
slot, one script), fields ``v`` (the map version) and ``f:<field>`` = ``<version>|<data>``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from roomserver.bus.streams import NAME_RE

MAX_FIELD: Final = 200
MAX_FIELDS: Final = 100_000


class VmapStatus(enum.Enum):
    OK = "ok"
    CONFLICT = "conflict"  # ``expect`` did not match the entry's version
    NOT_FOUND = "not_found"  # a delete of an absent entry
    LIMIT_REACHED = "limit_reached"  # a new entry beyond ``max_fields``


@dataclass(slots=True, frozen=True)
class VmapWrite:
    status: VmapStatus
    version: int  # the entry's version after the call (its current one when refused; 0 = absent)
    map_version: int  # the map's version after the call


@dataclass(slots=True, frozen=True)
class Vmap:
    version: int  # 0 = never written
    entries: dict[str, tuple[int, bytes]] = field(default_factory=dict)


def check_map(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"map name must be 1..200 characters of [A-Za-z0-9_.:/@-], got {name!r}")


def check_field(name: str) -> None:
    if not 1 <= len(name) <= MAX_FIELD:
        raise ValueError(f"a map field is 1..{MAX_FIELD} characters, got {len(name)}")


def check_put(expect: int | None, max_fields: int) -> None:
    if expect is not None and expect < 0:
        raise ValueError(f"expect must be >= 0, got {expect}")
    if not 0 <= max_fields <= MAX_FIELDS:
        raise ValueError(f"max_fields must be 0 (no limit) .. {MAX_FIELDS}, got {max_fields}")
