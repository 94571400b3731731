"""Versioned maps of the Redis bus (``bus/vmaps.py``): one hash per map.

Keys (the map's name is the hash tag: one slot, so one script sees the whole map)::

    <prefix>m:{m}   hash: v = the map version; f:<field> = "<version>|<data>"

A write is one script (``PUT``), not retried once sent: a lost reply raises
``BrokerUnavailable`` (outcome unknown; a retry with ``expect`` answers
``conflict`` if the first one ran). Reads are retried freely.
"""

from __future__ import annotations

from typing import Any

from redis.crc import key_slot

from roomserver.bus.base import BrokerUnavailable
from roomserver.bus.redis_client import Script, ScriptCall, SlotRouter
from roomserver.bus.vmaps import (
    Vmap,
    VmapStatus,
    VmapWrite,
    check_field,
    check_map,
    check_put,
)

# ARGV: field, expect ("" = any), delete ("1"/"0"), max_fields (0 = no limit), data
PUT = Script(
    "vmap_put",
    """local f = 'f:' .. ARGV[1]
local cur = redis.call('HGET', KEYS[1], f)
local have = 0
if cur then have = tonumber(string.match(cur, '^(%d+)|')) end
local mv = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= have then return {'conflict', have, mv} end
if ARGV[3] == '1' then
  if have == 0 then return {'not_found', 0, mv} end
  redis.call('HDEL', KEYS[1], f)
  return {'ok', 0, redis.call('HINCRBY', KEYS[1], 'v', 1)}
end
local limit = tonumber(ARGV[4])
if have == 0 and limit > 0 then
  local n = redis.call('HLEN', KEYS[1])
  if mv > 0 then n = n - 1 end
  if n >= limit then return {'limit_reached', 0, mv} end
end
redis.call('HSET', KEYS[1], f, (have + 1) .. '|' .. ARGV[5])
return {'ok', have + 1, redis.call('HINCRBY', KEYS[1], 'v', 1)}""",
)


class RedisVmapsMixin:
    """The ``Broker`` versioned-map methods of ``RedisBroker``."""

    prefix: str
    _router: SlotRouter
    _closed: bool

    def _vmap_key(self, name: str) -> tuple[int, str]:
        check_map(name)
        key = f"{self.prefix}m:{{{name}}}"
        return key_slot(key.encode()), key

    async def _vmap_call(self, slot: int, command: Any, *, safe: bool) -> Any:
        if self._closed:
            raise BrokerUnavailable("broker closed")
        (reply,) = await self._router.call(slot, [command], safe=safe)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def vmap_put(
        self, name: str, key: str, data: bytes | None, *, expect: int | None = None, max_fields: int = 0
    ) -> VmapWrite:
        check_field(key)
        check_put(expect, max_fields)
        slot, hkey = self._vmap_key(name)
        args = [key, "" if expect is None else expect, "1" if data is None else "0", max_fields, data or b""]
        status, version, map_version = await self._vmap_call(slot, ScriptCall(PUT, [hkey], args), safe=False)
        return VmapWrite(VmapStatus(status.decode()), int(version), int(map_version))

    async def vmap_read(self, name: str) -> Vmap:
        slot, hkey = self._vmap_key(name)
        flat = await self._vmap_call(slot, ("HGETALL", hkey), safe=True)
        version = 0
        entries: dict[str, tuple[int, bytes]] = {}
        for k, v in zip(flat[::2], flat[1::2], strict=True):
            if k == b"v":
                version = int(v)
            elif k.startswith(b"f:"):
                ver, _, data = bytes(v).partition(b"|")
                entries[k[2:].decode()] = (int(ver), data)
        return Vmap(version, entries)

    async def vmap_version(self, name: str) -> int:
        slot, hkey = self._vmap_key(name)
        reply = await self._vmap_call(slot, ("HGET", hkey, "v"), safe=True)
        return int(reply) if reply else 0
