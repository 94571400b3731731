"""udp_batch.py on real loopback sockets, under asyncio's loop and uvloop (the server's):
a staged burst reaches the peer whole and in order in fewer system calls; a kernel refusing
UDP GSO is survived; closing lets go of the duplicate descriptor only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import uvloop

from roomserver.media import udp_batch
from roomserver.media.udp_batch import DatagramBatch, SendBatcher

SO_NO_CHECK = 11  # sk_no_check_tx: the kernel refuses GSO sends on such a socket (EINVAL)


@pytest.fixture(autouse=True)
def gso_restored() -> Iterator[None]:
    yield
    udp_batch._Gso.enabled = True


def run_on_both_loops(test: Callable[[], Awaitable[None]]) -> None:
    for factory in (asyncio.new_event_loop, uvloop.new_event_loop):
        udp_batch._Gso.enabled = True
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(test())


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def _received(sock: socket.socket, n: int) -> list[bytes]:
    return [sock.recv(65536) for _ in range(n)]


async def _sender() -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    return transport


@contextlib.asynccontextmanager
async def _link() -> AsyncIterator[
    tuple[socket.socket, asyncio.DatagramTransport, DatagramBatch, SendBatcher]
]:
    """A receiving socket, a loop transport, and a batch from the transport to the socket."""
    peer, transport = _receiver(), await _sender()
    batch = DatagramBatch(transport, peer.getsockname())
    try:
        yield peer, transport, batch, SendBatcher()
    finally:
        batch.close()
        transport.close()
        peer.close()


def _frame(tag: int) -> list[bytes]:
    """A video frame's SRTP packets: full ones and a shorter last, each distinct."""
    return [bytes([tag, i]) * 600 for i in range(5)] + [bytes([tag, 9]) * 350]


def test_a_burst_reaches_the_peer_whole_and_in_order_in_one_send() -> None:
    async def check() -> None:
        async with _link() as (peer, _, batch, batcher):
            frames = _frame(1) + _frame(2)
            for i, data in enumerate(frames):
                batcher.stage(batch, data)
                batcher.packet_done(more_waiting=i < len(frames) - 1)  # the burst's last packet flushes
            assert _received(peer, len(frames)) == frames
            assert (batch.sends, batch.datagrams, batch.dropped) == (2, 12, 0)  # one GSO send per frame

    run_on_both_loops(check)


def test_packets_held_for_a_queued_datagram_go_out_within_the_hold_time() -> None:
    async def check() -> None:
        async with _link() as (peer, _, batch, batcher):
            batcher.stage(batch, b"x" * 1000)
            batcher.packet_done(more_waiting=True)  # e.g. RTCP is next in the queue, not RTP
            assert batch.sends == 0
            await asyncio.sleep(udp_batch.MAX_HOLD * 5)
            assert _received(peer, 1) == [b"x" * 1000]

    run_on_both_loops(check)


def test_a_backlog_flushes_every_max_staged_packets_and_bytes() -> None:
    async def check() -> None:
        async with _link() as (peer, _, batch, batcher):
            for i in range(udp_batch.MAX_STAGED_PACKETS):
                batcher.stage(batch, bytes([i]) * 100)
                batcher.packet_done(more_waiting=True)
            assert batch.datagrams == udp_batch.MAX_STAGED_PACKETS  # flushed at the count, not the timer
            big = [bytes([i]) * 1400 for i in range(udp_batch.MAX_STAGED_BYTES // 1400 + 2)]
            for data in big:
                batcher.stage(batch, data)
            assert 0 < batch.datagrams - udp_batch.MAX_STAGED_PACKETS < len(big)  # the byte cap sent some
            batcher.flush()
            got = _received(peer, udp_batch.MAX_STAGED_PACKETS + len(big))
            assert got == [bytes([i]) * 100 for i in range(udp_batch.MAX_STAGED_PACKETS)] + big

    run_on_both_loops(check)


def test_a_kernel_refusing_gso_gets_each_datagram_alone(caplog: pytest.LogCaptureFixture) -> None:
    async def check() -> None:
        async with _link() as (peer, _, batch, batcher):
            batch._sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            for data in _frame(3) + _frame(4):
                batcher.stage(batch, data)
            batcher.flush()
            assert _received(peer, 12) == _frame(3) + _frame(4)
            assert not udp_batch._Gso.enabled and batch.dropped == 0
            assert batch.sends == 12  # the refused GSO send is not counted

    run_on_both_loops(check)
    assert sum("GSO refused" in r.message for r in caplog.records) == 2  # once per loop, not per run


def test_closing_a_batch_closes_its_duplicate_not_the_loops_socket() -> None:
    async def check() -> None:
        async with _link() as (peer, transport, batch, batcher):
            duplicate = batch._sock.fileno()
            batcher.stage(batch, b"late")
            batch.close()
            with pytest.raises(OSError):
                os.fstat(duplicate)
            batcher.flush()  # a closed batch sends nothing and does not raise
            transport.sendto(b"still open", peer.getsockname())
            assert _received(peer, 1) == [b"still open"]
            assert not DatagramBatch.possible(object())

    run_on_both_loops(check)
