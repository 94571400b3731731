"""Interop with a second WebRTC stack: GStreamer's webrtcbin (Debian's packages) publishing over
WHIP and playing over WHEP, VP8 and H.264, with its default RSA DTLS certificate (which needs
the ECDHE-RSA suites of roomserver/media/dtls.py) and OBS-style signalling: Bearer token,
one POST of a complete offer, no trickle, DELETE at the end.

The peer (tests/media/gst_peer.py) runs under /usr/bin/python3, which has python3-gi.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import IO

import pytest

from roomserver.media.client import Publisher, Viewer, post_offer
from roomserver.media.sfu import MediaRouter
from roomserver.media.synthetic import CounterVideoTrack

from .conftest import MediaServer, make_token

pytestmark = pytest.mark.e2e

SYSTEM_PYTHON = "/usr/bin/python3"
PEER = str(Path(__file__).with_name("gst_peer.py"))


class GstPeer:
    """gst_peer.py as a subprocess; its JSON lines are read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr  # a file, so GStreamer's warnings can never fill a pipe and block it
        self.events: list[dict] = []

    @classmethod
    async def start(cls, *args: str) -> GstPeer:
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by kill())
        proc = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, PEER, *args, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
        return cls(proc, stderr)

    async def next_event(self, name: str, timeout: float) -> dict:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(
                        f"gst_peer ended before {name!r}: {self.events} {await self._stderr()}"
                    )
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == name:
                    return event

    async def _stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    async def wait(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            await self.next_event("done", timeout)
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.stderr.close()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_gstreamer_publishes_obs_style_and_aiortc_plays(
    media_server: MediaServer, router: MediaRouter, codec: str
) -> None:
    peer = await GstPeer.start(
        "publish", media_server.url("/v1/rooms/g1/whip"), make_token("h1", "host"), "--codec", codec,
        "--seconds", "8",
    )  # fmt: skip
    viewer = Viewer()
    try:
        answered = await peer.next_event("answered", timeout=20)
        assert answered["status"] == 201, answered
        assert answered["location"].startswith(media_server.url("/v1/rooms/g1/whip/"))
        assert [t["codec"].lower() for t in router.publishers("g1")[0]["tracks"]] == [codec]
        reply = await post_offer(
            media_server.http, media_server.url("/v1/rooms/g1/whep"), await viewer.offer(), make_token("v1")
        )
        assert reply.status == 201, reply.body
        await viewer.accept(reply.body)
        assert await viewer.wait_for(lambda v: len(v.video) >= 30, timeout=15), len(viewer.video)
        assert all(s.counter is None for s in viewer.video)  # GStreamer's test pattern, not our frames
        assert await peer.wait(timeout=20) == 0
        assert {"event": "deleted", "status": 200} in peer.events
        assert router.publishers("g1") == []
    finally:
        await viewer.close()
        await peer.kill()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_gstreamer_plays_what_aiortc_publishes(
    media_server: MediaServer, router: MediaRouter, codec: str
) -> None:
    publisher = Publisher([CounterVideoTrack()], video_codec=codec)
    peer: GstPeer | None = None
    try:
        reply = await post_offer(
            media_server.http,
            media_server.url("/v1/rooms/g2/whip"),
            await publisher.offer(),
            make_token("h1", "host"),
        )
        assert reply.status == 201, reply.body
        await publisher.accept(reply.body)
        peer = await GstPeer.start(
            "play",
            media_server.url("/v1/rooms/g2/whep"),
            make_token("v1"),
            "--codec",
            codec,
            "--frames",
            "30",
        )
        answered = await peer.next_event("answered", timeout=20)
        assert answered["status"] == 201, answered
        decoded = await peer.next_event("decoded", timeout=30)
        assert decoded["frames"] >= 30, peer.events
        assert await peer.wait(timeout=10) == 0
        assert {"event": "deleted", "status": 200} in peer.events
    finally:
        if peer is not None:
            await peer.kill()
        await publisher.close()
