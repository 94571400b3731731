"""Bulk WHEP viewers in child processes of the `media` scenario.

aiortc receives in Python (SRTP, RTP, jitter buffer): 60 viewers cost the client about a core.
In the scenario's own process they delayed the decoding latency probes beside them, so
bulk viewers (counting encoded frames, no decode) live in ``--viewer-procs`` children
and the probes keep a quiet event loop.

A child reads one JSON command per line on stdin and answers each with one line on stdout:

    {"add": [[whep_url, token], ...]}   -> {"viewers": n}     (n = its viewers in all)
    {"stats": true}                     -> {"frames": [...], "not_connected": k}

End of stdin closes every viewer and ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import aiohttp

from roomserver.media.client import Publisher, Viewer, post_offer
from roomserver.media.ice import pin_host_addresses

LOOPBACK = "127.0.0.1"


async def connect_peer(http: aiohttp.ClientSession, url: str, peer: Publisher | Viewer, token: str) -> None:
    """WHIP or WHEP: post the peer's offer with ``token``, apply the answer."""
    reply = await post_offer(http, url, await peer.offer(), token)
    if reply.status != 201:
        raise RuntimeError(f"{url}: {reply.status} {reply.body}")
    await peer.accept(reply.body)


async def _serve() -> None:
    pin_host_addresses([LOOPBACK])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    viewers: list[Viewer] = []

    def answer(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async with aiohttp.ClientSession() as http:
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if "add" in cmd:
                    for url, token in cmd["add"]:
                        viewer = Viewer(decode=False)
                        viewers.append(viewer)
                        await connect_peer(http, url, viewer, token)
                    answer({"viewers": len(viewers)})
                elif "stats" in cmd:
                    answer(
                        {
                            "frames": [v.encoded_frames["video"] for v in viewers],
                            "not_connected": sum(v.pc.connectionState != "connected" for v in viewers),
                        }
                    )
        finally:
            for viewer in viewers:
                with contextlib.suppress(Exception):
                    await viewer.close()


class ViewerProcess:
    """The parent's handle on one child (see the module docstring)."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtest.media_viewers",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )

    async def _ask(self, cmd: dict, timeout: float) -> dict:
        assert self.process is not None and self.process.stdin and self.process.stdout
        async with self._lock:
            self.process.stdin.write((json.dumps(cmd) + "\n").encode())
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"viewer process {self.pid} exited (code {self.process.returncode})")
        return json.loads(line)

    async def add(self, pairs: list[tuple[str, str]]) -> int:
        """Connect viewers (WHEP URL, token); returns this process's viewer count."""
        return (await self._ask({"add": pairs}, timeout=30 + 5 * len(pairs)))["viewers"]

    async def stats(self) -> tuple[list[int], int]:
        """(encoded video frames per viewer, viewers not connected)."""
        reply = await self._ask({"stats": True}, timeout=30)
        return reply["frames"], reply["not_connected"]

    async def close(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
