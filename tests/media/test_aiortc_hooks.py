"""The aiortc internals the forwarding unit relies on (roomserver/media/forwarding.py).

These fail loudly when an aiortc upgrade renames or reshapes them; the end-to-end tests then
say whether the behaviour still holds.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
from importlib.metadata import version

import aioice.ice
import aiortc
import aiortc.rtcicetransport
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import (
    SRTP_AES128_CM_SHA1_80,
    RTCCertificate,
    RTCDtlsTransport,
    generate_certificate,
)
from aiortc.rtcdtlstransport import (
    State as DtlsState,
)
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtp import RtpPacket
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from roomserver.media import dtls, forwarding, rtp_forwarding
from roomserver.media.ice import rtc_configuration


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert version("av") == "18.1.0"


async def test_receiver_and_sender_private_attributes_exist() -> None:
    pc = RTCPeerConnection(rtc_configuration())
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        receiver, sender = transceiver.receiver, transceiver.sender
        assert type(getattr(receiver, forwarding.DECODER_QUEUE_ATTR)) is queue.Queue
        jitter_buffer = getattr(receiver, forwarding.JITTER_BUFFER_ATTR)
        assert type(jitter_buffer) is JitterBuffer and jitter_buffer._origin is None
        assert {"_packets", "_capacity", "_origin"} <= set(vars(jitter_buffer))
        assert isinstance(getattr(receiver, forwarding.RTX_SSRC_ATTR), dict)
        assert inspect.iscoroutinefunction(receiver._send_rtcp_pli)
        assert callable(sender._send_keyframe)
    finally:
        await pc.close()


def test_receiver_puts_codec_and_encoded_frame_into_the_decoder_queue() -> None:
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    # The decoder thread gets the queue when receive() starts, after the "track" event.
    assert "self.__decoder_queue," in inspect.getsource(RTCRtpReceiver.receive)
    assert "self.__decoder_queue.put(None)" in inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer.add(packet)" in source


def test_sender_turns_pli_into_send_keyframe_and_packs_packets() -> None:
    assert "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "isinstance(data, Frame)" in source and "self.__encoder.pack(data)" in source


async def test_rtp_forwarding_private_names_exist() -> None:
    """rtp_forwarding.py: the receiver's codec/RTX maps, the sender's NACK hook and the
    counters its RTCP sender reports are built from, the DTLS transport's _send_rtp."""
    pc = RTCPeerConnection(rtc_configuration())
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        receiver, sender = transceiver.receiver, transceiver.sender
        assert isinstance(getattr(receiver, rtp_forwarding.CODECS_ATTR), dict)
        assert isinstance(getattr(receiver, rtp_forwarding.RTX_SSRC_ATTR), dict)
        assert inspect.iscoroutinefunction(receiver._handle_rtp_packet)
        for name in (
            rtp_forwarding._SR_NTP,
            rtp_forwarding._SR_RTP,
            rtp_forwarding._SR_PACKETS,
            rtp_forwarding._SR_OCTETS,
        ):
            assert getattr(sender, name) == 0, name
        assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)
        assert inspect.iscoroutinefunction(sender._retransmit) and inspect.iscoroutinefunction(sender.send)
        assert inspect.iscoroutinefunction(sender.transport._send_rtp)
    finally:
        await pc.close()
    # The instance attributes shadowing these methods are what aiortc calls.
    assert "await self._retransmit(seq)" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "await receiver._handle_rtp_packet(packet" in inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "await transceiver.sender.send(" in inspect.getsource(RTCPeerConnection)
    report = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "ntp_timestamp=self.__ntp_timestamp" in report and "packet_count=self.__packet_count" in report


def test_rtp_fast_send_path_matches_aiortc_and_aioice() -> None:
    """rtp_forwarding.SrtpUdpSend does what _send_rtp → RTCIceTransport._send → aioice does."""
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "self._state != State.CONNECTED" in send_rtp and "self._tx_srtp.protect(data)" in send_rtp
    assert "await self.transport._send(data)" in send_rtp
    assert "self._send = self._connection.send" in inspect.getsource(aiortc.rtcicetransport.RTCIceTransport)
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    sendto = inspect.getsource(aioice.ice.Connection.sendto)
    assert "self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(aioice.ice.StunProtocol.send_data)
    # The ingest backlog rtp_forwarding reads: aioice's receive queue behind RTCIceTransport._recv.
    assert "self._recv = self._connection.recv" in inspect.getsource(aiortc.rtcicetransport.RTCIceTransport)
    assert "await self._queue.get()" in inspect.getsource(aioice.ice.Connection.recvfrom)


