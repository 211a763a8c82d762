"""The home battery's thresholds and the site's import limits: pure budget figures, and what allocate makes of them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chargebus_allocator.allocate import allocate
from chargebus_allocator.model import GridReading, Inputs, Settings, Timer
from chargebus_allocator.site import (
    MAX_GAP_S,
    MIN_HORIZON_S,
    Battery,
    BatteryLevel,
    BatteryThresholds,
    ImportWindow,
    SiteLimit,
    average_rate_w,
    battery_adjustment_w,
    battery_hold,
    battery_level,
    import_cap_w,
    site_limit,
    window_bounds,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocator.tests.alloc_builders import NO_DELAYS, T0, by_id, point, watts
from services.allocator.tests.test_alloc_properties import scenarios

THRESHOLDS = BatteryThresholds(priority_soc=50, buffer_soc=90, buffer_start_soc=95)
CHARGING = Timer("charging", since=T0 - 3600, charged_since=T0 - 3600)


def level(soc: float | None, previous: BatteryLevel | None = None) -> BatteryLevel:
    return battery_level(soc, THRESHOLDS, previous)


def battery(power_w: float, soc: float | None) -> Battery:
    return Battery(power_w, soc, level(soc))


# -- battery thresholds --------------------------------------------------------------------------------------------


def test_each_threshold_is_reached_at_its_soc() -> None:
    assert level(None) == BatteryLevel()
    assert level(49.9) == BatteryLevel()
    assert level(50) == BatteryLevel(priority=True)
    assert level(90) == BatteryLevel(priority=True, buffer=True)
    assert level(95) == BatteryLevel(priority=True, buffer=True, buffer_start=True)


def test_a_threshold_holds_until_the_soc_is_a_band_below_it() -> None:
    above = level(50.0)
    assert level(48.5, above).priority  # within the 2 % band: still above
    assert not level(47.9, above).priority
    assert not level(49.5, level(47.9, above)).priority  # and back up only at the threshold itself
    seen, flags = level(96), []
    for soc in (94.9, 93.1, 94.6, 92.9, 94.6, 95.2):
        seen = level(soc, seen)
        flags.append(seen.buffer_start)
    assert flags == [True, True, True, False, False, True]


def test_battery_charging_counts_for_cars_only_at_or_above_the_priority_soc() -> None:
    assert battery_adjustment_w(-2000, level(40)) == 0  # below: the battery keeps its charge
    assert battery_adjustment_w(-2000, level(60)) == -2000  # above: its charging power is the cars' to take
    for soc in (None, 40, 60, 92, 99):
        assert battery_adjustment_w(1500, level(soc)) == 1500  # discharge is never surplus


def test_the_adjustment_has_no_jump_where_the_battery_turns_around() -> None:
    for soc in (40, 60):
        values = [battery_adjustment_w(w, level(soc)) for w in (-1.0, 0.0, 1.0)]
        assert max(values) - min(values) <= 2.0  # at most 1 W per W: continuous through 0


def test_which_solar_charge_points_the_battery_may_hold() -> None:
    assert not battery(0, 89).covers(charging=True)
    assert battery(0, 90).covers(charging=True)
    assert not battery(0, 90).covers(charging=False)
    assert battery(0, 95).covers(charging=False)


def test_battery_hold() -> None:
    assert battery_hold(None, grid_charging=True) is None
    assert battery_hold(battery(0, 60), grid_charging=True) is True
    assert battery_hold(battery(0, None), grid_charging=True) is True  # unknown SoC: protect it
    assert battery_hold(battery(0, 60), grid_charging=False) is False
    assert battery_hold(battery(0, 91), grid_charging=True) is False  # above its buffer it may help


# -- the battery in a round ----------------------------------------------------------------------------------------


def solar_round(
    grid_w: float,
    bat: Battery | None,
    *,
    previous: dict[str, Timer] | None = None,
    mode: str = "solar",
    drawing_w: float = 0.0,
) -> dict[str, float]:
    twc = point("twc-0001", power_w=drawing_w)  # 240 V, 6–32 A: 1 440–7 680 W, step 240 W
    settings_ = Settings(mode=mode, reserve_w=0, delays=NO_DELAYS)  # type: ignore[arg-type]
    inputs = Inputs((twc,), (), GridReading(grid_w, T0), None, settings_, battery=bat)
    allocation, _ = allocate(inputs, previous, T0)
    return watts(allocation)


def test_below_the_priority_soc_the_battery_charges_first() -> None:
    # 3 000 W of sun: the battery takes 2 000 W, 1 000 W are exported. The car may only have the export.
    assert solar_round(-1000, battery(-2000, 40)) == {"twc-0001": 0.0}
    assert solar_round(-2000, battery(-2000, 40)) == {"twc-0001": 1920.0}
    # Above it, the battery's 2 000 W are the car's as well.
    assert solar_round(-1000, battery(-2000, 60)) == {"twc-0001": 2880.0}


def test_the_battery_discharging_into_a_car_is_not_surplus() -> None:
    # The car draws 3 840 W, the sun gives 2 400 W, the battery covers 1 440 W: the grid reads 0.
    assert solar_round(0, battery(1440, 60), drawing_w=3840, previous={"twc-0001": CHARGING}) == {"twc-0001": 2400.0}
    assert solar_round(0, None, drawing_w=3840, previous={"twc-0001": CHARGING}) == {"twc-0001": 3840.0}


def test_above_the_buffer_the_battery_keeps_a_running_car_at_its_minimum() -> None:
    # No sun at all: the battery covers the whole minimum of 1 440 W.
    running = {"twc-0001": CHARGING}
    assert solar_round(0, battery(1440, 80), drawing_w=1440, previous=running) == {"twc-0001": 0.0}
    assert solar_round(0, battery(1440, 91), drawing_w=1440, previous=running) == {"twc-0001": 1440.0}
    # It may not start one below the start SoC, and may above it.
    assert solar_round(0, battery(0, 91)) == {"twc-0001": 0.0}
    assert solar_round(0, battery(0, 96)) == {"twc-0001": 1440.0}


# -- site limits: pure figures -------------------------------------------------------------------------------------


def test_import_cap_is_the_lower_of_config_and_runtime_limit() -> None:
    assert import_cap_w(0, None) is None
    assert import_cap_w(11000, None) == 11000
    assert import_cap_w(0, 4200) == 4200
    assert import_cap_w(11000, 4200) == 4200
    assert import_cap_w(3000, 4200) == 3000


def test_windows_align_to_the_clock() -> None:
    quarter = 1_800_000_900.0  # a multiple of 900
    assert window_bounds(quarter, 900) == (quarter, quarter + 900)
    assert window_bounds(quarter + 899.5, 900) == (quarter, quarter + 900)
    assert window_bounds(quarter - 0.5, 900) == (quarter - 900, quarter)


def test_the_window_integrates_import_as_a_step_function() -> None:
    start = 1_800_000_900.0
    window = ImportWindow(900, assumed_w=2500)
    window.record(start, 3000)
    window.record(start + 60, -1000)  # export counts as no import
    window.record(start + 120, 1000)
    window.advance(start + 180)
    assert window.imported_j == pytest.approx(3000 * 60 + 0 + 1000 * 60)
    assert window.average_w(start + 180) == pytest.approx((180_000 + 60_000) / 180)
    # Across the boundary: the held 1 000 W is split between the windows.
    window.record(start + 870, 1000)
    window.advance(start + 900 + 30)
    held = 3000 * 60 + 1000 * 120 + 2500 * 630 + 1000 * 30  # the gap 240…870 s counts at the limit
    assert window.closed_start == start
    assert window.closed_j == pytest.approx(held)
    assert window.start == start + 900
    assert window.imported_j == pytest.approx(1000 * 30)


def test_unknown_time_counts_at_the_limit() -> None:
    start = 1_800_000_900.0
    window = ImportWindow(900, assumed_w=2500)
    window.record(start + 300, 0)  # started mid-window: the first 300 s are unknown
    window.advance(start + 400)
    assert window.imported_j == pytest.approx(2500 * 300)
    window.record(start + 400, 500)
    window.advance(start + 400 + MAX_GAP_S + 100)  # the meter went silent: held for MAX_GAP_S, then the limit
    assert window.imported_j == pytest.approx(2500 * 300 + 500 * MAX_GAP_S + 2500 * 100)
    window.record(start + 700, None)  # stale: nothing is held any more
    window.advance(start + 800)
    assert window.imported_j == pytest.approx(2500 * 300 + 500 * MAX_GAP_S + 2500 * 100 + 2500 * 180)


def test_a_long_sleep_keeps_the_state_small() -> None:
    window = ImportWindow(900, assumed_w=2500)
    window.record(T0, 1000)
    window.advance(T0 + 365 * 86400)
    assert window.start == window_bounds(T0 + 365 * 86400, 900)[0]
    assert window.imported_j <= 2500 * 900


def test_average_rate_spreads_the_savings_over_the_rest() -> None:
    # Quarter hour at 2.5 kW: 625 Wh. Halfway, 200 Wh used: the rest may run at (625 − 200) Wh / 450 s.
    rate = average_rate_w(2500, 900, 200 * 3600, T0 + 450, T0 + 900)
    assert rate == pytest.approx((625 - 200) * 3600 / 450)
    # On budget exactly: the limit itself.
    assert average_rate_w(2500, 900, 2500 * 450, T0 + 450, T0 + 900) == pytest.approx(2500)
    # The last seconds never burst: savings spread over MIN_HORIZON_S at least.
    late = average_rate_w(2500, 900, 2500 * 890 - 1000 * 10, T0 + 890, T0 + 900)
    assert late == pytest.approx(2500 + 1000 * 10 / MIN_HORIZON_S)
    # Overdrawn: below the limit for the rest (negative when it cannot be saved).
    assert average_rate_w(2500, 900, 2500 * 900, T0 + 450, T0 + 900) == pytest.approx(0)
    assert average_rate_w(2500, 900, 3000 * 900, T0 + 890, T0 + 900) < 0


def test_site_limit_names_the_binding_limit() -> None:
    assert site_limit(None, None, 500) is None
    cap = site_limit(11000, None, 6800)
    assert cap == SiteLimit(4200, "site import cap 11 kW", 6800)
    average = site_limit(11000, (2500, 900, 200 * 3600, T0 + 450, T0 + 900), 1000)
    assert average is not None
    assert average.label == "quarter-hour average 2.5 kW: 0.425 kWh of 0.625 kWh left, 450 s to go"
    assert average.headroom_w == pytest.approx((625 - 200) * 3600 / 450 - 1000)
    over = site_limit(3000, None, 3500)
    assert over is not None
    assert over.headroom_w == 0
    assert over.describe() == "site import cap 3 kW: the house alone imports 3 500 W, so charge points get 0 W"
    stale = site_limit(11000, None, None)
    assert stale is not None
    assert stale.minimums_only
    assert "at most their minimum" in stale.describe()


# -- site limits in a round ----------------------------------------------------------------------------------------


def capped_round(mode: str, house_w: float, cap_w: float, *, grid: bool = True) -> dict[str, str | float]:
    twc = point("twc-0001", max_a=32)  # 1 440–7 680 W
    limit = site_limit(cap_w, None, house_w if grid else None)
    settings_ = Settings(mode=mode, reserve_w=0, delays=NO_DELAYS)  # type: ignore[arg-type]
    reading = GridReading(house_w - 8000 if mode == "solar" else house_w, T0) if grid else None
    allocation, _ = allocate(Inputs((twc,), (), reading, None, settings_, site=limit), None, T0)
    result = by_id(allocation)["twc-0001"]
    return {"w": result.allocated_w, "reason": result.reason}


def test_the_cap_binds_now_and_says_so() -> None:
    result = capped_round("now", 6800, 11000)
    assert result["w"] == 4080.0  # 17 A of the 4 200 W left
    assert "under the site import cap 11 kW" in str(result["reason"])


def test_the_cap_binds_solar_too() -> None:
    # 8 000 W exported beyond the house: solar would give the car its maximum, the cap leaves 3 000 W.
    result = capped_round("solar", 2000, 5000)
    assert result["w"] == 2880.0
    assert "site import cap 5 kW" in str(result["reason"])


def test_the_house_alone_over_the_cap_stops_every_mode() -> None:
    for mode in ("now", "minsolar", "solar"):
        result = capped_round(mode, 11500, 11000)
        assert result["w"] == 0.0
        assert "the house alone imports 11 500 W" in str(result["reason"]), mode


def test_a_stale_grid_meter_with_a_site_limit_holds_minimums() -> None:
    assert capped_round("now", 0, 11000, grid=False)["w"] == 1440.0
    assert capped_round("minsolar", 0, 11000, grid=False)["w"] == 1440.0
    assert capped_round("solar", 0, 11000, grid=False)["w"] == 0.0
    assert capped_round("now", 0, 1000, grid=False)["w"] == 0.0  # even the minimum would break the cap


# -- properties ----------------------------------------------------------------------------------------------------


def controllable_draw(inputs: Inputs) -> float:
    return sum(p.power_w for p in inputs.charge_points if p.controllable and p.online)


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios(), house_w=st.floats(0, 30_000), cap_w=st.floats(500, 30_000))
def test_import_stays_under_the_cap_for_any_house_load(scenario: Inputs, house_w: float, cap_w: float) -> None:
    grid = GridReading(house_w + controllable_draw(scenario), T0)
    inputs = replace(scenario, grid=grid, site=site_limit(cap_w, None, house_w))
    allocation, _ = allocate(inputs, None, T0)
    allocated = sum(r.allocated_w for r in allocation.points if r.charge_point.controllable)
    if house_w >= cap_w:
        assert allocated == 0
    else:
        assert house_w + allocated <= cap_w + 1e-6


@settings(max_examples=60, deadline=None)
@given(
    scenario=scenarios(),
    limit_w=st.floats(1000, 12_000),
    step_s=st.sampled_from((1.0, 5.0, 10.0, 30.0, 60.0)),
    offset_s=st.floats(0, 800),
    houses=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40),
)
def test_the_window_average_stays_under_the_limit_when_the_house_allows_it(
    scenario: Inputs, limit_w: float, step_s: float, offset_s: float, houses: list[tuple[float, bool]]
) -> None:
    """Cars follow at once; the house changes every step but never alone exceeds the limit. A hungry car in `now`
    comes and goes, so the window saves up while it is away and is tested at its edge when it is back."""
    hungry = point("hungry", volts=230, phases=3, min_a=1, max_a=32, mode="now", plugged_in_at=T0 - 1e6)
    start, end = window_bounds(T0, 900)
    window = ImportWindow(900, assumed_w=limit_w)
    now, timers, index = start + offset_s, None, 0
    while now < end:
        fraction, plugged = houses[index % len(houses)]
        house = fraction * limit_w
        cars_now = (*scenario.charge_points, replace(hungry, plugged_in=plugged))
        window.advance(now)
        limit = site_limit(None, (limit_w, 900, window.imported_j, now, window.end), house)
        grid = GridReading(house + controllable_draw(scenario), now)
        allocation, timers = allocate(replace(scenario, charge_points=cars_now, grid=grid, site=limit), timers, now)
        cars = sum(r.allocated_w for r in allocation.points if r.charge_point.controllable)
        window.record(now, house + cars)
        now, index = min(end, now + step_s), index + 1
    window.advance(end)
    assert window.closed_start == start
    assert window.closed_j <= limit_w * 900 * (1 + 1e-9) + 1e-3


def test_what_the_window_already_imported_counts() -> None:
    """A house that imported twice the limit for half a window leaves the cars nothing for the rest of it."""
    start, end = window_bounds(T0, 900)
    window = ImportWindow(900, assumed_w=2500)
    for second in range(0, 450, 30):
        window.record(start + second, 5000)  # the first half at twice the limit (the house alone)
    window.advance(start + 450)
    counted = site_limit(None, (2500, 900, window.imported_j, start + 450, end), 0)
    forgetting = site_limit(None, (2500, 900, 0.0, start + 450, end), 0)
    assert counted is not None
    assert forgetting is not None
    assert counted.headroom_w == 0
    assert forgetting.headroom_w > 2500
