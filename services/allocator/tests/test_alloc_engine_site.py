"""The battery and the site limits through the engine: meters in, setpoints, `battery_hold` and the `site` block out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chargebus.schema import to_json
from chargebus_allocator import commands, overrides
from chargebus_allocator.discovery import Features, static_entities
from chargebus_allocator.engine import Engine, Round
from chargebus_allocator.site import window_bounds

from services.allocator.tests.alloc_builders import T0, TOPICS, feed_evse, make_engine

TWC = "twc-0001"  # 240 V 1 phase, 6–32 A: 1 440–7 680 W


def meter(engine: Engine, name: str, payload: Any, now: float) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    assert engine.meter_message(TOPICS.power(name), data, now) == []


def setpoint_w(result: Round) -> float:
    (point,) = [p for p in result.allocation.points if p.charge_point.id == TWC]
    return point.allocated_w


def reason(result: Round) -> str:
    (point,) = [p for p in result.allocation.points if p.charge_point.id == TWC]
    return point.reason


def battery_engine(**allocator: Any) -> Engine:
    engine = make_engine(battery_meter="battery", **allocator)
    feed_evse(engine, TWC)
    return engine


def test_battery_hold_turns_on_in_the_round_the_car_starts_from_the_grid() -> None:
    engine = battery_engine(mode="solar")
    meter(engine, "grid", 300, T0)
    meter(engine, "battery", {"v": 1, "power_w": 500, "soc_pct": 60}, T0)
    first = engine.compute(T0)
    assert setpoint_w(first) == 0
    assert first.battery_hold is False  # published once at start, so a retained value is always there
    engine.overrides.put(overrides.MODE, "now", T0 + 1)
    second = engine.compute(T0 + 1)
    assert setpoint_w(second) == 7680
    assert second.battery_hold is True  # the same round, not the next one
    assert engine.compute(T0 + 2).battery_hold is None  # unchanged: nothing more to send
    engine.overrides.put(overrides.MODE, "solar", T0 + 3)
    assert engine.compute(T0 + 3).battery_hold is False


def test_no_hold_above_the_buffer_soc_and_none_without_a_battery() -> None:
    engine = battery_engine(mode="now")
    meter(engine, "grid", 300, T0)
    meter(engine, "battery", {"v": 1, "power_w": 0, "soc_pct": 93}, T0)
    assert engine.compute(T0).battery_hold is False
    plain = make_engine(mode="now")
    feed_evse(plain, TWC)
    meter(plain, "grid", 300, T0)
    assert plain.compute(T0).battery_hold is None


def test_battery_charging_below_the_priority_soc_keeps_the_surplus() -> None:
    engine = battery_engine()
    meter(engine, "grid", -1000, T0)  # 1 000 W exported while the battery takes 3 000 W
    meter(engine, "battery", {"v": 1, "power_w": -3000, "soc_pct": 40}, T0)
    assert setpoint_w(engine.compute(T0)) == 0
    meter(engine, "battery", {"v": 1, "power_w": -3000, "soc_pct": 55}, T0 + 1)
    assert setpoint_w(engine.compute(T0 + 1)) == 3840  # its 3 000 W + the 1 000 W exported


def test_soc_from_its_own_meter() -> None:
    engine = battery_engine(battery_soc_meter="battery_soc")
    meter(engine, "grid", -1000, T0)
    meter(engine, "battery", -3000, T0)
    meter(engine, "battery_soc", 70, T0)
    result = engine.compute(T0)
    assert setpoint_w(result) == 3840
    site = result.state.site if result.state is not None else None
    assert site is not None
    assert (site.battery_soc_pct, site.battery_w) == (70, -3000)


def test_a_stale_battery_meter_leaves_the_surplus_unknown() -> None:
    engine = battery_engine()
    meter(engine, "grid", -5000, T0)
    assert setpoint_w(engine.compute(T0)) == 0  # no battery reading yet
    meter(engine, "battery", -100, T0 + 1)
    assert setpoint_w(engine.compute(T0 + 1)) > 0
    meter(engine, "grid", -5000, T0 + 40)
    stale = engine.compute(T0 + 40)
    assert setpoint_w(stale) == 0
    assert any("battery's power is unknown" in notice.error for notice in stale.notices)


def test_the_cap_holds_in_now_and_the_house_is_measured() -> None:
    engine = make_engine(mode="now", max_import_w=9000)
    feed_evse(engine, TWC, power_w=0.0)
    meter(engine, "grid", 4000, T0)  # the house alone: 4 000 W
    result = engine.compute(T0)
    assert setpoint_w(result) == 4800  # 20 A of the 5 000 W left
    assert "under the site import cap 9 kW" in reason(result)
    assert result.state is not None
    assert result.state.site is not None
    assert (result.state.site.import_w, result.state.site.max_import_w) == (4000, 9000)


def test_grid_limit_lowers_the_cap_until_cleared() -> None:
    engine = make_engine(mode="now", max_import_w=9000)
    feed_evse(engine, TWC)
    meter(engine, "grid", 1000, T0)
    engine.overrides.put(overrides.GRID_LIMIT, 4200.0, T0)
    limited = engine.compute(T0)
    assert setpoint_w(limited) == 3120  # 13 A of 3 200 W
    assert "site import cap 4.2 kW" in reason(limited)
    engine.overrides.put(overrides.GRID_LIMIT, None, T0 + 1)
    assert setpoint_w(engine.compute(T0 + 1)) == 7680


def test_the_house_alone_over_the_cap_gives_zero_and_says_why() -> None:
    engine = make_engine(mode="now", max_import_w=9000)
    feed_evse(engine, TWC)
    meter(engine, "grid", 9500, T0)
    result = engine.compute(T0)
    assert setpoint_w(result) == 0
    assert (
        reason(result) == "kicked out: site import cap 9 kW: the house alone imports 9 500 W, so charge points get 0 W"
    )


def test_a_stale_grid_meter_with_a_site_limit_gives_minimums() -> None:
    engine = make_engine(mode="now", max_import_w=9000)
    feed_evse(engine, TWC)
    meter(engine, "grid", 1000, T0)
    assert setpoint_w(engine.compute(T0)) == 7680
    result = engine.compute(T0 + 40)
    assert setpoint_w(result) == 1440
    assert "at most their minimum" in reason(result)


def test_the_window_counts_what_was_imported() -> None:
    start, end = window_bounds(T0, 900)
    engine = make_engine(mode="now", import_average={"limit_w": 2500, "window_s": 900})
    feed_evse(engine, TWC)
    now = start
    while now < start + 450:  # the house alone imports 4 000 W for half the window
        meter(engine, "grid", 4000, now)
        engine.compute(now)
        now += 10
    meter(engine, "grid", 0, now)  # the house goes quiet
    result = engine.compute(now)
    assert setpoint_w(result) == 0  # 500 Wh of the 625 Wh used... 125 Wh over 450 s: 1 000 W, below the minimum
    assert "quarter-hour average 2.5 kW" in reason(result)
    assert result.state is not None
    site = result.state.site
    assert site is not None
    assert site.average_limit_w == 2500
    assert site.average_w == pytest.approx(4000, abs=1)
    assert site.window_ends_at is not None
    assert site.window_ends_at.timestamp() == end
    # The next window starts afresh.
    meter(engine, "grid", 0, end + 1)
    assert setpoint_w(engine.compute(end + 1)) == 2400  # 2 500 W, in whole amps


def test_site_block_is_null_where_not_configured() -> None:
    engine = make_engine(mode="solar")
    meter(engine, "grid", 0, T0)
    result = engine.compute(T0)
    assert result.state is not None
    site = json.loads(to_json(result.state))["site"]
    assert site == {
        "v": 1,
        "import_w": 0.0,
        "max_import_w": None,
        "average_w": None,
        "average_limit_w": None,
        "window_ends_at": None,
        "battery_soc_pct": None,
        "battery_w": None,
    }


@pytest.mark.parametrize(("value", "expected"), [(4200, 4200.0), (11_000.5, 11_000.5), ("default", None)])
def test_grid_limit_command_values(value: object, expected: float | None) -> None:
    assert commands.grid_limit(value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [(0, "out of range"), (-5, "out of range"), (2e6, "out of range"), ("4kW", "takes watts"), (True, "takes watts")],
)
def test_grid_limit_command_refuses_bad_values(value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        commands.grid_limit(value)


def test_grid_limit_survives_a_restart_through_the_state_file() -> None:
    stored = overrides.Overrides()
    stored.put(overrides.GRID_LIMIT, 4200.0, T0)
    loaded, problems = overrides.load(stored.dump())
    assert problems == []
    assert loaded.grid_limit_w() == 4200.0
    bad = {"v": 1, "overrides": [{"v": 1, "key": "grid_limit", "value": -1, "since": "2026-12-07T00:00:00Z"}]}
    assert "out of range" in overrides.load(bad)[1][0]


def test_discovery_announces_what_is_configured() -> None:
    plain = {item.unique_id for item in static_entities(TOPICS)}
    assert "allocator_grid_limit" in plain
    assert "allocator_battery_hold" not in plain
    full = {item.unique_id: item for item in static_entities(TOPICS, Features(battery=True, import_average=True))}
    for name in ("battery_soc_pct", "battery_w", "average_w", "battery_hold"):
        assert f"allocator_{name}" in full
    hold = full["allocator_battery_hold"]
    assert hold.component == "binary_sensor"
    assert hold.config["state_topic"] == "p/allocator/battery_hold"
    number = full["allocator_grid_limit"]
    assert number.config["command_topic"] == "p/allocator/grid_limit/set"


def test_the_cap_counts_battery_discharge_a_hold_would_stop() -> None:
    """Below its buffer the battery covering the house now will be held once the car starts: its discharge is the
    house's import as far as the cap is concerned (else the car and the hold would take turns every round)."""
    engine = battery_engine(mode="now", max_import_w=4000)
    meter(engine, "grid", 0, T0)
    meter(engine, "battery", {"v": 1, "power_w": 3000, "soc_pct": 60}, T0)
    held = engine.compute(T0)
    assert setpoint_w(held) == 0  # 4 000 − 3 000 W leaves less than the 1 440 W minimum
    assert "the house alone" not in reason(held)
    meter(engine, "battery", {"v": 1, "power_w": 3000, "soc_pct": 92}, T0 + 1)
    assert setpoint_w(engine.compute(T0 + 1)) == 3840  # above its buffer it may go on discharging into the car


