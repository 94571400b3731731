"""Delivery verification: the fast seq scan and the exactly-once, in-order check."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loadtest.verify import FrameSeqs, SeqCheck, scan_seqs
from roomserver.protocol import encode_event, frame, with_seq


def test_scan_finds_durable_events_only_in_frame_order() -> None:
    durable = [with_seq(encode_event("barrage", "r1", {"text": f"m{i}"}), i) for i in (7, 8, 9)]
    ephemeral = encode_event("online", "r1", {"count": 3})
    assert scan_seqs(frame([durable[0], ephemeral, durable[1], durable[2]])) == [7, 8, 9]


def test_scan_is_not_fooled_by_text_that_looks_like_an_event() -> None:
    tricky = with_seq(encode_event("barrage", "r1", {"text": '{"seq":999}', "cid": '[{"seq":5'}), 12)
    assert scan_seqs(frame([tricky])) == [12]


def test_in_order_frames_pass() -> None:
    c = SeqCheck(last=10)
    for chunk in ([11], [12, 13, 14], [], [15, 16]):
        c.feed(chunk)
    assert (c.last, c.received, c.in_order, c.complete(16), c.complete(17)) == (16, 6, True, True, False)


def test_a_gap_is_a_failure_and_counts_the_missing_events() -> None:
    c = SeqCheck(last=0)
    c.feed([1, 2, 5, 6])
    assert (c.gaps, c.missing, c.duplicates, c.in_order, c.last) == (1, 2, 0, False, 6)


def test_duplicates_and_reordering_are_failures() -> None:
    c = SeqCheck(last=0)
    c.feed([1, 2, 2, 3])
    assert (c.duplicates, c.gaps, c.in_order) == (1, 0, False)
    c = SeqCheck(last=0)
    c.feed([1, 3, 2, 4])  # 3 jumps (gap), 2 goes back (duplicate/reorder)
    assert (c.gaps, c.duplicates, c.in_order) == (1, 1, False)


@given(st.integers(0, 10**6), st.lists(st.integers(1, 50), max_size=20))
def test_any_chunking_of_a_consecutive_run_is_in_order(start: int, sizes: list[int]) -> None:
    c = SeqCheck(last=start)
    nxt = start + 1
    for n in sizes:
        c.feed(list(range(nxt, nxt + n)))
        nxt += n
    assert c.in_order and c.last == nxt - 1 and c.received == nxt - 1 - start


@given(st.lists(st.integers(1, 200), min_size=1, max_size=60))
def test_anything_but_the_exact_run_is_caught(seqs: list[int]) -> None:
    c = SeqCheck(last=0)
    c.feed(seqs)
    exact = seqs == list(range(1, len(seqs) + 1))
    assert c.in_order == exact


@given(st.integers(0, 1000), st.lists(st.lists(st.integers(1, 1200), max_size=12), max_size=30))
def test_the_memoised_run_path_judges_exactly_like_the_plain_one(start: int, frames: list[list[int]]) -> None:
    memo = FrameSeqs(limit=4)
    plain, fast = SeqCheck(last=start), SeqCheck(last=start)
    for seqs in frames:
        payload = frame([with_seq(encode_event("barrage", "r", {}), s) for s in seqs]) if seqs else b"[]"
        plain.feed(scan_seqs(payload))
        first, n, listed = memo(payload)
        if n:
            fast.feed_run(first, n, listed)
        again = memo(payload)  # a hit returns the same run
        assert again == (first, n, listed)
    assert (fast.last, fast.received, fast.gaps, fast.missing, fast.duplicates) == (
        plain.last,
        plain.received,
        plain.gaps,
        plain.missing,
        plain.duplicates,
    )