def test_srtp_session_buffer_can_be_widened_for_full_size_packets() -> None:
    """pylibsrtp refuses to protect packets over 1500 - 144 bytes unless its buffer is widened
    (rtp_forwarding.widen_srtp_buffer); a widened session protects a 1400-byte packet that
    the peer's session unprotects intact."""
    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    packet = RtpPacket(
        payload_type=96, sequence_number=1, timestamp=1, ssrc=1234, payload=bytes(1388)
    ).serialize()
    assert len(packet) == 1400
    with pytest.raises(ValueError, match="too long"):
        tx.protect(packet)
    holder = type("Dtls", (), {"_tx_srtp": tx})()
    assert rtp_forwarding.widen_srtp_buffer(holder)
    assert rx.unprotect(tx.protect(packet)) == packet


def test_encoders_can_pack_pre_encoded_packets() -> None:
    for cls in (Vp8Encoder, H264Encoder, OpusEncoder):
        assert "pack" in cls.__dict__, cls
    assert callable(get_encoder) and callable(is_codec_compatible)


def test_aioice_host_address_hook_exists() -> None:
    assert "get_host_addresses" in inspect.getsource(aioice.ice.Connection.gather_candidates)
    assert callable(aioice.ice.get_host_addresses)


def test_dtls_context_hook_point_is_unchanged() -> None:
    """dtls.py wraps this method and appends to this exact cipher list."""
    source = inspect.getsource(dtls._original)
    assert "ctx.set_cipher_list(" in source and dtls.AIORTC_CIPHERS.decode() in source.replace('"\n', "")
    assert "ctx.set_tlsext_use_srtp(" in source
    assert dtls._original.__qualname__ == "RTCCertificate._create_ssl_context"


def _rsa_dtls_server_context() -> SSL.Context:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(generate_certificate(key))
    ctx.use_privatekey(key)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return ctx


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Drive both ends through memory BIOs until each is done (or one raises)."""
    done = {id(client): False, id(server): False}
    for _ in range(20):
        for me, peer in ((client, server), (server, client)):
            if not done[id(me)]:
                with contextlib.suppress(SSL.WantReadError):
                    me.do_handshake()
                    done[id(me)] = True
            with contextlib.suppress(SSL.WantReadError):
                while True:
                    peer.bio_write(me.bio_read(65536))
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_aiortc_dtls_client_completes_a_handshake_with_an_rsa_server() -> None:
    """The GStreamer case without GStreamer: our DTLS client, an RSA-certificate server."""
    dtls.install()
    cert = RTCCertificate.generateCertificate()
    client = SSL.Connection(cert._create_ssl_context([SRTP_AES128_CM_SHA1_80]), None)
    client.set_connect_state()
    server = SSL.Connection(_rsa_dtls_server_context(), None)
    server.set_accept_state()
    _handshake(client, server)
    assert client.get_cipher_name().startswith("ECDHE-RSA-")


def test_without_the_hook_an_rsa_server_has_no_shared_cipher() -> None:
    """Proves the test above can fail: aiortc's own context cannot talk to an RSA server."""
    cert = RTCCertificate.generateCertificate()
    client = SSL.Connection(dtls._original(cert, [SRTP_AES128_CM_SHA1_80]), None)
    client.set_connect_state()
    server = SSL.Connection(_rsa_dtls_server_context(), None)
    server.set_accept_state()
    with pytest.raises(SSL.Error, match=r"no shared cipher"):
        _handshake(client, server)