def test_a_soc_hovering_at_the_priority_threshold_does_not_flap_the_car() -> None:
    """The battery takes 3 000 W of sun, the SoC wobbles around 50 %: once the car may have that power, it keeps it
    until the SoC is clearly (2 %) below the threshold."""
    engine = battery_engine()
    offers = []
    for step, soc in enumerate((50.5, 49.2, 50.4, 48.5, 50.1, 49.0, 48.9, 47.9, 48.8, 49.9)):
        now = T0 + step
        meter(engine, "grid", 0, now)
        meter(engine, "battery", {"v": 1, "power_w": -3000, "soc_pct": soc}, now)
        offers.append(setpoint_w(engine.compute(now)))
    assert offers == [2880.0] * 7 + [0.0] * 3  # off only below 48 %, and not back on until 50 % again


def test_a_battery_swinging_through_zero_moves_the_offer_by_its_swing_only() -> None:
    """Above the priority SoC the battery's charging is the car's and its discharge is not: the budget is continuous
    through 0 W, so a battery swinging ±300 W around 0 moves the car by a step at most, never to a stop."""
    engine = battery_engine(enable_delay_s=0, disable_delay_s=60, min_on_s=0, min_off_s=0)
    feed_evse(engine, TWC, power_w=3840.0, charging=True)
    offers = []
    for step in range(12):
        now = T0 + 5 * step
        swing = 300.0 if step % 2 else -300.0
        meter(engine, "grid", 0, now)
        meter(engine, "battery", {"v": 1, "power_w": swing, "soc_pct": 70}, now)
        offers.append(setpoint_w(engine.compute(now)))
    assert min(offers[1:]) >= 3840 - 2 * 240
    assert all(offer > 0 for offer in offers)


def test_a_stale_grid_meter_kicks_out_a_minimum_the_limit_itself_cannot_carry() -> None:
    engine = make_engine(mode="now", max_import_w=1000)
    feed_evse(engine, TWC)
    result = engine.compute(T0 + 40)  # no grid reading at all
    assert setpoint_w(result) == 0
    assert reason(result) == (
        "kicked out: site import cap 1 kW (the grid meter is stale, so charge points get at most their minimum) "
        "leaves 1 000 W for charge points, minimums need 1 440 W"
    )
