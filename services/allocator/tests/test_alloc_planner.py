"""The departure planner (planner.py): examples with numbers, and properties on random days."""

from __future__ import annotations

import math

import pytest
from chargebus_allocator.model import ChargePoint, Circuit
from chargebus_allocator.planner import (
    QUARTER_S,
    TOLERANCE_WH,
    Goal,
    Outlook,
    Plan,
    Slot,
    plan_jointly,
)
from hypothesis import given, settings
from hypothesis import strategies as st

#: Midnight UTC, on a quarter hour.
T0 = 1_796_601_600.0
HOUR = 3600.0


def car(n: int, *, circuit: str | None = "garage", max_w: float = 7360.0, priority: int = 0) -> ChargePoint:
    return ChargePoint(
        id=f"twc-000{n}", min_power_w=1380, max_power_w=max_w, step_w=230, phases=1, circuit=circuit,
        wiring="L1", priority=priority,
    )  # fmt: skip


def hourly(prices: list[float], start: float = T0) -> tuple[Slot, ...]:
    return tuple(Slot(start + h * HOUR, start + (h + 1) * HOUR, price) for h, price in enumerate(prices))


def energy_wh(plan: Plan) -> float:
    """What the slots draw, the sun's part in them included."""
    return sum(slot.power_w * (slot.end - slot.start) / HOUR for slot in plan.slots)


GARAGE = (Circuit("garage", 32, phases=1),)  # 7 360 W at 230 V


def test_cheapest_hours_before_departure() -> None:
    prices = [0.30, 0.30, 0.10, 0.12, 0.30, 0.30, 0.30, 0.30]
    goal = Goal(car(1), needed_wh=11_000, by=T0 + 8 * HOUR, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=hourly(prices)), GARAGE, T0)["twc-0001"]
    assert plan.outcome == "on_track"
    assert math.isclose(energy_wh(plan), 11_000, abs_tol=TOLERANCE_WH)
    assert all(slot.start >= T0 + 2 * HOUR and slot.end <= T0 + 4 * HOUR for slot in plan.slots)
    assert math.isclose(plan.cost, 7.36 * 0.10 + (11.0 - 7.36) * 0.12, rel_tol=1e-9)


def test_a_flat_price_charges_as_late_as_possible() -> None:
    goal = Goal(car(1), needed_wh=7360, by=T0 + 10 * HOUR, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=hourly([0.25] * 12)), GARAGE, T0)["twc-0001"]
    assert [(slot.start, slot.end, slot.power_w) for slot in plan.slots] == [(T0 + 9 * HOUR, T0 + 10 * HOUR, 7360.0)]


def test_no_tariff_is_a_flat_price() -> None:
    goal = Goal(car(1), needed_wh=3680, by=T0 + 5 * HOUR, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(), GARAGE, T0)["twc-0001"]
    assert plan.slots[-1].end == T0 + 5 * HOUR
    assert plan.cost == 0.0  # nothing to price it with


def test_the_forecast_sun_covers_the_need_so_nothing_is_bought() -> None:
    sun = hourly([0, 0, 0, 0, 0, 0, 0, 0, 3000, 5000, 6000, 6000, 5000, 3000, 0, 0])
    goal = Goal(car(1), needed_wh=12_000, by=T0 + 16 * HOUR, strategy="cheapest", solar_welcome=True)
    outlook = Outlook(grid_price=hourly([0.10] * 16), solar_w=sun, house_load_w=(400.0,))
    plan = plan_jointly([goal], outlook, GARAGE, T0)["twc-0001"]
    assert plan.grid_wh == 0.0
    assert plan.slots == ()
    assert plan.solar_expected_wh >= 12_000 - TOLERANCE_WH
    assert plan.outcome == "on_track"


def test_only_what_the_sun_will_not_bring_is_bought() -> None:
    sun = hourly([0, 0, 0, 0, 0, 0, 0, 0, 2400, 2400, 0, 0])  # 2 000 W over the house for two hours
    goal = Goal(car(1), needed_wh=10_000, by=T0 + 12 * HOUR, strategy="cheapest", solar_welcome=True)
    outlook = Outlook(grid_price=hourly([0.20] * 12), solar_w=sun, house_load_w=(400.0,))
    plan = plan_jointly([goal], outlook, GARAGE, T0)["twc-0001"]
    assert math.isclose(plan.solar_expected_wh, 4000, abs_tol=1)
    assert math.isclose(plan.grid_wh, 6000, abs_tol=TOLERANCE_WH + 1)


def test_solar_only_buys_nothing_and_says_what_is_missing() -> None:
    sun = hourly([0, 0, 2400, 2400])
    goal = Goal(car(1), needed_wh=10_000, by=T0 + 4 * HOUR, strategy="solar_only", solar_welcome=True)
    plan = plan_jointly([goal], Outlook(solar_w=sun), GARAGE, T0)["twc-0001"]
    assert plan.slots == ()
    assert plan.outcome == "at_risk"
    assert "solar_only" in plan.reason
    assert "6.0 kWh" in plan.reason