def test_layer_switching_hook_points_are_unchanged() -> None:
    """layer_switching.py wraps each viewer sender's `_handle_rtcp_packet` (an instance
    attribute the DTLS transport's RTCP dispatch calls) and reads REMB with aiortc's parser."""
    assert "await recipient._handle_rtcp_packet(packet)" in inspect.getsource(
        RTCDtlsTransport._handle_rtcp_data
    )
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    handler = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "unpack_remb_fci(packet.fci)" in handler and "self._send_keyframe()" in handler


def test_layer_publisher_and_viewer_client_hook_points() -> None:
    """client.py's `max_bitrates` sets Vp8Encoder's private target past its setter's floor (the
    encoder compares it with its codec context's on every frame); loadtest/layer_switch.py
    replaces a receiver's video jitter buffer (`__jitter_buffer`, a JitterBuffer(512))."""
    encoder = Vp8Encoder()
    assert encoder._Vp8Encoder__target_bitrate == encoder.target_bitrate  # type: ignore[attr-defined]
    assert "self.target_bitrate - self.codec.bit_rate" in inspect.getsource(Vp8Encoder.encode)
    assert "self.__encoder = get_encoder(" in inspect.getsource(RTCRtpSender)
    assert "JitterBuffer(capacity=512, is_video=True)" in inspect.getsource(RTCRtpReceiver.__init__)
    assert "self.__jitter_buffer.add(packet)" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)


def test_srtp_in_place_protect_matches_pylibsrtp() -> None:
    """rtp_forwarding.SrtpUdpSend.send_patched protects in the session's own buffer with
    pylibsrtp's internals (`_srtp`, `_cdata`, `_buffer`, `lib.srtp_protect`): what it sends is
    byte for byte what `Session.protect` gives for the patched packet, also for a full-size
    packet in a widened buffer, and an over-long one is refused as protect refuses it."""
    process = inspect.getsource(pylibsrtp.Session._Session__process)  # type: ignore[attr-defined]
    assert "self._buffer[0 : len(data)] = data" in process
    assert "func(self._srtp[0], self._cdata, len_p)" in process
    key = bytes(range(30))

    def session() -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    sent: list[bytes] = []
    transport = type("Udp", (), {"sendto": lambda self, data, addr: sent.append(data)})()
    protocol = aioice.ice.StunProtocol.__new__(aioice.ice.StunProtocol)
    protocol.transport = transport
    pair = type("Pair", (), {"protocol": protocol, "remote_addr": ("127.0.0.1", 9)})()
    ice = type("Ice", (), {"_connection": type("Conn", (), {"_nominated": {1: pair}})()})()
    holder = type("Dtls", (), {"_state": DtlsState.CONNECTED, "_tx_srtp": session(), "transport": ice})()
    assert rtp_forwarding.widen_srtp_buffer(holder)
    fast = rtp_forwarding.SrtpUdpSend(holder)
    assert fast.usable
    wide_reference = session()
    assert rtp_forwarding.widen_srtp_buffer(type("Dtls", (), {"_tx_srtp": wide_reference})())
    for seq, size in ((1, 200), (2, 1388), (3, 1100)):
        template = RtpPacket(
            payload_type=96, sequence_number=0, timestamp=0, ssrc=0, payload=bytes(size)
        ).serialize()
        fast.send_patched(template, seq, 9000 * seq, 4321)
        patched = RtpPacket(
            payload_type=96, sequence_number=seq, timestamp=9000 * seq, ssrc=4321, payload=bytes(size)
        ).serialize()
        assert sent[-1] == wide_reference.protect(patched)
    with pytest.raises(ValueError, match="too long"):
        fast.send_patched(bytes(rtp_forwarding.SRTP_BUFFER_BYTES), 4, 0, 4321)
    # A session without those internals is used through its public protect.
    plain, plain_reference = session(), session()
    holder._tx_srtp = type("Plain", (), {"protect": lambda self, data: plain.protect(data)})()
    template = RtpPacket(
        payload_type=96, sequence_number=0, timestamp=0, ssrc=0, payload=bytes(300)
    ).serialize()
    fast.send_patched(template, 5, 7, 4321)
    patched = RtpPacket(
        payload_type=96, sequence_number=5, timestamp=7, ssrc=4321, payload=bytes(300)
    ).serialize()
    assert sent[-1] == plain_reference.protect(patched)
