"""Cap processes' CPU with a Linux cgroup, to measure scaling with cores on a small box.

On a 2-core machine the load generator needs about one core, so two media workers can
never both be saturated, and "2 workers carry twice what 1 does" cannot be measured with
whole cores. Capping each worker at a fraction of a core (``cpu.cfs_quota_us`` of the
cgroup-v1 ``cpu`` controller, which this machine mounts) makes each worker a small
"core" of its own that the box can saturate: N workers capped at q cores each should
carry N times what one does, if nothing else is shared.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


class CpuQuotaError(RuntimeError):
    pass


class CpuQuota:
    """One cgroup capped at ``cores`` CPUs; processes added to it share that cap."""

    def __init__(self, name: str, cores: float) -> None:
        if cores <= 0:
            raise CpuQuotaError("a CPU quota must be positive")
        quota_us = max(1000, int(cores * PERIOD_US))
        if not (V1_ROOT / "cpu.cfs_quota_us").exists():
            raise CpuQuotaError(f"no cgroup-v1 cpu controller at {V1_ROOT} (needs Linux cgroups v1 and root)")
        self.path = V1_ROOT / name
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))

    def add(self, pid: int) -> None:
        """Move the whole process (all its threads) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Remove the cgroup (its processes must have exited or moved)."""
        try:
            self.path.rmdir()
        except OSError:
            # Still running: hand its processes back to the parent group, then remove it.
            with contextlib.suppress(OSError):
                for pid in (self.path / "cgroup.procs").read_text().split():
                    (self.path.parent / "cgroup.procs").write_text(pid)
                self.path.rmdir()


def quota_name(tag: str) -> str:
    return f"roomserver-loadtest-{os.getpid()}-{tag}"
