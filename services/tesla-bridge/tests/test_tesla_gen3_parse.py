"""The Gen3 local API parsers: real-looking answers, missing fields, drifted types."""

from __future__ import annotations

from typing import Any

import pytest
from chargebus_tesla.gen3 import parse_lifetime, parse_version, parse_vitals
from chargebus_tesla.gen3.api import Gen3FormatError, Lifetime, Version, Vitals

#: A North-American unit charging at 47 A, as it answers `/api/1/vitals` (field names as real units send them).
US_CHARGING: dict[str, Any] = {
    "contactor_closed": True,
    "vehicle_connected": True,
    "session_s": 1213,
    "grid_v": 240.8,
    "grid_hz": 59.685,
    "vehicle_current_a": 47.0,
    "currentA_a": 0.0,
    "currentB_a": 47.0,
    "currentC_a": 0.0,
    "currentN_a": 0.0,
    "voltageA_v": 115.2,
    "voltageB_v": 238.6,
    "voltageC_v": 115.3,
    "relay_coil_v": 5.8,
    "pcba_temp_c": 32.6,
    "handle_temp_c": 20.3,
    "mcu_temp_c": 29.1,
    "uptime_s": 200835,
    "input_thermopile_uv": -692,
    "prox_v": 1.5,
    "pilot_high_v": 5.9,
    "pilot_low_v": -11.9,
    "session_energy_wh": 3654.6,
    "config_status": 4,
    "evse_state": 10,
    "current_alerts": [],
}

#: An international unit, idle: noise on the sensors behind the open contactor.
EU_IDLE: dict[str, Any] = {
    "contactor_closed": False,
    "vehicle_connected": False,
    "session_s": 0,
    "grid_v": 232.0,
    "grid_hz": 50.02,
    "vehicle_current_a": 0.4,
    "currentA_a": 0.2,
    "currentB_a": 0.4,
    "currentC_a": 0.2,
    "currentN_a": 0.3,
    "voltageA_v": 0.0,
    "voltageB_v": 4.9,
    "voltageC_v": 0.0,
    "relay_coil_v": 12.0,
    "pcba_temp_c": 29.0,
    "handle_temp_c": 22.1,
    "mcu_temp_c": 34.9,
    "uptime_s": 190,
    "input_thermopile_uv": -204,
    "prox_v": 0.0,
    "pilot_high_v": 11.9,
    "pilot_low_v": 11.9,
    "session_energy_wh": 0.0,
    "config_status": 5,
    "evse_state": 1,
    "current_alerts": [],
    "evse_not_ready_reasons": [1],
}

LIFETIME: dict[str, Any] = {
    "contactor_cycles": 93,
    "contactor_cycles_loaded": 0,
    "alert_count": 48,
    "thermal_foldbacks": 0,
    "avg_startup_temp": 32.1,
    "charge_starts": 93,
    "energy_wh": 1070526,
    "connector_cycles": 49,
    "uptime_s": 13226432,
    "charging_time_s": 1056378,
}

VERSION: dict[str, Any] = {
    "firmware_version": "21.36.5+g51e9ba72328c70",
    "git_branch": "HEAD",
    "part_number": "1529455-02-D",
    "serial_number": "PGT21239000000",
    "web_service": "1.0.0",
}


def test_vitals_of_a_charging_us_unit() -> None:
    vitals = parse_vitals(US_CHARGING)
    assert vitals.contactor_closed is True
    assert vitals.vehicle_connected is True
    assert vitals.session_s == 1213
    assert vitals.grid_v == pytest.approx(240.8)
    assert vitals.phase_currents_a == (0.0, 47.0, 0.0)
    assert vitals.phase_voltages_v == (115.2, 238.6, 115.3)
    assert vitals.session_energy_wh == pytest.approx(3654.6)
    assert vitals.evse_state == 10
    assert vitals.config_status == 4
    assert vitals.current_alerts == ()
    assert vitals.evse_not_ready_reasons == ()


def test_vitals_of_an_idle_international_unit() -> None:
    vitals = parse_vitals(EU_IDLE)
    assert vitals.vehicle_connected is False
    assert vitals.phase_currents_a == (0.2, 0.4, 0.2)
    assert vitals.current_n_a == pytest.approx(0.3)
    assert vitals.evse_not_ready_reasons == ("1",)
    assert vitals.evse_state == 1


def test_empty_vitals_are_all_unknown() -> None:
    assert parse_vitals({}) == Vitals()
    empty = parse_vitals({})
    assert empty.vehicle_connected is None
    assert empty.phase_currents_a == (None, None, None)


def test_missing_fields_read_as_none_and_the_rest_is_kept() -> None:
    partial = {key: value for key, value in US_CHARGING.items() if key not in {"currentB_a", "grid_v", "evse_state"}}
    vitals = parse_vitals(partial)
    assert vitals.phase_currents_a == (0.0, None, 0.0)
    assert vitals.grid_v is None
    assert vitals.evse_state is None
    assert vitals.vehicle_current_a == 47.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"grid_v": "231.5"}, 231.5),  # a number as text (firmware drift)
        ({"grid_v": "n/a"}, None),
        ({"grid_v": True}, None),  # a boolean is not a voltage
        ({"grid_v": None}, None),
        ({"grid_v": [230]}, None),
        ({"grid_v": float("nan")}, None),
    ],
)
def test_unreadable_numbers_become_none(raw: dict[str, Any], expected: float | None) -> None:
    assert parse_vitals(raw).grid_v == expected


def test_booleans_and_codes_are_read_leniently() -> None:
    vitals = parse_vitals(
        {
            "vehicle_connected": 1,
            "contactor_closed": "false",
            "evse_state": 4.0,
            "config_status": 4.5,
            "current_alerts": [27, "GFCI", 3.0, True, None],
            "evse_not_ready_reasons": "not a list",
        }
    )
    assert vitals.vehicle_connected is True
    assert vitals.contactor_closed is False
    assert vitals.evse_state == 4
    assert vitals.config_status is None
    assert vitals.current_alerts == ("27", "GFCI", "3")
    assert vitals.evse_not_ready_reasons == ()


@pytest.mark.parametrize("data", [[], "vitals", 42, None])
def test_an_answer_that_is_not_an_object_is_refused(data: Any) -> None:
    with pytest.raises(Gen3FormatError):
        parse_vitals(data)
    with pytest.raises(Gen3FormatError):
        parse_lifetime(data)
    with pytest.raises(Gen3FormatError):
        parse_version(data)


def test_lifetime() -> None:
    lifetime = parse_lifetime(LIFETIME)
    assert lifetime.energy_wh == 1_070_526
    assert lifetime.charge_starts == 93
    assert lifetime.connector_cycles == 49
    assert lifetime.charging_time_s == 1_056_378
    assert parse_lifetime({}) == Lifetime()
    assert parse_lifetime({"energy_wh": "oops"}).energy_wh is None


def test_version() -> None:
    version = parse_version(VERSION)
    assert version.part_number == "1529455-02-D"
    assert version.serial_number == "PGT21239000000"
    assert version.firmware_version == "21.36.5+g51e9ba72328c70"
    assert parse_version({}) == Version()
    assert parse_version({"part_number": 1529455, "serial_number": "  "}) == Version()
