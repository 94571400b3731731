"""A process's CPU time at nanosecond resolution, for benchmarks and their smoke tests.

``/proc/<pid>/stat`` counts in clock ticks (10 ms): a half-second step of a light server
read 0.0 s in a CI run, and a phase of about a CPU-second reads to ±1 %. The scheduler's
own account, ``/proc/<pid>/task/<tid>/schedstat`` (first field: ns on a CPU), summed over
the threads, does not have that floor. A thread that ends takes its time out of the sum;
the processes measured keep their threads."""

from __future__ import annotations

from pathlib import Path


def process_cpu_seconds(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9
