"""The engine between messages and rounds, on a fake clock: merge, what gets published and when, stale meters."""

from __future__ import annotations

import math
from typing import Any

import pytest
from chargebus.schema import PayloadError, to_json
from chargebus_allocator.engine import STATE_EVERY_S, TICK_S, Engine
from chargebus_allocator.overrides import CHARGE_NOW, MODE, evse_key, vehicle_key

from services.allocator.tests.alloc_builders import (
    T0,
    VIN_A,
    evse_state,
    feed_evse,
    make_engine,
    vehicle_state,
)

TWC = "twc-4a1b"
CAR = f"car-{VIN_A}"


def merged_engine(**allocator: Any) -> Engine:
    engine = make_engine(**allocator)
    feed_evse(engine, TWC, vin=VIN_A)
    feed_evse(engine, CAR)
    engine.vehicle_state(VIN_A, to_json(vehicle_state(VIN_A)))
    engine.meter_message("p/power/grid", b"-5000", T0)
    return engine


def test_a_twc_and_the_car_on_it_are_one_charge_point() -> None:
    engine = merged_engine()
    result = engine.compute(T0)
    (group,) = result.allocation.points
    assert group.charge_point.members == (TWC, CAR)
    assert result.state is not None
    assert [g.evse_ids for g in result.state.groups] == [[TWC, CAR]]
    by_id = {setpoint.evse_id: setpoint for setpoint in result.setpoints}
    assert (by_id[TWC].power_w, by_id[TWC].charge) == (4800, None)
    assert (by_id[CAR].power_w, by_id[CAR].charge) == (None, True)
    assert by_id[TWC].ttl_s == 20
    assert by_id[TWC].expires_at.timestamp() == T0 + 20


def test_setpoints_go_out_on_change_and_every_half_ttl() -> None:
    engine = merged_engine()
    first = engine.compute(T0)
    assert {sp.evse_id for sp in first.setpoints} == {TWC, CAR}
    assert first.next_wake == T0 + TICK_S
    assert engine.compute(T0 + 1).setpoints == []  # nothing changed
    engine.meter_message("p/power/grid", b"-6000", T0 + 2)
    changed = engine.compute(T0 + 2)
    assert [(sp.evse_id, sp.power_w) for sp in changed.setpoints] == [(TWC, 6000)]  # the car's charge is still true
    engine.meter_message("p/power/grid", b"-6100", T0 + 3)  # less than one step: the same setpoint
    assert engine.compute(T0 + 3).setpoints == []
    due = engine.compute(T0 + 10)  # ttl 20 s: the car's is due again at T0 + 10
    assert [sp.evse_id for sp in due.setpoints] == [CAR]
    assert due.next_wake == T0 + 12  # the TWC's, sent at T0 + 2


def test_state_goes_out_on_change_and_every_30_s() -> None:
    engine = merged_engine()
    assert engine.compute(T0).state is not None
    assert engine.compute(T0 + 1).state is None  # only computed_at / compute_ms differ
    engine.overrides.put(evse_key(TWC, "priority"), 7, T0 + 2)
    changed = engine.compute(T0 + 2)
    assert changed.state is not None
    assert changed.state.groups[0].priority == 7
    assert [item.key for item in changed.state.overrides] == [evse_key(TWC, "priority")]
    engine.meter_message("p/power/grid", b"-5000", T0 + 20)  # keep the meter fresh
    assert engine.compute(T0 + 2 + STATE_EVERY_S - 1).state is None
    assert engine.compute(T0 + 2 + STATE_EVERY_S).state is not None


def test_a_stale_grid_meter_means_no_surplus_and_one_error() -> None:
    engine = merged_engine()
    engine.compute(T0)
    assert engine.compute(T0 + 29).next_wake == pytest.approx(T0 + 30, abs=0.01)  # the meter goes stale then
    stale = engine.compute(T0 + 30.01)
    assert [(n.topic, n.payload) for n in stale.notices] == [("p/power/grid", None)]
    assert "solar surplus unknown" in stale.notices[0].error
    assert stale.state is not None
    assert (stale.state.grid_w, stale.state.available_w) == (None, 0)
    by_id = {sp.evse_id: sp for sp in stale.setpoints}
    assert (by_id[TWC].power_w, by_id[CAR].charge) == (0, False)
    assert "stale" in stale.state.groups[0].reason
    assert engine.compute(T0 + 40).notices == []  # once per episode
    engine.meter_message("p/power/grid", b"-5000", T0 + 41)
    back = engine.compute(T0 + 41)
    assert back.events == ["event=meter_fresh meter=grid"]
    assert {sp.evse_id: sp.power_w for sp in back.setpoints}[TWC] == 4800


