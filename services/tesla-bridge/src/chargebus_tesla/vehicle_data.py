"""A `vehicle_data` answer read leniently into the few facts charging control needs.

Field types drift between firmware versions (numbers as strings, nulls where a number was), so every field is
read on its own and an unreadable one becomes None instead of failing the whole report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chargebus.values import lenient_number as _number

ChargingState = Literal["Disconnected", "Stopped", "Charging", "Complete", "NoPower", "Starting"]
CHARGING_STATES: frozenset[str] = frozenset({"Disconnected", "Stopped", "Charging", "Complete", "NoPower", "Starting"})
#: States in which current flows or is about to.
ACTIVE_CHARGING: frozenset[str] = frozenset({"Charging", "Starting"})
_EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class CarReport:
    charging_state: ChargingState | None = None
    soc_pct: float | None = None
    charge_limit_pct: float | None = None
    charger_phases: int | None = None
    charger_voltage_v: float | None = None
    charger_actual_current_a: float | None = None
    charge_current_request_a: float | None = None
    charge_current_request_max_a: float | None = None
    charger_power_w: float | None = None
    charge_energy_added_wh: float | None = None
    time_to_full_s: float | None = None
    latitude: float | None = None
    longitude: float | None = None

    @property
    def plugged_in(self) -> bool | None:
        return None if self.charging_state is None else self.charging_state != "Disconnected"

    @property
    def charging(self) -> bool:
        return self.charging_state in ACTIVE_CHARGING


def parse_vehicle_data(response: Mapping[str, Any]) -> CarReport:
    charge = _section(response, "charge_state")
    drive = _section(response, "drive_state")
    state = charge.get("charging_state")
    phases = _number(charge.get("charger_phases"))
    power_kw = _number(charge.get("charger_power"))
    energy_kwh = _number(charge.get("charge_energy_added"))
    hours = _number(charge.get("time_to_full_charge"))
    return CarReport(
        charging_state=state if state in CHARGING_STATES else None,
        soc_pct=_number(charge.get("battery_level")),
        charge_limit_pct=_number(charge.get("charge_limit_soc")),
        # Not charging → the car reports null or 0 phases: unknown, not "zero phases".
        charger_phases=int(phases) if phases is not None and 1 <= phases <= 3 else None,
        charger_voltage_v=_number(charge.get("charger_voltage")),
        charger_actual_current_a=_number(charge.get("charger_actual_current")),
        charge_current_request_a=_number(charge.get("charge_current_request")),
        charge_current_request_max_a=_number(charge.get("charge_current_request_max")),
        charger_power_w=None if power_kw is None else power_kw * 1000.0,
        charge_energy_added_wh=None if energy_kwh is None else energy_kwh * 1000.0,
        time_to_full_s=None if hours is None else hours * 3600.0,
        latitude=_number(drive.get("latitude")),
        longitude=_number(drive.get("longitude")),
    )


def within_home(latitude: float, longitude: float, home_lat: float, home_lon: float, radius_m: float) -> bool:
    """Great-circle distance from home is at most `radius_m`."""
    phi1, phi2 = math.radians(latitude), math.radians(home_lat)
    d_phi, d_lambda = phi2 - phi1, math.radians(home_lon - longitude)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a))) <= radius_m


def _section(response: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = response.get(name)
    return section if isinstance(section, Mapping) else {}
