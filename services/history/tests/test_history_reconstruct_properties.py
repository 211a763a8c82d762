"""Properties of reconstruction: counters conserved, gaps never invented, zero where nothing flows."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from chargebus_history.reconstruct import Sample, counter_anchors, integrate, reconstruct, step_hold
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0
GAP = 1800.0

powers = st.floats(min_value=0.0, max_value=22_000.0, allow_nan=False)
flags = st.sampled_from([True, False, None])


@st.composite
def charging_with_counter(draw: st.DrawFn) -> list[Sample]:
    """A charging run without gaps, with a rising counter reported at some of the samples."""
    count = draw(st.integers(min_value=3, max_value=40))
    samples: list[Sample] = []
    ts = T0
    counter = draw(st.floats(min_value=0, max_value=1e7))
    for _ in range(count):
        counter += draw(st.floats(min_value=1.0, max_value=5000.0))
        reported = draw(st.booleans())
        power = draw(st.floats(min_value=100.0, max_value=22_000.0))
        samples.append(
            Sample(ts, "car-X", power_w=power, charging=True, plugged_in=True, counter_wh=counter if reported else None)
        )
        ts += draw(st.floats(min_value=1.0, max_value=GAP))
    return samples


@st.composite
def any_samples(draw: st.DrawFn) -> list[Sample]:
    """Anything a source may report, at any spacing (gaps included), counters rising or reset."""
    count = draw(st.integers(min_value=1, max_value=30))
    samples: list[Sample] = []
    ts = T0
    for _ in range(count):
        samples.append(
            Sample(
                ts,
                "twc-4a1b",
                power_w=draw(st.one_of(st.none(), powers)),
                charging=draw(flags),
                plugged_in=draw(flags),
                online=draw(flags),
                asleep=draw(flags),
                counter_wh=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1e6))),
            )
        )
        ts += draw(st.floats(min_value=0.0, max_value=3 * GAP))
    return samples


@given(charging_with_counter())
def test_with_a_counter_the_integral_between_its_changes_equals_its_delta(samples: list[Sample]) -> None:
    anchors = counter_anchors(samples)
    segments = reconstruct(samples, horizon=samples[-1].ts + 1)
    if len(anchors) < 2:
        return
    (first_ts, first), (last_ts, last) = anchors[0], anchors[-1]
    assert integrate(segments, first_ts, last_ts).energy_wh == pytest.approx(last - first, rel=1e-9)
    for (t0, c0), (t1, c1) in pairwise(anchors):
        assert integrate(segments, t0, t1).energy_wh == pytest.approx(c1 - c0, rel=1e-9)


@given(any_samples())
def test_no_power_is_invented_across_a_gap_beyond_the_limit(samples: list[Sample]) -> None:
    segments = reconstruct(samples, horizon=samples[-1].ts + 3 * GAP)
    edges = [*(s.ts for s in samples), samples[-1].ts + 3 * GAP]
    for a, b in pairwise(edges):
        if b - a > GAP:
            across = integrate(segments, a, b)
            assert across.known_s == 0
            assert across.energy_wh == 0


@given(any_samples())
def test_zero_while_unplugged_asleep_or_not_charging(samples: list[Sample]) -> None:
    segments = reconstruct(samples, horizon=samples[-1].ts + 60)
    edges = [*(s.ts for s in samples), samples[-1].ts + 60]
    for sample, (a, b) in zip(samples, pairwise(edges), strict=True):
        stopped = sample.plugged_in is False or sample.charging is False or sample.asleep is True
        if stopped and 0 < b - a <= GAP:
            assert integrate(segments, a, b).energy_wh == 0


@given(any_samples())
def test_power_is_never_negative_and_segments_never_overlap(samples: list[Sample]) -> None:
    segments = reconstruct(samples, horizon=samples[-1].ts + 60)
    assert all(s.power_w is None or s.power_w >= 0 for s in segments)
    assert all(a.end <= b.start for a, b in pairwise(segments))


@settings(max_examples=50)
@given(st.lists(st.tuples(st.floats(min_value=0.5, max_value=5.0), powers), min_size=1, max_size=200))
def test_storing_only_changes_gives_the_same_series(steps: list[tuple[float, float]]) -> None:
    dense: list[Sample] = []
    ts = T0
    for spacing, power in steps:
        dense.append(Sample(ts, "twc-4a1b", power_w=power, charging=True))
        dense.append(Sample(ts + spacing / 2, "twc-4a1b", power_w=power, charging=True))  # a repeat
        ts += spacing
    changes = [s for i, s in enumerate(dense) if i == 0 or s.power_w != dense[i - 1].power_w]
    assert step_hold(changes, ts, GAP) == step_hold(dense, ts, GAP)


def test_a_denormal_power_is_no_shape_for_a_counter_to_scale() -> None:
    """Found by the property above: 2e-309 W over a second scaled a 1 Wh counter delta to infinite power."""
    base = 1_800_000_000.0
    samples = [
        Sample(ts=base, source="twc-4a1b", power_w=None, charging=True, plugged_in=True, counter_wh=1.0),
        Sample(
            ts=base, source="twc-4a1b", power_w=2.225073858507203e-309, charging=True, plugged_in=True, counter_wh=0.0
        ),
        Sample(ts=base + 1, source="twc-4a1b", power_w=None, charging=True, plugged_in=True, asleep=True),
        Sample(
            ts=base + 2, source="twc-4a1b", power_w=None, charging=True, plugged_in=True, asleep=True, counter_wh=1.0
        ),
    ]
    segments = reconstruct(samples, horizon=base + 62)
    assert all(s.power_w is None or math.isfinite(s.power_w) for s in segments)
