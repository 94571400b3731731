"""The skeleton every load-generator worker process shares.

A worker talks to the parent over a ``multiprocessing`` pipe: it connects its sockets,
says ``ready``, sends a ``tick`` every second (its counts, the worst event-loop lag of
that second and the scenario's own fields), answers ``snap`` with its CPU time and ends
on ``stop`` (or a closed pipe, or ``MAX_LIFETIME_S``). Scenarios fill in the parts
marked below; see ``worker.Worker`` (viewers) and ``commerce_worker.CommerceWorker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from loadtest.procs import self_cpu_seconds

MAX_LIFETIME_S = 3600.0  # a hard stop for a worker whatever happens


class WorkerLoop:
    name = "worker"

    def __init__(self, pipe: Connection, index: int) -> None:
        self.pipe = pipe
        self.index = index
        self.done = asyncio.Event()
        self.max_lag_ms = 0.0

    # -- what a scenario provides ------------------------------------------------------

    async def _connect_all(self) -> None:
        raise NotImplementedError

    def _counts(self) -> dict[str, Any]:
        """Fields of ``ready``, ``snap`` and every ``tick``."""
        raise NotImplementedError

    def _tick_fields(self) -> dict[str, Any]:
        """This second's own fields of a ``tick`` (taken: the next tick starts afresh)."""
        return {}

    def _command(self, cmd: str | None, msg: dict[str, Any]) -> None:
        """A parent command other than ``snap`` and ``stop``."""

    def _background(self) -> list[asyncio.Task]:
        """Tasks to run beside the ticker from the start (cancelled at the end)."""
        return []

    def _close_all(self) -> None:
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._on_command)
        # The loop made the pipe non-blocking; a message bigger than the socket buffer
        # (a commerce worker's acknowledged orders) must be written and read whole.
        os.set_blocking(self.pipe.fileno(), True)
        tasks = [loop.create_task(self._tick()), *self._background()]
        try:
            await self._connect_all()
            # A full collection over thousands of sockets stalls the loop for a long
            # time and shows up as latency that is not the server's; runs are bounded
            # and make little cyclic garbage, so no collections once connected.
            gc.collect()
            gc.freeze()
            gc.disable()
            self._send({"kind": "ready", **self._counts()})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.done.wait(), MAX_LIFETIME_S)
        finally:
            for task in tasks:
                task.cancel()
            loop.remove_reader(self.pipe.fileno())
            self._close_all()
            await asyncio.sleep(0.2)

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self.pipe.send(msg)
        except (BrokenPipeError, OSError) as exc:
            print(f"{self.name} {self.index}: pipe: {exc!r}", file=sys.stderr, flush=True)
            self.done.set()

    def _on_command(self) -> None:
        try:
            msg = self.pipe.recv()
        except (EOFError, OSError):
            self.done.set()
            return
        cmd = msg.get("cmd")
        if cmd == "snap":
            self._send({"kind": "snap", "cpu": self_cpu_seconds(), **self._counts()})
        elif cmd == "stop":
            self.done.set()
        else:
            self._command(cmd, msg)

    async def _tick(self) -> None:
        lag = asyncio.get_running_loop().create_task(self._measure_lag())
        try:
            while True:
                await asyncio.sleep(1.0)
                max_lag, self.max_lag_ms = self.max_lag_ms, 0.0
                self._send(
                    {
                        "kind": "tick",
                        "wall": time.time(),
                        "lag_ms": round(max_lag, 1),
                        **self._tick_fields(),
                        **self._counts(),
                    }
                )
        finally:
            lag.cancel()

    async def _measure_lag(self) -> None:
        """How late this loop wakes up: a stalled worker reads late and inflates latency."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.02)
            self.max_lag_ms = max(self.max_lag_ms, (time.monotonic() - t0 - 0.02) * 1000)
