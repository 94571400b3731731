"""Who may send a barrage message, and when: the checks of ``barrage.send``.

Pure: the caller passes the room document, the time, when this socket last sent
one (slow mode is per socket) and the room's compiled word filter."""

from __future__ import annotations

from roomserver.core.moderation import WordFilter
from roomserver.core.room import RoomDoc, is_restricted
from roomserver.protocol import OpError


def check_send(
    doc: RoomDoc,
    *,
    user: str,
    staff: bool,
    text: str,
    now_ms: int,
    last_sent_ms: int,
    words: WordFilter,
) -> None:
    """Raise the first failing check's error: blank text (``bad_request``), a muted
    sender (``muted``), slow mode for non-staff (``rate_limited`` with the wait), a
    banned word (``blocked_content``)."""
    if not text.strip():
        raise OpError("bad_request", "text must not be blank")
    if is_restricted(doc.mutes, user, now_ms):
        raise OpError("muted", "you are muted in this room")
    if doc.slow_s and not staff:
        wait = last_sent_ms + doc.slow_s * 1000 - now_ms
        if wait > 0:
            raise OpError("rate_limited", f"slow mode: one message every {doc.slow_s}s", retry_after_ms=wait)
    if words.find(text) is not None:
        raise OpError("blocked_content", "the message contains a blocked word")
