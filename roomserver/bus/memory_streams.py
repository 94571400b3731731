"""Durable streams of the in-process bus (``bus/streams.py``), Redis semantics.

Like the rest of ``MemoryBroker`` each call runs without awaiting, so it is
atomic with respect to the event loop. "Durable" here means: as long as the
process lives (the embedded bus keeps nothing across restarts).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from roomserver.bus.streams import (
    StreamClaim,
    StreamEntry,
    StreamInfo,
    check_count,
    check_id,
    check_maxlen,
    check_name,
    id_key,
)

IdKey = tuple[int, int]


@dataclass
class _Group:
    last: IdKey = (0, 0)
    # id -> (consumer, ms handed out); insertion order is id order (entries are
    # read oldest first and a claim updates in place).
    pending: dict[IdKey, tuple[str, int]] = field(default_factory=dict)


@dataclass
class _Stream:
    keys: list[IdKey] = field(default_factory=list)  # sorted; may hold deleted ids
    data: dict[IdKey, bytes] = field(default_factory=dict)
    last: IdKey = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)

    def entry(self, key: IdKey) -> StreamEntry:
        return StreamEntry(f"{key[0]}-{key[1]}", self.data[key])

    def drop(self, keys: Sequence[IdKey]) -> None:
        for k in keys:
            self.data.pop(k, None)
        if len(self.keys) > 2 * len(self.data) + 64:  # compact the deleted ids away
            self.keys = [k for k in self.keys if k in self.data]

    def trim_to(self, maxlen: int) -> int:
        excess = len(self.data) - maxlen
        if excess <= 0:
            return 0
        # From the oldest on (not a pass over every key: a full stream trims one entry
        # per append).
        dropped = i = 0
        while dropped < excess:
            k = self.keys[i]
            i += 1
            if self.data.pop(k, None) is not None:
                dropped += 1
        del self.keys[:i]
        return excess


class StreamStore:
    """Every stream of a ``MemoryHub`` (shared by its brokers) and their leases."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self.now_ms = now_ms
        self.streams: dict[str, _Stream] = {}
        self.leases: dict[str, tuple[str, int]] = {}  # stream -> (holder, expires ms)

    def get(self, name: str) -> _Stream:
        check_name("stream", name)
        s = self.streams.get(name)
        if s is None:
            s = self.streams[name] = _Stream()
        return s

    def append(self, name: str, data: bytes, maxlen: int) -> str:
        check_maxlen(maxlen)
        s = self.get(name)
        ms = self.now_ms()
        key = (ms, 0) if ms > s.last[0] else (s.last[0], s.last[1] + 1)
        s.last = key
        s.keys.append(key)
        s.data[key] = bytes(data)
        s.trim_to(maxlen)
        return f"{key[0]}-{key[1]}"

    def group(self, s: _Stream, group: str) -> _Group:
        check_name("group", group)
        g = s.groups.get(group)
        if g is None:
            g = s.groups[group] = _Group()
        return g

    def read(self, name: str, group: str, consumer: str, count: int) -> list[StreamEntry]:
        check_name("consumer", consumer)
        check_count(count)
        s = self.get(name)
        g = self.group(s, group)
        now = self.now_ms()
        out: list[StreamEntry] = []
        i = bisect.bisect_right(s.keys, g.last)
        while i < len(s.keys) and len(out) < count:
            k = s.keys[i]
            i += 1
            if k not in s.data:
                continue
            out.append(s.entry(k))
            g.pending[k] = (consumer, now)
            g.last = k
        return out

    def ack(self, name: str, group: str, ids: Sequence[str], delete: bool) -> int:
        for i in ids:
            check_id(i)
        s = self.get(name)
        keys = [id_key(i) for i in ids]
        g = s.groups.get(group)
        acked = 0
        if g is not None:
            for k in keys:
                if g.pending.pop(k, None) is not None:
                    acked += 1
        if delete:
            s.drop(keys)
        return acked

    def claim(
        self, name: str, group: str, consumer: str, min_idle_ms: int, count: int, start: str
    ) -> StreamClaim:
        check_name("consumer", consumer)
        check_count(count)
        check_id(start)
        if min_idle_ms < 0:
            raise ValueError(f"min_idle_ms must be >= 0, got {min_idle_ms}")
        s = self.get(name)
        g = s.groups.get(group)
        if g is None:
            raise ValueError(f"no group {group!r} on stream {name!r}")
        now = self.now_ms()
        lo = id_key(start)
        out: list[StreamEntry] = []
        gone: list[IdKey] = []
        nxt = "0-0"
        # Redis scans at most count * 10 pending entries per call (XAUTOCLAIM).
        scanned = 0
        for k, (_, since) in g.pending.items():
            if k < lo:
                continue
            if len(out) >= count or scanned >= count * 10:
                nxt = f"{k[0]}-{k[1]}"
                break
            scanned += 1
            if now - since < min_idle_ms:
                continue
            if k not in s.data:
                gone.append(k)
                continue
            out.append(s.entry(k))
        for k in gone:
            del g.pending[k]
        for e in out:
            g.pending[id_key(e.id)] = (consumer, now)
        return StreamClaim(nxt, out)

    def range(self, name: str, after: str, limit: int) -> list[StreamEntry]:
        check_count(limit)
        if after:
            check_id(after)
        check_name("stream", name)
        s = self.streams.get(name)
        if s is None:  # reading creates nothing (as on Redis)
            return []
        i = bisect.bisect_right(s.keys, id_key(after)) if after else 0
        out: list[StreamEntry] = []
        while i < len(s.keys) and len(out) < limit:
            k = s.keys[i]
            i += 1
            if k in s.data:
                out.append(s.entry(k))
        return out

    def trim(self, name: str, maxlen: int | None, min_id: str | None) -> int:
        s = self.get(name)
        dropped = 0
        if min_id is not None:
            check_id(min_id)
            cut = bisect.bisect_left(s.keys, id_key(min_id))
            old = [k for k in s.keys[:cut] if k in s.data]
            s.keys = s.keys[cut:]
            for k in old:
                del s.data[k]
            dropped += len(old)
        if maxlen is not None:
            if maxlen < 0:
                raise ValueError(f"maxlen must be >= 0, got {maxlen}")
            dropped += s.trim_to(maxlen)
        return dropped

    def info(self, name: str, group: str) -> StreamInfo:
        check_name("stream", name)
        s = self.streams.get(name)
        if s is None:
            return StreamInfo(0, 0)
        g = s.groups.get(group)
        return StreamInfo(len(s.data), len(g.pending) if g else 0)

    def lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        check_name("stream", name)
        check_name("holder", holder)
        if ttl_ms < 1:
            raise ValueError(f"ttl_ms must be >= 1, got {ttl_ms}")
        now = self.now_ms()
        cur = self.leases.get(name)
        if cur is not None and cur[0] != holder and cur[1] > now:
            return False
        self.leases[name] = (holder, now + ttl_ms)
        return True

    def release(self, name: str, holder: str) -> None:
        cur = self.leases.get(name)
        if cur is not None and cur[0] == holder:
            del self.leases[name]


