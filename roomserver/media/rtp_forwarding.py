"""RTP-level forwarding: publisher packets go to viewers rewritten, not re-packetized.

    publisher RTCDtlsTransport (SRTP unprotect, parse)
        └─ RTCRtpReceiver._handle_rtp_packet        ← wrapped by tap_rtp: RTX unwrapped, then
             └─ RtpFanout.handle_packet               cache by seq, keyframe-start check,
                  └─ ViewerRtpSink.send (per viewer)    one header template per (PT, mid, ext map),
                                                        seq/ts/SSRC patched in, then
                       └─ SrtpUdpSend (SRTP protect in place), staged in the
                          publisher's SendBatcher: once the burst is handled, one
                          sendmsg per viewer per run of equal-sized packets (UDP GSO,
                          udp_batch.py)

The receiver's own path still runs after the tap (its NACKs to the publisher, receiver
reports, REMB, and the frame tap of forwarding.py, which notices keyframes for the PLI rate
limiter), so only the per-viewer work changes: no av.Packet, no queue, no packetizer.

Private aiortc 1.16 names used (checked by tests/media/test_aiortc_hooks.py):

- `RTCRtpReceiver._handle_rtp_packet` (wrapped per instance), `_RTCRtpReceiver__codecs`
  (PT → codec) and `_RTCRtpReceiver__rtx_ssrc` (RTX SSRC → media SSRC);
- `RTCRtpSender.send` (wrapped per instance to learn the viewer's negotiated PT, RTX PT, mid
  and header extension ids), `_retransmit(seq)` (replaced: NACKs are served from the cache),
  `_ssrc`/`_rtx_ssrc`, and the counters its RTCP task puts in sender reports
  (`_RTCRtpSender__ntp_timestamp`, `__rtp_timestamp`, `__packet_count`, `__octet_count`);
- aioice's `Connection._queue` (datagrams received, not yet handled) behind the publisher's
  `RTCIceTransport._connection`: its size is the ingest backlog (INGEST_BACKLOG_LIMIT);
- `RTCDtlsTransport._send_rtp(bytes)`, or its parts when the ICE pair's protocol is aioice's
  plain `StunProtocol` (`SrtpUdpSend`: `_state`, `_tx_srtp.protect`, the ICE connection's
  `_nominated[1]` pair, `protocol.transport.sendto`): the same steps without five coroutines
  per packet per viewer (the DTLS transport's tx counters are not updated on that path);
- pylibsrtp 1.0's `Session` internals (`_srtp`, `_cdata`, `_buffer`, `lib.srtp_protect`):
  `SrtpUdpSend.send_patched` protects in the session's buffer as `Session.protect` does, minus
  its per-packet allocation and copies (checked against `protect` by the hooks test);
- the `_tx_srtp` (a pylibsrtp `Session`), whose
  1500-byte work buffer less a 144-byte trailer reserve refuses packets over 1356 bytes:
  aiortc packetizes below that, but publishers such as GStreamer (MTU 1400) do not, so
  `widen_srtp_buffer` gives the viewer's session a buffer a full-size packet fits in.

The viewer's sender keeps running its RTP task on a `SilentTrack` whose `recv()` only returns
when the track stops, so aiortc never sends media of its own on that SSRC.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx, wrap_rtx
from pylibsrtp import SRTP_MAX_TRAILER_LEN
from pylibsrtp import _srtp_assert as srtp_assert  # type: ignore[attr-defined]  # see SrtpUdpSend
from pylibsrtp import ffi as srtp_ffi  # type: ignore[attr-defined]  # the cffi module its sessions allocate with
from pylibsrtp import lib as srtp_lib  # type: ignore[attr-defined]

from roomserver.core.rtp_rewrite import (
    CACHE_PACKETS,
    MAX_RESEND_AGE,
    PacketCache,
    ResendGate,
    SeqTsRewriter,
    starts_keyframe,
)

from .forwarding import TrackForwarder
from .udp_batch import DatagramBatch, SendBatcher

logger = logging.getLogger(__name__)

CODECS_ATTR = "_RTCRtpReceiver__codecs"
RTX_SSRC_ATTR = "_RTCRtpReceiver__rtx_ssrc"
_SR_NTP = "_RTCRtpSender__ntp_timestamp"
_SR_RTP = "_RTCRtpSender__rtp_timestamp"
_SR_PACKETS = "_RTCRtpSender__packet_count"
_SR_OCTETS = "_RTCRtpSender__octet_count"
_SEQ_TS_SSRC = struct.Struct("!HII")
# Packets waiting in the publisher's ICE queue beyond which fan-out is skipped (≈ 0.5–1 s of
# 1.5 Mbit/s video): an overloaded server sheds stale packets instead of queueing without
# bound (viewers recover through NACK/PLI), as frame-level forwarding's per-viewer queues do.
INGEST_BACKLOG_LIMIT = 100
SRTP_BUFFER_BYTES = 2048  # a 1500-byte RTP packet + pylibsrtp's 144-byte trailer reserve


def widen_srtp_buffer(dtls: Any) -> bool:
    """Let `dtls`'s SRTP sender protect packets as large as any publisher sends (see above).
    False if pylibsrtp's internals differ (then over-size packets are dropped and counted)."""
    session = getattr(dtls, "_tx_srtp", None)
    cdata = getattr(session, "_cdata", None)
    if session is None or cdata is None or not hasattr(session, "_buffer"):
        return False
    if len(cdata) < SRTP_BUFFER_BYTES:
        session._cdata = srtp_ffi.new("char[]", SRTP_BUFFER_BYTES)
        session._buffer = srtp_ffi.buffer(session._cdata)
    return True


