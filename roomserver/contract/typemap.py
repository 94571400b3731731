"""msgspec types as TypeScript and Python type expressions (for the generator).

Structs become named types: a contract shape (``roomserver.contract``) by its
class name, an op's params by the op (``pk.invite`` -> ``PkInviteParams``), any
other struct by its class name, module-qualified when two classes share a name.
``Names`` collects them in the order first met, so output is deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec import inspect as mi


def camel(op: str) -> str:
    """``cohost.accept`` -> ``CohostAccept``."""
    return "".join(p[:1].upper() + p[1:] for p in op.replace("_", ".").split("."))


class Names:
    """Named struct types met while rendering, and the name each one gets."""

    def __init__(self) -> None:
        self.by_class: dict[type, str] = {}
        self.order: list[type] = []

    def name(self, cls: type, preferred: str | None = None) -> str:
        known = self.by_class.get(cls)
        if known is not None:
            return known
        name = preferred or cls.__name__
        same = [c for c, n in self.by_class.items() if n == name]
        if same and _signature(same[0]) == _signature(cls):
            self.by_class[cls] = name  # the same shape declared twice (params and reply): one type
            return name
        if same:
            name = camel(cls.__module__.rsplit(".", 1)[-1]) + name
        if name in self.by_class.values():
            raise ValueError(f"two contract types are both named {name}")
        self.by_class[cls] = name
        self.order.append(cls)
        return name


def _signature(cls: type) -> list[tuple[str, bool, mi.Type]]:
    return [(f.encode_name, f.required, f.type) for f in fields(cls)]


def fields(cls: type) -> list[mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType), cls
    return list(info.fields)


def _members(t: mi.Type) -> list[mi.Type]:
    return list(t.types) if isinstance(t, mi.UnionType) else [t]


def optional_field(f: mi.Field) -> bool:
    """May the field be absent (it has a default, or is ``UNSET``: msgspec.inspect
    drops ``UnsetType`` from the union and marks the field not required)?"""
    return not f.required


def ts(t: mi.Type, names: Names) -> str:
    """A TypeScript type expression."""
    members = _members(t)
    if len(members) > 1:
        return " | ".join(ts(m, names) for m in members)
    t = members[0]
    if isinstance(t, (mi.IntType, mi.FloatType)):
        return "number"
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, (mi.AnyType, mi.RawType)):
        return "unknown"
    if isinstance(t, mi.LiteralType):
        return " | ".join(json.dumps(v) for v in t.values)
    if isinstance(t, mi.EnumType):
        return " | ".join(json.dumps(m.value) for m in t.cls)
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        inner = ts(t.item_type, names)
        return f"({inner})[]" if " " in inner else f"{inner}[]"
    if isinstance(t, mi.TupleType):
        return "[" + ", ".join(ts(x, names) for x in t.item_types) + "]"
    if isinstance(t, mi.DictType):
        key = "string" if isinstance(t.key_type, mi.AnyType) else ts(t.key_type, names)  # JSON keys
        return f"Record<{key}, {ts(t.value_type, names)}>"
    if isinstance(t, mi.StructType):
        return names.name(t.cls)
    raise TypeError(f"no TypeScript type for {t!r}")


def py(t: mi.Type, names: Names) -> str:
    """A Python type expression (structs as the TypedDicts the generator writes)."""
    members = _members(t)
    if len(members) > 1:
        return " | ".join(py(m, names) for m in members)
    t = members[0]
    simple = {mi.IntType: "int", mi.FloatType: "float", mi.StrType: "str", mi.BoolType: "bool"}
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, mi.NoneType):
        return "None"
    if isinstance(t, (mi.AnyType, mi.RawType)):
        return "Any"
    if isinstance(t, mi.LiteralType):
        return "Literal[" + ", ".join(json.dumps(v) for v in t.values) + "]"
    if isinstance(t, mi.EnumType):
        return "Literal[" + ", ".join(json.dumps(m.value) for m in t.cls) + "]"
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return f"list[{py(t.item_type, names)}]"
    if isinstance(t, mi.TupleType):
        return "tuple[" + ", ".join(py(x, names) for x in t.item_types) + "]"
    if isinstance(t, mi.DictType):
        return f"dict[{py(t.key_type, names)}, {py(t.value_type, names)}]"
    if isinstance(t, mi.StructType):
        return names.name(t.cls)
    raise TypeError(f"no Python type for {t!r}")


def constraints(t: mi.Type) -> str:
    """Bounds a field's type carries (``1..200 chars``), for the reference tables."""
    parts = []
    for m in _members(t):
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else getattr(m, "min_length", None)
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else getattr(m, "max_length", None)
        if lo is not None or hi is not None:
            unit = " chars" if isinstance(m, mi.StrType) else ""
            parts.append(f"{'' if lo is None else lo}..{'' if hi is None else hi}{unit}")
    return ", ".join(parts)


def type_info(cls: type[msgspec.Struct]) -> Any:
    return mi.type_info(cls)
