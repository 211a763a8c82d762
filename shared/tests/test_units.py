from __future__ import annotations

import math

import pytest
from chargebus.units import amps_to_watts, clamp_offer, offer_amps, split_phase_voltage, watts_to_amps
from hypothesis import given
from hypothesis import strategies as st

voltages = st.sampled_from([110.0, 120.0, 208.0, 220.0, 230.0, 240.0]) | st.floats(90, 260)
phases = st.sampled_from([1, 2, 3])
powers = st.floats(min_value=-1e5, max_value=1e6, allow_nan=False)


def test_floor_survives_float_noise() -> None:
    # 4600 W at 230 V is exactly 20 A even though 4600 / 230 = 19.999999999999996 in floats
    assert watts_to_amps(4600, 230, 1) == 20
    assert watts_to_amps(4599, 230, 1) == 19


def test_worked_examples() -> None:
    assert watts_to_amps(8560, 240, 1) == 35  # allocation.md example 1
    assert watts_to_amps(4340, 240, 1) == 18  # example 5
    assert offer_amps(4600, 230, 1, 6, 32) == 20  # example 4: 1-phase car on a 3-phase TWC


def test_below_minimum_is_zero_never_1_to_4_amps() -> None:
    assert offer_amps(1200, 240, 1, 6, 32) == 0  # 5 A worth, minimum 6
    assert offer_amps(1440, 240, 1, 6, 32) == 6


def test_max_below_min_offers_nothing() -> None:
    assert clamp_offer(10, 6, 5) == 0


@given(powers, voltages, phases, st.integers(5, 16), st.integers(0, 80))
def test_offer_never_exceeds_a_limit_nor_the_power(
    power_w: float, voltage_v: float, n_phases: int, min_a: int, max_a: int
) -> None:
    amps = offer_amps(power_w, voltage_v, n_phases, min_a, max_a)
    assert amps == 0 or min_a <= amps <= max_a
    assert amps_to_watts(amps, voltage_v, n_phases) <= max(power_w, 0) + 1e-3


@given(st.floats(0, 1e6), voltages, phases)
def test_floor_is_the_largest_whole_amp_that_fits(power_w: float, voltage_v: float, n_phases: int) -> None:
    amps = watts_to_amps(power_w, voltage_v, n_phases)
    step = voltage_v * n_phases
    assert amps * step <= power_w + step * 1e-6 + 1e-9
    assert (amps + 1) * step > power_w


def test_nan_and_invalid_supply() -> None:
    assert watts_to_amps(math.nan, 230, 1) == 0
    with pytest.raises(ValueError, match="positive"):
        watts_to_amps(1000, 0, 1)


def test_line_to_line_report_is_converted() -> None:
    assert split_phase_voltage(400, 3) == pytest.approx(230.9, abs=0.1)
    assert split_phase_voltage(230, 3) == 230
    assert split_phase_voltage(240, 1) == 240
