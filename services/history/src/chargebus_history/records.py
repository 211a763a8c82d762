"""What the history stores: one record per received state, with the numbers it reasons on plus the raw JSON.

Records are built from payload dicts with the docs/contract.md §6 field names (a validated `chargebus.schema` model's
`model_dump(mode="json")`), so storage does not depend on the models' Python shape. `ts` is when the recorder
observed the state (epoch seconds from the injected clock); the payload's own `updated_at` is kept as
`source_ts`. Reconstruction runs on observation time because "we were listening and nothing changed" is only
true in the recorder's own time; a retained state replayed after a restart must not look old and continuous.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chargebus_history.merge import car_evse_id, is_measuring_evse
from chargebus_history.reconstruct import Sample

# Fields that change on every publish without the state changing: left out of the change key.
EVSE_VOLATILE = frozenset({"updated_at"})
VEHICLE_VOLATILE = frozenset({"updated_at", "data_age_s"})
CHARGING_STATES = frozenset({"Charging"})


def _number(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _integer(payload: Mapping[str, Any], key: str) -> int | None:
    value = _number(payload, key)
    return None if value is None else round(value)


def _flag(payload: Mapping[str, Any], key: str) -> bool | None:
    value = payload.get(key)
    return value if isinstance(value, bool) else None


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def _epoch(payload: Mapping[str, Any], key: str) -> float | None:
    text = _text(payload, key)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _change_key(payload: Mapping[str, Any], volatile: frozenset[str]) -> str:
    return json.dumps({k: v for k, v in payload.items() if k not in volatile}, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class EvseRecord:
    ts: float
    evse_id: str
    raw: Mapping[str, Any]
    source_ts: float | None = None
    vin: str | None = None
    online: bool | None = None
    stale: bool | None = None
    plugged_in: bool | None = None
    charging: bool | None = None
    power_w: float | None = None
    current_a: float | None = None
    offered_a: float | None = None
    voltage_v: float | None = None
    phases: int | None = None
    session_energy_wh: float | None = None
    lifetime_energy_wh: float | None = None

    @classmethod
    def from_payload(cls, ts: float, payload: Mapping[str, Any]) -> EvseRecord:
        evse_id = _text(payload, "evse_id")
        if evse_id is None:
            raise ValueError("an EvseState payload needs an evse_id")
        return cls(
            ts=ts,
            evse_id=evse_id,
            raw=dict(payload),
            source_ts=_epoch(payload, "updated_at"),
            vin=_text(payload, "vin"),
            online=_flag(payload, "online"),
            stale=_flag(payload, "stale"),
            plugged_in=_flag(payload, "plugged_in"),
            charging=_flag(payload, "charging"),
            power_w=_number(payload, "power_w"),
            current_a=_number(payload, "current_a"),
            offered_a=_number(payload, "offered_a"),
            voltage_v=_number(payload, "voltage_v"),
            phases=_integer(payload, "phases"),
            session_energy_wh=_number(payload, "session_energy_wh"),
            lifetime_energy_wh=_number(payload, "lifetime_energy_wh"),
        )

    @property
    def stream(self) -> tuple[str, str]:
        return ("evse", self.evse_id)

    def change_key(self) -> str:
        return _change_key(self.raw, EVSE_VOLATILE)

    def to_sample(self) -> Sample:
        # A wall connector's own lifetime counter is a measurement; a car EVSE's session counter is the car's
        # charge_energy_added. One counter per kind, so the counter never switches meaning mid-series.
        counter = self.lifetime_energy_wh if is_measuring_evse(self.evse_id) else self.session_energy_wh
        return Sample(
            ts=self.ts,
            source=self.evse_id,
            power_w=self.power_w,
            charging=self.charging,
            plugged_in=self.plugged_in,
            online=None if self.online is None else (self.online and not self.stale),
            vin=self.vin,
            counter_wh=counter,
        )


@dataclass(frozen=True, slots=True)
class VehicleRecord:
    ts: float
    vin: str
    raw: Mapping[str, Any]
    source_ts: float | None = None
    online_state: str | None = None
    at_home: bool | None = None
    plugged_in: bool | None = None
    charging_state: str | None = None
    soc_pct: float | None = None
    charger_power_w: float | None = None
    charger_actual_current_a: float | None = None
    charger_voltage_v: float | None = None
    charger_phases: int | None = None
    charge_energy_added_wh: float | None = None

    @classmethod
    def from_payload(cls, ts: float, payload: Mapping[str, Any]) -> VehicleRecord:
        vin = _text(payload, "vin")
        if vin is None:
            raise ValueError("a VehicleState payload needs a vin")
        return cls(
            ts=ts,
            vin=vin,
            raw=dict(payload),
            source_ts=_epoch(payload, "updated_at"),
            online_state=_text(payload, "online_state"),
            at_home=_flag(payload, "at_home"),
            plugged_in=_flag(payload, "plugged_in"),
            charging_state=_text(payload, "charging_state"),
            soc_pct=_number(payload, "soc_pct"),
            charger_power_w=_number(payload, "charger_power_w"),
            charger_actual_current_a=_number(payload, "charger_actual_current_a"),
            charger_voltage_v=_number(payload, "charger_voltage_v"),
            charger_phases=_integer(payload, "charger_phases"),
            charge_energy_added_wh=_number(payload, "charge_energy_added_wh"),
        )

    @property
    def stream(self) -> tuple[str, str]:
        return ("vehicle", self.vin)

    def change_key(self) -> str:
        return _change_key(self.raw, VEHICLE_VOLATILE)

    def to_sample(self) -> Sample:
        online = {"online": True, "asleep": False, "offline": False}.get(self.online_state or "")
        return Sample(
            ts=self.ts,
            source=car_evse_id(self.vin),  # the car's own charge control: the id its EvseState uses too
            power_w=self.charger_power_w,
            charging=None if self.charging_state is None else self.charging_state in CHARGING_STATES,
            plugged_in=self.plugged_in,
            online=online,
            asleep=self.online_state == "asleep",
            away=self.at_home is False,
            vin=self.vin,
            counter_wh=self.charge_energy_added_wh,
        )


@dataclass(frozen=True, slots=True)
class MeterRecord:
    ts: float
    meter: str
    power_w: float
    raw: Any  # the received JSON value: a number, a PowerReading, or a device's own object
    energy_wh: float | None = None

    @property
    def stream(self) -> tuple[str, str]:
        return ("meter", self.meter)

    def change_key(self) -> str:
        return json.dumps([self.power_w, self.energy_wh])


Record = EvseRecord | VehicleRecord | MeterRecord
