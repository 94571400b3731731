"""Quality-layer switch times (issue 14): a viewer whose link is throttled moves to the low
layer, another keeps the high one, and the throttled one returns to high when the limit goes.

    python -m loadtest.layer_switch [--rate 300kbit] [--hold 15] [--runs 1]

An aiortc publisher sends two layers (`layer_pair`: VP8 640×480 textured, 320×240 plain;
WHIP `?layers=high,low`) to an in-process `MediaRouter` (RTP forwarding). Viewer "near" plays
in this process over loopback; viewer "far" runs in a network namespace joined by a veth
pair (tests/media/netns.py) and reports each decoded frame's width and time. Once both play
the high layer, `tc qdisc add dev <veth> root tbf rate RATE` limits what reaches "far";
after `--hold` seconds the qdisc is deleted. Frame width tells the layer (640 high, 320
low); all times are `time.monotonic()` (one clock for the host's processes). Measured:

- `down_s`: limit applied → first low-layer frame decoded by "far";
- `up_s`: limit lifted → first frame of the high layer "far" then stays on (≥ 30 frames,
  and the server's choice is high); this includes the probe back-off of core/layers.py;
- while limited: frames "far" decoded, the share on the low layer (probes up show as high
  frames), its longest gap between frames, and whether "near" stayed on high.

Needs root (netns, tc). Prints one JSON object; `run_scenario` is what tests/media/
test_layers_netns.py asserts on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from roomserver.core.rtp_rewrite import vp8_starts_keyframe
from roomserver.media.client import Publisher, Viewer
from roomserver.media.forwarding import DECODER_QUEUE_ATTR
from roomserver.media.ice import (
    pin_host_addresses,
    pinned_host_addresses,
    rtc_configuration,
    unpin_host_addresses,
)
from roomserver.media.sfu import MediaRouter, ViewerSession
from roomserver.media.synthetic import LOW_LAYER_BITRATE, layer_pair
from tests.media.netns import Namespace, namespace

TC = "/usr/sbin/tc"
LOOPBACK = "127.0.0.1"
HIGH_WIDTH, LOW_WIDTH = 640, 320
ROOM = "layers"
JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
STAY_FRAMES = 30  # frames on the high layer that count as having returned to it


@dataclass
class Frames:
    """(width, decoded at) of every frame one viewer decoded."""

    samples: list[tuple[int, float]] = field(default_factory=list)

    def since(self, t: float) -> list[tuple[int, float]]:
        return [s for s in self.samples if s[1] >= t]

    def first(self, width: int, after: float) -> float | None:
        return next((at for w, at in self.samples if w == width and at >= after), None)

    def high_stay_start(self, after: float) -> float | None:
        """When the last unbroken run of high frames after `after` began, if ≥ STAY_FRAMES long."""
        run: list[float] = []
        for w, at in self.since(after):
            run = [*run, at] if w == HIGH_WIDTH else []
        return run[0] if len(run) >= STAY_FRAMES else None


def _tc(*args: str) -> None:
    subprocess.run([TC, *args], check=True, capture_output=True, timeout=10)


async def _far_viewer(ns: Namespace) -> asyncio.subprocess.Process:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    return await asyncio.create_subprocess_exec(
        *ns.command(sys.executable, "-m", "loadtest.layer_switch", "viewer"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )


async def _read_frames(proc: asyncio.subprocess.Process, frames: Frames) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        frames.samples.extend((w, at) for w, at in json.loads(line)["new"])


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _near_frames(viewer: Viewer) -> list[tuple[int, float]]:
    return [(s.width, s.at) for s in viewer.video]


async def run_scenario(
    rate: str = "300kbit", hold: float = 15.0, timeout: float = 60.0, *, pin_near: bool = False
) -> dict:
    """`pin_near`: the loopback viewer asks for the high layer (`media.layer`) instead of
    following the estimate, so a CPU-starved box cannot move it (the test's choice)."""
    previous = pinned_host_addresses()
    with namespace("layers", 215) as ns:
        unpin_host_addresses()
        pin_host_addresses([LOOPBACK, ns.outer_ip])  # "far" reaches us only on the veth
        router = MediaRouter(connect_timeout=timeout)
        high, low = layer_pair()
        publisher = Publisher([high, low], max_bitrates={low: LOW_LAYER_BITRATE})
        near = Viewer()
        proc = await _far_viewer(ns)
        far = Frames()
        reader: asyncio.Task | None = None
        limited = False
        try:
            _, answer = await router.publish(ROOM, "host", "host", await publisher.offer(), ("high", "low"))
            await publisher.accept(answer)
            near_id, answer = await router.play(ROOM, None, "near", await near.offer())
            await near.accept(answer)
            if pin_near:
                router.set_layer(ROOM, "near", "host", "high")
            assert proc.stdin is not None and proc.stdout is not None
            far_offer = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout))["offer"]
            far_id, answer = await router.play(ROOM, None, "far", far_offer)
            proc.stdin.write((json.dumps({"answer": answer}) + "\n").encode())
            await proc.stdin.drain()
            reader = asyncio.ensure_future(_read_frames(proc, far))
            near_session, far_session = router.session(near_id), router.session(far_id)
            assert isinstance(near_session, ViewerSession) and near_session.layers is not None
            assert isinstance(far_session, ViewerSession) and far_session.layers is not None
            started = time.monotonic()
            await _until(
                lambda: (
                    len([w for w, _ in far.samples if w == HIGH_WIDTH]) >= 20
                    and len([s for s in near.video if s.width == HIGH_WIDTH]) >= 20
                ),
                timeout,
                "both viewers on the high layer",
            )
            ready_s = time.monotonic() - started

            limit_at = time.monotonic()
            _tc(
                "qdisc",
                "add",
                "dev",
                ns.outer_if,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "5kb",
                "latency",
                "50ms",
            )
            limited = True
            await _until(
                lambda: far.first(LOW_WIDTH, limit_at) is not None, timeout, "the low layer on 'far'"
            )
            down_at = far.first(LOW_WIDTH, limit_at)
            assert down_at is not None
            near_layers_limited: set[str] = set()
            while time.monotonic() < down_at + hold:
                near_layers_limited.add(near_session.layers.playing)
                await asyncio.sleep(0.2)
            lift_at = time.monotonic()
            _tc("qdisc", "del", "dev", ns.outer_if, "root")
            limited = False
            while_limited = [s for s in far.since(down_at) if s[1] < lift_at]
            near_limited = [s for s in _near_frames(near) if down_at <= s[1] < lift_at]
            switches_limited = far_session.layers.sink.switches

            await _until(
                lambda: far.high_stay_start(lift_at) is not None and far_session.layers.playing == "high",
                timeout,
                "'far' back on the high layer",
            )
            up_at = far.high_stay_start(lift_at)
            assert up_at is not None
            gaps = [b[1] - a[1] for a, b in itertools.pairwise(while_limited)]
            return {
                "rate": rate,
                "hold_s": hold,
                "ready_s": round(ready_s, 2),
                "down_s": round(down_at - limit_at, 3),
                "up_s": round(up_at - lift_at, 3),
                "far_frames_limited": len(while_limited),
                "far_fps_limited": round(len(while_limited) / max(lift_at - down_at, 1e-9), 1),
                "far_low_share_limited": round(
                    sum(w == LOW_WIDTH for w, _ in while_limited) / max(len(while_limited), 1), 3
                ),
                "far_longest_gap_s": round(max(gaps, default=0.0), 3),
                "far_switches_limited": switches_limited,
                "near_frames_limited": len(near_limited),
                "near_fps_limited": round(len(near_limited) / max(lift_at - down_at, 1e-9), 1),
                "near_widths_limited": sorted({w for w, _ in near_limited}),
                "near_high_share_limited": round(
                    sum(w == HIGH_WIDTH for w, _ in near_limited) / max(len(near_limited), 1), 3
                ),
                "near_layers_limited": sorted(near_layers_limited),
                "far_receiver_reports": far_session.layers.reports,
                "far_rembs": far_session.layers.rembs,
                "far_retransmitted": far_session.layers.sink.retransmitted,
                "far_nack_misses": far_session.layers.sink.nack_misses,
                "loadavg": os.getloadavg(),
            }
        finally:
            if limited:
                with contextlib.suppress(subprocess.CalledProcessError):
                    _tc("qdisc", "del", "dev", ns.outer_if, "root")
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await near.close()
            await publisher.close()
            await router.close()
            unpin_host_addresses()
            if previous is not None:
                pin_host_addresses(previous)