class SilentTrack(MediaStreamTrack):
    """The track a viewer's RTCRtpSender reads: it never yields a frame, it only ends."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.on_stop: Callable[[], None] = lambda: None
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._ended.done():
            self._ended.set_result(None)
        self.on_stop()


class SrtpUdpSend:
    """`RTCDtlsTransport._send_rtp` for RTP, synchronously: SRTP protect then the nominated
    ICE pair's `sendto`, or with a `batcher` staged for its flush (a `DatagramBatch` on a
    duplicate of the pair's socket). `usable` is False (use `_send_rtp`) unless the pair's
    protocol sends data with a plain `transport.sendto` (aioice's StunProtocol,
    host/srflx/relay alike).

    `send_patched` writes the header template straight into the SRTP session's work buffer,
    patches seq/ts/SSRC there and protects it in place (pylibsrtp 1.0's `Session.protect`
    does the same steps, plus an int* allocation and two more copies per packet): the
    per-viewer part of every forwarded packet, measured by loadtest/rtp_fanout_bench.py.
    """

    def __init__(self, dtls: Any, batcher: SendBatcher | None = None) -> None:
        self._dtls = dtls
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        self._nominated: dict[int, Any] | None = getattr(connection, "_nominated", None)
        self.usable = isinstance(self._nominated, dict) and hasattr(dtls, "_tx_srtp")
        self._protocol: Any = None  # the last pair protocol checked to send with sendto
        # With a batcher, packets are staged per nominated pair and sent at its flush.
        self._batcher = batcher
        self._pair: Any = None
        self._addr: Any = None  # the pair's remote address (aioice computes it per access)
        self.batch: DatagramBatch | None = None
        self._session: Any = None  # the SRTP session the fields below belong to
        self._in_place = False
        self._srtp: Any = None
        self._cdata: Any = None
        self._buffer: Any = None
        self._room = 0  # longest packet the session's buffer protects
        self._len_p: Any = srtp_ffi.new("int *")

    def _bind(self, session: Any) -> None:
        """Use `session`'s buffer in place if pylibsrtp's internals are the ones known (see
        tests/media/test_aiortc_hooks.py), else its public `protect`."""
        self._session = session
        cdata: Any = getattr(session, "_cdata", None)
        buffer: Any = getattr(session, "_buffer", None)
        srtp: Any = getattr(session, "_srtp", None)
        self._in_place = cdata is not None and buffer is not None and srtp is not None
        if self._in_place:
            self._srtp, self._cdata, self._buffer = srtp[0], cdata, buffer
            self._room = len(cdata) - SRTP_MAX_TRAILER_LEN

    def send_patched(self, template: bytes, seq: int, ts: int, ssrc: int) -> None:
        """Send `template` (a serialized RTP packet) with `seq`, `ts` and `ssrc` patched in.
        Raises as `_send_rtp` does (ConnectionError; ValueError for an over-long packet),
        NotImplementedError if the pair cannot be sent on synchronously."""
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            raise ConnectionError("DTLS transport not connected")
        pair = self._nominated.get(1) if self._nominated is not None else None
        if pair is None:
            raise ConnectionError("no nominated ICE pair")
        if pair is not self._pair:
            self._use_pair(pair)
        session = dtls._tx_srtp
        if session is not self._session:
            self._bind(session)
        if not self._in_place:
            data = bytearray(template)
            _SEQ_TS_SSRC.pack_into(data, 2, seq, ts, ssrc)
            self._send(session.protect(bytes(data)))
            return
        size = len(template)
        if size > self._room:
            raise ValueError("packet is too long")  # as pylibsrtp's protect
        buffer = self._buffer
        buffer[0:size] = template
        _SEQ_TS_SSRC.pack_into(buffer, 2, seq, ts, ssrc)
        len_p = self._len_p
        len_p[0] = size
        rc = srtp_lib.srtp_protect(self._srtp, self._cdata, len_p)
        if rc:
            srtp_assert(rc)  # raises pylibsrtp.Error, as protect does
        self._send(buffer[0 : len_p[0]])

    def _use_pair(self, pair: Any) -> None:
        """Send on `pair` (the nominated one changed: first packet, ICE restart)."""
        protocol = pair.protocol
        if protocol is not self._protocol:
            if type(protocol).send_data is not StunProtocol.send_data:
                raise NotImplementedError  # caller falls back to _send_rtp
            self._protocol = protocol
        self._pair, self._addr = pair, pair.remote_addr
        if self.batch is not None:
            self.batch.flush()
            self.batch.close()
            self.batch = None
        if self._batcher is not None and DatagramBatch.possible(protocol.transport):
            try:
                self.batch = DatagramBatch(protocol.transport, self._addr, self._batcher.totals)
            except OSError as exc:  # no descriptor left (EMFILE): this viewer sends unbatched
                logger.warning("cannot batch a viewer's sends (%s): one sendto per packet", exc)

    def _send(self, data: bytes) -> None:
        if self.batch is not None and self._batcher is not None:
            self._batcher.stage(self.batch, data)
        else:
            self._protocol.transport.sendto(data, self._addr)

    def close(self) -> None:
        """Send what is staged and let go of the socket duplicate."""
        if self.batch is not None:
            self.batch.flush()
            self.batch.close()
            self.batch = None


def _patched(template: bytes, seq: int, ts: int, ssrc: int) -> bytes:
    data = bytearray(template)
    _SEQ_TS_SSRC.pack_into(data, 2, seq, ts, ssrc)
    return bytes(data)


class ViewerRtpSink:
    """One viewer's copy of a publisher track at the RTP level.

    Not ready until aiortc calls the sender's `send(parameters)` (DTLS is up); video then
    starts on the first packet of a keyframe, asking the publisher for one meanwhile.
    """

    def __init__(self, fanout: RtpFanout, track: SilentTrack, sender: RTCRtpSender) -> None:
        self.fanout = fanout
        self.pending: RtpFanout | None = None  # the layer being switched to (layers.py)
        self.previous: RtpFanout | None = None  # the layer before the last switch
        self.switches = 0
        self.sender = sender
        self.track = track
        track.on_stop = self.close
        self.rewriter = SeqTsRewriter(random.getrandbits(15), random.getrandbits(32), fanout.clock_rate)
        self.awaiting_keyframe = fanout.kind == "video"
        self.ready = False
        self.closed = False
        self.payload_type = 0
        self.rtx_payload_type: int | None = None
        self.mid: str | None = None
        self.extensions = HeaderExtensionsMap()
        self.group: tuple[int, str | None, int] = (0, None, 0)
        self.rtx_seq = random.getrandbits(15)
        self.subscribed_at = time.monotonic()
        self.first_packet_at: float | None = None
        self.packets_sent = 0
        self.bytes_sent = 0
        self.retransmitted = 0
        self.resend_gate = ResendGate()
        self.nack_misses = 0
        self.too_long = 0  # packets the viewer's SRTP session refused (unwidened buffer)
        self._fast_send: SrtpUdpSend | None = None
        # The sender's attributes (setattr's result, without a call per counter per packet).
        self._report: dict[str, Any] = vars(sender)
        self._send_parameters = sender.send
        sender.send = self._on_send  # type: ignore[method-assign]
        sender._retransmit = self.retransmit  # type: ignore[method-assign,assignment]

    async def _on_send(self, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        self.payload_type = codec.payloadType or 0  # set by negotiation
        for other in parameters.codecs:
            if is_rtx(other) and other.parameters.get("apt") == codec.payloadType:
                self.rtx_payload_type = other.payloadType
                break
        self.mid = parameters.muxId
        self.extensions.configure(parameters)
        # Viewers negotiating the same PT, mid and extension ids share one serialized header.
        self.group = (
            self.payload_type,
            self.mid,
            hash(tuple((e.uri, e.id) for e in parameters.headerExtensions)),
        )
        await self._send_parameters(parameters)
        if not widen_srtp_buffer(self.sender.transport):
            logger.warning("cannot widen the SRTP buffer: packets over 1356 bytes will be dropped")
        fast = SrtpUdpSend(self.sender.transport, self.fanout.batcher)
        self._fast_send = fast if fast.usable else None
        self.ready = not self.closed

    def serialize(self, packet: RtpPacket, abs_send_time: int) -> bytes:
        out = RtpPacket(payload_type=self.payload_type, marker=packet.marker, payload=packet.payload)
        out.padding_size = packet.padding_size
        out.extensions.mid = self.mid
        out.extensions.abs_send_time = abs_send_time
        out.extensions.audio_level = packet.extensions.audio_level
        return out.serialize(self.extensions)

    async def send(self, packet: RtpPacket, template: bytes, now: float, ntp: int) -> None:
        mapped = self.rewriter.map(packet.sequence_number, packet.timestamp, now, packet.ssrc)
        if mapped is None:
            return
        seq, ts, ssrc = mapped.sequence_number, mapped.timestamp, self.sender._ssrc
        try:
            if self._fast_send is not None:
                try:
                    self._fast_send.send_patched(template, seq, ts, ssrc)
                except NotImplementedError:
                    self._fast_send.close()
                    self._fast_send = None
                    await self.sender.transport._send_rtp(_patched(template, seq, ts, ssrc))
            else:
                await self.sender.transport._send_rtp(_patched(template, seq, ts, ssrc))
        except ConnectionError:
            return
        except ValueError:  # pylibsrtp: "packet is too long"
            self.too_long += 1
            return
        if self.first_packet_at is None:
            self.first_packet_at = time.monotonic()
        self.packets_sent += 1
        self.bytes_sent += len(packet.payload)
        report = self._report  # the counters of the sender's reports (RTCP SR)
        report[_SR_NTP] = ntp
        report[_SR_RTP] = ts
        report[_SR_PACKETS] = self.packets_sent
        report[_SR_OCTETS] = self.bytes_sent

    async def retransmit(self, out_seq: int) -> None:
        """A viewer's NACK: resend from the track's cache (wrapped in RTX if negotiated)."""
        now = time.monotonic()
        if not self.ready or not self.resend_gate.allow(out_seq, now):
            return
        found = self._resend_source(out_seq, now)
        if found is None:
            self.nack_misses += 1
            return
        packet, out_ts = found
        out = RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=out_seq,
            timestamp=out_ts,
            ssrc=self.sender._ssrc,
            payload=packet.payload,
        )
        out.extensions.mid = self.mid
        if self.rtx_payload_type is not None:
            out = wrap_rtx(
                out,
                payload_type=self.rtx_payload_type,
                sequence_number=self.rtx_seq,
                ssrc=self.sender._rtx_ssrc,
            )
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        try:
            await self.sender.transport._send_rtp(out.serialize(self.extensions))
        except (ConnectionError, ValueError):
            return
        self.retransmitted += 1

    def switch_to(self, target: RtpFanout) -> None:
        """Forward `target` (another layer of the same source) instead of `fanout`, from the
        first packet of `target`'s next keyframe; `fanout` goes on until then, so the viewer
        sees no freeze. Asking for the current fanout cancels a switch in progress."""
        if self.closed or target is self.pending:
            return
        if self.pending is not None:
            self.pending.unsubscribe(self)
            self.pending = None
        if target is self.fanout:
            return
        self.pending = target
        target.add_pending(self)
        target.forwarder.request_keyframe()

    def complete_switch(self) -> None:
        """`pending`'s keyframe starts: the rewriter continues the viewer's seq/ts from it."""
        target = self.pending
        if target is None:
            return
        self.fanout.unsubscribe(self)
        self.previous = self.fanout
        self.fanout = target
        self.pending = None
        self.rewriter.switch()
        self.awaiting_keyframe = False
        self.switches += 1

    @property
    def layer_fanout(self) -> RtpFanout:
        """The layer this viewer is on, or is switching to."""
        return self.pending or self.fanout

    def _resend_source(self, out_seq: int, now: float) -> tuple[RtpPacket, int] | None:
        """The cached packet a NACKed `out_seq` was forwarded from (the current layer's, or
        the previous one's just before a switch) and its outgoing timestamp; None if gone or
        forwarded over MAX_RESEND_AGE ago (too late to help: resending only loads the link)."""
        src = self.rewriter.source_seq(out_seq)
        if src is not None:
            cache, ts_offset = self.fanout.cache, None
        else:
            previous = self.rewriter.previous_source_seq(out_seq) if self.previous is not None else None
            if previous is None or self.previous is None:
                return None
            cache, (src, ts_offset) = self.previous.cache, previous
        packet = cache.get(src)
        stored = cache.stored_at(src)
        if packet is None or stored is None or now - stored > MAX_RESEND_AGE:
            return None
        if ts_offset is not None:
            return packet, (packet.timestamp + ts_offset) % (1 << 32)
        mapped = self.rewriter.map(packet.sequence_number, packet.timestamp, now, packet.ssrc)
        if mapped is None or mapped.sequence_number != out_seq:
            return None
        return packet, mapped.timestamp

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ready = False
            self.fanout.unsubscribe(self)
            if self.pending is not None:
                self.pending.unsubscribe(self)
            if self._fast_send is not None:
                self._fast_send.close()


class BitrateMeter:
    """Payload bit/s over the last completed window of `window` seconds (0 before one)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self.bps = 0.0
        self._start: float | None = None
        self._bytes = 0

    def add(self, size: int, now: float) -> None:
        if self._start is None:
            self._start = now
        elif now - self._start >= self.window:
            self.bps = self._bytes * 8 / (now - self._start)
            self._start, self._bytes = now, 0
        self._bytes += size


class RtpFanout:
    """Fans one publisher track's RTP packets out to its viewers' sinks."""

    def __init__(
        self,
        forwarder: TrackForwarder,
        batcher: SendBatcher | None = None,
        cache_packets: int = CACHE_PACKETS,
    ) -> None:
        self.forwarder = forwarder
        # Shared by the publisher's tracks (sfu.py): their packets arrive on one connection.
        self.batcher = batcher if batcher is not None else SendBatcher()
        self.kind = forwarder.kind
        self.codec_name = forwarder.choice.name
        self.clock_rate = forwarder.choice.codec.clockRate
        self.cache: PacketCache[RtpPacket] = PacketCache(cache_packets if self.kind == "video" else 1)
        self._sinks: list[ViewerRtpSink] = []
        self.packets_in = 0
        self.backlog_limit = INGEST_BACKLOG_LIMIT
        self.shed = 0  # packets not forwarded because the ingest backlog was over the limit
        self.bitrate = BitrateMeter()

    @property
    def sinks_count(self) -> int:
        return len(self._sinks)

    @property
    def sinks(self) -> tuple[ViewerRtpSink, ...]:
        return tuple(self._sinks)

    def subscribe(self, track: SilentTrack, sender: RTCRtpSender) -> ViewerRtpSink:
        """Forward to `sender`, whose track is `track` (`pc.addTransceiver(track)`)."""
        sink = ViewerRtpSink(self, track, sender)
        if self.forwarder.ended:
            sink.track.stop()
            return sink
        self._sinks.append(sink)
        return sink

    def add_pending(self, sink: ViewerRtpSink) -> None:
        """`sink` (on another layer) waits here for this layer's next keyframe."""
        if self.forwarder.ended:
            return
        if sink not in self._sinks:
            self._sinks.append(sink)

    def unsubscribe(self, sink: ViewerRtpSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    async def handle_packet(self, packet: RtpPacket) -> None:
        self.packets_in += 1
        self.bitrate.add(len(packet.payload), time.monotonic())
        if self.kind == "video":
            self.cache.put(packet.sequence_number, packet, time.monotonic())
        if not self._sinks:
            return
        keyframe_start = starts_keyframe(self.codec_name, packet.payload)
        now = time.monotonic()
        ntp = clock.current_ntp_time()
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        templates: dict[tuple[int, str | None, int], bytes] = {}
        for sink in tuple(self._sinks):
            if not sink.ready:
                continue
            if sink.pending is self:
                if not keyframe_start:
                    self.forwarder.request_keyframe()  # rate-limited upstream
                    continue
                sink.complete_switch()
            elif sink.fanout is not self:
                continue
            elif sink.awaiting_keyframe:
                if not keyframe_start:
                    self.forwarder.request_keyframe()  # rate-limited upstream
                    continue
                sink.awaiting_keyframe = False
            template = templates.get(sink.group)
            if template is None:
                template = templates[sink.group] = sink.serialize(packet, abs_send_time)
            await sink.send(packet, template, now, ntp)

    def end(self) -> None:
        for sink in tuple(self._sinks):
            sink.track.stop()
        self._sinks.clear()
        self.cache.clear()


def tap_rtp(receiver: RTCRtpReceiver, fanout: RtpFanout) -> None:
    """Hand every RTP packet of the fanout's codec (RTX unwrapped) to `fanout` before aiortc's
    own handling (which still sends NACKs/receiver reports to the publisher)."""
    original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet
    codecs: dict[int, Any] = getattr(receiver, CODECS_ATTR)
    rtx_ssrcs: dict[int, int] = getattr(receiver, RTX_SSRC_ATTR)
    if not isinstance(codecs, dict) or not isinstance(rtx_ssrcs, dict):
        raise RuntimeError("aiortc receiver internals changed")
    wanted = fanout.codec_name.lower()
    # aioice's queue of datagrams received for this publisher and not yet handled.
    ice = getattr(getattr(receiver.transport, "transport", None), "_connection", None)
    backlog: asyncio.Queue | None = getattr(ice, "_queue", None)

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        forwarded = packet
        codec = codecs.get(packet.payload_type)
        if codec is not None and is_rtx(codec):
            media_ssrc = rtx_ssrcs.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if media_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                codec = None  # padding probes on the RTX stream, or an unknown one
            else:
                forwarded = unwrap_rtx(packet, payload_type=apt, ssrc=media_ssrc)
                forwarded.padding_size = 0
                codec = codecs[apt]
        waiting = backlog.qsize() if backlog is not None else 0
        if waiting > fanout.backlog_limit:
            fanout.shed += 1
        elif codec is not None and codec.name.lower() == wanted and receiver._enabled:
            try:
                await fanout.handle_packet(forwarded)
            except Exception:  # one bad packet must not stop the publisher's receive loop
                logger.exception("RTP forwarding failed for a packet")
        # The staged packets go out once the burst they came in is handled (udp_batch.py).
        fanout.batcher.packet_done(more_waiting=waiting > 0)
        await original(packet, arrival_time_ms=arrival_time_ms)
        if fanout.sinks_count:
            # The fan-out above never suspends (sends are synchronous) and the DTLS loop
            # takes the next packet from aioice's queue without suspending either: without
            # this yield a backlog keeps the event loop from reading sockets, the publisher's
            # kernel buffer overflows (packets and ICE consent checks lost: after 30 s the
            # publisher is disconnected) and other sessions' handshakes stall.
            await asyncio.sleep(0)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
