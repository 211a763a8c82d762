"""The solar-capture oracle and ledger that `bench/solar_capture.py` scores the allocator with."""

from __future__ import annotations

import itertools

import pytest
from chargebus_sim.oracle import CarLimits, Ledger, best_continuous_w, best_stepped_w, most_within, split_draw
from hypothesis import given
from hypothesis import strategies as st

ONE_PHASE = CarLimits.from_amps(6, 32, 230, 1)  # 1 380-7 360 W, step 230 W
THREE_PHASE = CarLimits.from_amps(6, 16, 230, 3)  # 4 140-11 040 W, step 690 W


def test_levels_are_zero_then_whole_steps_from_min_to_max() -> None:
    levels = THREE_PHASE.levels()
    assert levels[0] == 0
    assert levels[1:] == tuple(a * 690.0 for a in range(6, 17))
    assert len(ONE_PHASE.levels()) == 1 + 27


def test_one_car_gets_the_surplus_rounded_down_to_a_step_or_nothing_below_its_minimum() -> None:
    assert best_stepped_w(5_000, [ONE_PHASE]) == (21 * 230,)
    assert best_stepped_w(1_379, [ONE_PHASE]) == (0.0,)
    assert best_stepped_w(1_380, [ONE_PHASE]) == (1_380.0,)
    assert best_stepped_w(50_000, [ONE_PHASE]) == (7_360.0,)
    assert best_stepped_w(-2_000, [ONE_PHASE]) == (0.0,)


def test_two_cars_use_the_combination_that_wastes_least() -> None:
    # 5 000 W: the 3-phase car alone wastes 170 W (7 x 690 = 4 830); the 1-phase car alone wastes 170 W too
    # (21 x 230 = 4 830); both cannot fit (1 380 + 4 140 = 5 520). Either way 4 830 W.
    assert sum(best_stepped_w(5_000, [ONE_PHASE, THREE_PHASE])) == pytest.approx(4_830)
    # 6 000 W: both fit: 4 140 + 1 840 = 5 980 W beats either alone.
    assert best_stepped_w(6_000, [ONE_PHASE, THREE_PHASE]) == (1_840.0, 4_140.0)
    assert best_continuous_w(6_000, [ONE_PHASE, THREE_PHASE]) == 6_000


def test_continuous_bound_needs_the_minimum_too() -> None:
    assert best_continuous_w(4_000, [THREE_PHASE]) == 0
    assert best_continuous_w(4_200, [THREE_PHASE]) == 4_200
    assert best_continuous_w(20_000, [ONE_PHASE, THREE_PHASE]) == 7_360 + 11_040
    assert best_continuous_w(1_000, []) == 0
    assert best_stepped_w(1_000, []) == ()


cars = st.builds(
    CarLimits.from_amps,
    st.integers(5, 8),
    st.integers(8, 32),
    st.sampled_from([120.0, 230.0, 240.0]),
    st.sampled_from([1, 3]),
)


@given(st.floats(-5_000, 40_000), st.lists(cars, min_size=1, max_size=3))
def test_stepped_optimum_is_a_true_optimum_below_the_bound(surplus: float, fleet: list[CarLimits]) -> None:
    chosen = best_stepped_w(surplus, fleet)
    assert all(power in car.levels() for power, car in zip(chosen, fleet, strict=True))
    assert sum(chosen) <= max(0.0, surplus) + 1e-6
    brute = max(
        (sum(combo) for combo in itertools.product(*(car.levels() for car in fleet)) if sum(combo) <= surplus + 1e-6),
        default=0.0,
    )
    assert sum(chosen) == pytest.approx(brute)
    assert sum(chosen) <= best_continuous_w(surplus, fleet) + 1e-6


def test_split_draw_counts_only_the_surplus_as_solar() -> None:
    assert split_draw(3_000, 5_000) == (3_000, 0)
    assert split_draw(3_000, 1_000) == (1_000, 2_000)
    assert split_draw(3_000, -500) == (0, 3_000)
    assert split_draw(0, 4_000) == (0, 0)


def test_most_within_a_window() -> None:
    assert most_within([], 1800) == 0
    assert most_within([0.0], 1800) == 1
    assert most_within([0.0, 1800.0, 3601.0], 1800) == 2
    assert most_within([0.0, 100.0, 200.0, 5000.0], 1800) == 3


def test_ledger_counts_energy_starts_and_stops_per_car() -> None:
    ledger = Ledger(step_s=3600)
    ledger.step(0, [0, 0], 1_000)
    ledger.step(3600, [2_000, 0], 1_500)  # 1.5 kWh solar, 0.5 kWh import
    ledger.step(7200, [2_000, 1_000], 5_000)
    ledger.step(10800, [0, 1_000], 0)
    assert ledger.solar_wh == pytest.approx(1_500 + 3_000)
    assert ledger.import_wh == pytest.approx(500 + 1_000)
    assert ledger.drawn_wh == pytest.approx(6_000)
    assert ledger.starts == [[3600], [7200]]
    assert ledger.stops == [[10800], []]
    assert (ledger.start_count, ledger.stop_count) == (2, 1)
    assert ledger.most_starts_within(1800) == 1
    assert ledger.most_stops_within(1800) == 1
