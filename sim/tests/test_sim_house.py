from __future__ import annotations

from chargebus_sim.house import HomeBattery, House
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


def test_battery_absorbs_export_and_covers_import() -> None:
    battery = HomeBattery(capacity_wh=10_000, max_charge_w=3_000, max_discharge_w=3_000, soc_pct=50)
    assert battery.step(-2_000, 3600) == -2_000  # an hour absorbing 2 kW: +20 %
    assert round(battery.soc_pct, 6) == 70
    assert battery.step(-5_000, 60) == -3_000  # limited by its power
    assert battery.step(1_000, 60) == 1_000
    assert battery.step(1_000, 60, hold=True) == 0  # held: the grid covers it
    assert battery.step(-1_000, 60, hold=True) == -1_000  # a hold never stops it charging


def test_battery_stops_at_full_and_at_its_reserve() -> None:
    full = HomeBattery(capacity_wh=1_000, soc_pct=100)
    assert full.step(-2_000, 60) == 0
    empty = HomeBattery(capacity_wh=1_000, soc_pct=5, min_soc_pct=5)
    assert empty.step(2_000, 60) == 0


@given(st.lists(st.tuples(st.floats(-8_000, 8_000), st.booleans()), max_size=50))
def test_battery_soc_stays_in_range_and_cycles_count_what_it_gave(steps: list[tuple[float, bool]]) -> None:
    battery = HomeBattery()
    for net_w, hold in steps:
        power = battery.step(net_w, 300, hold=hold)
        assert 0 <= battery.soc_pct <= 100
        assert -battery.max_charge_w <= power <= battery.max_discharge_w
        if hold:
            assert power <= 0
    assert battery.cycles == battery.discharged_wh / battery.capacity_wh
