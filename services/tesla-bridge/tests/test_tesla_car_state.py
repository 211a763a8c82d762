"""The merged car view and its payloads: newest source wins, at_home, the phases/voltage rule of docs/contract.md §6.1,
min/max power."""

from __future__ import annotations

import pytest
from chargebus.config import HomeLocation, TeslaVehicleConfig
from chargebus.schema import EvseState, VehicleState, parse_payload, to_json
from chargebus_tesla.car_state import API_STALE_S, CarState, EvseFacts, evse_state, measured_power_w, vehicle_state
from chargebus_tesla.teslamate import TeslaMateCar
from chargebus_tesla.vehicle_data import CarReport

VIN = "5YJ3E1EA8KF000001"
T0 = 1_800_000_000.0
HOME = HomeLocation(lat=52.52, lon=13.40, radius_m=150)


def vehicle(**settings: object) -> TeslaVehicleConfig:
    return TeslaVehicleConfig.model_validate({"vin": VIN, "name": "Model 3", **settings})


def teslamate(now: float = T0, **values: str) -> TeslaMateCar:
    car = TeslaMateCar(1)
    for name, value in values.items():
        car.apply(name, value.encode(), now, retained=False)
    return car


def facts(**overrides: object) -> EvseFacts:
    settings: dict[str, object] = {
        "online": True,
        "offered_a": None,
        "min_amps": 5,
        "max_amps_override": None,
        "status_text": "ok",
    }
    settings |= overrides
    return EvseFacts(**settings)  # type: ignore[arg-type]


def test_newer_source_wins_and_fills_gaps_from_the_other() -> None:
    tm = teslamate(T0, state="asleep", battery_level="60", charge_limit_soc="80")
    state = CarState(vehicle(), tm)
    snap = state.snapshot(T0 + 1, teslamate_fresh=True)
    assert snap.online_state == "asleep"
    assert snap.source == "teslamate"
    state.observe_report(T0 + 10, CarReport(charging_state="Stopped", soc_pct=61))
    snap = state.snapshot(T0 + 11, teslamate_fresh=False)
    assert snap.online_state == "online"
    assert snap.report.soc_pct == 61
    assert snap.report.charge_limit_pct == 80  # only TeslaMate knew it
    assert snap.source == "fleet_api"
    tm.apply("state", b"asleep", T0 + 20, retained=False)
    assert state.snapshot(T0 + 21, teslamate_fresh=True).online_state == "asleep"


def test_stale_without_teslamate_or_recent_api_answer() -> None:
    state = CarState(vehicle())
    assert state.snapshot(T0, teslamate_fresh=False).stale
    state.observe_online_state(T0, "asleep")
    assert not state.snapshot(T0 + API_STALE_S, teslamate_fresh=False).stale
    assert state.snapshot(T0 + API_STALE_S + 1, teslamate_fresh=False).stale


def test_at_home_from_the_position_when_home_is_configured() -> None:
    state = CarState(vehicle(home=HOME))
    assert state.snapshot(T0, teslamate_fresh=False).at_home is None
    state.observe_report(T0, CarReport(latitude=52.5201, longitude=13.4001))
    assert state.snapshot(T0, teslamate_fresh=False).at_home is True
    state.observe_report(T0 + 1, CarReport(latitude=48.1, longitude=11.6))
    assert state.snapshot(T0 + 1, teslamate_fresh=False).at_home is False
    # A charge_state-only answer keeps the last known position.
    state.observe_report(T0 + 2, CarReport(charging_state="Stopped"))
    assert state.snapshot(T0 + 2, teslamate_fresh=False).at_home is False


def test_at_home_from_the_teslamate_geofence_without_a_home() -> None:
    tm = teslamate(state="online")
    state = CarState(vehicle(teslamate_car_id=1), tm)
    assert state.snapshot(T0, teslamate_fresh=True).at_home is None
    tm.apply("geofence", "🏡 Home".encode(), T0, retained=False)
    assert state.snapshot(T0, teslamate_fresh=True).at_home is True
    tm.apply("geofence", b"", T0, retained=False)
    assert state.snapshot(T0, teslamate_fresh=True).at_home is False
    assert CarState(vehicle()).snapshot(T0, teslamate_fresh=False).at_home is True  # no home, no TeslaMate


