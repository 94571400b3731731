"""Durable streams on the bus: append, read by consumer group, ack, claim, trim.

A generic primitive (Redis Streams semantics, both backends): webhook queues
(``roomserver/webhooks.py``) and the delivery log use it; an analytics
behaviour log can too. The shape:

- ``stream_append(stream, data, maxlen=N)`` adds an entry and returns its id
  ``"<ms>-<n>"`` (ids increase within a stream; compare them with
  ``id_key``). The stream keeps about its last ``maxlen`` entries (Redis trims
  ``MAXLEN ~``: at least ``maxlen`` survive, a few more may); trimming drops
  entries whatever their group state, so ``maxlen`` is the loss bound of a
  consumer that never comes back.
- ``stream_read(stream, group, consumer, count=N)`` hands out entries no
  consumer of ``group`` got yet, oldest first, and records them as pending for
  ``consumer`` (the group is created at the start of the stream on first use).
- ``stream_ack(stream, group, ids, delete=...)`` ends their pending state (and
  deletes them, for a queue whose entries are done once acknowledged).
- ``stream_claim(stream, group, consumer, min_idle_ms=…)`` moves pending
  entries idle that long (their consumer died) to ``consumer``, oldest first,
  and returns them: an entry read but never acknowledged is never lost.
- ``stream_range(stream, after=id, limit=N)`` reads entries in id order, no
  group involved (a log read a page at a time).
- ``stream_trim`` drops the oldest entries (``maxlen`` or ``min_id``);
  ``stream_info`` says how many entries there are and how many are pending.
- ``stream_lease(stream, holder, ttl_ms)`` elects one holder per stream for
  ``ttl_ms`` (renewed by calling again): consumers that must see entries in
  order (a webhook endpoint) read only while they hold it.

Delivery is at least once: an entry whose consumer died after reading it is
claimed and handed out again; an ``append`` whose reply was lost may have
happened (the broker raises ``BrokerUnavailable`` and does not retry it, so a
retry by the caller may add the entry twice: consumers dedupe by an id inside
``data``).

On Redis a stream ``s`` is the key ``<prefix>x:{s}`` (its name is the hash tag:
the stream, its groups and its lease live in one slot of a cluster).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

# Stream and group names: what a key may carry without quoting (no hash-tag braces).
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:/@-]{1,200}")
ID_RE: Final = re.compile(r"(0|[1-9][0-9]{0,15})-(0|[1-9][0-9]{0,15})")
MAX_COUNT: Final = 1000
MAX_LEN: Final = 10_000_000


@dataclass(slots=True, frozen=True)
class StreamEntry:
    id: str  # "<ms>-<n>"
    data: bytes

    @property
    def ms(self) -> int:
        """When the entry was appended (the backend's clock, unix ms)."""
        return int(self.id.partition("-")[0])


@dataclass(slots=True, frozen=True)
class StreamClaim:
    # Where the next claim scan starts ("0-0" = the scan went round the whole
    # pending list).
    next: str
    entries: list[StreamEntry] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class StreamInfo:
    length: int  # entries in the stream
    pending: int  # read by a consumer of the group, not acknowledged


def id_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a sortable pair (``"12-3"`` -> ``(12, 3)``)."""
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n)


def check_name(kind: str, name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"{kind} name must be 1..200 characters of [A-Za-z0-9_.:/@-], got {name!r}")


def check_id(entry_id: str) -> None:
    if not ID_RE.fullmatch(entry_id):
        raise ValueError(f"a stream entry id is '<ms>-<n>', got {entry_id!r}")


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, got {count}")


def check_maxlen(maxlen: int) -> None:
    if not 1 <= maxlen <= MAX_LEN:
        raise ValueError(f"maxlen must be 1..{MAX_LEN}, got {maxlen}")
