"""Ids of what staff ops create, and how a retry of such an op is recognised.

``sale.create``, ``lottery.create``, ``coupon.issue`` and ``redpacket.send`` take an
optional ``cid``, as ``sale.buy`` does: an app's back end that lost the answer (a
timeout, ``unavailable``) retries with the same ``cid`` and gets the thing it created
the first time instead of a second sale or a second red packet. With a ``cid`` the
thing's id is derived: a stem from (room, user, cid) and a tail from the op's
parameters. The room document then tells the cases apart without a record of its
own: the same id is a retry, the same stem with another tail is the cid reused for
another request (``conflict``), no such stem is a new request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Annotated

import msgspec

from roomserver.protocol import OpError

STEM_HEX = 12  # 48 bits of (room, user, cid): no collision among a room's things
TAIL_HEX = 6  # 24 bits of the parameters: tells a retry from a reuse

# The ``cid`` of a creating op (as ``sale.buy``'s: 1..64 characters).
Cid = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def _hex(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(4, "big") + data)
    return h.hexdigest()


def created_id(prefix: str, room: str, user: str, cid: str | None, params: msgspec.Struct) -> str:
    """The id of what an op creates: random without a ``cid``, derived with one."""
    if cid is None:
        return prefix + secrets.token_hex((STEM_HEX + TAIL_HEX) // 2)
    unkeyed = msgspec.structs.replace(params, cid=None)  # type: ignore[type-var]
    tail = _hex(msgspec.json.encode(unkeyed))[:TAIL_HEX]
    return prefix + _hex(room, user, cid)[:STEM_HEX] + tail


def already_created(existing: Iterable[str], wanted: str) -> bool:
    """True when ``wanted`` (a derived id) exists: the op is a retry. ``conflict``
    when its cid was used for a request with other parameters."""
    stem = wanted[: len(wanted) - TAIL_HEX]
    for item in existing:
        if item == wanted:
            return True
        if len(item) == len(wanted) and item.startswith(stem):
            raise OpError("conflict", "this cid was already used for another request")
    return False
