"""Durable streams of the Redis bus (``bus/streams.py``) on Redis Streams.

Keys (``s`` is the stream's name, used as the hash tag so a stream, its groups
and its lease share one cluster slot)::

    <prefix>x:{s}         stream; each entry has one field ``d`` (the data)
    <prefix>x:{s}:lease   string: the lease holder, PX = its ttl

Retry semantics follow ``redis_client`` (no redis-py high-level client):

- ``XADD`` is not idempotent: sent once (``safe=False``); a lost reply raises
  ``BrokerUnavailable`` (outcome unknown).
- With ``durable_wait_ms`` (see "Durability" in ``bus/redis.py``) an append is
  acknowledged only once a replica has it, like a stock take: a stream is a
  queue of things owed to someone (an order's webhook, the behaviour log), and
  an entry acknowledged by a primary that dies before replicating it would be
  lost without anyone knowing. A CI run of the failover sale lost an order's
  webhook that way. Acknowledgements and trims are not replicated first: a
  lost one only redelivers an entry (at least once, deduped by id) or keeps it
  a little longer.
- ``XREADGROUP`` moves the group's cursor: sent once too; an entry whose reply
  was lost stays pending for the consumer and comes back through
  ``stream_claim`` (a consumer that claims its own pending entries first loses
  none).
- ``XACK``/``XDEL``/``XTRIM``/``XRANGE``/``XAUTOCLAIM``/the lease script give
  the same result when run twice: retried after an ambiguous failure.

A group is created (``XGROUP CREATE … 0 MKSTREAM``) when a read or claim
answers ``NOGROUP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot
from redis.exceptions import ResponseError

from roomserver.bus.base import BrokerUnavailable
from roomserver.bus.redis_client import Script, ScriptCall, SlotRouter
from roomserver.bus.streams import (
    StreamClaim,
    StreamEntry,
    StreamInfo,
    check_count,
    check_id,
    check_maxlen,
    check_name,
)

LEASE = Script(
    "stream_lease",
    """local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0""",
)
RELEASE = Script(
    "stream_release",
    """if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0""",
)


def _entries(raw: Any) -> list[StreamEntry]:
    out: list[StreamEntry] = []
    for item in raw or ():
        entry_id, fields = item
        if not fields:  # a pending entry deleted meanwhile (XREADGROUP 0)
            continue
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append(StreamEntry(entry_id.decode(), values.get(b"d", b"")))
    return out


def stream_key(prefix: str, stream: str) -> str:
    """The Redis key of ``stream`` (its name is the hash tag: see the module docstring)."""
    return f"{prefix}x:{{{stream}}}"


def _nogroup(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and str(reply).startswith("NOGROUP")


class RedisStreamsMixin:
    """The ``Broker`` stream methods of ``RedisBroker``."""

    prefix: str
    _router: SlotRouter
    _closed: bool
    durable_wait_ms: int

    if TYPE_CHECKING:  # RedisBroker's durability helpers (bus/redis.py)

        async def _call_replicated(
            self, slot: int, commands: list[Any], *, safe: bool
        ) -> tuple[list[Any], str]: ...

        def _check_replicated(self, addr: str, wait_reply: Any, what: str) -> None: ...

    def _stream_key(self, stream: str) -> tuple[int, str]:
        check_name("stream", stream)
        key = stream_key(self.prefix, stream)
        return key_slot(key.encode()), key

    async def _stream_call(self, slot: int, commands: Sequence[Any], *, safe: bool) -> list[Any]:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        return await self._router.call(slot, commands, safe=safe)

    async def _append_call(self, slot: int, commands: list[Any]) -> list[Any]:
        """``XADD`` commands, in one pipeline; with ``durable_wait_ms`` they return only
        once a replica has them (else ``BrokerUnavailable``: outcome unknown, or
        ``NotExecuted`` when the primary is known to have no replica)."""
        if self.durable_wait_ms <= 0:
            return await self._stream_call(slot, commands, safe=False)
        if self._closed:
            raise BrokerUnavailable("broker closed")
        replies, primary = await self._call_replicated(slot, commands, safe=False)
        for r in replies[:-1]:  # a command's own error first: it says more than the WAIT
            if isinstance(r, Exception):
                raise r
        self._check_replicated(primary, replies[-1], "stream append")
        return replies[:-1]

    async def _create_group(self, slot: int, key: str, group: str) -> None:
        (reply,) = await self._stream_call(
            slot, [("XGROUP", "CREATE", key, group, "0", "MKSTREAM")], safe=True
        )
        if isinstance(reply, ResponseError) and not str(reply).startswith("BUSYGROUP"):
            raise reply

    async def stream_append(self, stream: str, data: bytes, *, maxlen: int) -> str:
        check_maxlen(maxlen)
        slot, key = self._stream_key(stream)
        (reply,) = await self._append_call(slot, [("XADD", key, "MAXLEN", "~", maxlen, "*", "d", data)])
        if isinstance(reply, Exception):
            raise reply
        return bytes(reply).decode()

    async def stream_append_many(self, stream: str, items: Sequence[bytes], *, maxlen: int) -> list[str]:
        check_maxlen(maxlen)
        check_count(max(1, len(items)))
        if not items:
            return []
        slot, key = self._stream_key(stream)
        commands = [("XADD", key, "MAXLEN", "~", maxlen, "*", "d", data) for data in items]
        replies = await self._append_call(slot, commands)  # one pipeline, in order
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return [bytes(r).decode() for r in replies]

    async def stream_read(self, stream: str, group: str, consumer: str, *, count: int) -> list[StreamEntry]:
        check_name("group", group)
        check_name("consumer", consumer)
        check_count(count)
        slot, key = self._stream_key(stream)
        command = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", key, ">")
        for _ in range(2):
            (reply,) = await self._stream_call(slot, [command], safe=False)
            if _nogroup(reply):
                await self._create_group(slot, key, group)
                continue
            if isinstance(reply, Exception):
                raise reply
            return _entries(reply[0][1]) if reply else []
        return []

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str], *, delete: bool = False) -> int:
        check_name("group", group)
        for i in ids:
            check_id(i)
        if not ids:
            return 0
        slot, key = self._stream_key(stream)
        commands: list[Any] = [("XACK", key, group, *ids)]
        if delete:
            commands.append(("XDEL", key, *ids))
        replies = await self._stream_call(slot, commands, safe=True)
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return int(replies[0])

    async def stream_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int, start: str = "0-0"
    ) -> StreamClaim:
        check_name("group", group)
        check_name("consumer", consumer)
        check_count(count)
        check_id(start)
        if min_idle_ms < 0:
            raise ValueError(f"min_idle_ms must be >= 0, got {min_idle_ms}")
        slot, key = self._stream_key(stream)
        command = ("XAUTOCLAIM", key, group, consumer, min_idle_ms, start, "COUNT", count)
        (reply,) = await self._stream_call(slot, [command], safe=True)
        if _nogroup(reply):
            raise ValueError(f"no group {group!r} on stream {stream!r}")
        if isinstance(reply, Exception):
            raise reply
        return StreamClaim(reply[0].decode(), _entries(reply[1]))

    async def stream_range(self, stream: str, *, after: str = "", limit: int) -> list[StreamEntry]:
        check_count(limit)
        if after:
            check_id(after)
        slot, key = self._stream_key(stream)
        lo = f"({after}" if after else "-"
        (reply,) = await self._stream_call(slot, [("XRANGE", key, lo, "+", "COUNT", limit)], safe=True)
        if isinstance(reply, Exception):
            raise reply
        return _entries(reply)

    async def stream_trim(self, stream: str, *, maxlen: int | None = None, min_id: str | None = None) -> int:
        slot, key = self._stream_key(stream)
        commands: list[Any] = []
        if min_id is not None:
            check_id(min_id)
            commands.append(("XTRIM", key, "MINID", "=", min_id))
        if maxlen is not None:
            if maxlen < 0:
                raise ValueError(f"maxlen must be >= 0, got {maxlen}")
            commands.append(("XTRIM", key, "MAXLEN", "=", maxlen))
        if not commands:
            return 0
        replies = await self._stream_call(slot, commands, safe=True)
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return sum(int(r) for r in replies)

    async def stream_info(self, stream: str, group: str) -> StreamInfo:
        check_name("group", group)
        slot, key = self._stream_key(stream)
        length, pending = await self._stream_call(slot, [("XLEN", key), ("XPENDING", key, group)], safe=True)
        if isinstance(length, Exception):
            raise length
        if _nogroup(pending):
            return StreamInfo(int(length), 0)
        if isinstance(pending, Exception):
            raise pending
        return StreamInfo(int(length), int(pending[0]))

    async def stream_lease(self, stream: str, holder: str, ttl_ms: int) -> bool:
        check_name("holder", holder)
        if ttl_ms < 1:
            raise ValueError(f"ttl_ms must be >= 1, got {ttl_ms}")
        slot, key = self._stream_key(stream)
        (reply,) = await self._stream_call(
            slot, [ScriptCall(LEASE, [key + ":lease"], [holder, ttl_ms])], safe=True
        )
        if isinstance(reply, Exception):
            raise reply
        return bool(reply)

    async def stream_release(self, stream: str, holder: str) -> None:
        check_name("holder", holder)
        slot, key = self._stream_key(stream)
        (reply,) = await self._stream_call(slot, [ScriptCall(RELEASE, [key + ":lease"], [holder])], safe=True)
        if isinstance(reply, Exception):
            raise reply
