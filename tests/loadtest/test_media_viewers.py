"""The bulk viewers' packet path: RTP counted where the datagram arrives, the rest
(STUN, DTLS, RTCP) handed to aioice as before."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

from loadtest.media_viewers import READS_PER_WAKEUP, HeaderCounter, _read_all_ready


def _counter() -> HeaderCounter:
    counter = HeaderCounter.__new__(HeaderCounter)  # no peer connection: the path only
    counter.viewer = SimpleNamespace(encoded_frames={"video": 0}, first_frame_at=None)  # type: ignore[assignment]
    counter.video_pts = {96}
    counter.lost = 0
    counter._last_seq = {}
    return counter


def _rtp(seq: int, marker: bool, pt: int = 96) -> bytes:
    return (
        bytes([0x80, (0x80 if marker else 0) | pt])
        + seq.to_bytes(2, "big")
        + bytes(4)
        + b"\0\0\0\x01"
        + b"x" * 20
    )


def test_rtp_is_counted_and_everything_else_goes_to_aioice() -> None:
    counter = _counter()
    passed: list[bytes] = []
    received = counter._datagram(lambda data, addr: passed.append(data))
    rtcp_rr = bytes([0x81, 201, 0, 7]) + bytes(28)  # a receiver report: second byte 201
    stun = bytes([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]) + bytes(12)
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(20)
    for data in (_rtp(1, False), _rtp(2, True), rtcp_rr, stun, dtls, _rtp(5, True), _rtp(6, False, pt=111)):
        received(data, ("127.0.0.1", 1))
    assert passed == [rtcp_rr, stun, dtls]
    assert counter.viewer.encoded_frames["video"] == 2  # the two marked video packets
    assert counter.lost == 2  # seqs 3 and 4 never came; audio (pt 111) is not video


async def test_one_wake_up_reads_every_waiting_datagram_up_to_its_bound() -> None:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    class Protocol(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(data)

    transport, protocol = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ready = _read_all_ready(protocol)
        for i in range(100):  # queued on the socket before the loop runs again
            sender.sendto(bytes([i]), transport.get_extra_info("sockname"))
        ready()  # one wake-up (asyncio's own reader takes one datagram per wake-up)
        assert got == [bytes([i]) for i in range(READS_PER_WAKEUP)]
        ready()
        assert got == [bytes([i]) for i in range(100)]
        ready()  # nothing waiting: returns without blocking or raising
        sender.sendto(b"late", transport.get_extra_info("sockname"))
        for _ in range(100):  # and the loop calls it as its reader
            if got[-1] == b"late":
                break
            await asyncio.sleep(0.01)
        assert got[-1] == b"late" and len(got) == 101
    finally:
        sender.close()
        transport.close()
