"""Reading vehicle_data leniently."""

from __future__ import annotations

from typing import Any

import pytest
from chargebus_tesla.vehicle_data import CarReport, parse_vehicle_data, within_home

CHARGING: dict[str, Any] = {
    "state": "online",
    "charge_state": {
        "battery_level": 62,
        "charge_limit_soc": 80,
        "charging_state": "Charging",
        "charger_actual_current": 16,
        "charger_voltage": 231,
        "charger_phases": 3,
        "charger_power": 11,
        "charge_current_request": 16,
        "charge_current_request_max": 16,
        "charge_energy_added": 7.42,
        "time_to_full_charge": 1.5,
    },
    "drive_state": {"latitude": 52.52, "longitude": 13.405},
}


def test_a_charging_car() -> None:
    report = parse_vehicle_data(CHARGING)
    assert report.charging
    assert report.plugged_in is True
    assert report.charger_phases == 3
    assert report.charger_power_w == 11_000
    assert report.charge_energy_added_wh == pytest.approx(7420)
    assert report.time_to_full_s == 5400
    assert (report.latitude, report.longitude) == (52.52, 13.405)


@pytest.mark.parametrize(
    "charge_state",
    [
        {"charging_state": "Weird", "charger_phases": None, "battery_level": "x", "charger_power": ""},
        {"charging_state": None, "charger_phases": 0, "battery_level": True, "charger_power": float("nan")},
    ],
)
def test_garbled_fields_become_unknown(charge_state: dict[str, Any]) -> None:
    report = parse_vehicle_data({"charge_state": charge_state, "drive_state": "not an object"})
    assert report == CarReport()
    assert report.plugged_in is None
    assert not report.charging


def test_numbers_as_strings_are_read() -> None:
    report = parse_vehicle_data({"charge_state": {"battery_level": "55", "charging_state": "Disconnected"}})
    assert report.soc_pct == 55
    assert report.plugged_in is False


def test_home_radius() -> None:
    assert within_home(52.5201, 13.4001, 52.52, 13.40, radius_m=150)
    assert not within_home(52.53, 13.40, 52.52, 13.40, radius_m=150)  # about 1.1 km north
