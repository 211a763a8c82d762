"""Gen3 readings → EvseState (docs/contract.md §3, §6, §7, §8), VIN choice, and the poller's bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from chargebus.schema import EvseState, VehicleState, parse_payload, to_json
from chargebus_sim.gen3 import Gen3Sim
from chargebus_tesla.gen3 import build_evse_state, parse_version, parse_vitals
from chargebus_tesla.gen3.api import Lifetime, Vitals
from chargebus_tesla.gen3.state import (
    DEFAULT_MAX_AMPS,
    UnitTracker,
    base_url,
    measure,
    pick_vin,
    plausible_voltage,
    rated_amps,
    split_host,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
VIN = "5YJ3E1EA8KF000001"
OTHER_VIN = "5YJ3E1EA7KF000002"

#: A real North-American unit charging at 47 A: the 240 V load shows on phase B only.
US_CHARGING: dict[str, Any] = {
    "contactor_closed": True,
    "vehicle_connected": True,
    "session_s": 1213,
    "grid_v": 240.8,
    "vehicle_current_a": 47.0,
    "currentA_a": 0.0,
    "currentB_a": 47.0,
    "currentC_a": 0.0,
    "voltageA_v": 115.2,
    "voltageB_v": 238.6,
    "voltageC_v": 115.3,
    "session_energy_wh": 3654.6,
    "evse_state": 10,
    "current_alerts": [],
}


def state_of(vitals: Vitals, **kwargs: Any) -> EvseState:
    settings: dict[str, Any] = {"online": True, "stale": False, "updated_at": NOW} | kwargs
    state = build_evse_state("garage", vitals, **settings)
    # Whatever we build must survive the strict parse every consumer applies.
    assert parse_payload(EvseState, to_json(state)) == state
    return state


def test_us_split_phase_unit_is_240_v_one_phase() -> None:
    state = state_of(parse_vitals(US_CHARGING), lifetime=Lifetime(energy_wh=79_588))
    assert state.evse_id == "twc3-garage"
    assert state.kind == "twc3"
    assert state.controllable is False
    assert state.controls == []
    assert state.source == "local_api"
    assert state.offered_a is None
    assert (state.phases, state.voltage_v) == (1, 238.6)
    assert state.phase_voltages_v == [238.6]
    assert state.current_a == 47.0
    assert state.power_w == pytest.approx(238.6 * 47.0, abs=0.1)
    assert state.plugged_in is True
    assert state.charging is True
    assert state.session_energy_wh == pytest.approx(3654.6)
    assert state.lifetime_energy_wh == 79_588
    assert state.state_code == "10"
    assert state.status_text == "charging"
    assert state.min_power_w == 0
    assert state.max_power_w == pytest.approx(DEFAULT_MAX_AMPS * 238.6, abs=0.1)
    assert state.step_w == pytest.approx(238.6)
    assert state.stale is False


def test_us_unit_reporting_two_120_v_legs_is_still_240_v_one_phase() -> None:
    vitals = parse_vitals(
        {
            "vehicle_connected": True,
            "contactor_closed": True,
            "currentA_a": 32.0,
            "currentB_a": 32.0,
            "voltageA_v": 120.2,
            "voltageB_v": 120.3,
        }
    )
    state = state_of(vitals)
    assert (state.phases, state.voltage_v, state.current_a) == (1, 240.5, 32.0)
    assert state.power_w == pytest.approx(240.5 * 32)
    # With grid_v reported, that is the circuit's voltage.
    assert state_of(parse_vitals({**vitals_dict(vitals), "grid_v": 241.0})).voltage_v == 241.0


def test_two_phase_european_car_is_two_phases() -> None:
    vitals = parse_vitals(
        {
            "grid_v": 231.0,
            "currentA_a": 16.0,
            "currentB_a": 16.0,
            "currentC_a": 0.1,
            "voltageA_v": 230.0,
            "voltageB_v": 232.0,
            "voltageC_v": 0.0,
        }
    )
    state = state_of(vitals)
    assert (state.phases, state.voltage_v, state.phase_voltages_v) == (2, 231.0, [230.0, 232.0])
    assert state.power_w == pytest.approx(16 * 230 + 16 * 232)


def vitals_dict(vitals: Vitals) -> dict[str, Any]:
    a, b, c = vitals.phase_currents_a
    va, vb, vc = vitals.phase_voltages_v
    return {
        "vehicle_connected": vitals.vehicle_connected,
        "contactor_closed": vitals.contactor_closed,
        "currentA_a": a,
        "currentB_a": b,
        "currentC_a": c,
        "voltageA_v": va,
        "voltageB_v": vb,
        "voltageC_v": vc,
    }


def test_three_phase_230_v_unit() -> None:
    sim = Gen3Sim.three_phase()
    sim.plug_in()
    sim.set_currents(16.0, 16.0, 15.5)
    state = state_of(parse_vitals(sim.vitals()), version=parse_version(sim.version()))
    assert (state.phases, state.voltage_v) == (3, 230.0)
    assert state.phase_voltages_v == [230.0, 230.0, 230.0]
    assert state.current_a == 16.0
    assert state.power_w == pytest.approx(230 * (16 + 16 + 15.5))
    assert state.charging is True
    assert state.state_code == "11"
    # The international unit (part 1529455) is rated 32 A per phase.
    assert state.max_power_w == pytest.approx(32 * 230 * 3)
    assert state.step_w == pytest.approx(690)


def test_line_to_line_readings_become_phase_to_neutral() -> None:
    vitals = Vitals(phase_currents_a=(10.0, 10.0, 10.0), phase_voltages_v=(400.0, 400.0, 400.0), grid_v=400.0)
    electrical = measure(vitals)
    assert electrical.voltage_v == pytest.approx(230.9, abs=0.1)
    assert electrical.phases == 3
    assert plausible_voltage(280.0) is None
    assert plausible_voltage(12.0) is None


def test_idle_unit_noise_is_not_a_load() -> None:
    sim = Gen3Sim.three_phase()  # idle: 0.3 A and 4.9 V of noise on phase B
    state = state_of(parse_vitals(sim.vitals()))
    assert (state.phases, state.voltage_v) == (1, 230.0)
    assert state.current_a == 0.0
    assert state.power_w == 0.0
    assert state.charging is False
    assert state.plugged_in is False
    assert state.plugged_in_at is None
    assert state.phase_voltages_v is None
    assert state.status_text == "idle, no vehicle"


def test_idle_three_phase_unit_keeps_its_three_phase_maximum() -> None:
    state = state_of(parse_vitals({"grid_v": 231.0, "currentA_a": 0.2}), wired_phases=3)
    assert state.phases == 1
    assert state.max_power_w == pytest.approx(DEFAULT_MAX_AMPS * 231.0 * 3)


def test_plugged_in_but_not_drawing_is_not_charging() -> None:
    state = state_of(
        parse_vitals({"vehicle_connected": True, "contactor_closed": True, "currentA_a": 0.4, "evse_state": 8})
    )
    assert state.plugged_in is True
    assert state.charging is False
    assert state.status_text == "charging finished or interrupted"


def test_missing_everything_is_null_not_zero() -> None:
    state = state_of(Vitals())
    assert state.plugged_in is None
    assert state.charging is None
    assert state.current_a is None
    assert state.power_w is None
    assert state.session_energy_wh is None
    assert state.lifetime_energy_wh is None
    assert state.state_code is None
    assert state.status_text is None
    assert (state.phases, state.voltage_v) == (1, 230.0)  # required fields: the defaults


def test_vehicle_current_alone_counts_as_one_phase() -> None:
    state = state_of(parse_vitals({"grid_v": 239.0, "vehicle_current_a": 24.0, "contactor_closed": True}))
    assert (state.phases, state.voltage_v, state.current_a) == (1, 239.0, 24.0)
    assert state.power_w == pytest.approx(239.0 * 24)


def test_contactor_alone_tells_charging() -> None:
    assert state_of(parse_vitals({"contactor_closed": True})).charging is True
    assert state_of(parse_vitals({"contactor_closed": False})).charging is False


def test_offline_unit_reports_nothing_measured() -> None:
    state = state_of(parse_vitals(US_CHARGING), online=False, stale=False, vin=VIN, fallback_voltage_v=240.0)
    assert state.online is False
    assert state.stale is True
    assert state.vin == VIN
    assert state.power_w is None
    assert state.current_a is None
    assert state.plugged_in is None
    assert state.charging is None
    assert state.voltage_v == 240.0
    assert state.status_text == "not answering"


def test_alerts_show_in_the_status_text() -> None:
    state = state_of(parse_vitals({"evse_state": 2, "current_alerts": [27]}))
    assert state.status_text == "vehicle connected, not ready to charge; alerts 27"
    assert state_of(parse_vitals({"evse_state": 7})).status_text == "state 7"


def test_rating_by_part_number() -> None:
    assert rated_amps(None) == DEFAULT_MAX_AMPS
    assert rated_amps(parse_version({"part_number": "1529455-02-D"})) == 32
    assert rated_amps(parse_version({"part_number": "1457768-02-G"})) == 48
    assert rated_amps(parse_version({"part_number": "9999999-01-A"})) == DEFAULT_MAX_AMPS
    state = state_of(parse_vitals(US_CHARGING), max_amps=40)
    assert state.max_power_w == pytest.approx(40 * 238.6, abs=0.1)


def car(vin: str = VIN, *, plugged_in: bool | None = True, at_home: bool | None = True, **kw: Any) -> VehicleState:
    return VehicleState(
        vin=vin,
        name="car",
        online_state="online",
        at_home=at_home,
        plugged_in=plugged_in,
        source="teslamate",
        updated_at=NOW,
        **kw,
    )


def test_vin_while_the_car_is_plugged_in_at_home() -> None:
    assert pick_vin({VIN: car()}, unit_connected=True) == VIN
    assert pick_vin({VIN: car()}, unit_connected=None) == VIN  # unit offline: the car's word
    assert pick_vin({VIN: car(plugged_in=False)}, unit_connected=True) is None
    assert pick_vin({VIN: car(at_home=False)}, unit_connected=True) is None
    assert pick_vin({}, unit_connected=True) is None


def test_no_vin_while_the_unit_sees_no_vehicle() -> None:
    # Plugged in at home, but not into this unit (e.g. a mobile connector in the driveway).
    assert pick_vin({VIN: car()}, unit_connected=False) is None


def test_unknown_home_needs_the_unit_to_see_a_vehicle() -> None:
    assert pick_vin({VIN: car(at_home=None)}, unit_connected=True) == VIN
    assert pick_vin({VIN: car(at_home=None)}, unit_connected=None) is None


def test_two_plugged_cars_the_charging_one_wins_else_none() -> None:
    cars = {VIN: car(charging_state="Stopped"), OTHER_VIN: car(OTHER_VIN, charging_state="Charging")}
    assert pick_vin(cars, unit_connected=True, unit_charging=True) == OTHER_VIN
    assert pick_vin(cars, unit_connected=True, unit_charging=False) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.168.1.50", ("192.168.1.50", 80)),
        ("192.168.1.50:8080", ("192.168.1.50", 8080)),
        ("twc.lan", ("twc.lan", 80)),
        ("[fe80::1]:81", ("fe80::1", 81)),
        ("[fe80::1]", ("fe80::1", 80)),
        ("fe80::1", ("fe80::1", 80)),
    ],
)
def test_split_host(host: str, expected: tuple[str, int]) -> None:
    assert split_host(host) == expected


@pytest.mark.parametrize("host", ["", "192.168.1.50:", "192.168.1.50:http", "1.2.3.4:70000", "[fe80::1", "a b"])
def test_split_host_refuses(host: str) -> None:
    with pytest.raises(ValueError, match="host"):
        split_host(host)


def test_base_url() -> None:
    assert base_url("192.168.1.50", 80) == "http://192.168.1.50"
    assert base_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert base_url("fe80::1", 81) == "http://[fe80::1]:81"


def test_tracker_goes_offline_once_and_recovers() -> None:
    tracker = UnitTracker("garage", offline_after=3)
    assert tracker.state(1000.0) is None  # nothing known yet
    assert [tracker.poll_failed() for _ in range(5)] == [False, False, True, False, False]
    offline = tracker.state(1000.0)
    assert offline is not None
    assert (offline.online, offline.stale) == (False, True)
    assert tracker.vitals_ok(parse_vitals(US_CHARGING), 1010.0) is True
    back = tracker.state(1010.0)
    assert back is not None
    assert (back.online, back.stale) == (True, False)
    assert tracker.vitals_ok(parse_vitals(US_CHARGING), 1015.0) is False


def test_tracker_marks_stale_before_offline() -> None:
    tracker = UnitTracker("garage", offline_after=3)
    tracker.vitals_ok(parse_vitals(US_CHARGING), 1000.0)
    tracker.poll_failed()
    first = tracker.state(1005.0)
    tracker.poll_failed()
    second = tracker.state(1010.0)
    assert first is not None
    assert second is not None
    assert (first.online, first.stale) == (True, False)
    assert (second.online, second.stale) == (True, True)
    assert second.updated_at == datetime.fromtimestamp(1000.0, tz=UTC)


def test_tracker_dates_the_plug_in_by_the_session_length() -> None:
    tracker = UnitTracker("garage")
    tracker.vitals_ok(parse_vitals(US_CHARGING), 10_000.0)  # session_s 1213
    tracker.vitals_ok(parse_vitals({**US_CHARGING, "session_s": 1218}), 10_005.0)
    state = tracker.state(10_005.0)
    assert state is not None
    assert state.plugged_in_at == datetime.fromtimestamp(10_000.0 - 1213, tz=UTC)
    tracker.vitals_ok(parse_vitals({**US_CHARGING, "vehicle_connected": False}), 10_010.0)
    assert tracker.plugged_in_at is None


def test_tracker_publishes_on_change_and_every_republish_period() -> None:
    tracker = UnitTracker("garage", republish_s=30.0)
    tracker.vitals_ok(parse_vitals(US_CHARGING), 1000.0)
    state = tracker.state(1000.0)
    assert state is not None
    assert tracker.due(state, 0.0)
    tracker.published(state, 0.0)
    tracker.vitals_ok(parse_vitals(US_CHARGING), 1005.0)
    same = tracker.state(1005.0)
    assert same is not None
    assert same.updated_at != state.updated_at
    assert not tracker.due(same, 5.0)  # only updated_at changed
    assert tracker.due(same, 30.0)
    tracker.vehicle(VIN, car())
    with_vin = tracker.state(1005.0)
    assert with_vin is not None
    assert with_vin.vin == VIN
    assert tracker.due(with_vin, 6.0)
    tracker.vehicle(VIN, None)
    assert tracker.vin() is None


def test_tracker_remembers_wired_phases_and_voltage() -> None:
    tracker = UnitTracker("garage")
    sim = Gen3Sim.three_phase()
    sim.plug_in()
    sim.charge(16)
    tracker.vitals_ok(parse_vitals(sim.vitals()), 1000.0)
    sim.unplug()
    tracker.vitals_ok(parse_vitals(sim.vitals()), 1005.0)
    state = tracker.state(1005.0)
    assert state is not None
    assert (state.phases, tracker.wired_phases) == (1, 3)
    assert state.max_power_w == pytest.approx(DEFAULT_MAX_AMPS * 230 * 3)  # no version read yet: 48 A
    tracker.version = parse_version(sim.version())
    rated = tracker.state(1005.0)
    assert rated is not None
    assert rated.max_power_w == pytest.approx(32 * 230 * 3)
