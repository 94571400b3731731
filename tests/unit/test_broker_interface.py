"""The ``Broker`` interface is all abstract: a backend cannot leave a method out."""

from __future__ import annotations

import inspect

import pytest

from roomserver.bus.base import Broker
from roomserver.bus.memory import MemoryBroker
from roomserver.bus.redis import RedisBroker


def public_methods(cls: type) -> set[str]:
    return {n for n, f in vars(cls).items() if inspect.isfunction(f) and not n.startswith("_")}


def test_every_broker_method_is_abstract() -> None:
    assert public_methods(Broker) == set(Broker.__abstractmethods__)


@pytest.mark.parametrize("backend", [MemoryBroker, RedisBroker])
def test_backends_implement_every_method(backend: type[Broker]) -> None:
    assert not getattr(backend, "__abstractmethods__", frozenset())


@pytest.mark.parametrize("left_out", sorted(public_methods(Broker)))
def test_a_backend_missing_a_method_cannot_be_made(left_out: str) -> None:
    # MemoryBroker's own methods, less one, on a fresh Broker subclass.
    methods = {n: f for n, f in vars(MemoryBroker).items() if n != left_out and not n.startswith("__")}
    partial = type("Partial", (Broker,), methods)
    with pytest.raises(TypeError, match=left_out):
        partial()
