"""Codec choice for a forwarding unit: the publisher picks, every viewer gets the same codec.

Without transcoding the server cannot offer viewers anything but what the publisher sends, so
each publisher m-line is narrowed to ONE codec (the publisher's first supported preference)
plus its RTX, and each viewer transceiver is given exactly that codec with
`setCodecPreferences` before `setRemoteDescription` (aiortc negotiates codecs there).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpCodecCapability, sdp
from aiortc.codecs import CODECS, get_capabilities, is_rtx
from aiortc.rtcpeerconnection import is_codec_compatible

from .errors import BadRequest

# Forwardable codecs per kind: PROTOCOL.md section 4 (VP8 and H.264 video, Opus audio).
SUPPORTED_MIME_TYPES: dict[str, tuple[str, ...]] = {
    "video": ("video/vp8", "video/h264"),
    "audio": ("audio/opus",),
}
MEDIA_KINDS = ("audio", "video")


@dataclass(frozen=True)
class CodecChoice:
    """The codec a publisher's m-line was narrowed to; `rtx` only when the offer had RTX for it."""

    kind: str
    codec: RTCRtpCodecCapability
    rtx: RTCRtpCodecCapability | None

    @property
    def name(self) -> str:
        return self.codec.name

    def preferences(self) -> list[RTCRtpCodecCapability]:
        return [self.codec] if self.rtx is None else [self.codec, self.rtx]

    def viewer_preferences(self) -> list[RTCRtpCodecCapability]:
        """Viewers always get RTX offered for video: retransmissions go on their own SSRC."""
        rtx = self.rtx or _rtx_capability(self.kind)
        return [self.codec] if rtx is None else [self.codec, rtx]


def parse_offer(text: str) -> sdp.SessionDescription:
    """Parse an SDP offer or raise `BadRequest` (aiortc's parser raises assorted errors)."""
    if not text.strip():
        raise BadRequest("empty SDP offer")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:  # AssertionError, ValueError, IndexError...: all mean "bad SDP"
        raise BadRequest(f"unparseable SDP offer: {type(exc).__name__}") from None
    if not any(m.kind in MEDIA_KINDS for m in description.media):
        raise BadRequest("SDP offer has no audio or video m-line")
    return description


def media_lines(description: sdp.SessionDescription) -> list[sdp.MediaDescription]:
    return [m for m in description.media if m.kind in MEDIA_KINDS]


def bundles_all(description: sdp.SessionDescription) -> bool:
    """Whether one BUNDLE group holds every m-line: then the answering peer connection is
    made max-bundle (ice.rtc_configuration says why: with aiortc's "balanced" policy a second
    m-line of a kind after another kind, like the low layer of audio, video, video, kept a
    transport of its own that BUNDLE never replaced, and received nothing)."""
    mids = {m.rtp.muxId for m in description.media}
    return any(g.semantic == "BUNDLE" and mids <= set(g.items) for g in description.group)


def publisher_codec(media: sdp.MediaDescription) -> CodecChoice:
    """The first codec of the publisher's offer (its preference order) that we can forward."""
    local = [c for c in CODECS[media.kind] if c.mimeType.lower() in SUPPORTED_MIME_TYPES[media.kind]]
    for remote in media.rtp.codecs:
        if is_rtx(remote):
            continue
        for candidate in local:
            if is_codec_compatible(candidate, remote):
                codec = RTCRtpCodecCapability(
                    mimeType=candidate.mimeType,
                    clockRate=candidate.clockRate,
                    channels=candidate.channels,
                    parameters=dict(candidate.parameters),
                )
                has_rtx = any(
                    is_rtx(c) and c.parameters.get("apt") == remote.payloadType for c in media.rtp.codecs
                )
                return CodecChoice(media.kind, codec, _rtx_capability(media.kind) if has_rtx else None)
    offered = ", ".join(sorted({c.mimeType for c in media.rtp.codecs if not is_rtx(c)})) or "none"
    wanted = ", ".join(SUPPORTED_MIME_TYPES[media.kind])
    raise BadRequest(
        f"no forwardable {media.kind} codec in the offer (offered: {offered}; supported: {wanted})"
    )


def _rtx_capability(kind: str) -> RTCRtpCodecCapability | None:
    for capability in get_capabilities(kind).codecs:
        if is_rtx(capability):
            return capability
    return None
