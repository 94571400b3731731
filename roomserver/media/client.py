"""aiortc WHIP/WHEP clients: a publisher and a viewer, for tests, benchmarks and load tests.

Plain aiortc on the client side (no server internals), gathering fully before offering
(WHIP/WHEP without trickle). Two client-side instruments use aiortc privates the same way the
server does (see forwarding.py): the publisher counts the keyframe requests (PLI/FIR) its
video sender receives, and a viewer built with `decode=False` counts encoded frames instead of
decoding them, so one process can simulate many viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import get_capabilities, is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from roomserver.core.turn import IceServer, parse_link_headers

from .forwarding import DECODER_QUEUE_ATTR, is_keyframe, publisher_media_ssrcs
from .ice import rtc_configuration
from .synthetic import read_counter

SDP = "application/sdp"
# WHIP query of a publisher whose tracks are [high video, low video, ...] (quality layers).
LAYERS_QUERY = "layers=high,low"


def codec_preferences(kind: str, name: str) -> list:
    """aiortc capabilities for one codec (plus RTX for video), for `setCodecPreferences`."""
    caps = get_capabilities(kind).codecs
    chosen = [c for c in caps if c.name.lower() == name.lower()]
    if not chosen:
        raise ValueError(f"aiortc cannot {kind} codec {name}")
    return chosen + [c for c in caps if is_rtx(c)]


class Publisher:
    """A WHIP client: sends `tracks` (sendonly), optionally forcing the video codec.

    `max_bitrates` caps the VP8 encoder of some video tracks (bit/s), as a browser's
    `RTCRtpEncodingParameters.maxBitrate` does for a low quality layer: aiortc's encoder
    otherwise follows the server's REMB, which on loopback climbs to its 1.5 Mbit/s cap even
    for a small picture, and its public setter refuses anything under 250 kbit/s.
    """

    def __init__(
        self,
        tracks: list[MediaStreamTrack],
        video_codec: str | None = None,
        ice_servers: Sequence[IceServer] = (),
        relay_only: bool = False,
        max_bitrates: dict[MediaStreamTrack, int] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers, relay_only=relay_only))
        self.tracks = tracks
        self.keyframe_requests: list[float] = []
        for track in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            if track.kind == "video":
                if video_codec is not None:
                    transceiver.setCodecPreferences(codec_preferences("video", video_codec))
                self._count_keyframe_requests(transceiver.sender)
                cap = (max_bitrates or {}).get(track)
                if cap is not None:
                    _cap_encoder_bitrate(transceiver.sender, cap)

    def _count_keyframe_requests(self, sender: Any) -> None:
        original = sender._send_keyframe

        def counted() -> None:
            self.keyframe_requests.append(time.monotonic())
            original()

        sender._send_keyframe = counted

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()


def _cap_encoder_bitrate(sender: Any, bitrate: int) -> None:
    """Keep `sender`'s VP8 encoder at `bitrate`: its REMBs are not applied, and on each RTCP
    packet (the first arrives within ~1 s) the encoder's target is set past the setter's
    250 kbit/s floor (aiortc 1.16 privates: the sender's `__encoder`, Vp8Encoder's
    `__target_bitrate`, which it compares with its codec context's on every frame)."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        encoder = getattr(sender, "_RTCRtpSender__encoder", None)
        if encoder is not None and hasattr(encoder, "_Vp8Encoder__target_bitrate"):
            encoder._Vp8Encoder__target_bitrate = bitrate
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return  # REMB: the cap stands
        await original(packet)

    sender._handle_rtcp_packet = handle


class _CountingQueue(queue.Queue):
    """Replaces a viewer receiver's decoder queue: counts encoded frames, decodes nothing."""

    def __init__(self, viewer: Viewer, codec_kind: str, replaced: queue.Queue) -> None:
        super().__init__()
        self._viewer = viewer
        self._kind = codec_kind
        self._replaced = replaced

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None)
            self._replaced.put(None)
            return
        codec, frame = item
        self._viewer._encoded_frame(self._kind, is_keyframe(codec.name, frame.data))