class SkipToKeyframe(JitterBuffer):
    """aiortc's video jitter buffer made to recover from loss as a browser does: a keyframe's
    first packet drops whatever still waits for lost packets before it (a browser decodes a
    keyframe whatever came before), and when packets keep coming but no frame completes for
    `stuck_after` s it asks for a keyframe (a browser does when its NACKs fail). Stock aiortc
    waits until 512 packets later instead: one packet lost for good on a congested link (its
    resends lost too) freezes the picture for ~14 s at the low layer's ~35 packets/s, which
    would measure the client's buffer, not the server's switch."""

    stuck_after = 0.5
    pli_interval = 1.0

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch, is_video)
        self._last_frame_at = time.monotonic()
        self._last_pli_at = 0.0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        origin = self._origin
        if origin is not None and vp8_starts_keyframe(packet.payload):
            ahead = (packet.sequence_number - origin) % 65536
            waiting = [
                self._packets[(origin + i) % self._capacity] for i in range(min(ahead, self._capacity))
            ]
            if 0 < ahead < self._capacity and None in waiting and any(waiting):
                self.remove(ahead)
        pli, frame = super().add(packet)
        now = time.monotonic()
        if frame is not None:
            self._last_frame_at = now
        elif now - self._last_frame_at > self.stuck_after and now - self._last_pli_at > self.pli_interval:
            self._last_pli_at = now
            pli = True
        return pli, frame


