"""Schedule windows through the engine on a fake clock: entering, leaving, midnight, precedence, runtime overrides.

T0 is Friday 2027-01-15 08:00 UTC = 09:00 in Berlin, the zone every test here uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chargebus_allocator import schedules
from chargebus_allocator.engine import TICK_S, Engine, Round
from chargebus_allocator.overrides import CHARGE_NOW, MODE, SCHEDULES, SCHEDULES_ENABLED, evse_key

from services.allocator.tests.alloc_builders import T0, VIN_A, feed_evse, feed_vehicle, make_engine

BERLIN = ZoneInfo("Europe/Berlin")
TWC = "twc-0001"
OTHER = "twc-0002"
CAR = f"car-{VIN_A}"
FULL_W = 32 * 240  # 7 680 W
CAPPED_W = 12 * 240  # a 3 000 W window at 240 V: 12 A
DISABLED = False  # the value of `schedules_enabled/set false`


def at(day: int, hour: int, minute: int = 0, second: float = 0) -> float:
    """A local time in Berlin in January 2027 (the 15th is a Friday)."""
    return datetime(2027, 1, day, hour, minute, tzinfo=BERLIN).timestamp() + second


def window(days: list[str], start: str, end: str, **scope: Any) -> dict[str, Any]:
    return {"days": days, "start": start, "end": end, "power_w": 3000, **scope}


def engine_with(windows: list[dict[str, Any]], mode: str = "off", **allocator: Any) -> Engine:
    engine = make_engine(mode=mode, timezone="Europe/Berlin", schedules=windows, **allocator)
    feed_evse(engine, TWC)
    return engine


def power(result: Round) -> dict[str, float | None]:
    return {result_point.charge_point.id: result_point.allocated_w for result_point in result.allocation.points}


def round_at(engine: Engine, now: float, grid_w: float = 0.0) -> Round:
    engine.meter_message("p/power/grid", str(grid_w).encode(), now)  # keep the grid meter fresh
    return engine.compute(now)


def test_a_window_opens_and_closes_exactly_at_its_edges_on_a_fake_clock() -> None:
    engine = engine_with([window(["fri"], "10:00", "11:30")])
    opens, closes = at(15, 10), at(15, 11, 30)
    now = T0 + 1.3  # off the 5 s tick grid, so only the edge wake-ups can land on the edges
    changes: list[tuple[float, float | None]] = []
    last: float | None = None
    while now < opens + 3 * 3600:
        result = engine.compute(now)
        for setpoint in result.setpoints:
            if setpoint.evse_id == TWC and setpoint.power_w != last:
                changes.append((now, setpoint.power_w))
                last = setpoint.power_w
        if opens - TICK_S < now < opens:
            assert result.next_wake == pytest.approx(opens, abs=0.01)
        now = result.next_wake
    assert [watts for _, watts in changes] == [0, CAPPED_W, 0]
    assert changes[1][0] == pytest.approx(opens, abs=0.01)
    assert changes[2][0] == pytest.approx(closes, abs=0.01)


def test_while_open_the_window_shows_as_now_with_its_cap_in_the_reason() -> None:
    engine = engine_with([window(["fri"], "09:00", "10:00")])
    result = engine.compute(T0)
    assert result.state is not None
    (group,) = result.state.groups
    assert (group.mode, group.state, group.allocated_w) == ("now", "charging", CAPPED_W)
    assert "schedule window, up to 3 000 W" in group.reason
    closed = engine.compute(at(15, 10))
    assert closed.state is not None
    assert (closed.state.groups[0].mode, closed.state.groups[0].allocated_w) == ("off", 0)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        (at(15, 3), False),  # Friday 03:00: Thursday is not one of its days
        (at(15, 22, 59, 59), False),
        (at(15, 23), True),
        (at(16, 0), True),  # past midnight: Friday's window still runs
        (at(16, 3), True),
        (at(16, 5, 59, 59), True),
        (at(16, 6), False),  # the end is exclusive
        (at(16, 23, 30), False),  # Saturday is not one of its days
        (at(17, 2), False),
    ],
)
def test_a_window_across_midnight_belongs_to_its_start_day(when: float, *, open_: bool) -> None:
    engine = engine_with([window(["fri"], "23:00", "06:00")])
    assert power(engine.compute(when))[TWC] == (CAPPED_W if open_ else 0)


def test_across_midnight_the_engine_wakes_at_both_edges() -> None:
    engine = engine_with([window(["fri"], "23:00", "06:00")])
    assert engine.compute(at(15, 22, 59, 58)).next_wake == pytest.approx(at(15, 23), abs=0.01)
    assert power(engine.compute(at(15, 23, 0, 0.002)))[TWC] == CAPPED_W
    assert engine.compute(at(16, 5, 59, 57)).next_wake == pytest.approx(at(16, 6), abs=0.01)
    assert power(engine.compute(at(16, 6, 0, 0.002)))[TWC] == 0


def test_precedence_charge_now_over_schedule_over_modes() -> None:
    """Friday 09:00-12:00 capped at 3 000 W for TWC only; OTHER is out of its scope."""
    engine = engine_with([window(["fri"], "09:00", "12:00", evse_id=TWC)], mode="solar")
    feed_evse(engine, OTHER)
    now = T0

    def step(expected: dict[str, float]) -> None:
        nonlocal now
        now += 1
        assert power(round_at(engine, now)) == expected

    step({TWC: CAPPED_W, OTHER: 0})  # schedule beats the global solar mode (no surplus)
    engine.overrides.put(evse_key(TWC, "mode"), "off", now)
    step({TWC: CAPPED_W, OTHER: 0})  # and its EVSE's own mode, off…
    engine.overrides.put(evse_key(TWC, "mode"), "now", now)
    step({TWC: CAPPED_W, OTHER: 0})  # …or now: the cap still holds
    engine.overrides.put(MODE, "now", now)
    step({TWC: CAPPED_W, OTHER: FULL_W})  # a global `now` serves the others at full power
    engine.overrides.put(evse_key(TWC, CHARGE_NOW), now + 60, now)
    step({TWC: FULL_W, OTHER: FULL_W})  # charge-now beats the schedule's cap
    now += 60
    step({TWC: CAPPED_W, OTHER: FULL_W})  # its timer ended: the window's cap again
    engine.overrides.put(MODE, "off", now)
    engine.overrides.put(CHARGE_NOW, now + 60, now)
    step({TWC: FULL_W, OTHER: FULL_W})  # the global charge-now too, for everyone
    engine.overrides.put(CHARGE_NOW, None, now)
    step({TWC: CAPPED_W, OTHER: 0})


def test_a_vin_scoped_window_follows_the_car_into_a_merged_charge_point() -> None:
    engine = engine_with([window(["fri"], "09:00", "12:00", vin=VIN_A)])
    feed_evse(engine, OTHER)
    feed_evse(engine, CAR)
    feed_vehicle(engine, VIN_A)
    assert power(engine.compute(T0)) == {TWC: 0, OTHER: 0, CAR: CAPPED_W}  # the car alone: its own charge point
    feed_evse(engine, OTHER, vin=VIN_A)
    result = engine.compute(T0 + 1)
    assert power(result) == {TWC: 0, OTHER: CAPPED_W}
    by_id = {sp.evse_id: (sp.power_w, sp.charge) for sp in result.setpoints}
    assert by_id[OTHER] == (CAPPED_W, None)
    assert by_id[CAR] == (None, True)


def test_schedules_set_replaces_the_configured_windows_and_default_brings_them_back() -> None:
    engine = engine_with([window(["fri"], "09:00", "10:00")])
    assert power(engine.compute(T0))[TWC] == CAPPED_W
    replacement = schedules.parse_schedules([{"days": ["fri"], "start": "12:00", "end": "13:00", "current_a": 8}])
    engine.overrides.put(SCHEDULES, replacement, T0)
    assert power(engine.compute(T0 + 1))[TWC] == 0  # the configured window no longer counts
    assert engine.compute(at(15, 11, 59, 58)).next_wake == pytest.approx(at(15, 12), abs=0.01)
    result = engine.compute(at(15, 12))
    assert power(result)[TWC] == 8 * 240  # current_a at the charge point's voltage
    assert result.state is not None
    (listed,) = result.state.overrides
    assert (listed.key, listed.value[0]["current_a"], listed.value[0]["start"]) == (SCHEDULES, 8, "12:00")
    engine.overrides.put(SCHEDULES, (), at(15, 12))  # an empty list: no windows at all
    assert power(engine.compute(at(15, 12, 1)))[TWC] == 0
    engine.overrides.put(SCHEDULES, None, T0)
    assert power(engine.compute(T0 + 2))[TWC] == CAPPED_W


def test_schedules_enabled_false_switches_every_window_off() -> None:
    engine = engine_with([window(["fri"], "09:00", "10:00")])
    assert power(engine.compute(T0))[TWC] == CAPPED_W
    engine.overrides.put(SCHEDULES_ENABLED, DISABLED, T0)
    engine.overrides.put(SCHEDULES, schedules.parse_schedules([window(["fri"], "09:00", "11:00")]), T0)
    result = engine.compute(T0 + 1)
    assert power(result)[TWC] == 0
    assert result.state is not None
    assert {(item.key, str(item.value)[:5]) for item in result.state.overrides} >= {(SCHEDULES_ENABLED, "False")}
    assert engine.compute(at(15, 9, 59, 58)).next_wake == pytest.approx(at(15, 10, 0, 3), abs=0.01)  # no edge
    engine.overrides.put(SCHEDULES_ENABLED, not DISABLED, T0)
    assert power(engine.compute(at(15, 10, 30)))[TWC] == CAPPED_W  # the replacement window, 09:00-11:00
