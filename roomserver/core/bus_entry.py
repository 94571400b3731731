"""The JSON entries nodes write on the bus for each other (pure): media origins
(``media_origin``) and node announcements (``nodes``) are written and read alike."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any


def encode(entry: Any) -> bytes:
    """A dataclass instance as compact JSON."""
    return json.dumps(asdict(entry), separators=(",", ":")).encode()


def decode_object(blob: bytes) -> dict[str, Any] | None:
    """The JSON object in ``blob``; None for anything else (another version's entry, or
    a damaged one): the caller skips it, so one bad entry does not hide the others."""
    try:
        data = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