class MemoryStreamsMixin:
    """The ``Broker`` stream methods of ``MemoryBroker`` (its hub holds ``streams``)."""

    stream_store: StreamStore

    async def stream_append(self, stream: str, data: bytes, *, maxlen: int) -> str:
        return self.stream_store.append(stream, data, maxlen)

    async def stream_append_many(self, stream: str, items: Sequence[bytes], *, maxlen: int) -> list[str]:
        check_count(max(1, len(items)))
        return [self.stream_store.append(stream, data, maxlen) for data in items]

    async def stream_read(self, stream: str, group: str, consumer: str, *, count: int) -> list[StreamEntry]:
        return self.stream_store.read(stream, group, consumer, count)

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str], *, delete: bool = False) -> int:
        return self.stream_store.ack(stream, group, ids, delete)

    async def stream_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int, start: str = "0-0"
    ) -> StreamClaim:
        return self.stream_store.claim(stream, group, consumer, min_idle_ms, count, start)

    async def stream_range(self, stream: str, *, after: str = "", limit: int) -> list[StreamEntry]:
        return self.stream_store.range(stream, after, limit)

    async def stream_trim(self, stream: str, *, maxlen: int | None = None, min_id: str | None = None) -> int:
        return self.stream_store.trim(stream, maxlen, min_id)

    async def stream_info(self, stream: str, group: str) -> StreamInfo:
        return self.stream_store.info(stream, group)

    async def stream_lease(self, stream: str, holder: str, ttl_ms: int) -> bool:
        return self.stream_store.lease(stream, holder, ttl_ms)

    async def stream_release(self, stream: str, holder: str) -> None:
        self.stream_store.release(stream, holder)