@dataclass
class VideoSample:
    counter: int | None
    at: float
    width: int = 0  # which quality layer it came from, for a layered publisher


class Viewer:
    """A WHEP client receiving `kinds` (recvonly).

    `video_codec` restricts what the viewer accepts (to test codec mismatches).
    With `decode=True` video frames are decoded and their counters read (`video`), audio frames
    decoded (`audio_frames`, `audio_peak`). With `decode=False` only encoded frames are counted.
    """

    def __init__(
        self,
        kinds: tuple[str, ...] = ("video",),
        decode: bool = True,
        video_codec: str | None = None,
        ice_servers: Sequence[IceServer] = (),
        relay_only: bool = False,
    ) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers, relay_only=relay_only))
        self.decode = decode
        self.video: list[VideoSample] = []
        self.audio_frames = 0
        self.audio_peak = 0
        self.encoded_frames = {"video": 0, "audio": 0}
        self.first_frame_at: float | None = None
        self.offered_at: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Event()
        for kind in kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            if kind == "video" and video_codec is not None:
                transceiver.setCodecPreferences(codec_preferences("video", video_codec))
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if not self.decode:
            receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
            replaced = getattr(receiver, DECODER_QUEUE_ATTR)
            setattr(receiver, DECODER_QUEUE_ATTR, _CountingQueue(self, track.kind, replaced))
            return
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    def _encoded_frame(self, kind: str, keyframe: bool) -> None:
        if self.first_frame_at is None and kind == "video":
            self.first_frame_at = time.monotonic()
        self.encoded_frames[kind] += 1
        self._changed.set()

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    if self.first_frame_at is None:
                        self.first_frame_at = now
                    self.video.append(VideoSample(read_counter(frame), now, frame.width))
                elif isinstance(frame, av.AudioFrame):
                    self.audio_frames += 1
                    self.audio_peak = max(self.audio_peak, int(np.abs(frame.to_ndarray()).max()))
                self._changed.set()

    @property
    def counters(self) -> list[int | None]:
        return [s.counter for s in self.video]

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offered_at = time.monotonic()
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until `predicate(self)` holds (re-checked on every received frame)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def send_pli(self) -> int:
        """Ask the server for a keyframe on the video track, as a decoder would after loss."""
        sent = 0
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                for ssrc in publisher_media_ssrcs(transceiver.receiver):
                    await transceiver.receiver._send_rtcp_pli(ssrc)
                    sent += 1
        return sent

    def selected_candidate_types(self) -> list[tuple[str, str]]:
        """(local, remote) candidate types of each nominated ICE pair, e.g. ("relay", "host")
        (aioice's `_nominated`, a private: for tests and the load tester's reports)."""
        pairs = []
        for transceiver in self.pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection
            for pair in connection._nominated.values():
                pairs.append((pair.local_candidate.type, pair.remote_candidate.type))
        return pairs

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


@dataclass
class SdpReply:
    status: int
    location: str | None
    content_type: str
    body: str
    ice_servers: list[IceServer] = field(default_factory=list)  # from the Link headers

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def post_offer(
    http: aiohttp.ClientSession, url: str, offer: str, token: str | None, content_type: str = SDP
) -> SdpReply:
    """POST an SDP offer to a WHIP/WHEP endpoint."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url, data=offer.encode(), headers=headers) as resp:
        return SdpReply(
            resp.status,
            resp.headers.get("Location"),
            resp.content_type,
            await resp.text(),
            parse_link_headers(resp.headers.getall("Link", [])),
        )


async def fetch_ice_servers(http: aiohttp.ClientSession, url: str, token: str) -> list[IceServer]:
    """The ICE servers a WHIP/WHEP endpoint gives this token (OPTIONS, before gathering)."""
    async with http.options(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return parse_link_headers(resp.headers.getall("Link", []))


async def delete_session(http: aiohttp.ClientSession, url: str, token: str | None) -> SdpReply:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with http.delete(url, headers=headers) as resp:
        return SdpReply(resp.status, resp.headers.get("Location"), resp.content_type, await resp.text())
