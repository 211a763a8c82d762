from __future__ import annotations

from chargebus_sim.house import House
from hypothesis import given
from hypothesis import strategies as st


def test_night_has_no_sun_and_noon_has_plenty() -> None:
    house = House()
    assert house.pv_w(3.0) == 0
    assert house.pv_w(21.0) == 0
    assert house.pv_w(12.0) > 0.9 * house.pv_peak_w


def test_afternoon_clouds_vary() -> None:
    house = House()
    samples = [house.pv_w(14 + i / 60) for i in range(120)]
    assert max(samples) - min(samples) > 1_000


@given(st.floats(0, 24), st.floats(0, 20_000))
def test_grid_balance(hour: float, chargers_w: float) -> None:
    house = House()
    assert abs(house.grid_w(hour, chargers_w) - (house.house_w(hour) + chargers_w - house.pv_w(hour))) < 0.2
    assert 0 <= house.pv_w(hour) <= house.pv_peak_w
