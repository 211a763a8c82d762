"""Setpoint → car commands (charge_start, charge_stop, set_charging_amps) for one car, pure.

Every command costs money and keeps the car awake, and solar following would otherwise send one every few
seconds. So: start/stop only when the car's state differs; amps only when the whole-amp value changes, at most
once per `command_min_interval_s` (a burst of setpoints collapses into the latest one); stops at once, never
delayed. A car never starts at a current above the setpoint: a throttled decrease holds the start back.
Values below 5 A are sent twice (a single request lands at 5 A; the car takes the repeated one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chargebus.units import offer_amps

from chargebus_tesla.vehicle_data import ACTIVE_CHARGING, ChargingState

CHARGE_START = "charge_start"
CHARGE_STOP = "charge_stop"
SET_CHARGING_AMPS = "set_charging_amps"

DEFAULT_COMMAND_MIN_INTERVAL_S = 60.0
#: A set_charging_amps below this lands at 5 A unless the same value is sent a second time.
LOW_AMPS_QUIRK_BELOW = 5
#: The repeat goes this long after the first send, once the car has processed it (TWCManager's proven gap).
LOW_AMPS_REPEAT_DELAY_S = 5.0
#: After a start/stop we trust our own command over the car's older reports for this long (data lags).
SWITCH_SETTLE_S = 180.0
#: The largest AC current a Tesla requests; the ceiling while the car has not reported its own maximum.
CAR_MAX_AMPS = 48
#: The car will refuse a start in these states; asking would only cost.
_NOT_STARTABLE: frozenset[str] = frozenset({"Disconnected", "Complete"})
#: Refusals of charge_start that mean "it is already charging".
_ALREADY_CHARGING: frozenset[str] = frozenset({"is_charging", "charging", "requested"})


@dataclass(frozen=True, kw_only=True)
class Target:
    """What the setpoint asks of the car: `charge` None = do not start/stop; `amps` None = do not touch."""

    charge: bool | None
    amps: int | None


@dataclass(frozen=True)
class CarFacts:
    """The car's latest report, as far as commands care."""

    online: bool
    charging_state: ChargingState | None
    charge_current_request_a: float | None = None


@dataclass(frozen=True)
class PlannedCommand:
    name: str
    charging_amps: int | None = None
    #: wait this long after the previous command of the same plan before sending
    delay_s: float = 0.0

    @property
    def body(self) -> dict[str, Any]:
        return {} if self.charging_amps is None else {"charging_amps": self.charging_amps}


@dataclass(frozen=True)
class Plan:
    commands: tuple[PlannedCommand, ...] = ()
    #: a coalesced amps change (or a start waiting for it) is due then: plan again with the latest target
    retry_at: float | None = None
    reason: str = ""


def car_max_amps(charge_current_request_max_a: float | None) -> int:
    """The most the car may be asked for: its reported maximum (cable/EVSE limit), else CAR_MAX_AMPS."""
    if charge_current_request_max_a is None or charge_current_request_max_a <= 0:
        return CAR_MAX_AMPS
    return min(CAR_MAX_AMPS, int(charge_current_request_max_a))


def target_from_setpoint(
    *,
    power_w: float | None,
    charge: bool | None,
    setpoint_phases: int | None,
    setpoint_voltage_v: float | None,
    car_phases: int,
    car_voltage_v: float,
    min_amps: int,
    max_amps: int,
) -> Target:
    """Watts → whole amps at the setpoint's electrical basis (else the car's); below `min_amps` → 0 (a stop)."""
    if power_w is None:
        return Target(charge=charge, amps=None)
    phases = setpoint_phases or car_phases
    voltage_v = setpoint_voltage_v or car_voltage_v
    return Target(charge=charge, amps=offer_amps(power_w, voltage_v, phases, min_amps, max_amps))


def failsafe_target(failsafe_amps: int) -> Target | None:
    """On setpoint expiry: `failsafe_amps` 0 leaves the car alone (no billed call)."""
    return None if failsafe_amps <= 0 else Target(charge=None, amps=failsafe_amps)


