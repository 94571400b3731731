"""CpuQuota caps a process at a fraction of a CPU (the media scaling benchmark's "cores")."""

from __future__ import annotations

import subprocess
import sys
import time

from loadtest.cpuquota import CpuQuota, quota_name
from loadtest.procs import cpu_seconds


def test_a_busy_process_is_held_to_its_quota() -> None:
    cap = CpuQuota(quota_name("test"), 0.2)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cap.add(busy.pid)
        time.sleep(0.3)  # the interpreter's start-up ran before the cap
        before, t0 = cpu_seconds(busy.pid), time.monotonic()
        time.sleep(2.0)
        used = (cpu_seconds(busy.pid) - before) / (time.monotonic() - t0)
    finally:
        busy.kill()
        busy.wait()
        cap.close()
    assert 0.1 < used < 0.3, f"a 0.2-CPU cap let the loop use {used:.2f} CPUs"
    assert not cap.path.exists()
