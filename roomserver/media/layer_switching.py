"""Quality layers at the RTP level: one viewer's video sink moved between a publisher's
`high` and `low` fanouts by what the viewer's RTCP says (the rule: core/layers.py).

    viewer RTCRtpSender._handle_rtcp_packet     ← wrapped: receiver report blocks of its SSRC
        └─ LayerSwitcher.on_rtcp                    (fraction lost), NACKs (NackLoss) and REMB
             └─ LayerChooser (core/layers.py)       go to the chooser, then its layer is applied:
             └─ ViewerRtpSink.switch_to(fanout)     the sink waits for the target layer's
                                                    keyframe (PLI upstream), then continues
                                                    the viewer's seq/ts from it (rtp_rewrite)

No timer: viewers send RTCP at least every second or two (aiortc: 0.5–1.5 s, Chromium: ~1 s),
and each packet also lets time-based decisions (a probe up) happen.

Private aiortc 1.16 name used (checked by tests/media/test_aiortc_hooks.py):
`RTCRtpSender._handle_rtcp_packet` (wrapped per instance; aiortc's own handling still runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from roomserver.core.layers import HIGH, LOW, LayerChooser, LayerPolicy, NackLoss

from .rtp_forwarding import RtpFanout, ViewerRtpSink

logger = logging.getLogger(__name__)


class LayerSwitcher:
    """Keeps `sink` on the layer its viewer's link sustains (or the one it pinned)."""

    def __init__(
        self, sink: ViewerRtpSink, fanouts: dict[str, RtpFanout], policy: LayerPolicy | None = None
    ) -> None:
        if set(fanouts) != {HIGH, LOW}:
            raise ValueError("a layered source has a high and a low fanout")
        self.sink = sink
        self.fanouts = fanouts
        self.chooser = LayerChooser(time.monotonic(), policy)
        self.nack_loss = NackLoss(self.chooser.policy.nack_window, self.chooser.policy.nack_min_sent)
        self.reports = 0
        self.nacks = 0
        self.rembs = 0
        sender = sink.sender
        original: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            try:
                self.on_rtcp(packet, time.monotonic())
            except Exception:  # a bad report must not stop the viewer's RTCP loop
                logger.exception("layer estimate failed for an RTCP packet")
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
        # The viewer's PLI/FIR asks the layer it is on (or switching to) for a keyframe.
        sender._send_keyframe = lambda: self.sink.layer_fanout.forwarder.request_keyframe()  # type: ignore[method-assign]

    @property
    def layer(self) -> str:
        """The layer the viewer is on or switching to."""
        fanout = self.sink.layer_fanout
        return next(name for name, f in self.fanouts.items() if f is fanout)

    @property
    def playing(self) -> str:
        """The layer the viewer's packets come from now."""
        return next(name for name, f in self.fanouts.items() if f is self.sink.fanout)

    def pin(self, choice: str) -> str:
        self.chooser.pin(choice)
        self.apply(time.monotonic())
        return self.layer

    def on_rtcp(self, packet: Any, now: float) -> None:
        ssrc = self.sink.sender._ssrc
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    self.reports += 1
                    self.chooser.on_receiver_report(now, report.fraction_lost / 256)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if packet.media_ssrc == ssrc:
                self.nacks += 1
                share = self.nack_loss.on_nack(now, packet.lost, self.sink.packets_sent)
                self.chooser.on_nack_loss(now, share)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if ssrc in ssrcs:
                self.rembs += 1
                self.chooser.on_remb(now, bitrate, self.fanouts[HIGH].bitrate.bps)
        self.apply(now)

    def apply(self, now: float) -> None:
        wanted = self.chooser.update(now)
        if self.sink.ready and self.fanouts[wanted] is not self.sink.layer_fanout:
            logger.info("viewer sink %x: %s → %s", id(self.sink), self.layer, wanted)
            self.sink.switch_to(self.fanouts[wanted])
