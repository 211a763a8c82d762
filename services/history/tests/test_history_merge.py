"""A car seen by its TWC and by its own API is counted once; the measuring TWC wins."""

from __future__ import annotations

import pytest
from chargebus.schema import car_evse_id
from chargebus_history.merge import is_measuring_evse, merge_preferred, only_vin
from chargebus_history.reconstruct import Sample, Segment, integrate, step_hold
from hypothesis import given
from hypothesis import strategies as st

T0 = 1_800_000_000.0
VIN = "5YJ3E1EA8KF000001"
OTHER = "5YJ3E1EA8KF000002"


def test_ids() -> None:
    assert car_evse_id(VIN) == f"car-{VIN}"
    assert is_measuring_evse("twc-4a1b")
    assert is_measuring_evse("twc3-garage")
    assert not is_measuring_evse(car_evse_id(VIN))


def test_the_twc_measurement_wins_and_the_car_fills_where_the_twc_does_not_serve_this_car() -> None:
    twc = [
        Segment(T0, T0 + 600, 7360, source="twc-4a1b", vin=VIN, plugged_in=True, charging=True),
        Segment(T0 + 600, T0 + 1200, 5000, source="twc-4a1b", vin=OTHER, plugged_in=True, charging=True),
    ]
    car = [Segment(T0, T0 + 1200, 7000, source=car_evse_id(VIN), vin=VIN, plugged_in=True, charging=True)]
    merged = merge_preferred([only_vin(twc, VIN), car])
    assert [(s.start - T0, s.end - T0, s.power_w, s.source) for s in merged] == [
        (0, 600, 7360, "twc-4a1b"),
        (600, 1200, 7000, car_evse_id(VIN)),
    ]
    assert integrate(merged, T0, T0 + 1200).energy_wh == pytest.approx((7360 + 7000) * 600 / 3600)


def test_an_unknown_twc_falls_back_to_the_car_and_unknown_everywhere_stays_unknown() -> None:
    twc = [Segment(T0, T0 + 60, None, source="twc-4a1b", vin=VIN, plugged_in=True)]
    car_known = [Segment(T0, T0 + 60, 11000, source=car_evse_id(VIN), vin=VIN)]
    car_unknown = [Segment(T0, T0 + 60, None, source=car_evse_id(VIN), vin=VIN)]
    assert merge_preferred([twc, car_known])[0].power_w == 11000
    both_unknown = merge_preferred([twc, car_unknown])
    assert both_unknown[0].power_w is None
    assert both_unknown[0].plugged_in is True  # the preferred source still says the car is there


def test_time_nobody_covers_stays_a_hole() -> None:
    merged = merge_preferred([[Segment(T0, T0 + 10, 1)], [Segment(T0 + 20, T0 + 30, 2)]])
    assert [(s.start - T0, s.end - T0) for s in merged] == [(0, 10), (20, 30)]


segment_powers = st.one_of(st.none(), st.floats(min_value=0, max_value=22_000))


@st.composite
def series(draw: st.DrawFn, source: str) -> list[Segment]:
    samples = [
        Sample(
            T0 + draw(st.integers(min_value=0, max_value=3600)),
            source,
            power_w=draw(segment_powers),
            charging=True,
            vin=draw(st.sampled_from([VIN, OTHER, None])),
        )
        for _ in range(draw(st.integers(min_value=0, max_value=12)))
    ]
    return step_hold(samples, horizon=T0 + 4000, gap_limit_s=1800)


def covering(segments: list[Segment], t: float) -> Segment | None:
    return next((s for s in segments if s.start <= t < s.end), None)


@given(series("twc-4a1b"), series(car_evse_id(VIN)))
def test_merged_power_is_always_one_source_never_the_sum(twc: list[Segment], car: list[Segment]) -> None:
    measured = only_vin(twc, VIN)
    merged = merge_preferred([measured, car])
    for segment in merged:
        mid = (segment.start + segment.end) / 2
        twc_here, car_here = covering(measured, mid), covering(car, mid)
        if twc_here is not None and twc_here.power_w is not None:
            assert (segment.source, segment.power_w) == ("twc-4a1b", twc_here.power_w)
        elif car_here is not None and car_here.power_w is not None:
            assert (segment.source, segment.power_w) == (car_evse_id(VIN), car_here.power_w)
        else:
            assert segment.power_w is None
    merged_wh = integrate(merged, T0, T0 + 4000).energy_wh
    assert merged_wh <= integrate(measured, T0, T0 + 4000).energy_wh + integrate(car, T0, T0 + 4000).energy_wh + 1e-6
