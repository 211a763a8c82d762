"""The Gen3 Wall Connector's local HTTP API (`/api/1/vitals`, `/lifetime`, `/version`) read leniently.

The API is undocumented and its fields drift between firmware versions, so every field is read on its own: a
missing or unreadable one becomes None (or an empty tuple) instead of failing the whole answer. Only an answer
that is not a JSON object at all is refused, with `Gen3FormatError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargebus.values import lenient_number as _number

VITALS_PATH = "/api/1/vitals"
LIFETIME_PATH = "/api/1/lifetime"
VERSION_PATH = "/api/1/version"

#: Phase letters as the API spells them in `currentA_a` / `voltageA_v`.
PHASE_LETTERS = ("A", "B", "C")


class Gen3FormatError(ValueError):
    """An answer that is not a JSON object: nothing in it can be trusted."""


@dataclass(frozen=True, slots=True)
class Vitals:
    """`GET /api/1/vitals`: what the unit measures now."""

    contactor_closed: bool | None = None
    vehicle_connected: bool | None = None
    session_s: float | None = None
    grid_v: float | None = None
    grid_hz: float | None = None
    vehicle_current_a: float | None = None
    #: currentA_a, currentB_a, currentC_a (each None when absent)
    phase_currents_a: tuple[float | None, float | None, float | None] = (None, None, None)
    current_n_a: float | None = None
    #: voltageA_v, voltageB_v, voltageC_v, measured behind the contactor (≈ 0 while it is open)
    phase_voltages_v: tuple[float | None, float | None, float | None] = (None, None, None)
    session_energy_wh: float | None = None
    evse_state: int | None = None
    config_status: int | None = None
    uptime_s: float | None = None
    pcba_temp_c: float | None = None
    handle_temp_c: float | None = None
    mcu_temp_c: float | None = None
    current_alerts: tuple[str, ...] = ()
    evse_not_ready_reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lifetime:
    """`GET /api/1/lifetime`: counters since the unit was made."""

    energy_wh: float | None = None
    charge_starts: int | None = None
    contactor_cycles: int | None = None
    contactor_cycles_loaded: int | None = None
    connector_cycles: int | None = None
    alert_count: int | None = None
    thermal_foldbacks: int | None = None
    avg_startup_temp: float | None = None
    uptime_s: float | None = None
    charging_time_s: float | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """`GET /api/1/version`: identity of the unit."""

    firmware_version: str | None = None
    part_number: str | None = None
    serial_number: str | None = None
    git_branch: str | None = None
    web_service: str | None = None


def parse_vitals(data: Any) -> Vitals:
    fields = _object(data, "vitals")
    return Vitals(
        contactor_closed=_bool(fields.get("contactor_closed")),
        vehicle_connected=_bool(fields.get("vehicle_connected")),
        session_s=_number(fields.get("session_s")),
        grid_v=_number(fields.get("grid_v")),
        grid_hz=_number(fields.get("grid_hz")),
        vehicle_current_a=_number(fields.get("vehicle_current_a")),
        phase_currents_a=_three(fields, "current{}_a"),
        current_n_a=_number(fields.get("currentN_a")),
        phase_voltages_v=_three(fields, "voltage{}_v"),
        session_energy_wh=_number(fields.get("session_energy_wh")),
        evse_state=_integer(fields.get("evse_state")),
        config_status=_integer(fields.get("config_status")),
        uptime_s=_number(fields.get("uptime_s")),
        pcba_temp_c=_number(fields.get("pcba_temp_c")),
        handle_temp_c=_number(fields.get("handle_temp_c")),
        mcu_temp_c=_number(fields.get("mcu_temp_c")),
        current_alerts=_codes(fields.get("current_alerts")),
        evse_not_ready_reasons=_codes(fields.get("evse_not_ready_reasons")),
    )


def parse_lifetime(data: Any) -> Lifetime:
    fields = _object(data, "lifetime")
    return Lifetime(
        energy_wh=_number(fields.get("energy_wh")),
        charge_starts=_integer(fields.get("charge_starts")),
        contactor_cycles=_integer(fields.get("contactor_cycles")),
        contactor_cycles_loaded=_integer(fields.get("contactor_cycles_loaded")),
        connector_cycles=_integer(fields.get("connector_cycles")),
        alert_count=_integer(fields.get("alert_count")),
        thermal_foldbacks=_integer(fields.get("thermal_foldbacks")),
        avg_startup_temp=_number(fields.get("avg_startup_temp")),
        uptime_s=_number(fields.get("uptime_s")),
        charging_time_s=_number(fields.get("charging_time_s")),
    )


def parse_version(data: Any) -> Version:
    fields = _object(data, "version")
    return Version(
        firmware_version=_text(fields.get("firmware_version")),
        part_number=_text(fields.get("part_number")),
        serial_number=_text(fields.get("serial_number")),
        git_branch=_text(fields.get("git_branch")),
        web_service=_text(fields.get("web_service")),
    )


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise Gen3FormatError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None or not number.is_integer() else int(number)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _three(fields: Mapping[str, Any], pattern: str) -> tuple[float | None, float | None, float | None]:
    a, b, c = (_number(fields.get(pattern.format(letter))) for letter in PHASE_LETTERS)
    return (a, b, c)


def _codes(value: Any) -> tuple[str, ...]:
    """Alert and not-ready codes: numbers on most firmware, strings on some; kept as text."""
    if not isinstance(value, list):
        return ()
    codes = []
    for item in value:
        if isinstance(item, bool):
            continue
        if isinstance(item, int | str):
            codes.append(str(item))
        elif isinstance(item, float) and math.isfinite(item):
            codes.append(str(int(item)) if item.is_integer() else str(item))
    return tuple(codes)
