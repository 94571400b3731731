"""Cross-room publishers: during a PK, each room's viewers also see the other room's host.

A link says "show `user`, who publishes in `source_room`, in `room` with role `role`". The
router (one process) and the worker pool (many) keep links the same way; only where the
source room's publishers come from differs, so the merge takes that as a function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ROLE_ORDER = {"host": 0, "cohost": 1, "call": 2, "pk": 3}


@dataclass(frozen=True)
class Link:
    room: str
    source_room: str
    user: str
    role: str = "pk"


class PublisherLinks:
    def __init__(self) -> None:
        self._into: dict[str, dict[tuple[str, str], Link]] = {}

    def add(self, room: str, source_room: str, user: str, role: str = "pk") -> bool:
        """Returns whether anything changed."""
        if room == source_room:
            raise ValueError("a room cannot link its own publishers")
        links = self._into.setdefault(room, {})
        link = Link(room, source_room, user, role)
        if links.get((source_room, user)) == link:
            return False
        links[(source_room, user)] = link
        return True

    def remove(self, room: str, source_room: str | None = None, user: str | None = None) -> list[Link]:
        """Remove links into `room` (all, or those matching `source_room`/`user`)."""
        links = self._into.get(room, {})
        gone = [
            link
            for link in links.values()
            if (source_room is None or link.source_room == source_room)
            and (user is None or link.user == user)
        ]
        for link in gone:
            del links[(link.source_room, link.user)]
        if not links:
            self._into.pop(room, None)
        return gone

    def into(self, room: str) -> list[Link]:
        return list(self._into.get(room, {}).values())

    def rooms_showing(self, source_room: str) -> set[str]:
        """Rooms whose publisher list depends on `source_room`'s publishers."""
        return {
            room
            for room, links in self._into.items()
            if any(link.source_room == source_room for link in links.values())
        }

    def find(self, room: str, user: str) -> Link | None:
        for link in self._into.get(room, {}).values():
            if link.user == user:
                return link
        return None

    def merged(self, room: str, local: list[dict], publishers_of: Callable[[str], list[dict]]) -> list[dict]:
        """`local` entries of `room` plus its linked publishers that are live, in display order."""
        entries = list(local)
        seen = {e["user"] for e in entries}
        for link in self.into(room):
            if link.user in seen:
                continue
            for entry in publishers_of(link.source_room):
                if entry["user"] == link.user:
                    entries.append({**entry, "role": link.role, "room": link.source_room})
                    seen.add(link.user)
                    break
        entries.sort(key=lambda e: ROLE_ORDER.get(e["role"], len(ROLE_ORDER)))
        return entries


class ListChanges:
    """Remembers the last publisher list reported per room, so a room is only reported when its
    list really changed (a co-host joining room B does not change room A's list, even if A
    shows B's host)."""

    def __init__(self, publishers: Callable[[str], list[dict]]) -> None:
        self._publishers = publishers
        self._last: dict[str, list[dict]] = {}

    def changed(self, room: str) -> bool:
        current = self._publishers(room)
        if current == self._last.get(room, []):
            return False
        if current:
            self._last[room] = current
        else:
            self._last.pop(room, None)
        return True