@pytest.mark.parametrize(
    ("phases", "voltage", "expected"),
    [
        (3, 230, (3, 230.0)),
        (3, 400, (3, pytest.approx(230.9, abs=0.1))),  # line-to-line: divided by √3
        (1, 240, (1, 240.0)),
        (None, 2, (1, 230.0)),  # not charging: the configured basis
        (1, 12, (1, 230.0)),  # implausible: ignored
    ],
)
def test_phases_and_voltage_plausibility(phases: int | None, voltage: float, expected: tuple[int, float]) -> None:
    state = CarState(vehicle())
    state.observe_report(T0, CarReport(charging_state="Charging", charger_phases=phases, charger_voltage_v=voltage))
    state.snapshot(T0, teslamate_fresh=False)
    assert (state.basis.phases, state.basis.voltage_v) == expected


def test_last_plausible_basis_is_kept_after_charging_stops() -> None:
    state = CarState(vehicle())
    state.observe_report(T0, CarReport(charging_state="Charging", charger_phases=3, charger_voltage_v=231))
    state.snapshot(T0, teslamate_fresh=False)
    state.observe_report(T0 + 60, CarReport(charging_state="Stopped", charger_phases=None, charger_voltage_v=0))
    state.snapshot(T0 + 60, teslamate_fresh=False)
    assert (state.basis.phases, state.basis.voltage_v) == (3, 231)


def test_evse_state_limits_and_controls() -> None:
    state = CarState(vehicle(phases=1, voltage_v=230))
    state.observe_report(
        T0,
        CarReport(
            charging_state="Charging",
            charger_actual_current_a=10,
            charger_phases=1,
            charger_voltage_v=230,
            charge_current_request_max_a=16,
            charge_energy_added_wh=1200,
        ),
    )
    snap = state.snapshot(T0, teslamate_fresh=False)
    evse = evse_state(state.vehicle, snap, state.basis, facts(offered_a=10.0), T0)
    assert evse.evse_id == f"car-{VIN}"
    assert evse.kind == "vehicle"
    assert evse.controls == ["start_stop", "current"]
    assert evse.min_power_w == 5 * 230
    assert evse.max_power_w == 16 * 230
    assert evse.step_w == 230
    assert evse.power_w == 2300
    assert evse.current_a == 10
    assert evse.session_energy_wh == 1200
    assert evse.charging is True
    assert evse.source == "fleet_api"
    assert parse_payload(EvseState, to_json(evse)) == evse
    capped = evse_state(state.vehicle, snap, state.basis, facts(max_amps_override=12), T0)
    assert capped.max_power_w == 12 * 230


def test_observe_only_car_has_no_controls() -> None:
    state = CarState(vehicle(controllable=False))
    evse = evse_state(state.vehicle, state.snapshot(T0, teslamate_fresh=False), state.basis, facts(), T0)
    assert evse.controllable is False
    assert evse.controls == []


def test_vehicle_state_has_every_field_and_data_age() -> None:
    tm = teslamate(T0, state="charging", charging_state="Charging", battery_level="55", plugged_in="true")
    state = CarState(vehicle(), tm)
    snap = state.snapshot(T0 + 42, teslamate_fresh=True)
    payload = vehicle_state(state.vehicle, snap, T0 + 42)
    data = parse_payload(VehicleState, to_json(payload))
    assert data.data_age_s == 42
    assert data.online_state == "online"
    assert data.plugged_in is True
    assert data.soc_pct == 55
    assert set(payload.model_dump()) == set(VehicleState.model_fields)


def test_power_is_zero_when_known_idle_and_unknown_when_unknown() -> None:
    state = CarState(vehicle())
    assert measured_power_w(CarReport(), state.basis) is None
    assert measured_power_w(CarReport(charging_state="Stopped"), state.basis) == 0
    assert measured_power_w(CarReport(charging_state="Charging", charger_power_w=7000), state.basis) == 7000


def test_plugged_in_at_is_the_moment_the_plug_was_first_seen() -> None:
    state = CarState(vehicle())
    state.observe_report(T0, CarReport(charging_state="Disconnected"))
    assert state.snapshot(T0, teslamate_fresh=False).plugged_in_at is None
    state.observe_report(T0 + 5, CarReport(charging_state="Stopped"))
    assert state.snapshot(T0 + 5, teslamate_fresh=False).plugged_in_at == T0 + 5
    state.observe_report(T0 + 9, CarReport(charging_state="Charging"))
    assert state.snapshot(T0 + 9, teslamate_fresh=False).plugged_in_at == T0 + 5
