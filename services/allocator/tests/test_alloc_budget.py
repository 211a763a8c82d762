"""Modes, their precedence, the solar budget and the stale grid meter (docs/allocation.md §2)."""

from __future__ import annotations

from chargebus_allocator.allocate import allocate
from chargebus_allocator.budget import (
    delayed,
    effective_budget_w,
    grid_is_stale,
    max_power_w,
    point_mode,
    served_first,
    solar_budget_w,
    solar_surplus_w,
)
from chargebus_allocator.model import GridReading, Inputs, Settings

from services.allocator.tests.alloc_builders import T0, by_id, point, run, watts


def test_mode_precedence() -> None:
    plain = point("twc-0001")
    assert point_mode(plain, "solar", None, T0) == "solar"
    assert point_mode(point("twc-0001", mode="off"), "solar", None, T0) == "off"
    scheduled = point("twc-0001", mode="off", schedule_cap_w=7400)
    assert point_mode(scheduled, "solar", None, T0) == "schedule"
    assert point_mode(scheduled, "solar", T0 + 1, T0) == "charge_now"
    assert point_mode(point("twc-0001", charge_now_until=T0 + 1), "off", None, T0) == "charge_now"
    assert point_mode(point("twc-0001", charge_now_until=T0), "off", T0 - 5, T0) == "off"  # both expired


def test_which_modes_wait_and_which_go_first() -> None:
    assert [served_first(m) for m in ("now", "schedule", "charge_now", "solar", "minsolar", "off")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert [delayed(m) for m in ("now", "solar", "minsolar", "charge_now")] == [False, True, True, False]


def test_schedule_caps_the_maximum() -> None:
    scheduled = point("twc-0001", schedule_cap_w=3000)
    assert max_power_w(scheduled, "schedule") == 3000
    assert max_power_w(scheduled, "charge_now") == 7680


def test_solar_arithmetic() -> None:
    assert solar_surplus_w(-3000, 1440, 100) == 4340
    assert solar_surplus_w(500, 0, 100) == -600
    assert solar_budget_w(-600, 0) == 0
    assert solar_budget_w(5000, 3840) == 1160
    assert solar_budget_w(None, 0) == 0
    assert effective_budget_w(1000, 1440, 0) == 1440  # minsolar keeps its minimums
    # A held minimum is paid from the surplus first: the grid covers only what the surplus lacks.
    assert effective_budget_w(2000, 1440, 1440) == 2880
    assert effective_budget_w(3000, 1440, 1440) == 3000


def test_a_grid_reading_is_stale_after_its_age_limit_or_when_missing() -> None:
    assert not grid_is_stale(GridReading(0, T0 - 30), 30, T0)
    assert grid_is_stale(GridReading(0, T0 - 31), 30, T0)
    assert grid_is_stale(None, 30, T0)


def test_now_first_then_solar_shares_what_is_left() -> None:
    fast = point("twc-0001", mode="now", max_a=10, power_w=2400)
    sun = point("twc-0002", power_w=0)
    # Surplus: 3 000 W exported + 2 400 W drawn by the now-point = 5 400 W; it takes 2 400 W, leaving 3 000 W.
    allocation, _ = run([fast, sun], mode="solar", grid_w=-3000, reserve_w=0)
    assert allocation.surplus_w == 5400
    assert watts(allocation) == {"twc-0001": 2400, "twc-0002": 2880}
    assert allocation.available_w == 3000


def test_now_can_leave_solar_with_nothing() -> None:
    fast = point("twc-0001", mode="now", max_a=32)
    sun = point("twc-0002")
    allocation, _ = run([fast, sun], mode="solar", grid_w=-3000, reserve_w=0)
    assert watts(allocation) == {"twc-0001": 7680, "twc-0002": 0}
    assert by_id(allocation)["twc-0002"].state == "kicked_out"


def test_minsolar_charges_at_the_minimum_without_surplus_and_solar_does_not() -> None:
    minsolar = point("twc-0001", mode="minsolar")
    solar = point("twc-0002", mode="solar")
    allocation, _ = run([minsolar, solar], mode="solar", grid_w=500, reserve_w=100)
    assert watts(allocation) == {"twc-0001": 1440, "twc-0002": 0}
    assert allocation.available_w == 1440


def test_minsolar_shares_a_surplus_above_its_minimums() -> None:
    allocation, _ = run([point("twc-0001"), point("twc-0002")], mode="minsolar", grid_w=-5000, reserve_w=0)
    assert watts(allocation) == {"twc-0001": 2400, "twc-0002": 2400}


def test_a_stale_grid_meter_means_no_solar_and_minimums_for_minsolar() -> None:
    solar = point("twc-0001", mode="solar")
    minsolar = point("twc-0002", mode="minsolar")
    allocation, _ = run([solar, minsolar], mode="solar", grid_w=-10_000, now=T0)
    assert watts(allocation)["twc-0001"] > 0
    stale, _ = run([solar, minsolar], mode="solar", grid_w=None)
    assert stale.grid_stale
    assert (stale.grid_w, stale.surplus_w) == (None, None)
    assert watts(stale) == {"twc-0001": 0, "twc-0002": 1440}
    assert by_id(stale)["twc-0001"].reason.endswith("(the grid meter is stale, so no solar surplus is assumed)")


def test_an_old_reading_is_stale_too() -> None:
    inputs = Inputs((point("twc-0001"),), grid=GridReading(-10_000, T0 - 60), settings=Settings(mode="solar"))
    allocation, _ = allocate(inputs, None, T0)
    assert allocation.grid_stale
    assert allocation.points[0].allocated_w == 0
    fresh, _ = allocate(inputs, None, T0 - 45)
    assert not fresh.grid_stale


def test_charge_now_acts_like_now_until_it_expires() -> None:
    twc = point("twc-0001")
    allocation, _ = run([twc], mode="off", charge_now_until=T0 + 3600)
    assert watts(allocation) == {"twc-0001": 7680}
    assert allocation.available_w is None
    assert (
        by_id(allocation)["twc-0001"].reason == "charging at 32 A (7 680 W): its maximum; charge now until 09:00 UTC."
    )
    expired, _ = run([twc], mode="off", charge_now_until=T0 + 3600, now=T0 + 3600)
    assert watts(expired) == {"twc-0001": 0}
    assert expired.available_w == 0
    assert by_id(expired)["twc-0001"].reason == "mode off: charging is switched off."
