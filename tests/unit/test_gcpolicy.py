"""GcPolicy: survivors are frozen out of full collections; frozen cyclic garbage is reclaimed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from roomserver.gcpolicy import GcPolicy
from roomserver.metrics import Metrics


class Node:
    """A cycle: only the cyclic collector can free it once dropped."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def thawed():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_tick_freezes_what_survives_and_counts_it() -> None:
    keep = [Node() for _ in range(1000)]
    policy = GcPolicy(freeze_s=1, reclaim_s=3600, small_heap=0)
    policy._last_reclaim = 0.0
    policy.tick(now=1.0)
    assert gc.get_freeze_count() >= len(keep)
    assert gc.get_objects(generation=2) == []


def test_frozen_cycle_waits_for_the_reclaim() -> None:
    policy = GcPolicy(freeze_s=1, reclaim_s=100, small_heap=0)
    policy._last_reclaim = 0.0
    cycle = Node()
    alive = weakref.ref(cycle)
    policy.tick(now=1.0)  # frozen while still referenced
    del cycle
    gc.collect()
    assert alive() is not None, "a full collection must not walk the frozen heap"
    policy.tick(now=50.0)  # not due: big heap (small_heap=0) and before reclaim_s
    gc.collect()
    assert alive() is not None
    policy.tick(now=100.0)
    assert alive() is None


def test_small_heap_is_reclaimed_soon() -> None:
    policy = GcPolicy(freeze_s=1, reclaim_s=3600, small_heap=10**9, small_reclaim_s=60)
    policy._last_reclaim = 0.0
    cycle = Node()
    alive = weakref.ref(cycle)
    policy.tick(now=1.0)
    del cycle
    policy.tick(now=59.0)
    assert alive() is not None
    policy.tick(now=60.0)  # small_reclaim_s since the last reclaim, heap small
    assert alive() is None


def test_a_big_heap_is_sized_once_per_small_reclaim_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = GcPolicy(freeze_s=1, reclaim_s=3600, small_heap=0, small_reclaim_s=60)
    policy._last_reclaim = 0.0
    policy.tick(now=1.0)
    sized: list[int] = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: sized.append(1) or real())
    for now in range(60, 130):  # every second from the first minute on: a big heap stays frozen
        policy.tick(now=float(now))
    assert len(sized) == 2  # at 60 s and at 120 s, not on every tick
    assert policy._last_reclaim == 0.0


def test_no_thread_building_a_tuple_meets_the_freeze() -> None:
    """Ticks in one thread while another builds tuples from generators: the policy must
    not expose half-built tuples (it once listed generation 2 to count it)."""
    import threading

    policy = GcPolicy(freeze_s=1, reclaim_s=10**9, small_heap=0, small_reclaim_s=10**9)
    stop = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            while not stop.is_set():
                tuple(Node() for _ in range(50))
        except BaseException as exc:  # the SystemError this guards against
            errors.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    try:
        for i in range(300):
            policy.tick(now=float(i))
    finally:
        stop.set()
        worker.join()
    assert errors == []


async def test_start_stop_thaws_the_heap() -> None:
    policy = GcPolicy(freeze_s=0.01)
    policy.start()
    await asyncio.sleep(0.05)
    assert gc.get_freeze_count() > 0
    await policy.stop()
    assert gc.get_freeze_count() == 0


async def test_zero_interval_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    policy = GcPolicy(freeze_s=0)
    policy.start()
    await asyncio.sleep(0.01)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    await policy.stop()


async def test_young_threshold_is_set_while_running_and_restored() -> None:
    before = gc.get_threshold()
    policy = GcPolicy(freeze_s=0.01, young_threshold=12_345)
    policy.start()
    assert gc.get_threshold() == (12_345, *before[1:])
    await policy.stop()
    assert gc.get_threshold() == before
    untouched = GcPolicy(freeze_s=0.01, young_threshold=0)
    untouched.start()
    assert gc.get_threshold() == before
    await untouched.stop()


def test_metrics_time_every_collection() -> None:
    metrics = Metrics()
    metrics.watch_gc()
    try:
        gc.collect()
    finally:
        metrics.unwatch_gc()
    text = metrics.render().decode()
    assert 'roomserver_gc_pause_seconds_count{generation="2"} 1.0' in text
    gc.collect()
    assert 'roomserver_gc_pause_seconds_count{generation="2"} 1.0' in metrics.render().decode()
