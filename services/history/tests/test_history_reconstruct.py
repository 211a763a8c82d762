"""Unit tests of the reconstruction rules: step-hold, zero where nothing flows, gaps, counters, resampling."""

from __future__ import annotations

import math

import pytest
from chargebus_history.reconstruct import (
    Sample,
    Segment,
    counter_anchors,
    effective_power,
    integrate,
    reconcile,
    reconstruct,
    resample,
    step_hold,
)

T0 = 1_800_000_000.0
GAP = 1800.0


def charging(ts: float, power_w: float | None, counter_wh: float | None = None) -> Sample:
    return Sample(ts, "twc-4a1b", power_w=power_w, charging=True, plugged_in=True, counter_wh=counter_wh)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (Sample(T0, "x", power_w=7000, plugged_in=False), 0.0),
        (Sample(T0, "x", power_w=7000, charging=False), 0.0),
        (Sample(T0, "x", power_w=7000, asleep=True, online=False), 0.0),
        (Sample(T0, "x", power_w=7000, away=True), 0.0),
        (Sample(T0, "x", power_w=7000, charging=True, online=False), None),
        (Sample(T0, "x", power_w=None, charging=True), None),
        (Sample(T0, "x", power_w=math.nan, charging=True), None),
        (Sample(T0, "x", power_w=-3.0, charging=True), 0.0),
        (Sample(T0, "x", power_w=7000, charging=True, plugged_in=True, online=True), 7000.0),
        (Sample(T0, "x", power_w=500), 500.0),
    ],
    ids=[
        "unplugged",
        "not-charging",
        "asleep-and-offline",
        "away",
        "offline-while-charging",
        "charging-without-figure",
        "nan",
        "negative-noise",
        "charging",
        "flags-unknown",
    ],
)
def test_effective_power(sample: Sample, expected: float | None) -> None:
    assert effective_power(sample) == expected


def test_step_hold_holds_each_value_until_the_next_sample() -> None:
    samples = [charging(T0, 1000), charging(T0 + 60, 2000), charging(T0 + 90, 0)]
    segments = step_hold(samples, horizon=T0 + 120, gap_limit_s=GAP)
    assert [(s.start - T0, s.end - T0, s.power_w) for s in segments] == [
        (0, 60, 1000),
        (60, 90, 2000),
        (90, 120, 0),
    ]
    assert integrate(segments, T0, T0 + 120).energy_wh == pytest.approx((1000 * 60 + 2000 * 30) / 3600)


def test_step_hold_is_the_same_whether_unchanged_samples_were_stored_or_not() -> None:
    dense = [charging(T0 + t, 3680 if t < 50 else 7360) for t in range(100)]
    changes_only = [dense[0], dense[50]]
    full = integrate(step_hold(dense, T0 + 100, GAP), T0, T0 + 100)
    sparse = integrate(step_hold(changes_only, T0 + 100, GAP), T0, T0 + 100)
    assert full == sparse


def test_a_gap_beyond_the_limit_is_unknown_as_a_whole() -> None:
    samples = [charging(T0, 7000), charging(T0 + GAP + 1, 7000)]
    segments = step_hold(samples, horizon=T0 + GAP + 61, gap_limit_s=GAP)
    assert segments[0] == Segment(T0, T0 + GAP + 1, None, source="twc-4a1b")
    total = integrate(segments, T0, T0 + GAP + 61)
    assert total.energy_wh == pytest.approx(7000 * 60 / 3600)
    assert total.unknown_s == pytest.approx(GAP + 1)


def test_a_gap_exactly_at_the_limit_is_held() -> None:
    segments = step_hold([charging(T0, 100), charging(T0 + GAP, 100)], horizon=None, gap_limit_s=GAP)
    assert segments[0].power_w == 100


def test_the_last_sample_holds_to_the_horizon_only_within_the_limit() -> None:
    near = step_hold([charging(T0, 100)], horizon=T0 + 60, gap_limit_s=GAP)
    far = step_hold([charging(T0, 100)], horizon=T0 + GAP + 60, gap_limit_s=GAP)
    assert near[0].power_w == 100
    assert far[0].power_w is None
    assert step_hold([charging(T0, 100)], horizon=None, gap_limit_s=GAP) == []


