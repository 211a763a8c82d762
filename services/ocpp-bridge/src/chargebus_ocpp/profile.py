"""Setpoints → OCPP charging profiles. Pure: no I/O, times and settings passed in.

A setpoint is watts; a charger is told whole amps per phase (or, in W mode, the power of those whole amps). The
limit is floored at the setpoint's phases × voltage (else the charge point's own), capped at `max_current_a` (and
a `max_current` override) whatever the allocator asked, and 0 below `min_current_a`: a car is never offered the
1–5 A band. Until the first setpoint, and whenever setpoints expire, the limit is `failsafe_current_a`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from chargebus.config import OcppChargePointConfig
from chargebus.schema import Setpoint
from chargebus.units import amps_to_watts, clamp_offer, offer_amps

RateUnit = Literal["A", "W"]
Purpose = Literal["TxDefaultProfile", "TxProfile"]
OcppVersion = Literal["1.6", "2.0.1"]

#: Profile ids: one per purpose and connector, so each new profile replaces the one it supersedes.
TX_DEFAULT_ID_BASE = 10
TX_ID_BASE = 20


@dataclass(frozen=True, slots=True)
class Basis:
    """The electrical basis of a limit: phases × phase voltage."""

    phases: int
    voltage_v: float


@dataclass(frozen=True, slots=True)
class Target:
    """What one connector should be limited to, and why."""

    amps: int
    basis: Basis
    failsafe: bool
    reason: str


def basis_of(setpoint: Setpoint | None, cp: OcppChargePointConfig) -> Basis:
    """The setpoint's phases/voltage when it carries them (after a VIN merge the car's phase count wins), else the
    charge point's configuration."""
    phases = setpoint.phases if setpoint is not None and setpoint.phases is not None else cp.phases
    voltage = setpoint.voltage_v if setpoint is not None and setpoint.voltage_v is not None else cp.voltage_v
    return Basis(phases, voltage)


def max_amps(cp: OcppChargePointConfig, override_a: int | None = None) -> int:
    """The most this connector is ever offered: the installer's limit, lowered by a `max_current` override."""
    return cp.max_current_a if override_a is None else min(cp.max_current_a, override_a)


def setpoint_amps(power_w: float, basis: Basis, cp: OcppChargePointConfig, override_a: int | None = None) -> int:
    """Whole amps for a power: floored, capped at the maximum, 0 below `min_current_a`."""
    return offer_amps(power_w, basis.voltage_v, basis.phases, cp.min_current_a, max_amps(cp, override_a))


def failsafe_target(cp: OcppChargePointConfig, override_a: int | None, why: str) -> Target:
    amps = clamp_offer(cp.failsafe_current_a, cp.min_current_a, max_amps(cp, override_a))
    return Target(amps, Basis(cp.phases, cp.voltage_v), failsafe=True, reason=why)


def target_for(
    setpoint: Setpoint | None,
    cp: OcppChargePointConfig,
    *,
    live: bool,
    override_a: int | None = None,
    previous: Target | None = None,
) -> Target:
    """The limit a connector should have now.

    No setpoint or an expired one → failsafe. `charge` false → 0. `power_w` null ("do not touch the current")
    keeps the previous limit, or the failsafe when there is none.
    """
    if setpoint is None:
        return failsafe_target(cp, override_a, "no setpoint yet")
    if not live:
        return failsafe_target(cp, override_a, "setpoint expired")
    basis = basis_of(setpoint, cp)
    if setpoint.charge is False:
        return Target(0, basis, failsafe=False, reason="charge false")
    if setpoint.power_w is None:
        if previous is not None and not previous.failsafe:
            return previous
        return failsafe_target(cp, override_a, "setpoint leaves the current as it is")
    amps = setpoint_amps(setpoint.power_w, basis, cp, override_a)
    return Target(amps, basis, failsafe=False, reason=f"setpoint {setpoint.power_w:g} W")


def limit_value(amps: int, unit: RateUnit, basis: Basis) -> float:
    """The profile's limit: the whole amps, or in W mode their power at the basis, floored to the 0.1 W the
    protocol's one decimal can carry (never a hair above the power of those amps)."""
    if unit == "A":
        return float(amps)
    return math.floor(amps_to_watts(amps, basis.voltage_v, basis.phases) * 10 + 1e-6) / 10


