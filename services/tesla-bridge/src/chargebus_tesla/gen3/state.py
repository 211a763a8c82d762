"""Gen3 Wall Connector readings → EvseState, and the per-unit bookkeeping of the poller. Pure: no I/O, no asyncio.

Electrical rules (docs/contract.md §3, §6):

- A phase is *active* when its current is above `ACTIVE_CURRENT_A` (an idle unit reads a few tenths of an amp of
  noise). `phases` = the number of active phases, 1 when none.
- Phase voltages are measured behind the contactor, so they read ≈ 0 V while it is open; only plausible ones
  (90–260 V phase-to-neutral, line-to-line readings above 300 V divided by √3) count, else `grid_v`.
- A US split-phase unit either reports its 240 V load on one phase (the usual firmware: `currentB_a` with
  `voltageB_v` ≈ 240 V) or on two legs of ≈ 120 V each; both come out as `voltage_v` ≈ 240, `phases` = 1, as
  docs/contract.md §3 wants. Two active phases at ≈ 230 V each are a real 2-phase car (some European cars charge so).
- `power_w` = Σ V × I over the active phases; `current_a` = the highest phase current (0 below the noise floor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chargebus.schema import EvseState, VehicleState, make_evse_id

from chargebus_tesla.gen3.api import Lifetime, Version, Vitals

#: A phase current above this is a load; below it is measurement noise (idle units read 0.1–0.4 A).
ACTIVE_CURRENT_A = 1.0
#: Plausible phase-to-neutral voltages; above `LINE_TO_LINE_ABOVE_V` a reading is taken as line-to-line.
MIN_PLAUSIBLE_V = 90.0
MAX_PLAUSIBLE_V = 260.0
LINE_TO_LINE_ABOVE_V = 300.0
#: Two active phases at or above this each are two real phases (a 2-phase car in Europe); below, they are the
#: ≈ 120 V legs of one 240 V split-phase circuit.
MIN_SPLIT_LEG_AS_PHASE_V = 180.0
#: Voltage used until the unit has reported any plausible one.
DEFAULT_VOLTAGE_V = 230.0
#: The Gen3's largest rating (North America); used when the unit's own rating is unknown.
DEFAULT_MAX_AMPS = 48.0
#: Ratings by part number (the first 7 digits): the international unit is 32 A per phase, 3 phases.
RATINGS_BY_PART: Mapping[str, float] = {"1529455": 32.0, "1457768": 48.0}
#: Consecutive failed polls after which the data is stale, and after which the unit is offline.
STALE_AFTER_FAILURES = 2
OFFLINE_AFTER_FAILURES = 3
#: Retained state is re-published at least this often, even when nothing changed.
REPUBLISH_S = 30.0

#: `evse_state` codes as observed on units in the field (3, 5, 7 and 12 are not known).
EVSE_STATE_TEXT: Mapping[int, str] = {
    0: "starting up",
    1: "idle, no vehicle",
    2: "vehicle connected, not ready to charge",
    4: "vehicle connected, ready to charge",
    6: "vehicle connected, negotiating",
    8: "charging finished or interrupted",
    9: "ready, waiting for the vehicle to charge",
    10: "charging",
    11: "charging",
}


@dataclass(frozen=True, slots=True)
class Electrical:
    """What the vitals say about the supply and the load."""

    phases: int
    voltage_v: float
    phase_voltages_v: list[float] | None
    current_a: float | None
    power_w: float | None
    charging: bool | None


def plausible_voltage(reported: float | None) -> float | None:
    """A phase-to-neutral voltage from a reading, or None when it cannot be one."""
    if reported is None:
        return None
    value = reported / math.sqrt(3) if reported > LINE_TO_LINE_ABOVE_V else reported
    return value if MIN_PLAUSIBLE_V <= value <= MAX_PLAUSIBLE_V else None


def measure(vitals: Vitals, fallback_voltage_v: float = DEFAULT_VOLTAGE_V) -> Electrical:
    """Phases, voltage, current, power and charging from one vitals answer (rules in the module docstring)."""
    grid_v = plausible_voltage(vitals.grid_v)
    base_v = grid_v if grid_v is not None else fallback_voltage_v
    reported = [
        (current, plausible_voltage(voltage))
        for current, voltage in zip(vitals.phase_currents_a, vitals.phase_voltages_v, strict=True)
        if current is not None
    ]
    highest = max(current for current, _ in reported) if reported else vitals.vehicle_current_a
    if reported:
        active = [(current, voltage) for current, voltage in reported if current > ACTIVE_CURRENT_A]
    else:  # firmware without per-phase currents: the vehicle current on one phase
        active = [(highest, None)] if highest is not None and highest > ACTIVE_CURRENT_A else []

    phases, voltage, phase_voltages, power = _load(active, grid_v, base_v)
    if highest is None:  # no current reported at all: only the contactor tells
        return Electrical(phases, round(voltage, 1), phase_voltages, None, None, vitals.contactor_closed)
    current = round(highest, 1) if active else 0.0
    return Electrical(phases, round(voltage, 1), phase_voltages, current, round(power, 1), bool(active))


def _load(
    active: list[tuple[float, float | None]], grid_v: float | None, base_v: float
) -> tuple[int, float, list[float] | None, float]:
    """(phases, voltage, phase voltages, power) of the active phases: (current, plausible voltage or None)."""
    if not active:
        return 1, base_v, None, 0.0
    highest = max(current for current, _ in active)
    known = [v for _, v in active if v is not None]
    if len(active) == 2 and not (len(known) == 2 and min(known) >= MIN_SPLIT_LEG_AS_PHASE_V):
        # One single-phase load between two lines: the two 120 V legs of a US split phase (or unknown voltages).
        legs = plausible_voltage(sum(known)) if len(known) == 2 else None
        voltage = grid_v if grid_v is not None else legs if legs is not None else base_v
        return 1, voltage, [round(voltage, 1)], voltage * highest
    voltage = sum(known) / len(known) if known else base_v
    power = sum(current * (v if v is not None else voltage) for current, v in active)
    return len(active), voltage, [round(v, 1) for v in known] or None, power


def rated_amps(version: Version | None) -> float:
    """The unit's current rating per phase, from its part number when known, else the Gen3's largest."""
    part = version.part_number if version is not None else None
    if part:
        return RATINGS_BY_PART.get(part.split("-", 1)[0], DEFAULT_MAX_AMPS)
    return DEFAULT_MAX_AMPS


def status_text(vitals: Vitals | None, *, online: bool) -> str | None:
    if not online:
        return "not answering"
    if vitals is None or vitals.evse_state is None:
        return None
    text = EVSE_STATE_TEXT.get(vitals.evse_state, f"state {vitals.evse_state}")
    if vitals.current_alerts:
        text += f"; alerts {', '.join(vitals.current_alerts)}"
    return text


def build_evse_state(
    name: str,
    vitals: Vitals | None,
    lifetime: Lifetime | None = None,
    version: Version | None = None,
    *,
    online: bool,
    stale: bool,
    updated_at: datetime,
    vin: str | None = None,
    plugged_in_at: datetime | None = None,
    wired_phases: int = 1,
    fallback_voltage_v: float = DEFAULT_VOLTAGE_V,
    max_amps: float | None = None,
) -> EvseState:
    """The `twc3-<name>` EvseState. `vitals` None (or `online` False) means nothing is measured now: nulls.

    `wired_phases` is the most phases ever seen active, so an idle 3-phase unit keeps its 3-phase maximum;
    `max_amps` overrides the rating read from the part number.
    """
    live = vitals if online else None
    electrical = measure(live, fallback_voltage_v) if live is not None else None
    phases = electrical.phases if electrical is not None else 1
    voltage = electrical.voltage_v if electrical is not None else fallback_voltage_v
    amps = max_amps if max_amps is not None else rated_amps(version)
    return EvseState(
        evse_id=make_evse_id("twc3", name),
        kind="twc3",
        name=name,
        controllable=False,
        controls=[],
        online=online,
        vin=vin,
        plugged_in=live.vehicle_connected if live is not None else None,
        plugged_in_at=plugged_in_at if live is not None and live.vehicle_connected else None,
        charging=electrical.charging if electrical is not None else None,
        phases=phases,
        voltage_v=voltage,
        phase_voltages_v=electrical.phase_voltages_v if electrical is not None else None,
        current_a=electrical.current_a if electrical is not None else None,
        offered_a=None,
        power_w=electrical.power_w if electrical is not None else None,
        min_power_w=0.0,
        max_power_w=round(amps * voltage * max(phases, wired_phases), 1),
        step_w=round(voltage * phases, 1),
        session_energy_wh=_non_negative(live.session_energy_wh if live is not None else None),
        lifetime_energy_wh=_non_negative(lifetime.energy_wh if lifetime is not None else None),
        state_code=str(live.evse_state) if live is not None and live.evse_state is not None else None,
        status_text=status_text(vitals, online=online),
        source="local_api",
        updated_at=updated_at,
        stale=stale or not online,
    )


def _non_negative(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None


def pick_vin(
    vehicles: Mapping[str, VehicleState], *, unit_connected: bool | None, unit_charging: bool | None = None
) -> str | None:
    """The VIN of the car on this unit (docs/contract.md §7), from the cars configured to charge at it.

    A car counts while it reports being plugged in at home. A car whose home is unknown (`at_home` null) counts
    only while the unit itself sees a vehicle; nothing counts while the unit says no vehicle is connected. When
    several cars qualify, a charging one wins; still ambiguous → None (a wrong merge is worse than none).
    """
    if unit_connected is False:
        return None
    candidates = [
        state
        for state in vehicles.values()
        if state.plugged_in is True and (state.at_home is True or (state.at_home is None and unit_connected is True))
    ]
    if len(candidates) > 1 and unit_charging:
        candidates = [state for state in candidates if state.charging_state in {"Charging", "Starting"}]
    return candidates[0].vin if len(candidates) == 1 else None


def split_host(host: str, default_port: int = 80) -> tuple[str, int]:
    """`"ip"`, `"ip:port"`, `"[v6]:port"` or a bare IPv6 address → (host, port). Raises ValueError."""
    text = host.strip()
    name, port = text, default_port
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"host {host!r}: expected [ipv6] or [ipv6]:port")
        port = _port(host, rest[1:]) if rest else default_port
    elif text.count(":") == 1:
        name, _, raw_port = text.partition(":")
        port = _port(host, raw_port)
    if not name or any(c in name for c in "/?#@ "):
        raise ValueError(f"host {host!r}: expected an address or name, optionally with :port")
    return name, port


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}" if port == 80 else f"http://{shown}:{port}"


def _port(host: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65_536:
        raise ValueError(f"host {host!r}: port must be a number 1-65535")
    return int(raw)


@dataclass
class UnitTracker:
    """Everything the poller knows about one unit; decides what to publish and when. Times in clock seconds."""

    name: str
    offline_after: int = OFFLINE_AFTER_FAILURES
    republish_s: float = REPUBLISH_S
    max_amps: float | None = None
    vitals: Vitals | None = None
    lifetime: Lifetime | None = None
    version: Version | None = None
    failures: int = 0
    #: None until the first poll succeeded or the unit was declared offline
    online: bool | None = None
    last_ok_at: float | None = None
    plugged_in_at: float | None = None
    wired_phases: int = 1
    voltage_v: float = DEFAULT_VOLTAGE_V
    vehicles: dict[str, VehicleState] = field(default_factory=dict)
    _published: tuple[dict[str, Any], float] | None = None

    @property
    def evse_id(self) -> str:
        return make_evse_id("twc3", self.name)

    def vitals_ok(self, vitals: Vitals, now: float) -> bool:
        """Record a good answer. True when the unit was offline and is back."""
        recovered = self.online is False
        if vitals.vehicle_connected is False:
            self.plugged_in_at = None
        elif vitals.vehicle_connected and self.plugged_in_at is None:
            # After a restart mid-session, the session length dates the plug-in better than "now".
            self.plugged_in_at = now - (vitals.session_s or 0.0)
        electrical = measure(vitals, self.voltage_v)
        self.voltage_v = electrical.voltage_v
        self.wired_phases = max(self.wired_phases, electrical.phases)
        self.vitals, self.failures, self.online, self.last_ok_at = vitals, 0, True, now
        return recovered

    def poll_failed(self) -> bool:
        """Record a failed poll. True exactly once: when this failure makes the unit offline."""
        self.failures += 1
        if self.failures >= self.offline_after and self.online is not False:
            self.online = False
            return True
        return False

    def vehicle(self, vin: str, state: VehicleState | None) -> None:
        if state is None:
            self.vehicles.pop(vin, None)
        else:
            self.vehicles[vin] = state

    def vin(self) -> str | None:
        live = self.vitals if self.online else None
        electrical = measure(live, self.voltage_v) if live is not None else None
        return pick_vin(
            self.vehicles,
            unit_connected=live.vehicle_connected if live is not None else None,
            unit_charging=electrical.charging if electrical is not None else None,
        )

    def state(self, now: float) -> EvseState | None:
        """The EvseState to publish, or None while nothing is known yet (no answer, not yet offline)."""
        if self.online is None:
            return None
        stamp = self.last_ok_at if self.last_ok_at is not None else now
        return build_evse_state(
            self.name,
            self.vitals,
            self.lifetime,
            self.version,
            online=self.online,
            stale=self.failures >= STALE_AFTER_FAILURES,
            updated_at=datetime.fromtimestamp(stamp, tz=UTC),
            vin=self.vin(),
            plugged_in_at=None if self.plugged_in_at is None else datetime.fromtimestamp(self.plugged_in_at, tz=UTC),
            wired_phases=self.wired_phases,
            fallback_voltage_v=self.voltage_v,
            max_amps=self.max_amps,
        )

    def due(self, state: EvseState, monotonic: float) -> bool:
        """Publish when anything but `updated_at` changed, or `republish_s` after the last publication."""
        if self._published is None:
            return True
        content, at = self._published
        return content != _content(state) or monotonic - at >= self.republish_s

    def published(self, state: EvseState, monotonic: float) -> None:
        self._published = (_content(state), monotonic)


def _content(state: EvseState) -> dict[str, Any]:
    return state.model_dump(exclude={"updated_at"})
