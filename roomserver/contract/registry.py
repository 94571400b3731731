"""Every op as the contract states it: the op registry's entry (params, role) joined
with its reply schema (``contract.ops.REPLIES``). Separate from ``ops`` because it
imports the handlers, which import the node, which imports ``contract.check``."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from roomserver.contract import wire as w
from roomserver.contract.ops import REPLIES


@dataclass(frozen=True, slots=True)
class OpContract:
    """One op as the contract states it: the registry's entry plus its reply."""

    name: str
    params: type[msgspec.Struct]
    reply: type[w.Wire]
    who: str
    joined: bool
    needs_room: bool
    server_api: bool


def op_contracts() -> list[OpContract]:
    """Every registered op, sorted by name (KeyError if one has no reply schema)."""
    import roomserver.handlers.catalog  # noqa: F401  (imports every op module: they register)
    from roomserver.handlers import REGISTRY, server_api_ops

    api = set(server_api_ops())
    return [
        OpContract(name, spec.schema, REPLIES[name], spec.who, spec.joined, spec.needs_room, name in api)
        for name, spec in sorted(REGISTRY.items())
    ]
