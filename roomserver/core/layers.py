"""Which quality layer of a publisher's video a viewer gets, from what its link reports.

A publisher may send its video twice (PROTOCOL `?layers=high,low` on WHIP): a `high` and a
`low` encoding of one camera. Each viewer gets one of them, chosen per viewer by
`LayerChooser` from the RTCP the viewer sends back for its video:

- receiver reports' fraction lost: one report at `heavy_loss` or more, or reports at
  `loss` or more for `down_after` seconds, mean the link does not sustain the layer;
- REMB (the viewer's receive-side bandwidth estimate): far below (`remb_margin` ×) the high
  layer's bitrate for `down_after` seconds while on high counts the same — but only once
  the viewer has been on high for `remb_settle` s, because an estimator that was measuring
  the low layer ramps up slowly (about 8 %/s in WebRTC's AIMD) after a switch up;
- NACKs (the viewer asks for a missing packet as soon as it sees the gap) come well
  before the next receiver report: distinct sequence numbers NACKed over `nack_window` s,
  as a share of the packets sent to the viewer then (`NackLoss`), at `heavy_loss` or
  more also go down at once;
- going down is fast (the rules above), going up is slow: after `probe_after` s on low with
  no sign of congestion the viewer is tried on high again; a probe that meets congestion
  within `probe_grace` s failed, and each failure doubles the wait (up to `probe_max`),
  so a viewer behind a slow link is not flipped up and down every few seconds.

A viewer may pin a layer (`media.layer`), which overrides the estimate until it asks for
`auto` again; the estimate keeps running meanwhile. Pure: times are passed in (seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

HIGH = "high"
LOW = "low"
AUTO = "auto"
LAYERS = (HIGH, LOW)  # the PROTOCOL names, best first
CHOICES = (*LAYERS, AUTO)


@dataclass(frozen=True)
class LayerPolicy:
    # Fraction lost in a receiver report that counts as congestion. Not lower: a viewer on
    # loopback of a busy box loses a few % to full socket buffers now and then.
    loss: float = 0.10
    heavy_loss: float = 0.50  # one report this lossy goes down at once (a link at 1/2 the rate)
    down_after: float = 1.0  # seconds of congestion (loss or low REMB) before going down
    # NACKs are judged over this many seconds (at least half of it seen, and `nack_min_sent`
    # packets sent): shorter is noisier; a receiver report spans 0.5–1.5 s (aiortc) or ~1 s.
    nack_window: float = 0.5
    nack_min_sent: int = 20
    # REMB is an AIMD estimate that trails what it measures (aiortc's stood at ~0.5× of a
    # clean 1 Mbit/s loopback stream on a busy box): only far below the high layer's rate
    # does it mean the link is short (a 300 kbit/s link under 1 Mbit/s gives ~0.25).
    remb_margin: float = 0.35
    remb_settle: float = 10.0
    probe_after: float = 5.0  # seconds on low without congestion before trying high
    probe_max: float = 20.0
    probe_grace: float = 4.0


def parse_layers(value: str) -> tuple[str, ...]:
    """The WHIP `layers` query value: the layer names of the offer's video m-lines in order.
    Raises ValueError unless it names each of `high` and `low` once."""
    names = tuple(part.strip() for part in value.split(","))
    if sorted(names) != sorted(LAYERS):
        raise ValueError(
            f"layers must name each of {', '.join(LAYERS)} once (e.g. 'high,low'), not {value!r}"
        )
    return names


class NackLoss:
    """The share of a viewer's packets it NACKed over the last `window` seconds.

    `on_nack` is given the NACK's sequence numbers and how many packets the viewer has
    been sent so far (a running count); a number NACKed again (viewers repeat a NACK until
    the packet comes) counts once. None until the window holds enough to judge."""

    def __init__(self, window: float = 0.5, min_sent: int = 20) -> None:
        self.window = window
        self.min_sent = min_sent
        self._sent: deque[tuple[float, int]] = deque()  # (time, running count) at each NACK
        self._nacked: dict[int, float] = {}  # seq → when first NACKed (in the window)

    def on_nack(self, now: float, seqs: list[int], packets_sent: int) -> float | None:
        horizon = now - self.window
        while self._sent and self._sent[0][0] < horizon:
            self._sent.popleft()
        for seq, at in list(self._nacked.items()):
            if at < horizon:
                del self._nacked[seq]
        for seq in seqs:
            self._nacked.setdefault(seq, now)
        self._sent.append((now, packets_sent))
        # The window runs from its oldest NACK still in it: NACKs after that one, over the
        # packets sent after it.
        since, sent_then = self._sent[0]
        sent = packets_sent - sent_then
        if now - since < self.window / 2 or sent < self.min_sent:
            return None
        return min(1.0, sum(1 for at in self._nacked.values() if at > since) / sent)


class LayerChooser:
    """One viewer's layer: `layer` is what it should get now (call `update(now)` first)."""

    def __init__(self, now: float, policy: LayerPolicy | None = None) -> None:
        self.policy = policy or LayerPolicy()
        self.estimated = HIGH  # start high: a congested link is seen within a second or two
        self.pinned: str | None = None
        self._since = now  # when `estimated` last changed
        self._last_congestion: float | None = None
        self._loss_since: float | None = None
        self._remb_since: float | None = None
        self._failed_probes = 0
        self._probing = False  # on high after an up-switch, not yet past probe_grace

    @property
    def layer(self) -> str:
        return self.pinned or self.estimated

    def pin(self, choice: str) -> None:
        """`high`/`low` fixes the layer, `auto` returns to the estimate."""
        if choice not in CHOICES:
            raise ValueError(f"layer must be one of {', '.join(CHOICES)}, not {choice!r}")
        self.pinned = None if choice == AUTO else choice

    @property
    def probe_interval(self) -> float:
        p = self.policy
        return min(p.probe_after * 2**self._failed_probes, p.probe_max)

    def on_receiver_report(self, now: float, fraction_lost: float) -> None:
        """A receiver report block for the viewer's video (fraction lost as 0..1)."""
        p = self.policy
        if fraction_lost >= p.heavy_loss:
            self._congested(now, since=now - p.down_after)
        elif fraction_lost >= p.loss:
            if self._loss_since is None:
                self._loss_since = now
            self._congested(now, since=self._loss_since)
        else:
            self._loss_since = None
            self.update(now)

    def on_nack_loss(self, now: float, fraction_lost: float | None) -> None:
        """`NackLoss.on_nack`'s share: only heavy loss counts (moderate loss is left to the
        receiver reports, which see packets lost for good rather than asked for)."""
        if fraction_lost is not None and fraction_lost >= self.policy.heavy_loss:
            self._congested(now, since=now - self.policy.down_after)
        else:
            self.update(now)

    def on_remb(self, now: float, bitrate: float, high_bitrate: float) -> None:
        """The viewer's REMB (bit/s); `high_bitrate` is what the high layer sends now."""
        p = self.policy
        settled = now - self._since >= p.remb_settle
        if self.estimated == HIGH and settled and high_bitrate > 0 and bitrate < p.remb_margin * high_bitrate:
            if self._remb_since is None:
                self._remb_since = now
            self._congested(now, since=self._remb_since)
        else:
            self._remb_since = None
            self.update(now)

    def update(self, now: float) -> str:
        """Apply the passage of time (a probe up, a probe that held); returns `layer`."""
        p = self.policy
        if self.estimated == HIGH:
            if self._probing and now - self._since >= p.probe_grace:
                self._probing = False
                self._failed_probes = 0
        else:
            quiet_from = max(self._since, self._last_congestion or self._since)
            if now - quiet_from >= self.probe_interval:
                self._set(HIGH, now)
                self._probing = True
        return self.layer

    def _congested(self, now: float, since: float) -> None:
        self._last_congestion = now
        if self.estimated == HIGH and now - since >= self.policy.down_after:
            if self._probing:
                self._failed_probes += 1
                self._probing = False
            self._set(LOW, now)
        self.update(now)

    def _set(self, layer: str, now: float) -> None:
        self.estimated = layer
        self._since = now
        self._loss_since = None
        self._remb_since = None