def other_unit(unit: RateUnit) -> RateUnit:
    return "W" if unit == "A" else "A"


def profile_id(purpose: Purpose, connector_id: int) -> int:
    return (TX_DEFAULT_ID_BASE if purpose == "TxDefaultProfile" else TX_ID_BASE) + connector_id


def charging_profile(
    version: OcppVersion,
    *,
    purpose: Purpose,
    connector_id: int,
    amps: int,
    unit: RateUnit,
    basis: Basis,
    stack_level: int,
    start_schedule: str,
    transaction_id: int | str | None = None,
) -> dict[str, Any]:
    """The charging profile (snake_case keys, as the `ocpp` library takes them) for one limit.

    An absolute profile with one period from `start_schedule`: the form every charger we met accepts.
    """
    period = {"start_period": 0, "limit": limit_value(amps, unit, basis), "number_phases": basis.phases}
    if version == "1.6":
        profile: dict[str, Any] = {
            "charging_profile_id": profile_id(purpose, connector_id),
            "stack_level": stack_level,
            "charging_profile_purpose": purpose,
            "charging_profile_kind": "Absolute",
            "charging_schedule": {
                "charging_rate_unit": unit,
                "start_schedule": start_schedule,
                "charging_schedule_period": [period],
            },
        }
        if purpose == "TxProfile" and transaction_id is not None:
            profile["transaction_id"] = int(transaction_id)
        return profile
    profile = {
        "id": profile_id(purpose, connector_id),
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": profile_id(purpose, connector_id),
                "charging_rate_unit": unit,
                "start_schedule": start_schedule,
                "charging_schedule_period": [period],
            }
        ],
    }
    if purpose == "TxProfile" and transaction_id is not None:
        profile["transaction_id"] = str(transaction_id)
    return profile


def stack_level_for(max_stack_level: int | None) -> int:
    """Our profiles' stack level: the highest the charger allows (so a leftover profile of another CSMS cannot
    override ours), capped at a value every charger accepts when it says nothing."""
    if max_stack_level is None or max_stack_level < 0:
        return 1
    return min(max_stack_level, 100)


@dataclass(slots=True)
class RateUnits:
    """Which ChargingRateUnit a charger takes: the configured one first; after a rejection the other one once; a
    unit that worked is kept for later profiles."""

    configured: RateUnit
    allowed: tuple[RateUnit, ...] = ("A", "W")
    working: RateUnit | None = None

    def first(self) -> RateUnit:
        if self.working is not None:
            return self.working
        if self.configured not in self.allowed and self.allowed:
            return self.allowed[0]
        return self.configured

    def retry_after_rejection(self, rejected: RateUnit) -> RateUnit | None:
        """The one unit to retry with after `rejected` was refused, or None (already tried, or not offered)."""
        if self.working == rejected:
            self.working = None
        retry = other_unit(rejected)
        if retry not in self.allowed:
            return None
        return retry

    def accepted(self, unit: RateUnit) -> None:
        self.working = unit


def allowed_units(value: str | None) -> tuple[RateUnit, ...]:
    """ChargingScheduleAllowedChargingRateUnit (`Current`, `Power`, `Current,Power`, or `A`/`W`) as units."""
    if value is None:
        return ("A", "W")
    found: list[RateUnit] = []
    for raw in value.replace(";", ",").split(","):
        word = raw.strip().lower()
        if word in {"current", "a"} and "A" not in found:
            found.append("A")
        elif word in {"power", "w"} and "W" not in found:
            found.append("W")
    return tuple(found) or ("A", "W")


@dataclass(slots=True)
class IgnoredLimitWatch:
    """Notices a charger that accepted a limit but keeps drawing above it (go-e chargers do this).

    `observe` returns True once, when the draw has stayed more than `tolerance_a` above the limit for longer than
    `grace_s` (a car needs a few seconds to follow a decrease). It is armed again once the draw obeys.
    """

    grace_s: float = 30.0
    tolerance_a: float = 1.0
    _above_since: float | None = None
    _reported: bool = False

    def observe(self, limit_a: float | None, measured_a: float | None, now: float) -> bool:
        if limit_a is None or measured_a is None or measured_a <= limit_a + self.tolerance_a:
            self._above_since = None
            self._reported = False
            return False
        if self._above_since is None:
            self._above_since = now
        if not self._reported and now - self._above_since > self.grace_s:
            self._reported = True
            return True
        return False
