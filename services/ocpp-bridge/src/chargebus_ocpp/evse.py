"""One OCPP connector as an EvseState. Pure: times and settings are passed in.

A connector is plugged in while its status is Preparing, Charging, SuspendedEV, SuspendedEVSE or Finishing. Meter
values give power (`Power.Active.Import`, W or kW), current per phase (`Current.Import`), voltage (`Voltage`,
line-to-line readings divided by √3) and the energy register (`Energy.Active.Import.Register`, Wh or kWh), which is
the lifetime energy; the session energy counts from the transaction's start value. A VIN is known while a
transaction runs under an idTag that `id_tags` maps to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chargebus.config import OcppChargePointConfig
from chargebus.schema import Control, EvseState, make_evse_id
from chargebus.values import lenient_number

PLUGGED = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied"})
#: A connector number beyond this is refused: each one becomes an EVSE, and `ocpp-<name>-<n>` must stay short.
MAX_CONNECTORS = 9
#: Below this a phase is not counted as drawing (an idle meter reads a little).
PHASE_DRAWING_A = 1.0
_SQRT3 = math.sqrt(3)
STATUS_TEXT = {
    "Available": "available",
    "Preparing": "plugged in, waiting",
    "Charging": "charging",
    "SuspendedEV": "plugged in, the car pauses",
    "SuspendedEVSE": "plugged in, paused by the limit",
    "Finishing": "finishing",
    "Reserved": "reserved",
    "Unavailable": "unavailable",
    "Faulted": "faulted",
    "Occupied": "plugged in",
}


def evse_id_for(name: str, connector_id: int) -> str:
    """`ocpp-<name>` for connector 1, `ocpp-<name>-<n>` for the others."""
    return make_evse_id("ocpp", name if connector_id == 1 else f"{name}-{connector_id}")


def unknown_name(ocpp_id: str) -> str | None:
    """The name of an unconfigured charger: its id lower-cased, other characters → `-`; None if it does not fit."""
    name = "".join(c if c.isascii() and (c.isdigit() or c.islower()) else "-" for c in ocpp_id.lower())
    return name if 0 < len(name) <= 30 else None


@dataclass(slots=True)
class Reading:
    """What one MeterValues message said (None: not measured in it)."""

    power_w: float | None = None
    energy_wh: float | None = None
    currents_a: dict[str, float] = field(default_factory=dict)
    voltages_v: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Mislabelled units read the plausible way, by measurand (reported once per charger).
    corrections: dict[str, str] = field(default_factory=dict)


#: Above these an AC reading is taken as mislabelled (mA reported as A, W reported as kW).
MAX_AC_AMPS = 500.0
MAX_AC_KW = 1000.0
#: Larger readings are refused as nonsense (a 1 GW wallbox, a GWh counter would still pass).
MAX_READING = 1e9


def _number(value: Any) -> float | None:
    number = lenient_number(value)
    return number if number is not None and abs(number) <= MAX_READING else None


def parse_sampled_values(meter_values: list[dict[str, Any]]) -> Reading:
    """The newest sample of each measurand in a MeterValues payload (snake_case keys, 1.6 or 2.0.1 form)."""
    reading = Reading()
    for meter_value in meter_values:
        for sample in meter_value.get("sampled_value", []):
            _apply_sample(reading, sample)
    return reading


def _apply_sample(reading: Reading, sample: dict[str, Any]) -> None:  # noqa: C901, PLR0912 - one branch per measurand
    measurand = sample.get("measurand") or "Energy.Active.Import.Register"
    context = sample.get("context") or "Sample.Periodic"
    if context in {"Transaction.Begin", "Interruption.Begin"} and measurand != "Energy.Active.Import.Register":
        return
    value = _number(sample.get("value"))
    if value is None:
        reading.problems.append(f"{measurand}: value {str(sample.get('value'))[:20]!r} is not a plausible number")
        return
    unit_field = sample.get("unit_of_measure")
    unit = str((unit_field or {}).get("unit") if isinstance(unit_field, dict) else sample.get("unit") or "")
    phase = str(sample.get("phase") or "")
    if measurand == "Power.Active.Import":
        power = value * 1000 if unit == "kW" else value
        if unit == "kW" and value > MAX_AC_KW:
            power = value  # watts labelled kW
            reading.corrections[measurand] = f"{value:g} kW is more than any AC wallbox draws: read as W"
        if phase in {"", "N"}:  # a per-phase power alone is not used: the total comes from the currents
            reading.power_w = max(power, 0.0)
    elif measurand == "Energy.Active.Import.Register":
        if phase in {"", "N"}:
            reading.energy_wh = value * 1000 if unit == "kWh" else value
    elif measurand == "Current.Import":
        name = phase.removesuffix("-N") or "L1"
        if unit in {"", "A"} and value > MAX_AC_AMPS:
            reading.corrections[measurand] = f"{value:g} A is more than any AC wallbox draws: read as mA"
            value /= 1000
        if name in {"L1", "L2", "L3"}:
            reading.currents_a[name] = max(value, 0.0)
    elif measurand == "Voltage":
        name = phase.removesuffix("-N") or "L1"
        if phase in {"L1-L2", "L2-L3", "L3-L1"}:
            reading.voltages_v.setdefault(phase[:2], value / _SQRT3)
        elif name in {"L1", "L2", "L3"}:
            reading.voltages_v[name] = value


@dataclass(slots=True)
class Connector:
    """What the bridge knows about one connector."""

    connector_id: int
    status: str | None = None
    error_code: str | None = None
    plugged_in_at: float | None = None
    transaction_id: int | str | None = None
    id_tag: str | None = None
    meter_start_wh: float | None = None
    energy_wh: float | None = None
    power_w: float | None = None
    currents_a: dict[str, float] = field(default_factory=dict)
    voltages_v: dict[str, float] = field(default_factory=dict)
    last_meter_at: float | None = None
    #: Amps of the limit last sent (and accepted), None before the first.
    offered_a: int | None = None
    failsafe: bool = True
    note: str | None = None

    def set_status(self, status: str, error_code: str | None, now: float) -> None:
        was_plugged = self.status in PLUGGED
        self.status = status
        self.error_code = error_code
        if status in PLUGGED and not was_plugged:
            self.plugged_in_at = now
        elif status not in PLUGGED:
            self.plugged_in_at = None
            if status == "Available":
                self.power_w = 0.0
                self.currents_a = {}

    def apply(self, reading: Reading, now: float) -> None:
        if reading.power_w is not None:
            self.power_w = reading.power_w
        if reading.currents_a:
            self.currents_a = dict(reading.currents_a)
        if reading.voltages_v:
            self.voltages_v = dict(reading.voltages_v)
        if reading.energy_wh is not None:
            self.energy_wh = reading.energy_wh
        if reading.power_w is None and reading.currents_a:
            self.power_w = None  # derived from the currents below
        self.last_meter_at = now

    def start(self, transaction_id: int | str, id_tag: str | None, meter_start_wh: float | None) -> None:
        self.transaction_id = transaction_id
        self.id_tag = id_tag
        self.meter_start_wh = meter_start_wh if meter_start_wh is not None else self.energy_wh

    def stop(self, meter_stop_wh: float | None) -> None:
        if meter_stop_wh is not None:
            self.energy_wh = meter_stop_wh
        self.transaction_id = None
        self.id_tag = None


@dataclass(frozen=True, slots=True)
class View:
    """How the bridge sees the charge point a connector belongs to."""

    cp: OcppChargePointConfig
    controllable: bool
    online: bool
    now: float
    meter_interval_s: float
    max_amps: int


def _plausible_voltages(voltages: dict[str, float]) -> list[float]:
    return [voltages[p] for p in ("L1", "L2", "L3") if p in voltages and 90 <= voltages[p] <= 260]


def phases_in_use(connector: Connector, configured: int) -> int:
    """The phases a charging car draws on (a 1-phase car on a 3-phase wallbox draws on one), else the wiring."""
    if connector.status != "Charging" or len(connector.currents_a) < 2:
        return configured
    drawing = sum(1 for amps in connector.currents_a.values() if amps >= PHASE_DRAWING_A)
    return min(configured, drawing) if drawing else configured


def build_state(connector: Connector, view: View) -> EvseState:
    cp = view.cp
    voltages = _plausible_voltages(connector.voltages_v)
    voltage = sum(voltages) / len(voltages) if voltages else cp.voltage_v
    phases = phases_in_use(connector, cp.phases)
    step = voltage * phases
    current = max(connector.currents_a.values()) if connector.currents_a else None
    power = connector.power_w
    if power is None and connector.currents_a:
        power = sum(amps * (connector.voltages_v.get(p) or voltage) for p, amps in connector.currents_a.items())
    plugged = None if connector.status is None else connector.status in PLUGGED
    session = None
    if (
        connector.transaction_id is not None
        and connector.energy_wh is not None
        and connector.meter_start_wh is not None
    ):
        session = max(0.0, connector.energy_wh - connector.meter_start_wh)
    vin = cp.id_tags.get(connector.id_tag) if connector.transaction_id is not None and connector.id_tag else None
    controls: list[Control] = ["current", "start_stop"] if cp.start_stop else ["current"]
    stale_after = 3 * view.meter_interval_s
    stale = not view.online or (
        connector.transaction_id is not None
        and (connector.last_meter_at is None or view.now - connector.last_meter_at > stale_after)
    )
    return EvseState(
        evse_id=evse_id_for(cp.name, connector.connector_id),
        kind="ocpp",
        name=cp.name if connector.connector_id == 1 else f"{cp.name} {connector.connector_id}",
        controllable=view.controllable,
        controls=controls if view.controllable else [],
        online=view.online,
        vin=vin,
        plugged_in=plugged,
        plugged_in_at=None if connector.plugged_in_at is None else datetime.fromtimestamp(connector.plugged_in_at, UTC),
        charging=None if connector.status is None else connector.status == "Charging",
        phases=phases,
        voltage_v=voltage,
        phase_voltages_v=voltages or None,
        current_a=current,
        offered_a=None if connector.offered_a is None else float(connector.offered_a),
        power_w=power,
        min_power_w=cp.min_current_a * step,
        max_power_w=view.max_amps * step,
        step_w=step,
        session_energy_wh=session,
        lifetime_energy_wh=connector.energy_wh if connector.energy_wh is None else max(0.0, connector.energy_wh),
        state_code=connector.status,
        status_text=_status_text(connector, view),
        source="ocpp",
        updated_at=datetime.fromtimestamp(view.now, UTC),
        stale=stale,
    )


def _status_text(connector: Connector, view: View) -> str:
    if not view.online:
        return "offline"
    parts = [STATUS_TEXT.get(connector.status or "", connector.status or "no status yet")]
    if connector.error_code and connector.error_code != "NoError":
        parts.append(f"error {connector.error_code}")
    if view.controllable and connector.failsafe:
        parts.append("failsafe (no live setpoint)")
    if connector.note:
        parts.append(connector.note)
    return ", ".join(parts)


def same_but_time(a: EvseState | None, b: EvseState) -> bool:
    """Whether two states differ only in `updated_at` (no need to publish at once)."""
    return a is not None and a.model_copy(update={"updated_at": b.updated_at}) == b
