"""Meter payloads -> watts (and a counter where one is given). Pure.

A `[[meters]]` entry names any MQTT topic: a plain number, a PowerReading, or a device's own JSON object with the
power at `json_path` (dotted keys, list indices as numbers: `emeters.0.power`). `scale` turns the value into W,
`invert` flips the sign for sources that report export as positive. A meter name without an entry is read from
`<p>/power/<name>` as a number or PowerReading (docs/contract.md §2, §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chargebus.config import MeterConfig
from chargebus.schema import PayloadError, decode_json, parse_power

from chargebus_history.records import MeterRecord


@dataclass(frozen=True, slots=True)
class MeterSource:
    """How one topic is read: its meter name and the entry's rules (defaults for a native `<p>/power/<name>`)."""

    name: str
    topic: str
    json_path: str | None = None
    scale: float = 1.0
    invert: bool = False

    @classmethod
    def from_config(cls, meter: MeterConfig) -> MeterSource:
        return cls(meter.name, meter.topic, meter.json_path, meter.scale, meter.invert)


def _at_path(data: Any, path: str) -> Any:
    value = data
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise PayloadError(f"json_path {path!r}: no {key!r} in the payload")
    return value


def _as_number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise PayloadError(f"{what}: expected a number, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PayloadError(f"{what}: expected a number, got {value[:40]!r}") from None
    if not isinstance(value, int | float):
        raise PayloadError(f"{what}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise PayloadError(f"{what}: not a finite number")
    return float(value)


def read_meter(source: MeterSource, payload: bytes, ts: float) -> MeterRecord:
    """One reading as a record; PayloadError when the payload does not carry a usable number."""
    energy_wh: float | None = None
    if source.json_path:
        data = decode_json(payload)
        raw: Any = data
        value = _as_number(_at_path(data, source.json_path), f"json_path {source.json_path!r}")
    else:
        reading = parse_power(payload)
        value = reading.power_w
        energy_wh = reading.energy_wh
        raw = decode_json(payload)
    power_w = value * source.scale * (-1.0 if source.invert else 1.0) + 0.0  # + 0.0: no "-0.0" rows
    if not math.isfinite(power_w):
        raise PayloadError("power is not finite after scaling")
    return MeterRecord(ts=ts, meter=source.name, power_w=power_w, raw=raw, energy_wh=energy_wh)