class _FrameWidths(queue.Queue):
    """Replaces the viewer receiver's decoder queue: notes each complete encoded frame the
    jitter buffer hands over, with the width of the last VP8 keyframe (the layer it is on),
    and decodes nothing, so a slow decode on a busy box does not delay what is measured."""

    def __init__(self, out: list[tuple[int, float]], replaced: queue.Queue) -> None:
        super().__init__()
        self._out = out
        self._replaced = replaced
        self._width = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            self._replaced.put(None)
            return
        _, frame = item
        data = frame.data
        if len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a":
            self._width = int.from_bytes(data[6:8], "little") & 0x3FFF
        if self._width:
            self._out.append((self._width, time.monotonic()))


async def viewer_main() -> int:
    """Inside the namespace: offer, take the answer from stdin, then every 0.2 s print the
    (width, completed at) of the frames completed since the last line, until killed."""
    pc = RTCPeerConnection(rtc_configuration())
    frames: list[tuple[int, float]] = []
    transceiver = pc.addTransceiver("video", direction="recvonly")
    setattr(transceiver.receiver, JITTER_BUFFER_ATTR, SkipToKeyframe(capacity=512, is_video=True))

    @pc.on("track")
    def on_track(track: Any) -> None:
        receiver = transceiver.receiver
        setattr(receiver, DECODER_QUEUE_ATTR, _FrameWidths(frames, getattr(receiver, DECODER_QUEUE_ATTR)))

    try:
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"offer": pc.localDescription.sdp}), flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=json.loads(line)["answer"], type="answer"))
        sent = 0
        while True:
            await asyncio.sleep(0.2)
            new = frames[sent:]
            sent += len(new)
            print(json.dumps({"new": new}), flush=True)
    finally:
        await pc.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["viewer"]:
        sys.exit(asyncio.run(viewer_main()))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="300kbit", help="tc tbf rate of the throttled viewer's link")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds the limit stays after the switch")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    runs = [asyncio.run(run_scenario(args.rate, args.hold)) for _ in range(args.runs)]
    print(json.dumps({"benchmark": "layer_switch", "params": vars(args), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
