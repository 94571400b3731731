"""Per-packet cost of RTP-level fan-out, in one process: no network, no peers.

    python -m loadtest.rtp_fanout_bench --viewers 150 --packets 3000 [--profile FILE]

Builds one `RtpFanout` (VP8) with `--viewers` sinks made ready through their real
`_on_send` (one negotiated PT/mid/extension set, a real pylibsrtp session per viewer so SRTP
protect is paid as on the server) whose ICE pair's `sendto` only counts bytes, then feeds it
`--packets` packets of a synthetic 30 fps VP8 stream (a keyframe every 60 frames, ~1.2 KB
payloads) and reports CPU µs per packet per viewer (process CPU time, so other tenants of a
busy box change it less than wall time; still alternate A/B runs). The kernel's `sendto`, the
publisher's SRTP unprotect/parse and aiortc's receiver path are not included: this is the
part that grows with viewers. Its fake ICE transport has no socket, so the sinks send
unbatched (the server stages them for UDP GSO, media/udp_batch.py, whose saving is the
kernel's and shows only end to end: `loadtest.media`). Works with any commit whose `RtpFanout`/`ViewerRtpSink` take
these arguments (1a14c87 and later), so it can be run in an old worktree.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import time
from types import SimpleNamespace
from typing import Any

from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from roomserver.media.forwarding import TrackForwarder
from roomserver.media.negotiation import CodecChoice
from roomserver.media.rtp_forwarding import RtpFanout, SilentTrack

KEY = bytes(range(30))  # SRTP master key + salt (AES_CM_128_HMAC_SHA1_80)


class _CountingTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.bytes += len(data)


class _Protocol(StunProtocol):
    """Its `send_data` is StunProtocol's, so the sink takes its synchronous fast path."""

    def __init__(self, transport: _CountingTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


def _dtls(transport: _CountingTransport) -> Any:
    policy = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    pair = SimpleNamespace(protocol=_Protocol(transport), remote_addr=("127.0.0.1", 9))
    connection = SimpleNamespace(_nominated={1: pair})
    return SimpleNamespace(
        _state=DtlsState.CONNECTED,
        _tx_srtp=Session(policy),
        transport=SimpleNamespace(_connection=connection),
    )


class _Sender:
    def __init__(self, ssrc: int, transport: _CountingTransport) -> None:
        self._ssrc = ssrc
        self.transport = _dtls(transport)

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        return None

    async def _retransmit(self, seq: int) -> None:
        return None


def _parameters() -> RTCRtpSendParameters:
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    rtx = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
    ext = [
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        ),
    ]
    return RTCRtpSendParameters(codecs=[vp8, rtx], headerExtensions=ext, muxId="0")


def _stream(packets: int) -> list[RtpPacket]:
    """30 fps VP8, 4 packets a frame, the first packet of every 60th frame a keyframe start."""
    out = []
    for i in range(packets):
        frame, part = divmod(i, 4)
        start = part == 0
        descriptor = bytes([0x10 if start else 0x00])  # S bit on a partition start
        vp8 = bytes([0x00 if frame % 60 == 0 else 0x01, 0x9D, 0x01, 0x2A]) if start else b"\x00" * 4
        payload = descriptor + vp8 + bytes(1195)
        out.append(
            RtpPacket(
                payload_type=96,
                marker=int(part == 3),
                sequence_number=(1000 + i) % 65536,
                timestamp=(frame * 3000) % (1 << 32),
                ssrc=1234,
                payload=payload,
            )
        )
    return out


async def measure(viewers: int, packets: int, profile: str | None) -> dict[str, Any]:
    codec = RTCRtpCodecCapability(mimeType="video/VP8", clockRate=90000)
    fanout = RtpFanout(TrackForwarder(CodecChoice("video", codec, None)))
    transport = _CountingTransport()
    for v in range(viewers):
        sink = fanout.subscribe(SilentTrack("video"), _Sender(5000 + v, transport))  # type: ignore[arg-type]
        await sink._on_send(_parameters())
    stream = _stream(packets)
    for packet in stream[:240]:  # warm-up: every sink past its first keyframe
        await fanout.handle_packet(packet)
    timed = [RtpPacket.parse(p.serialize()) for p in _stream(packets)]
    for k, packet in enumerate(timed):  # continue the sequence after the warm-up
        packet.sequence_number = (packet.sequence_number + 240) % 65536
        packet.timestamp = (packet.timestamp + 60 * 3000) % (1 << 32)
        del k
    profiler = cProfile.Profile() if profile else None
    sent_before = transport.bytes
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for packet in timed:
        await fanout.handle_packet(packet)
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "viewers": viewers,
        "packets": packets,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "us_per_packet_viewer": round(cpu / (packets * viewers) * 1e6, 3),
        "bytes_sent": transport.bytes - sent_before,
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", type=int, default=150)
    p.add_argument("--packets", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile", default=None, help="write cProfile stats of the timed loop here")
    args = p.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(asyncio.run(measure(args.viewers, args.packets, args.profile))), flush=True)


if __name__ == "__main__":
    main()
