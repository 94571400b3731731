"""Delivery verification: every durable event exactly once and in ``seq`` order.

Most simulated viewers never decode JSON. A durable event on the wire is an
object that *starts* with ``"seq"`` (the bus splices ``{"seq":N,`` in front of
the encoded event, ``protocol.with_seq``), so one compiled regex over the
frame's bytes yields the frame's seqs in order. Text inside an event cannot
fake it: a quote inside a JSON string is escaped (``{\\"seq\\":``). Replies can
(``"data":{"seq":1042}``), so only sockets that never get replies after their
join (plain viewers) use the fast scan; senders decode their replies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SEQ_RE: Final = re.compile(rb'\{"seq":(\d+)')


def scan_seqs(payload: bytes) -> list[int]:
    """The seqs of the durable events in one server frame, in frame order."""
    return list(map(int, SEQ_RE.findall(payload)))


class FrameSeqs:
    """``scan_seqs`` memoised by frame bytes, as a run ``(first, count, seqs)``.

    The fan-out writes the *same* frame to every socket of a room, so a worker
    with thousands of viewers sees each payload thousands of times: it scans
    each distinct payload once (dict lookup on the bytes, exact comparison on a
    hash hit). ``seqs`` is None when the frame's seqs are consecutive
    (``first .. first + count - 1``), else the full list for the slow path.
    Bounded: cleared past ``limit`` distinct frames.
    """

    __slots__ = ("_cache", "limit")

    def __init__(self, limit: int = 1024) -> None:
        self._cache: dict[bytes, tuple[int, int, list[int] | None]] = {}
        self.limit = limit

    def __call__(self, payload: bytes) -> tuple[int, int, list[int] | None]:
        hit = self._cache.get(payload)
        if hit is not None:
            return hit
        seqs = scan_seqs(payload)
        n = len(seqs)
        first = seqs[0] if n else 0
        run = (first, n, None if seqs == list(range(first, first + n)) else seqs)
        if len(self._cache) >= self.limit:
            self._cache.clear()
        self._cache[payload] = run
        return run


@dataclass(slots=True)
class SeqCheck:
    """Tracks one socket's durable events after its join snapshot ``seq``.

    Every seq seen must be exactly ``last + 1``. A jump is a gap (events lost),
    a seq at or below ``last`` a duplicate (or reordering); both are failures.
    """

    last: int
    received: int = 0
    gaps: int = 0
    missing: int = 0  # events skipped over by gaps
    duplicates: int = 0

    def feed(self, seqs: list[int]) -> None:
        n = len(seqs)
        if not n:
            return
        self.received += n
        last = self.last
        if (
            seqs[0] == last + 1
            and seqs[-1] == last + n
            and (n < 3 or seqs == list(range(last + 1, last + n + 1)))
        ):
            self.last = last + n
            return
        for s in seqs:  # slow path: classify each one
            if s == last + 1:
                last = s
            elif s > last:
                self.gaps += 1
                self.missing += s - last - 1
                last = s
            else:
                self.duplicates += 1
        self.last = last

    def feed_run(self, first: int, n: int, seqs: list[int] | None) -> None:
        """``feed`` for a ``FrameSeqs`` result: O(1) when the run follows on."""
        if seqs is None and first == self.last + 1:
            self.last = first + n - 1
            self.received += n
        elif seqs is None:
            self.feed(list(range(first, first + n)))
        else:
            self.feed(seqs)

    @property
    def in_order(self) -> bool:
        return not self.gaps and not self.duplicates

    def complete(self, final_seq: int) -> bool:
        return self.last >= final_seq
