"""Memory-only properties of idle expiry, with the hub's clock moved by hand
(the shared behaviour is in test_room_lifecycle.py)."""

from __future__ import annotations

from roomserver.bus.base import Draft
from roomserver.bus.memory import MemoryBroker, MemoryHub
from tests.contract.test_broker_contract import ev, room_id, started


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


async def test_expiry_follows_the_hub_clock_and_reclaims_memory():
    clock = Clock()
    hub = MemoryHub(clock=clock)
    b = MemoryBroker(hub, idle_ttl_ms=10_000)
    await started(b)
    rooms = [room_id("shop") for _ in range(50)]
    for r in rooms:
        await b.commit(r, [Draft(ev(r, "x"))], expect_version=0, doc=b"d")
    clock.ms += 9_999
    assert len(await b.rooms("shop", limit=1000)) == 50
    clock.ms += 1
    assert await b.rooms("shop") == [] and await b.room_count("shop") == 0
    assert hub.rooms == {} and hub.index == {} and hub._expiry == []


async def test_touching_often_keeps_one_heap_entry_per_room():
    clock = Clock()
    hub = MemoryHub(clock=clock)
    b = MemoryBroker(hub, idle_ttl_ms=10_000)
    await started(b)
    kept, dropped = room_id("shop"), room_id("shop")
    for r in (kept, dropped):
        await b.commit(r, [], expect_version=0, doc=b"d")
    for _ in range(200):  # 200 touches over 20 s of clock, throttle aside
        clock.ms += 100
        b._touches = type(b._touches)(b.idle_ttl_ms)  # every touch is due
        await b.touch([kept])
    assert await b.rooms("shop") == [kept]
    assert len(hub._expiry) <= 2
    clock.ms += 10_000
    await b.touch([])
    assert hub.rooms == {} and hub._expiry == []
