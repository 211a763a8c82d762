"""Departure plans through the engine on a fake clock: deadlines, needs, slots served like `now`, plan state.

Everything happens in Berlin in January 2027: the evening of Thursday the 14th to Friday the 15th 07:00.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chargebus.schema import PayloadError, PlanRequest
from chargebus_allocator import plans
from chargebus_allocator.engine import Engine, Round
from chargebus_allocator.overrides import PLAN, evse_key, vehicle_key
from chargebus_allocator.plans import CapacityLearner, next_local_time

from services.allocator.tests.alloc_builders import VIN_A, feed_evse, feed_vehicle, make_engine

BERLIN = ZoneInfo("Europe/Berlin")
TWC = "twc-0001"
FULL_W = 32 * 240


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2027, 1, day, hour, minute, tzinfo=BERLIN).timestamp()


def tariff(start: float, prices: list[float]) -> bytes:
    slots = [
        {
            "start": datetime.fromtimestamp(start + h * 3600, UTC).isoformat(),
            "end": datetime.fromtimestamp(start + (h + 1) * 3600, UTC).isoformat(),
            "price": price,
        }
        for h, price in enumerate(prices)
    ]
    return json.dumps({"v": 1, "currency": "EUR", "slots": slots}).encode()


#: 18:00 on the 14th to 08:00 on the 15th: dear in the evening, cheapest from 02:00 to 04:00.
NIGHT = tariff(at(14, 18), [0.40] * 5 + [0.30] * 3 + [0.12, 0.12] + [0.30] * 4)


def engine_with_car(**allocator: Any) -> Engine:
    settings = {"mode": "solar", "timezone": "Europe/Berlin", **allocator}
    engine = make_engine(**settings)
    feed_evse(engine, TWC, vin=VIN_A, plugged_in_at=datetime.fromtimestamp(at(14, 18), UTC))
    feed_vehicle(engine, VIN_A, soc_pct=50.0, charge_limit_pct=90.0)
    return engine


def set_plan(engine: Engine, key: str, now: float, **request: Any) -> None:
    engine.overrides.put(key, plans.store(PlanRequest.model_validate(request), engine.timezone, now), now)
    engine.plans_changed()


def round_at(engine: Engine, now: float, grid_w: float = 500.0) -> Round:
    engine.meter_message("p/power/grid", str(grid_w).encode(), now)
    return engine.compute(now)


def group(result: Round) -> dict[str, Any]:
    assert result.state is not None
    data = json.loads(result.state.model_dump_json())
    return data["groups"][0]  # type: ignore[no-any-return]


def test_a_soc_plan_buys_the_cheap_night_hours_and_serves_them_like_now() -> None:
    engine = engine_with_car(vehicles={VIN_A: {"battery_wh": 60_000}})
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(14, 20), soc_pct=80, by="07:00")
    evening = round_at(engine, at(14, 20))
    shown = group(evening)
    plan = shown["plan"]
    assert plan["status"] == "on_track"
    assert plan["by"] == "2027-01-15T06:00:00.000Z"  # 07:00 in Berlin
    assert plan["needed_wh"] == 20_000.0  # 30 % of 60 kWh at 90 % efficiency
    assert plan["currency"] == "EUR"
    starts = [slot["start"] for slot in plan["slots"]]
    assert starts[0] == "2027-01-15T01:00:00.000Z"  # 02:00 local: the cheapest hours first
    assert shown["allocated_w"] == 0  # solar mode, no surplus: it waits for its slot

    night = round_at(engine, at(15, 2, 30))
    served = group(night)
    assert served["allocated_w"] == FULL_W
    assert served["mode"] == "now"
    assert "departure plan slot" in served["reason"]
    assert night.allocation.grid_charging  # so battery_hold would keep a home battery out of it


def test_a_soc_plan_without_a_capacity_says_so_and_charges_by_its_mode() -> None:
    engine = engine_with_car()
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(14, 20), soc_pct=80, by="07:00")
    result = round_at(engine, at(15, 2, 30))
    assert group(result)["plan"]["status"] == "needs_capacity"
    assert group(result)["allocated_w"] == 0


def test_the_capacity_is_learned_from_the_cars_reports() -> None:
    learner = CapacityLearner()
    learner.observe(VIN_A, 40.0, 1000.0)
    learner.observe(VIN_A, 45.0, 4000.0)
    assert VIN_A not in learner.learned_wh  # 5 points are too few to trust
    learner.observe(VIN_A, 52.0, 8200.0)
    assert learner.learned_wh[VIN_A] == pytest.approx(60_000)
    learner.observe(VIN_A, 52.0, 0.0)  # a new charge: the counter restarted; what was learned stays
    assert learner.learned_wh[VIN_A] == pytest.approx(60_000)


def test_an_energy_plan_counts_the_session_energy_and_is_met() -> None:
    engine = make_engine(mode="solar", timezone="Europe/Berlin")
    feed_evse(engine, TWC, session_energy_wh=2000.0)
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, evse_key(TWC, PLAN), at(14, 20), energy_wh=9000, by="07:00")
    assert group(round_at(engine, at(14, 20)))["plan"]["needed_wh"] == 7000.0
    feed_evse(engine, TWC, session_energy_wh=9000.0)
    plan = group(round_at(engine, at(14, 21)))["plan"]
    assert plan["status"] == "met"
    assert plan["slots"] == []


def test_a_one_off_plan_overruns_past_departure_then_ends_when_met() -> None:
    engine = make_engine(mode="off", timezone="Europe/Berlin")
    feed_evse(engine, TWC, session_energy_wh=0.0)
    set_plan(engine, evse_key(TWC, PLAN), at(15, 6), energy_wh=50_000, by="07:00")
    late = round_at(engine, at(15, 7, 5))
    assert group(late)["plan"]["status"] == "overrun"
    assert group(late)["allocated_w"] == FULL_W  # mode off, yet the unmet plan keeps charging
    feed_evse(engine, TWC, session_energy_wh=50_000.0)
    done = round_at(engine, at(15, 7, 10))
    assert "event=plan_ended key=evse/twc-0001/plan" in done.events
    assert done.overrides_changed
    assert engine.overrides.plans() == {}
    assert group(round_at(engine, at(15, 7, 11)))["plan"] is None


def test_a_bad_tariff_is_refused_and_the_last_good_one_stays() -> None:
    engine = engine_with_car()
    assert engine.outlook_message("tariff_grid", NIGHT)
    with pytest.raises(PayloadError):
        engine.outlook_message("tariff_grid", b'{"v":1,"currency":"EUR","slots":[{"start":"x"}]}')
    assert engine.plan_book.tariff is not None
    assert not engine.outlook_message("tariff_grid", NIGHT)  # the same again is no change


def test_a_tariff_that_is_over_counts_as_absent() -> None:
    engine = engine_with_car(vehicles={VIN_A: {"battery_wh": 60_000}})
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(15, 9), soc_pct=80, by="23:00")
    plan = group(round_at(engine, at(15, 9)))["plan"]
    assert plan["cost"] == 0.0  # the night's tariff ended at 08:00: nothing to price with
    assert plan["slots"][-1]["end"] == "2027-01-15T22:00:00.000Z"  # no prices: as late as possible


def test_next_local_time_follows_weekdays_and_daylight_saving() -> None:
    friday_evening = at(15, 20)
    assert next_local_time("07:00", None, BERLIN, friday_evening) == at(16, 7)
    assert next_local_time("07:00", ["mon"], BERLIN, friday_evening) == at(18, 7)
    # The night clocks go forward (Sunday 28 March 2027): 07:00 is then UTC+2.
    spring = datetime(2027, 3, 27, 22, tzinfo=BERLIN).timestamp()
    expected = datetime(2027, 3, 28, 7, tzinfo=BERLIN)
    assert next_local_time("07:00", None, BERLIN, spring) == expected.timestamp()
    assert expected.utcoffset() == timedelta(hours=2)
    # 02:30 does not exist that night: like a schedule window's edge, it means the jump's instant (01:00 UTC).
    assert next_local_time("02:30", None, BERLIN, spring) == datetime(2027, 3, 28, 1, tzinfo=UTC).timestamp()


def test_replanned_at_least_every_quarter_hour() -> None:
    engine = engine_with_car(vehicles={VIN_A: {"battery_wh": 60_000}})
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(14, 20), soc_pct=80, by="07:00")
    round_at(engine, at(14, 20))
    first = engine.plan_book.planned_at
    round_at(engine, at(14, 20, 10))
    assert engine.plan_book.planned_at == first
    round_at(engine, at(14, 20, 15))
    assert engine.plan_book.planned_at == at(14, 20, 15)


def test_battery_hold_is_on_in_the_round_a_planned_slot_starts_and_off_when_it_ends() -> None:
    engine = engine_with_car(vehicles={VIN_A: {"battery_wh": 60_000}}, battery_meter="battery")
    engine.outlook_message("tariff_grid", NIGHT)
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(14, 20), soc_pct=80, by="07:00")
    battery = json.dumps({"v": 1, "power_w": 400, "soc_pct": 60}).encode()

    def hold_at(now: float) -> bool | None:
        engine.meter_message("p/power/battery", battery, now)
        return round_at(engine, now).battery_hold

    assert hold_at(at(14, 20)) is False  # evening: no slot, nothing from the grid
    plan = engine.plan_book.planned[VIN_A].plan
    assert plan is not None
    first = plan.slots[0]
    assert hold_at(first.start) is True  # the slot's first round: held in the same round the car is told to go
    feed_vehicle(engine, VIN_A, soc_pct=80.0, charge_limit_pct=90.0)  # it charged: the target is reached
    assert hold_at(first.start + 60) is False


def test_forecast_sun_before_departure_is_counted_and_not_bought() -> None:
    engine = engine_with_car(vehicles={VIN_A: {"battery_wh": 60_000}}, house_load_w=[500])
    engine.outlook_message("tariff_grid", tariff(at(15, 8), [0.10] * 10))
    sun = [
        {
            "start": datetime.fromtimestamp(at(15, 8) + h * 3600, UTC).isoformat(),
            "end": datetime.fromtimestamp(at(15, 8) + (h + 1) * 3600, UTC).isoformat(),
            "power_w": 6000,
        }
        for h in range(10)
    ]
    assert engine.outlook_message("forecast_solar", json.dumps({"v": 1, "slots": sun}).encode())
    set_plan(engine, vehicle_key(VIN_A, PLAN), at(15, 8), soc_pct=80, by="17:00")
    plan = group(round_at(engine, at(15, 8)))["plan"]
    assert plan["status"] == "on_track"
    assert plan["grid_wh"] == 0.0
    assert plan["slots"] == []
    assert plan["solar_expected_wh"] >= plan["needed_wh"] - 1
    # In mode now the sun would not matter: everything is bought.
    engine.overrides.put("mode", "now", at(15, 8))
    engine.plans_changed()
    plan = group(round_at(engine, at(15, 8, 1)))["plan"]
    assert plan["solar_expected_wh"] == 0.0
    assert plan["grid_wh"] >= plan["needed_wh"] - 1


@pytest.mark.parametrize("seconds_before", [1, 30, 299, 899])
def test_a_slot_planned_just_before_a_quarter_boundary_keeps_charging_across_it(seconds_before: int) -> None:
    """Cheap until 03:00, needed: nearly all of it. Planned seconds before 02:00, the few seconds left of 01:45–02:00
    are not worth a start when the quarters after it carry the need; from 02:00 it charges, across the boundary."""
    engine = make_engine(mode="solar", timezone="Europe/Berlin")
    feed_evse(engine, TWC, session_energy_wh=0.0)
    now = at(15, 2) - seconds_before
    engine.outlook_message("tariff_grid", tariff(at(15, 0), [0.05, 0.05, 0.05, 0.40, 0.40]))
    left_h = (at(15, 3) - now) / 3600
    set_plan(engine, evse_key(TWC, PLAN), now, energy_wh=round(FULL_W * left_h * 0.98), by="05:00")
    first = group(round_at(engine, now))
    assert first["plan"]["status"] == "on_track", first["plan"]
    bought_now = first["plan"]["slots"][0]["start"] == datetime.fromtimestamp(now, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    assert (first["allocated_w"] > 0) == bought_now
    for offset in (seconds_before + 0.5, seconds_before + 60, seconds_before + 1800):
        shown = group(round_at(engine, now + offset))
        assert shown["plan"]["status"] == "on_track", shown["plan"]
        assert shown["allocated_w"] > 0, (offset, shown["reason"])


def test_a_learned_capacity_is_kept_in_the_state_file_and_read_back() -> None:
    engine = engine_with_car()
    for soc, added in ((40.0, 0.0), (45.0, 3000.0), (52.0, 7200.0)):
        feed_vehicle(engine, VIN_A, soc_pct=soc, charge_energy_added_wh=added, charge_limit_pct=90.0)
    assert engine.plan_book.learner.learned_wh[VIN_A] == pytest.approx(60_000)
    assert engine.compute(at(14, 20)).overrides_changed  # worth writing
    saved = engine.state_file()
    assert saved["capacity_wh"] == {VIN_A: 60_000}
    assert not engine.compute(at(14, 20) + 1).overrides_changed  # nothing new since
    # A restart reads it back, so an SoC plan is planned at once instead of waiting to learn again.
    again = engine_with_car()
    assert again.plan_book.learner.load(saved["capacity_wh"]) == []
    set_plan(again, vehicle_key(VIN_A, PLAN), at(14, 20), soc_pct=80, by="07:00")
    again.outlook_message("tariff_grid", NIGHT)
    assert group(round_at(again, at(14, 20)))["plan"]["status"] == "on_track"


def test_bad_learned_capacities_in_the_state_file_are_skipped_and_named() -> None:
    learner = CapacityLearner()
    problems = learner.load({VIN_A: 60_000, "NOTAVIN": 50_000, "5YJ3E1EA8KF000002": 5, "5YJ3E1EA8KF000003": True})
    assert learner.learned_wh == {VIN_A: 60_000.0}
    assert len(problems) == 3
    assert learner.load([1, 2]) == ["capacity_wh: expected an object of VIN → Wh"]


def test_a_fixed_departure_replaces_a_repeating_plans_weekdays_in_either_iso_form() -> None:
    from chargebus_allocator.commands import plan_request  # noqa: PLC0415 - only this test needs it

    weekly = PlanRequest.model_validate({"soc_pct": 80, "by": "07:00", "repeat": ["mon"]})
    for by in ("2027-01-15T07:00:00+01:00", "2027-01-15 07:00:00+01:00"):
        changed = plan_request({"by": by}, weekly, "soc_pct")
        assert changed is not None
        assert changed.repeat is None
    kept = plan_request({"by": "06:30"}, weekly, "soc_pct")
    assert kept is not None
    assert kept.repeat == ["mon"]