def test_time_outside_every_segment_is_unknown() -> None:
    segments = step_hold([charging(T0 + 100, 100)], horizon=T0 + 200, gap_limit_s=GAP)
    total = integrate(segments, T0, T0 + 200)
    assert total.unknown_s == pytest.approx(100)
    assert total.known_s == pytest.approx(100)


def test_later_sample_at_the_same_instant_wins() -> None:
    segments = step_hold([charging(T0, 100), charging(T0, 200)], horizon=T0 + 10, gap_limit_s=GAP)
    assert [s.power_w for s in segments] == [200]


def test_counter_anchors_skip_the_first_reading_and_repeats() -> None:
    readings = [charging(T0 + i, 1, counter_wh=c) for i, c in enumerate([5000, 5000, 6000, 6000, 7000, 0])]
    assert counter_anchors(readings) == [(T0 + 2, 6000), (T0 + 4, 7000), (T0 + 5, 0)]


def test_reconcile_scales_between_counter_changes_to_the_counter_delta() -> None:
    # The car's API holds a coarse 7 kW while the counter says 6.5 kWh went in during the hour between changes.
    samples = [
        charging(T0, 7000, counter_wh=1000),
        charging(T0 + 600, 7000, counter_wh=2000),
        charging(T0 + 1800, 7000),  # updates within the gap limit, counter not reported
        charging(T0 + 3000, 7000),
        charging(T0 + 4200, 7000, counter_wh=8500),
        charging(T0 + 4800, 7000),
    ]
    segments = reconstruct(samples, horizon=T0 + 5000)
    assert integrate(segments, T0 + 600, T0 + 4200).energy_wh == pytest.approx(6500)
    # Before the first change and after the last one the measured power stands.
    assert integrate(segments, T0, T0 + 600).energy_wh == pytest.approx(7000 * 600 / 3600)
    assert integrate(segments, T0 + 4200, T0 + 5000).energy_wh == pytest.approx(7000 * 800 / 3600)


def test_reconcile_keeps_the_shape_within_the_interval() -> None:
    samples = [
        charging(T0, 1000, counter_wh=0),
        charging(T0 + 10, 1000, counter_wh=1000),
        charging(T0 + 1810, 3000),
        charging(T0 + 3610, 0, counter_wh=2000),  # measured 2000 Wh since the change, counted 1000 Wh
    ]
    segments = reconstruct(samples, horizon=T0 + 3700)
    powers = [s.power_w for s in segments if T0 + 10 <= s.start < T0 + 3610]
    assert powers == [pytest.approx(500), pytest.approx(1500)]


def test_reconcile_leaves_resets_unknown_spans_and_zero_integrals_alone() -> None:
    reset = [charging(T0, 1000, counter_wh=5000), charging(T0 + 1, 1000, counter_wh=6000)]
    reset += [charging(T0 + 3601, 1000, counter_wh=0)]
    gap = [charging(T0, 1000, counter_wh=0), charging(T0 + 1, 1000, counter_wh=1)]
    gap += [charging(T0 + 1 + GAP * 2, 1000, counter_wh=9000)]
    idle = [Sample(T0, "x", power_w=0, charging=False, counter_wh=0), Sample(T0 + 1, "x", charging=False, counter_wh=1)]
    idle += [Sample(T0 + 3601, "x", charging=False, counter_wh=1000)]
    for samples in (reset, gap, idle):
        held = step_hold(samples, horizon=samples[-1].ts, gap_limit_s=GAP)
        assert reconcile(held, samples) == held


def test_resample_means_each_step_and_nulls_any_unknown_part() -> None:
    segments = [Segment(T0, T0 + 30, 1000), Segment(T0 + 30, T0 + 60, 3000), Segment(T0 + 90, T0 + 120, 0)]
    (first, mean), *rest = resample(segments, T0, T0 + 150, 60)
    assert first == T0
    assert mean == pytest.approx(2000)
    assert rest == [(T0 + 60, None), (T0 + 120, None)]
    assert len(resample(segments, T0, T0 + 60, 60)) == 1
    with pytest.raises(ValueError, match="positive"):
        resample(segments, T0, T0 + 60, 0)


def test_resample_of_a_long_range_does_not_drift() -> None:
    points = resample([Segment(T0, T0 + 86400 * 7, 10)], T0, T0 + 86400 * 7, 0.1 * 3000)
    assert points[-1][0] == T0 + 0.1 * 3000 * (len(points) - 1)
    assert all(p == pytest.approx(10) for _, p in points)
