"""Which staged datagrams to one peer one UDP GSO send can carry (pure).

With UDP generic segmentation offload (Linux ≥ 4.18, `UDP_SEGMENT`), one `sendmsg` hands the
kernel a buffer it cuts into datagrams of `gso_size` bytes, the last one the remainder: a run
of datagrams is one send if all but its last have the run's first size and the last is no
longer. A video frame's RTP packets are mostly equal-sized (aiortc fills each packet but the
last; libwebrtc splits a frame into sizes that differ by at most a byte), so a frame to one
viewer is usually one or two sends instead of six.
"""

from __future__ import annotations

from collections.abc import Sequence

# Linux refuses more segments than UDP_MAX_SEGMENTS (64 before 6.x raised it to 128) and a
# buffer over the 64 KiB an IP datagram carries.
MAX_SEGMENTS = 64
MAX_SEND_BYTES = 65_000


def segment_runs(
    sizes: Sequence[int], max_segments: int = MAX_SEGMENTS, max_bytes: int = MAX_SEND_BYTES
) -> list[tuple[int, int]]:
    """Split datagrams of `sizes` (in send order) into runs [start, end) that one GSO send
    each carries, keeping their order."""
    runs: list[tuple[int, int]] = []
    start, n = 0, len(sizes)
    while start < n:
        size = sizes[start]
        end, total = start + 1, size
        while end < n and end - start < max_segments and total + sizes[end] <= max_bytes:
            nxt = sizes[end]
            if nxt > size:
                break
            end, total = end + 1, total + nxt
            if nxt < size:
                break  # a shorter datagram can only be a run's last
        runs.append((start, end))
        start = end
    return runs
