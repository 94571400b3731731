"""Bulk WHEP viewers in child processes of the `media` scenario.

aiortc receives in Python (SRTP, RTP parsing, jitter buffer, depacketizing): even without
decoding, 40 viewers cost the client more than a core, and on a 2-core box the load
generator, not the server, set every figure. Bulk viewers therefore do the least a viewer
can: ICE and DTLS as usual (the server sees a real WebRTC peer), then each SRTP packet's
clear RTP header is read without decrypting it (``HeaderCounter``): a video frame is a
packet with the marker bit, a lost packet a gap in the sender's sequence numbers. An RTP
packet is counted where its datagram arrives, before aioice tries it as STUN and queues it
for aiortc's receive task (a failed STUN parse, a queue put and a task wake-up per packet);
with every waiting datagram read per wake-up, the viewers' processes cost 11-23 % less at
150 viewers (docs/benchmarks.md, session 13). They live
in ``--viewer-procs`` children, so the decoding latency probes (full aiortc viewers in the
scenario's own process) keep a quiet event loop.

A child reads one JSON command per line on stdin and answers each with one line on stdout:

    {"add": [[whep_url, token], ...]}   -> {"viewers": n}     (n = its viewers in all)
                                           or {"error": "..."} (a viewer could not connect)
    {"stats": true}                     -> {"frames": [...], "lost": [...], "not_connected": k}

End of stdin closes every viewer and ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from roomserver.media.bench import connect_peer, end_child
from roomserver.media.client import Viewer
from roomserver.media.ice import pin_host_addresses

LOOPBACK = "127.0.0.1"
VIDEO_RTPMAP = re.compile(r"^a=rtpmap:(\d+) (?:VP8|VP9|H264)/90000", re.MULTILINE)


class HeaderCounter:
    """Counts video frames and lost packets from RTP headers (they are not encrypted in
    SRTP), replacing aiortc's decrypt → parse → jitter buffer path for one viewer. Uses
    ``RTCDtlsTransport._rx_srtp`` and ``_handle_rtp_data`` (aiortc 1.16, pinned) and
    aioice's ``Connection._protocols`` (0.13, pinned through aiortc)."""

    def __init__(self, viewer: Viewer, answer_sdp: str) -> None:
        self.viewer = viewer
        self.video_pts = {int(pt) for pt in VIDEO_RTPMAP.findall(answer_sdp)}
        self.lost = 0
        self._last_seq: dict[int, int] = {}
        dtls = next(t.receiver.transport for t in viewer.pc.getTransceivers())
        dtls._handle_rtp_data = self._on_rtp  # type: ignore[method-assign]
        self._dtls = dtls
        dtls.on("statechange", self._skip_decryption)
        self._skip_decryption()
        for protocol in dtls.transport._connection._protocols:
            protocol.datagram_received = self._datagram(protocol.datagram_received)  # type: ignore[method-assign,assignment]
            _read_all_ready(protocol)

    def _datagram(self, passed_on: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        """``passed_on`` (aioice's handler) for all but RTP: STUN (ICE consent), DTLS,
        RTCP (RFC 5761: its second byte is 192-223) keep their usual path."""

        def received(data: bytes, addr: Any) -> None:
            if len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] < 224:
                self.count(data)
            else:
                passed_on(data, addr)

        return received

    def _skip_decryption(self) -> None:
        srtp = self._dtls._rx_srtp
        if srtp is not None and not isinstance(srtp, _ClearRtp):
            self._dtls._rx_srtp = _ClearRtp(srtp)  # type: ignore[assignment]  # aiortc private, duck-typed

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self.count(data)  # an RTP packet that came before the fast path was in place

    def count(self, data: bytes) -> None:
        if len(data) < 12 or (data[1] & 0x7F) not in self.video_pts:
            return  # RTX, audio, padding probes
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12], "big")
        last = self._last_seq.get(ssrc)
        if last is not None:
            gap = (seq - last) & 0xFFFF
            if 1 < gap < 0x8000:
                self.lost += gap - 1
            if gap == 0 or gap >= 0x8000:
                return  # duplicate or late
        self._last_seq[ssrc] = seq
        if data[1] & 0x80:  # marker: the last packet of a frame
            self.viewer.encoded_frames["video"] += 1
            if self.viewer.first_frame_at is None:
                self.viewer.first_frame_at = time.monotonic()


READS_PER_WAKEUP = 64


def _read_all_ready(protocol: Any) -> Callable[[], None]:
    """Read every datagram waiting on the protocol's socket per wake-up of the loop, not
    one (asyncio's datagram transport): a video frame's packets arrive together, so one
    turn of the loop serves several. Uses asyncio's private
    ``_add_reader`` (the public one refuses a socket a transport owns); the transport's
    close removes this reader as it would its own. Returns the reader."""
    transport = protocol.transport
    sock = transport._sock
    loop = asyncio.get_running_loop()

    def ready() -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_received(data, addr)

    loop._remove_reader(sock.fileno())  # type: ignore[attr-defined]
    loop._add_reader(sock.fileno(), ready)  # type: ignore[attr-defined]
    return ready


class _ClearRtp:
    """Lets RTP through undecrypted (only its header is read); RTCP is decrypted as usual."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def unprotect(self, data: bytes) -> bytes:
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._session.unprotect_rtcp(data)

    def protect(self, data: bytes) -> bytes:
        return self._session.protect(data)

    def protect_rtcp(self, data: bytes) -> bytes:
        return self._session.protect_rtcp(data)


async def _serve() -> None:
    pin_host_addresses([LOOPBACK])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    viewers: list[Viewer] = []
    counters: list[HeaderCounter] = []

    def answer(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async with aiohttp.ClientSession() as http:
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if "add" in cmd:
                    try:
                        for url, token in cmd["add"]:
                            viewer = Viewer(decode=False)
                            try:
                                answer_sdp = await connect_peer(http, url, viewer, token)
                            except Exception:
                                await viewer.close()
                                raise
                            viewers.append(viewer)
                            counters.append(HeaderCounter(viewer, answer_sdp))
                    except Exception as exc:
                        answer({"error": f"{type(exc).__name__}: {exc}"})
                    else:
                        answer({"viewers": len(viewers)})
                elif "stats" in cmd:
                    answer(
                        {
                            "frames": [v.encoded_frames["video"] for v in viewers],
                            "lost": [c.lost for c in counters],
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
        reply = await self._ask({"add": pairs}, timeout=30 + 5 * len(pairs))
        if "error" in reply:
            raise RuntimeError(f"viewer process {self.pid}: {reply['error']}")
        return reply["viewers"]

    async def stats(self) -> tuple[list[int], list[int], int]:
        """(video frames per viewer, lost packets per viewer, viewers not connected)."""
        reply = await self._ask({"stats": True}, timeout=30)
        return reply["frames"], reply["lost"], reply["not_connected"]

    async def close(self) -> None:
        if self.process is not None:
            await end_child(self.process, timeout=20)


if __name__ == "__main__":
    asyncio.run(_serve())
