"""Viewer datagrams staged during a publisher's burst, then sent with few system calls.

Forwarding one RTP packet to one viewer cost a `sendto`: at 300 viewers the kernel's send
was half of the server's main thread (py-spy, docs/benchmarks.md). A publisher's packets
arrive in bursts (a video frame is ~6 packets back to back), so the fan-out stages each
viewer's protected packets here and `SendBatcher.flush` sends them once no more of the
publisher's packets are waiting: per viewer one `sendmsg` with `UDP_SEGMENT` (GSO) per run
of equal-sized packets (`core/udp_segments.py`), i.e. one or two calls per frame instead of
six. A kernel or route without UDP GSO refuses the first such send; from then on the process
sends each datagram alone (still batched per burst).

The sockets are aioice's, owned by the event loop's datagram transports, which cannot send
ancillary data; each `DatagramBatch` sends on a duplicate of its transport's file
descriptor and closes it with the viewer's sink.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from roomserver.core.udp_segments import segment_runs

logger = logging.getLogger(__name__)

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h; Python's socket module does not name it
# Beyond these a burst is flushed without waiting for the publisher's queue to empty: a
# kernel GSO send carries at most 64 segments, and a backlog must not hold packets back.
MAX_STAGED_PACKETS = 32
MAX_STAGED_BYTES = 60_000
# Longest a staged packet waits when the publisher's next queued datagram is not RTP
# (RTCP, STUN) and so will not trigger the flush.
MAX_HOLD = 0.004
_GSO_REFUSED = {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP}


class _Gso:
    enabled = True  # until a send is refused: then off for the process


def _gso_size(size: int) -> list[tuple[int, int, bytes]]:
    return [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]


@dataclass
class SendTotals:
    """What a publisher's batches handed the kernel (logged when it stops publishing)."""

    sends: int = 0  # system calls
    datagrams: int = 0
    dropped: int = 0

    def __str__(self) -> str:
        return f"{self.datagrams} datagrams in {self.sends} sends, {self.dropped} dropped"


class DatagramBatch:
    """Datagrams for one peer address, sent from a duplicate of `transport`'s socket."""

    def __init__(self, transport: Any, addr: tuple[Any, ...], totals: SendTotals | None = None) -> None:
        self.totals = totals if totals is not None else SendTotals()
        sock = transport.get_extra_info("socket")
        self._sock = socket.socket(fileno=os.dup(sock.fileno()))
        self._sock.setblocking(False)
        self.addr = addr
        self._data = bytearray()
        self._sizes: list[int] = []
        self.listed = False  # in a SendBatcher's list of batches to flush
        self.sends = 0  # system calls
        self.datagrams = 0  # datagrams handed to the kernel
        self.dropped = 0  # refused by the kernel (full buffer, unreachable peer)
        self.closed = False

    @staticmethod
    def possible(transport: Any) -> bool:
        """Whether `transport` exposes a UDP socket whose descriptor can be duplicated."""
        sock = transport.get_extra_info("socket") if hasattr(transport, "get_extra_info") else None
        return sock is not None and getattr(sock, "type", None) == socket.SOCK_DGRAM

    def add(self, data: bytes) -> None:
        if self.closed:
            return
        if len(self._data) + len(data) > MAX_STAGED_BYTES:
            self.flush()
        self._data += data
        self._sizes.append(len(data))

    def flush(self) -> None:
        sizes = self._sizes
        if not sizes or self.closed:
            return
        data = memoryview(self._data)
        try:
            offset = 0
            for start, end in segment_runs(sizes):
                length = sum(sizes[start:end])
                self._send(data[offset : offset + length], sizes[start], end - start)
                offset += length
        finally:
            data.release()
            self._data, self._sizes = bytearray(), []  # new: a view still held elsewhere stays valid

    def _send(self, chunk: memoryview, size: int, count: int) -> None:
        """Send `count` datagrams of `size` bytes (the last may be shorter) from `chunk`."""
        if count > 1 and not _Gso.enabled:
            for i in range(count):
                self._send(chunk[i * size : (i + 1) * size if i < count - 1 else len(chunk)], size, 1)
            return
        try:
            if count == 1:
                self._sock.sendto(chunk, self.addr)
            else:
                self._sock.sendmsg([chunk], _gso_size(size), 0, self.addr)
            self.sends += 1
            self.datagrams += count
            self.totals.sends += 1
            self.totals.datagrams += count
        except OSError as exc:
            if count > 1 and exc.errno in _GSO_REFUSED:
                _Gso.enabled = False
                # A string, not `exc`: a kept log record would pin the buffer via its traceback.
                logger.warning("UDP GSO refused (%s): sending each datagram alone", os.strerror(exc.errno))
                self._send(chunk, size, count)
                return
            # As the loop's transport would: UDP is lossy, the viewer NACKs or asks for a
            # keyframe (EAGAIN: the socket buffer is full; ECONNREFUSED: an ICMP from the peer).
            self.dropped += count
            self.totals.dropped += count

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._data, self._sizes = bytearray(), []
            self._sock.close()


class SendBatcher:
    """The batches one publisher's fan-outs staged since the last flush (its audio and video
    tracks share one: they arrive on one connection). `packet_done` after each packet."""

    def __init__(self) -> None:
        self._pending: list[DatagramBatch] = []
        self._packets = 0
        self._timer: asyncio.TimerHandle | None = None
        self.totals = SendTotals()  # of every batch staged here

    def stage(self, batch: DatagramBatch, data: bytes) -> None:
        batch.add(data)
        if not batch.listed:
            batch.listed = True
            self._pending.append(batch)

    def packet_done(self, more_waiting: bool) -> None:
        """A publisher packet was fanned out; `more_waiting`: more of its datagrams are queued."""
        if not self._pending:
            return
        self._packets += 1
        if not more_waiting or self._packets >= MAX_STAGED_PACKETS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(MAX_HOLD, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._packets = self._pending, [], 0
        for batch in pending:
            batch.listed = False
            batch.flush()