def test_two_cars_on_one_circuit_get_a_joint_plan_where_naive_plans_collide() -> None:
    """Both need one full hour at 7.36 kW before 02:00; the 32 A circuit carries one car at a time. Planned alone,
    each takes the cheap hour and, sharing it, both would get half and miss."""
    prices = hourly([0.10, 0.30])
    goals = [Goal(car(n), needed_wh=7360, by=T0 + 2 * HOUR, strategy="cheapest", solar_welcome=False) for n in (1, 2)]
    naive = [plan_jointly([goal], Outlook(grid_price=prices), GARAGE, T0)[goal.point.key] for goal in goals]
    assert naive[0].slots == naive[1].slots  # both on the cheap hour: together 14.7 kW on a 7.36 kW circuit
    joint = plan_jointly(goals, Outlook(grid_price=prices), GARAGE, T0)
    assert all(plan.outcome == "on_track" for plan in joint.values())
    assert {plan.slots[0].start for plan in joint.values()} == {T0, T0 + HOUR}
    assert_within_circuit(joint, GARAGE[0])


def test_the_lower_priority_plan_is_at_risk_with_a_reason() -> None:
    prices = hourly([0.10])
    goals = [
        Goal(car(1, priority=5), needed_wh=7360, by=T0 + HOUR, strategy="cheapest", solar_welcome=False),
        Goal(car(2), needed_wh=7360, by=T0 + HOUR, strategy="cheapest", solar_welcome=False),
    ]
    plans = plan_jointly(goals, Outlook(grid_price=prices), GARAGE, T0)
    assert plans["twc-0001"].outcome == "on_track"
    assert plans["twc-0002"].outcome == "at_risk"
    assert "circuit garage" in plans["twc-0002"].reason


def test_continuous_takes_one_run() -> None:
    prices = hourly([0.10, 0.40, 0.10, 0.40, 0.20, 0.20, 0.40, 0.40])
    goal = Goal(car(1, circuit=None), needed_wh=14_720, by=T0 + 8 * HOUR, strategy="continuous", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=prices), (), T0)["twc-0001"]
    assert [(slot.start, slot.end) for slot in plan.slots] == [(T0 + 4 * HOUR, T0 + 6 * HOUR)]


def test_the_present_quarter_is_not_started_alone_for_a_few_minutes() -> None:
    now = T0 + 10 * 60  # 5 minutes left of the first quarter
    prices = (Slot(T0, T0 + QUARTER_S, 0.05), *hourly([0.30, 0.30], start=T0 + QUARTER_S))
    goal = Goal(car(1), needed_wh=500, by=T0 + 2 * HOUR, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=prices), GARAGE, now)["twc-0001"]
    assert plan.slots
    assert plan.slots[0].start >= T0 + QUARTER_S
    assert all(slot.end - slot.start >= QUARTER_S for slot in plan.slots)


def test_a_running_slot_keeps_its_power_to_the_end_of_its_quarter() -> None:
    now = T0 + 10 * 60
    prices = (Slot(T0, T0 + QUARTER_S, 0.40), *hourly([0.05, 0.05], start=T0 + QUARTER_S))
    goal = Goal(car(1), 3000, by=T0 + 2 * HOUR, strategy="cheapest", solar_welcome=False, running_w=5000)
    plan = plan_jointly([goal], Outlook(grid_price=prices), GARAGE, now)["twc-0001"]
    assert plan.power_at(now) == 5000
    assert plan.slots[0].end == T0 + QUARTER_S


def test_past_departure_and_not_met_is_overrun_at_full_power() -> None:
    goal = Goal(car(1), 4000, by=T0 - 60, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(), GARAGE, T0 + 60)["twc-0001"]
    assert plan.outcome == "overrun"
    assert plan.power_at(T0 + 60) == 7360


def test_the_site_cap_binds_the_plans() -> None:
    goals = [
        Goal(car(n, circuit=None), needed_wh=20_000, by=T0 + 4 * HOUR, strategy="cheapest", solar_welcome=False)
        for n in (1, 2)
    ]
    outlook = Outlook(grid_price=hourly([0.1] * 4), house_load_w=(1000.0,), max_import_w=11_000)
    plans = plan_jointly(goals, outlook, (), T0)
    for q in range(16):
        when = T0 + q * QUARTER_S + 1
        total = sum(plan.power_at(when) or 0.0 for plan in plans.values())
        assert total <= 10_000 + 1e-6


