"""The per-viewer layer choice (roomserver/core/layers.py): down fast, up slowly, pins."""

from __future__ import annotations

import pytest

from roomserver.core.layers import HIGH, LOW, LayerChooser, LayerPolicy, NackLoss, parse_layers


def reports(
    chooser: LayerChooser, start: float, end: float, fraction_lost: float, every: float = 1.0
) -> float:
    t = start
    while t <= end:
        chooser.on_receiver_report(t, fraction_lost)
        t += every
    return t


def test_starts_high_and_stays_high_on_a_clean_link() -> None:
    chooser = LayerChooser(0.0)
    reports(chooser, 1.0, 60.0, 0.0)
    assert chooser.layer == HIGH


def test_one_heavy_loss_report_goes_down_at_once() -> None:
    chooser = LayerChooser(0.0)
    chooser.on_receiver_report(1.0, 0.6)
    assert chooser.layer == LOW


def test_a_few_percent_loss_is_not_congestion() -> None:
    chooser = LayerChooser(0.0)
    reports(chooser, 1.0, 30.0, 0.04, every=0.5)
    assert chooser.layer == HIGH


def test_moderate_loss_must_last_before_going_down() -> None:
    chooser = LayerChooser(0.0, LayerPolicy(down_after=1.0))
    chooser.on_receiver_report(1.0, 0.15)
    assert chooser.layer == HIGH
    chooser.on_receiver_report(1.5, 0.01)  # a clean report ends the streak
    chooser.on_receiver_report(2.0, 0.15)
    chooser.on_receiver_report(2.5, 0.3)
    assert chooser.layer == HIGH
    chooser.on_receiver_report(3.0, 0.15)
    assert chooser.layer == LOW


def test_low_remb_goes_down_only_once_settled_on_high() -> None:
    policy = LayerPolicy(remb_settle=10.0, down_after=1.0, remb_margin=0.35)
    chooser = LayerChooser(0.0, policy)
    for t in (1.0, 2.0, 3.0):  # the estimator is still ramping up: ignored
        chooser.on_remb(t, 200_000, high_bitrate=1_000_000)
    assert chooser.layer == HIGH
    chooser.on_remb(11.0, 200_000, high_bitrate=1_000_000)
    chooser.on_remb(11.5, 500_000, high_bitrate=1_000_000)  # a trailing estimate: not short
    chooser.on_remb(12.0, 200_000, high_bitrate=1_000_000)
    assert chooser.layer == HIGH
    chooser.on_remb(13.0, 200_000, high_bitrate=1_000_000)
    assert chooser.layer == LOW


def test_probes_up_after_a_quiet_period_and_backs_off_when_probes_fail() -> None:
    policy = LayerPolicy(probe_after=5.0, probe_max=20.0, probe_grace=4.0)
    chooser = LayerChooser(0.0, policy)
    chooser.on_receiver_report(1.0, 0.5)
    assert chooser.layer == LOW
    assert chooser.update(5.9) == LOW
    assert chooser.update(6.0) == HIGH  # first probe after 5 s
    chooser.on_receiver_report(7.0, 0.5)  # the probe meets congestion: failed
    assert chooser.layer == LOW
    assert chooser.probe_interval == 10.0
    assert chooser.update(16.9) == LOW
    assert chooser.update(17.0) == HIGH
    chooser.on_receiver_report(18.0, 0.5)
    assert chooser.probe_interval == 20.0
    chooser.on_receiver_report(19.0, 0.5)  # still congested on low: the wait restarts
    assert chooser.update(38.9) == LOW
    assert chooser.update(39.0) == HIGH
    chooser.on_receiver_report(50.0, 0.5)
    assert chooser.probe_interval == 20.0  # capped
    # a probe that holds for the grace period resets the back-off
    assert chooser.update(70.0) == HIGH
    assert chooser.update(74.0) == HIGH
    chooser.on_receiver_report(80.0, 0.5)
    assert chooser.layer == LOW
    assert chooser.probe_interval == 5.0


def test_loss_on_low_delays_the_probe() -> None:
    chooser = LayerChooser(0.0, LayerPolicy(probe_after=5.0))
    chooser.on_receiver_report(1.0, 0.5)
    end = reports(chooser, 2.0, 10.0, 0.15)  # the low layer loses too
    assert chooser.layer == LOW
    assert chooser.update(end - 1 + 4.9) == LOW
    assert chooser.update(end - 1 + 5.0) == HIGH


def test_a_pin_overrides_the_estimate_until_auto() -> None:
    chooser = LayerChooser(0.0)
    chooser.pin(LOW)
    assert chooser.layer == LOW
    chooser.on_receiver_report(1.0, 0.0)
    assert chooser.layer == LOW
    chooser.pin("auto")
    assert chooser.layer == HIGH
    chooser.on_receiver_report(2.0, 0.9)
    chooser.pin(HIGH)
    assert chooser.layer == HIGH and chooser.estimated == LOW
    with pytest.raises(ValueError):
        chooser.pin("medium")


def nack_every_other_packet(meter: NackLoss, start: float, end: float, sent: int = 0) -> list[float | None]:
    """100 packets/s sent; every other one NACKed (twice each: viewers repeat NACKs)."""
    shares = []
    t, seq = start, 0
    while t <= end:
        sent += 10
        seqs = [seq + 1, seq + 3, seq + 5, seq + 7, seq + 9]
        shares.append(meter.on_nack(t, seqs, sent))
        shares.append(meter.on_nack(t, seqs, sent))  # the same gaps asked again
        t, seq = t + 0.1, seq + 10
    return shares


def test_nack_share_counts_each_sequence_number_once_over_the_window() -> None:
    meter = NackLoss(window=0.5, min_sent=20)
    shares = nack_every_other_packet(meter, 1.0, 2.0)
    assert shares[:4] == [None] * 4  # under half a window seen: no judgement yet
    assert all(s is not None and 0.45 <= s <= 0.55 for s in shares[6:]), shares


def test_nacks_too_few_packets_give_no_share() -> None:
    meter = NackLoss(window=0.5, min_sent=20)
    assert meter.on_nack(1.0, [1], packets_sent=1) is None
    assert meter.on_nack(1.4, [2], packets_sent=3) is None  # half a window, 2 packets sent


def test_old_nacks_leave_the_window() -> None:
    meter = NackLoss(window=0.5, min_sent=20)
    nack_every_other_packet(meter, 1.0, 2.0)
    # Later, a clean stretch: one stray NACK per 100 packets.
    assert meter.on_nack(5.0, [9_000], packets_sent=400) is None  # the window restarts
    share = meter.on_nack(5.5, [9_050], packets_sent=500)
    assert share is not None and share <= 0.05


def test_heavy_nack_loss_goes_down_at_once_and_light_does_not() -> None:
    chooser = LayerChooser(0.0)
    chooser.on_nack_loss(1.0, 0.2)
    chooser.on_nack_loss(1.5, None)
    assert chooser.layer == HIGH
    chooser.on_nack_loss(2.0, 0.6)
    assert chooser.layer == LOW


def test_parse_layers() -> None:
    assert parse_layers("high,low") == (HIGH, LOW)
    assert parse_layers("low, high") == (LOW, HIGH)
    for bad in ("high", "high,high", "high,low,low", "", "hi,lo"):
        with pytest.raises(ValueError):
            parse_layers(bad)
