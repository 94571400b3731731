"""Every op module, imported for the ops and deadline checks it registers, and the
steps that end a show: what the composition root (``server.create_app``) hands the
node. Kept explicit, so the op list is greppable; the registry itself
(``roomserver.handlers``) imports none of its modules."""

from __future__ import annotations

from roomserver.handlers import (
    DEADLINES,
    assistant,
    chat,
    cohost,
    commerce,
    loyalty,
    media,
    moderation,
    pk,
    polls,
    rooms,
    share,
)
from roomserver.node import DeadlineCheck, ShowEndStep

OP_MODULES = (assistant, chat, cohost, commerce, loyalty, media, moderation, pk, polls, rooms, share)

# room.end / DELETE /v1/rooms/{room}, in order: a running PK ends, then co-hosts step
# down (the node closes the room's media after them, whatever happened).
SHOW_END: tuple[ShowEndStep, ...] = (pk.room_ended, cohost.clear)


def deadline_checks() -> tuple[DeadlineCheck, ...]:
    return tuple(DEADLINES)