def assert_within_circuit(plans: dict[str, Plan], circuit: Circuit, voltage: float = 230.0) -> None:
    edges = sorted({edge for plan in plans.values() for slot in plan.slots for edge in (slot.start, slot.end)})
    for start in edges:
        total = sum(plan.power_at(start) or 0.0 for plan in plans.values())
        assert total / voltage <= circuit.max_current_a + 1e-6, f"{total} W at {start}"


prices_st = st.lists(st.floats(min_value=-0.1, max_value=0.6, allow_nan=False), min_size=1, max_size=30)
suns_st = st.lists(st.floats(min_value=0, max_value=9000, allow_nan=False), min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    prices=prices_st,
    sun=suns_st,
    needs=st.lists(st.floats(min_value=0, max_value=60_000), min_size=1, max_size=3),
    hours=st.lists(st.floats(min_value=0.1, max_value=30), min_size=3, max_size=3),
    limit_a=st.sampled_from([16.0, 32.0, 40.0, 63.0]),
    offset=st.floats(min_value=0, max_value=QUARTER_S - 1),
    strategies=st.lists(st.sampled_from(["cheapest", "continuous", "solar_only"]), min_size=3, max_size=3),
    cap=st.one_of(st.none(), st.floats(min_value=0, max_value=20_000)),
)
def test_plans_respect_every_limit_and_an_on_track_plan_meets_its_target(  # noqa: PLR0917 - hypothesis draws
    prices: list[float],
    sun: list[float],
    needs: list[float],
    hours: list[float],
    limit_a: float,
    offset: float,
    strategies: list[str],
    cap: float | None,
) -> None:
    now = T0 + offset
    circuit = Circuit("garage", limit_a, phases=1)
    goals = [
        Goal(car(n), needed_wh=need, by=now + hours[n] * HOUR, strategy=strategies[n], solar_welcome=True)  # type: ignore[arg-type]
        for n, need in enumerate(needs)
    ]
    outlook = Outlook(grid_price=hourly(prices), solar_w=hourly(sun), house_load_w=(500.0,), max_import_w=cap)
    plans = plan_jointly(goals, outlook, (circuit,), now)
    assert set(plans) == {goal.point.key for goal in goals}
    assert_within_circuit(plans, circuit)
    for goal in goals:
        plan = plans[goal.point.key]
        for slot in plan.slots:
            assert now <= slot.start < slot.end <= goal.by
            assert goal.point.min_power_w - 1e-6 <= slot.power_w <= goal.point.max_power_w + 1e-6
        if goal.strategy == "solar_only":
            assert plan.grid_wh == 0
        delivered = plan.solar_expected_wh + plan.grid_wh
        assert delivered <= goal.needed_wh + goal.point.max_power_w * QUARTER_S / HOUR  # no more than a quarter over
        if plan.outcome == "on_track":
            assert delivered >= goal.needed_wh - TOLERANCE_WH - 1  # slot powers are rounded to 0.1 W
    if cap is not None:
        edges = sorted({edge for plan in plans.values() for slot in plan.slots for edge in (slot.start, slot.end)})
        for when in edges:
            grid = sum(plan.power_at(when) or 0.0 for plan in plans.values())
            sun_now = sun[int((when - T0) // HOUR)] if int((when - T0) // HOUR) < len(sun) else 0.0
            assert grid <= max(0.0, cap - 500 + sun_now) + 1.0


@settings(max_examples=100, deadline=None)
@given(
    need=st.floats(min_value=100, max_value=80_000),
    hours=st.floats(min_value=0.5, max_value=24),
    prices=prices_st,
)
def test_a_feasible_single_plan_is_on_track(need: float, hours: float, prices: list[float]) -> None:
    """With the whole circuit to itself, a plan the hours before departure can carry is always made."""
    now = T0
    by = now + round(hours * 4) * QUARTER_S
    room_wh = 7360 * (by - now) / HOUR
    goal = Goal(car(1), needed_wh=need, by=by, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=hourly(prices)), GARAGE, now)["twc-0001"]
    if need <= room_wh - 1380 * QUARTER_S / HOUR:  # leave a quarter at the minimum for rounding at the edge
        assert plan.outcome == "on_track", plan.reason
    else:
        assert plan.outcome in ("on_track", "at_risk")


def test_minutes_before_departure_the_present_quarter_is_bought_even_alone() -> None:
    """Found by bench/planner.py: at 07:15 with departure at 07:24, refusing the short present quarter missed it."""
    now = T0 + 15 * 60
    goal = Goal(car(1), needed_wh=400, by=T0 + 24 * 60, strategy="cheapest", solar_welcome=False)
    plan = plan_jointly([goal], Outlook(grid_price=hourly([0.3])), GARAGE, now)["twc-0001"]
    assert plan.outcome == "on_track"
    (slot,) = plan.slots
    assert (slot.start, slot.end) == (now, T0 + 24 * 60)
    assert slot.power_w == pytest.approx(400 / 0.15, abs=0.1)