def test_minsolar_holds_minimums_while_the_grid_meter_is_stale() -> None:
    engine = merged_engine(mode="minsolar")
    result = engine.compute(T0 + 60)
    assert result.notices
    assert {sp.evse_id: sp.power_w for sp in result.setpoints}[TWC] == 6 * 240


def test_a_broken_meter_reports_once_a_minute_and_keeps_its_last_value() -> None:
    engine = merged_engine()
    assert len(engine.meter_message("p/power/grid", b"garbage", T0 + 1)) == 1
    assert engine.meter_message("p/power/grid", b"{}", T0 + 30) == []
    (notice,) = engine.meter_message("p/power/grid", b"[]", T0 + 61)
    assert (notice.topic, notice.payload) == ("p/power/grid", b"[]")
    last = engine.meters.last("grid")
    assert last is not None
    assert last.load.power_w == -5000


def test_a_configured_meter_with_json_path_scale_and_invert() -> None:
    meters = [{"name": "grid", "topic": "shellies/em3", "json_path": "emeter.total", "scale": 1000, "invert": True}]
    engine = make_engine(meters=meters)
    feed_evse(engine, TWC)
    engine.meter_message("shellies/em3", b'{"emeter": {"total": 3.0}}', T0)  # exporting 3 kW, reported positive
    result = engine.compute(T0)
    assert result.state is not None
    assert result.state.grid_w == -3000
    assert result.setpoints[0].power_w == 2880


def test_circuit_meter_load_counts_and_survives_going_stale() -> None:
    circuits = [{"id": "main", "max_current_a": 20, "phases": 1, "voltage_v": 240, "meter": "mains"}]
    engine = make_engine(mode="now", circuits=circuits, evses={TWC: {"circuit": "main"}})
    feed_evse(engine, TWC)
    engine.meter_message("p/power/mains", b"2400", T0)  # 10 A of house load
    assert engine.compute(T0).setpoints[0].power_w == 2400
    late = engine.compute(T0 + 100)
    errors = {n.topic: n.error for n in late.notices}
    assert set(errors) == {"p/power/mains", "p/power/grid"}
    assert "keeps counting the last good value" in errors["p/power/mains"]
    assert late.allocation.points[0].allocated_w == 2400


def test_charge_now_for_one_evse_ends_by_itself() -> None:
    engine = make_engine(mode="off")
    feed_evse(engine, TWC)
    engine.overrides.put(evse_key(TWC, CHARGE_NOW), T0 + 100, T0)
    result = engine.compute(T0)
    assert result.setpoints[0].power_w == 32 * 240
    assert result.next_wake <= T0 + 100.01
    ended = engine.compute(T0 + 100.01)
    assert ended.overrides_changed
    assert ended.events == [f"event=override_expired key={evse_key(TWC, CHARGE_NOW)}"]
    assert (ended.setpoints[0].power_w, ended.setpoints[0].charge) == (0, False)


def test_overrides_win_over_the_config() -> None:
    engine = make_engine(mode="off", evses={TWC: {"priority": 3, "mode": "off"}})
    feed_evse(engine, TWC)
    assert engine.compute(T0).allocation.points[0].charge_point.priority == 3
    engine.overrides.put(evse_key(TWC, "mode"), "now", T0)
    engine.overrides.put(evse_key(TWC, "priority"), 9, T0)
    result = engine.compute(T0 + 1)
    assert (result.allocation.points[0].mode, result.allocation.points[0].charge_point.priority) == ("now", 9)
    engine.overrides.put(MODE, "solar", T0)
    result = engine.compute(T0 + 2)
    assert result.state is not None
    assert (result.state.mode, result.allocation.points[0].mode) == ("solar", "now")


