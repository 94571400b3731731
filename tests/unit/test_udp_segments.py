"""core/udp_segments.py: which staged datagrams one UDP GSO send carries."""

from __future__ import annotations

import random

from roomserver.core.udp_segments import MAX_SEGMENTS, segment_runs


def _valid(sizes: list[int], runs: list[tuple[int, int]], max_segments: int, max_bytes: int) -> None:
    assert [i for start, end in runs for i in range(start, end)] == list(range(len(sizes)))  # all, in order
    for start, end in runs:
        run = sizes[start:end]
        assert all(s == run[0] for s in run[:-1]) and run[-1] <= run[0]
        assert len(run) <= max_segments and (len(run) == 1 or sum(run) <= max_bytes)


def test_a_frame_of_full_packets_and_a_shorter_last_is_one_send() -> None:
    assert segment_runs([1200] * 5 + [700]) == [(0, 6)]


def test_a_longer_datagram_starts_a_new_run_and_a_shorter_one_ends_it() -> None:
    # libwebrtc's about-equal split: sizes differ by a byte.
    assert segment_runs([1100, 1100, 1099, 1099]) == [(0, 3), (3, 4)]
    assert segment_runs([500, 1200, 1200]) == [(0, 1), (1, 3)]
    assert segment_runs([1200, 300, 300]) == [(0, 2), (2, 3)]
    assert segment_runs([]) == []


def test_runs_respect_the_kernels_segment_and_byte_limits() -> None:
    assert segment_runs([100] * (MAX_SEGMENTS + 1)) == [(0, MAX_SEGMENTS), (MAX_SEGMENTS, MAX_SEGMENTS + 1)]
    assert segment_runs([1400] * 50, max_bytes=14_000) == [(i, i + 10) for i in range(0, 50, 10)]


def test_random_size_sequences_always_split_into_valid_runs() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        sizes = [rng.choice([80, 700, 1199, 1200, 1200, 1200, 1400]) for _ in range(rng.randrange(0, 90))]
        max_segments, max_bytes = rng.choice([(64, 65_000), (3, 65_000), (64, 5_000)])
        _valid(sizes, segment_runs(sizes, max_segments, max_bytes), max_segments, max_bytes)