def amps_commands(amps: int) -> tuple[PlannedCommand, ...]:
    first = PlannedCommand(SET_CHARGING_AMPS, amps)
    if amps < LOW_AMPS_QUIRK_BELOW:
        return first, PlannedCommand(SET_CHARGING_AMPS, amps, delay_s=LOW_AMPS_REPEAT_DELAY_S)
    return (first,)


class CommandPlanner:
    """The command memory of one car: what it was last told and when its amps last changed."""

    def __init__(self, min_interval_s: float = DEFAULT_COMMAND_MIN_INTERVAL_S) -> None:
        self.min_interval_s = min_interval_s
        self._known_amps: int | None = None
        self._last_reported_amps: float | None = None
        self._last_amps_at: float | None = None
        self._switched_at: float | None = None
        self._switched_to_charging = False
        self._start_refused_in: str | None = None

    def plan(self, now: float, target: Target, car: CarFacts) -> Plan:
        self._note_report(car)
        if not car.online or car.charging_state is None:
            return Plan(reason="car unreachable or its charging state unknown")
        charging = self._believes_charging(now, car)
        if target.charge is False or target.amps == 0:
            if not charging:
                return Plan(reason="already stopped")
            self._switch(now, charging=False)
            return Plan((PlannedCommand(CHARGE_STOP),), reason="stop")
        start = target.charge is True and not charging and self._startable(car)
        if not (charging or start):
            return Plan(reason="not charging and not asked to start")
        return self._plan_amps_and_start(now, target.amps, start)

    def refused(self, now: float, name: str, reason: str, charging_state: ChargingState | None) -> None:
        """The car answered `result: false` to `name` with `reason`, while reporting `charging_state`."""
        if name == CHARGE_START and reason in _ALREADY_CHARGING:
            self._switch(now, charging=True)
        elif name == CHARGE_START:
            self._switched_at = None
            # Asking again in the same state would be refused again: wait until the car's state changes.
            self._start_refused_in = charging_state
        elif name == CHARGE_STOP:
            self._switch(now, charging=False)

    def failed(self, command: PlannedCommand) -> None:
        """`command` did not reach the car (asleep, rate limited, network): forget what it would have changed."""
        if command.name == SET_CHARGING_AMPS:
            self._known_amps = None
        else:
            self._switched_at = None

    def _plan_amps_and_start(self, now: float, amps: int | None, start: bool) -> Plan:
        commands: list[PlannedCommand] = []
        if amps is not None and amps != self._known_amps:
            allowed_at = now if self._last_amps_at is None else self._last_amps_at + self.min_interval_s
            if allowed_at > now:
                if start and (self._known_amps is None or self._known_amps > amps):
                    return Plan(retry_at=allowed_at, reason="start waits until its lower current can be set")
                plan_start = (PlannedCommand(CHARGE_START),) if start else ()
                if start:
                    self._switch(now, charging=True)
                return Plan(plan_start, retry_at=allowed_at, reason=f"amps change to {amps} A coalesced")
            commands.extend(amps_commands(amps))
            self._known_amps, self._last_amps_at = amps, now
        if start:
            commands.append(PlannedCommand(CHARGE_START))
            self._switch(now, charging=True)
        return Plan(tuple(commands), reason="start" if start else "amps")

    def _note_report(self, car: CarFacts) -> None:
        # Only a *change* of the car's report overrides what we told it: an unchanged report is just older than
        # our last command, and a car that ignores a value (some ignore < 5 A) is not asked again and again.
        reported = car.charge_current_request_a
        if reported != self._last_reported_amps:
            self._last_reported_amps = reported
            if reported is not None:
                self._known_amps = int(reported)
        if car.charging_state != self._start_refused_in:
            self._start_refused_in = None

    def _believes_charging(self, now: float, car: CarFacts) -> bool:
        if self._switched_at is not None and now - self._switched_at < SWITCH_SETTLE_S:
            return self._switched_to_charging
        return car.charging_state in ACTIVE_CHARGING

    def _startable(self, car: CarFacts) -> bool:
        state = car.charging_state
        return state not in _NOT_STARTABLE and (self._start_refused_in is None or state != self._start_refused_in)

    def _switch(self, now: float, *, charging: bool) -> None:
        self._switched_at, self._switched_to_charging = now, charging