def test_a_vehicle_entry_without_priority_does_not_hide_the_evse_priority() -> None:
    engine = make_engine(evses={TWC: {"priority": 10}}, vehicles={VIN_A: {}})
    feed_evse(engine, TWC, vin=VIN_A)
    assert engine.compute(T0).allocation.points[0].charge_point.priority == 10
    engine.overrides.put(vehicle_key(VIN_A, "priority"), -5, T0)
    assert engine.compute(T0 + 1).allocation.points[0].charge_point.priority == -5


def test_authorization_from_the_config() -> None:
    engine = make_engine(mode="now", authorization="deny_list", denied_vins=[VIN_A])
    feed_evse(engine, TWC, vin=VIN_A)
    result = engine.compute(T0)
    assert result.allocation.points[0].state == "refused"
    assert (result.setpoints[0].power_w, result.setpoints[0].charge) == (0, False)


def test_inputs_are_checked_against_their_topic_and_can_be_removed() -> None:
    engine = make_engine()
    with pytest.raises(PayloadError, match="does not match"):
        engine.evse_state("twc-0001", to_json(evse_state(TWC)))
    with pytest.raises(PayloadError, match="does not match"):
        engine.vehicle_state(VIN_A, to_json(vehicle_state("5YJ3E1EA8KF000002")))
    with pytest.raises(PayloadError):
        engine.evse_state(TWC, b'{"evse_id": "twc-4a1b"}')
    assert feed_evse(engine, TWC)
    assert not feed_evse(engine, TWC)  # the same state again: nothing to do
    engine.meter_message("p/power/grid", b"-3000", T0)
    assert engine.compute(T0).setpoints
    assert engine.removed_evses() == []
    assert engine.evse_state(TWC, b"")
    assert not engine.evse_state(TWC, b"")
    assert engine.removed_evses() == [TWC]
    assert engine.compute(T0 + 1).allocation.points == ()


def test_an_unplugged_car_away_gets_no_setpoint_and_its_last_one_expires() -> None:
    engine = merged_engine()
    engine.compute(T0)
    engine.vehicle_state(VIN_A, to_json(vehicle_state(VIN_A, at_home=False)))
    result = engine.compute(T0 + 1)
    assert CAR not in engine.sent
    assert [g.charge_point.members for g in result.allocation.points] == [(TWC,)]


def test_clouds_through_the_engine_start_and_stop_at_most_once_per_half_hour() -> None:
    """A meter oscillating ±300 W around the minimum (60 s period), default delays, rounds every 5 s."""
    engine = make_engine(
        enable_delay_s=60, disable_delay_s=180, min_on_s=300, min_off_s=300, setpoint_ttl_s=120, reserve_w=0
    )
    minimum = 6 * 240
    draw = 0.0
    changes: list[tuple[str, float]] = []
    t = 0.0
    while t < 4 * 3600:
        now = T0 + t
        feed_evse(engine, TWC, power_w=draw, charging=draw > 0)
        surplus = minimum + 300 * math.sin(2 * math.pi * t / 60)
        engine.meter_message("p/power/grid", str(draw - surplus).encode(), now)
        result = engine.compute(now)
        for setpoint in result.setpoints:
            offered = setpoint.power_w or 0.0
            if (offered > 0) != (draw > 0):
                changes.append(("start" if offered > 0 else "stop", t))
            draw = offered
        t += 5
    for kind in ("start", "stop"):
        times = [at for name, at in changes if name == kind]
        assert max((sum(1 for u in times if s <= u < s + 1800) for s in times), default=0) <= 1


def test_a_configured_schedule_window_charges_at_its_cap_until_it_closes() -> None:
    window = {"days": ["fri"], "start": "07:00", "end": "09:00", "power_w": 3000}  # T0 is Friday 08:00 UTC
    engine = make_engine(mode="off", timezone="UTC", schedules=[window])
    feed_evse(engine, TWC)
    result = engine.compute(T0)
    assert (result.allocation.points[0].mode, result.setpoints[0].power_w) == ("schedule", 2880)
    assert result.state is not None
    assert result.state.groups[0].mode == "now"
    assert engine.compute(T0 + 3599).next_wake == pytest.approx(T0 + 3600, abs=0.01)
    closed = engine.compute(T0 + 3600.01)
    assert (closed.setpoints[0].power_w, closed.setpoints[0].charge) == (0, False)
