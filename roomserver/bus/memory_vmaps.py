"""Versioned maps of the in-process bus (``bus/vmaps.py``): one dict per map.

Each call runs without awaiting, so it is atomic with respect to the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomserver.bus.vmaps import Vmap, VmapStatus, VmapWrite, check_field, check_map, check_put


@dataclass
class _Map:
    version: int = 0
    entries: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class VmapStore:
    """Every versioned map of a ``MemoryHub`` (shared by its brokers)."""

    def __init__(self) -> None:
        self.maps: dict[str, _Map] = {}

    def get(self, name: str) -> _Map:
        check_map(name)
        m = self.maps.get(name)
        if m is None:
            m = self.maps[name] = _Map()
        return m

    def peek(self, name: str) -> _Map | None:
        """The map if it was ever written (a read creates nothing)."""
        check_map(name)
        return self.maps.get(name)


class MemoryVmapsMixin:
    """The ``Broker`` versioned-map methods of ``MemoryBroker``."""

    vmap_store: VmapStore

    async def vmap_put(
        self, name: str, key: str, data: bytes | None, *, expect: int | None = None, max_fields: int = 0
    ) -> VmapWrite:
        check_field(key)
        check_put(expect, max_fields)
        m = self.vmap_store.get(name)
        have = m.entries[key][0] if key in m.entries else 0
        if expect is not None and expect != have:
            return VmapWrite(VmapStatus.CONFLICT, have, m.version)
        if data is None:
            if not have:
                return VmapWrite(VmapStatus.NOT_FOUND, 0, m.version)
            del m.entries[key]
            m.version += 1
            return VmapWrite(VmapStatus.OK, 0, m.version)
        if not have and max_fields and len(m.entries) >= max_fields:
            return VmapWrite(VmapStatus.LIMIT_REACHED, 0, m.version)
        m.entries[key] = (have + 1, bytes(data))
        m.version += 1
        return VmapWrite(VmapStatus.OK, have + 1, m.version)

    async def vmap_read(self, name: str) -> Vmap:
        m = self.vmap_store.peek(name)
        return Vmap(m.version, dict(m.entries)) if m else Vmap(0)

    async def vmap_version(self, name: str) -> int:
        m = self.vmap_store.peek(name)
        return m.version if m else 0
