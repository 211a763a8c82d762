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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from chargebus.schema import car_evse_id

from chargebus_history.merge import is_measuring_evse
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


FieldKind = Literal["text", "flag", "number", "integer"]
_READERS: dict[FieldKind, Callable[[Mapping[str, Any], str], Any]] = {
    "text": _text,
    "flag": _flag,
    "number": _number,
    "integer": _integer,
}


@dataclass(frozen=True, slots=True)
class Field:
    """A payload field a record keeps as a column of its own: read from the payload by `kind`, stored in the
    column of the same name (`tables.py`). `length`: the longest text the column takes."""

    name: str
    kind: FieldKind
    length: int = 0
    nullable: bool = True

    def read(self, payload: Mapping[str, Any]) -> Any:
        return _READERS[self.kind](payload, self.name)


# The one list of each record's own fields, in column order: the records below declare them as attributes,
# `from_payload` reads them, `tables.py` makes the columns and `store.py` the rows from these lists.
EVSE_FIELDS: tuple[Field, ...] = (
    Field("vin", "text", 17),
    Field("online", "flag"),
    Field("stale", "flag"),
    Field("plugged_in", "flag"),
    Field("charging", "flag"),
    Field("power_w", "number"),
    Field("current_a", "number"),
    Field("offered_a", "number"),
    Field("voltage_v", "number"),
    Field("phases", "integer"),
    Field("session_energy_wh", "number"),
    Field("lifetime_energy_wh", "number"),
)
VEHICLE_FIELDS: tuple[Field, ...] = (
    Field("online_state", "text", 16),
    Field("at_home", "flag"),
    Field("plugged_in", "flag"),
    Field("charging_state", "text", 16),
    Field("soc_pct", "number"),
    Field("charger_power_w", "number"),
    Field("charger_actual_current_a", "number"),
    Field("charger_voltage_v", "number"),
    Field("charger_phases", "integer"),
    Field("charge_energy_added_wh", "number"),
)
METER_FIELDS: tuple[Field, ...] = (Field("power_w", "number", nullable=False), Field("energy_wh", "number"))


def _change_key(payload: Mapping[str, Any], volatile: frozenset[str]) -> str:
    return json.dumps({k: v for k, v in payload.items() if k not in volatile}, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class EvseRecord:
    """An EvseState as stored: the attributes after `source_ts` are `EVSE_FIELDS`, in that order."""

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
        fields = {field.name: field.read(payload) for field in EVSE_FIELDS}
        return cls(ts=ts, evse_id=evse_id, raw=dict(payload), source_ts=_epoch(payload, "updated_at"), **fields)

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
    """A VehicleState as stored: the attributes after `source_ts` are `VEHICLE_FIELDS`, in that order."""

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
        fields = {field.name: field.read(payload) for field in VEHICLE_FIELDS}
        return cls(ts=ts, vin=vin, raw=dict(payload), source_ts=_epoch(payload, "updated_at"), **fields)

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
