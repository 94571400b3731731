"""What a gift is worth: the catalog (``--gifts``) lookup of ``gift.send``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from roomserver.protocol import OpError


def price(catalog: Sequence[Mapping[str, object]], gift_id: str, count: int) -> tuple[dict[str, object], int]:
    """The gift's public view ``{id, name, value}`` and the value of ``count`` of
    them; ``bad_request`` for a gift the catalog does not have, or has without a
    whole-number value (a bad catalog refuses the gift, it does not crash the op)."""
    for item in catalog:
        if item.get("id") != gift_id:
            continue
        value = item.get("value")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise OpError("bad_request", f"gift {gift_id!r} has no valid value in the catalog")
        return {"id": item["id"], "name": item.get("name"), "value": value}, value * count
    raise OpError("bad_request", f"unknown gift {gift_id!r}; see the catalog in the join snapshot")
