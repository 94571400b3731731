"""Process limits the server and the load tester lift at start."""

from __future__ import annotations

import contextlib
import resource


def raise_open_files_limit() -> int:
    """Lift the soft limit on open descriptors to the hard one, as Go's runtime does: every
    WebSocket, ICE socket (and its duplicate for batched sends, media/udp_batch.py) is one,
    and the usual soft limit of 1,024 would refuse viewers long before the CPU runs out.
    Child processes (media workers) inherit it. An unlimited hard limit is left alone: Linux
    refuses an unlimited soft one for descriptors. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
