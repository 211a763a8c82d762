"""The allocator core's inputs and outputs: plain frozen values, no I/O and no config objects.

All power is in watts and all times are epoch seconds (floats), so the core can be driven by a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from chargebus.schema import ChargePointStatus, Mode

from chargebus_allocator.site import Battery, SiteLimit

Phase = Literal["L1", "L2", "L3"]
#: The physical phase(s) an EVSE is wired to; a car using fewer phases loads the first ones.
Wiring = Literal["L1", "L2", "L3", "L1L2L3"]
ShareRule = Literal["fair", "priority"]
#: How a charge point is served this round: the schema's modes, plus the three that act like `now`.
PointMode = Literal["off", "now", "solar", "minsolar", "schedule", "charge_now", "plan"]
TimerPhase = Literal["idle", "starting", "charging", "stopping"]


@dataclass(frozen=True, slots=True)
class ChargePoint:
    """The EVSEs that reach one car, after the VIN merge (docs/contract.md §7), at the car's electrical basis."""

    id: str  # the primary EVSE: the one that controls current, else the one that measures
    min_power_w: float
    max_power_w: float
    step_w: float  # one ampere at voltage_v x phases
    phases: int = 1
    voltage_v: float = 230.0
    power_w: float = 0.0  # measured draw; 0 when unknown
    measured_evse_id: str | None = None  # the member whose report `power_w` is
    evse_ids: tuple[str, ...] = ()  # every member; empty means just `id`
    vin: str | None = None
    controllable: bool = True  # False: a read-only load, never sent setpoints
    current_evse_id: str | None = None  # gets `power_w`; None means `id`
    start_stop_evse_id: str | None = None  # gets `charge`; None means `id`
    follows_slowly: bool = False  # current set through a car's API: it lags, so circuits count its measured draw
    priority: int = 0
    circuit: str | None = None
    wiring: Wiring = "L1L2L3"
    plugged_in: bool = True
    online: bool = True
    wants_charge: bool = True
    authorized: bool = True
    charging: bool = False  # as the EVSE reports it: seeds the allocator's own state after a restart
    plugged_in_at: float | None = None
    mode: Mode | None = None  # per-EVSE override
    charge_now_until: float | None = None  # per-EVSE charge-now timer
    schedule_cap_w: float | None = None  # set while a schedule window covers this charge point
    plan_cap_w: float | None = None  # set while a departure plan's slot covers it (or its plan is overrun)
    soc_pct: float | None = None
    charge_limit_pct: float | None = None

    @property
    def key(self) -> str:
        """Identity across rounds: the car when known (so a merge forming later keeps its timers), else the EVSE."""
        return self.vin or self.id

    @property
    def members(self) -> tuple[str, ...]:
        return self.evse_ids or (self.id,)

    @property
    def current_target(self) -> str:
        return self.current_evse_id or self.id

    @property
    def start_stop_target(self) -> str:
        return self.start_stop_evse_id or self.id


@dataclass(frozen=True, slots=True)
class MeteredLoad:
    """A circuit meter's non-EVSE load. Per-phase currents win over per-phase powers, which win over the total."""

    power_w: float
    phase_power_w: tuple[float, float, float] | None = None
    phase_current_a: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class Circuit:
    """A node of the circuit tree: a current limit per phase."""

    id: str
    max_current_a: float
    phases: int = 3  # 1 or 3
    voltage_v: float = 230.0  # turns the meter's watts into amps
    parent: str | None = None
    phase: Phase = "L1"  # the supply phase a 1-phase circuit is on
    metered: MeteredLoad | None = None


@dataclass(frozen=True, slots=True)
class Delays:
    """Hysteresis settings (docs/allocation.md §6); they apply in solar and minsolar only."""

    enable_delay_s: float = 60.0
    disable_delay_s: float = 180.0
    min_on_s: float = 300.0
    min_off_s: float = 300.0


@dataclass(frozen=True, slots=True)
class GridReading:
    power_w: float  # + import, - export
    at: float  # when it was measured or received
    #: The controllable charge points' draw at the reading's own time (pairing.py); None: their latest reports.
    chargers_w: float | None = None
    #: Charge points whose draw changed just before the reading: it is no evidence for raising their offers.
    settling: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Settings:
    mode: Mode = "solar"
    reserve_w: float = 100.0
    share: ShareRule = "fair"
    delays: Delays = Delays()
    grid_stale_after_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Inputs:
    charge_points: tuple[ChargePoint, ...]
    circuits: tuple[Circuit, ...] = ()
    grid: GridReading | None = None
    charge_now_until: float | None = None  # the global charge-now timer
    settings: Settings = Settings()
    site: SiteLimit | None = None  # the site's import limits this round; None when none is configured
    battery: Battery | None = None  # the home battery; None when none is configured


@dataclass(frozen=True, slots=True)
class Timer:
    """The allocator's own view of one charge point across rounds (not the EVSE's report)."""

    phase: TimerPhase = "idle"
    since: float = 0.0  # when this phase began
    charged_since: float | None = None  # start of the current charge, for min_on_s
    stopped_at: float | None = None  # end of the last charge, for min_off_s
    #: What its setpoint said last round, the value the dead band holds; not part of the phase's identity.
    offered_w: float = field(default=0.0, compare=False)
    #: Since when a car set through its API has been kept above its share (docs/closed-loop-control.md §5).
    kept_since: float | None = field(default=None, compare=False)
    #: a car set through its API: the lowest share it has had lately, and since when (see allocate.SLOW_FLOOR_S)
    share_floor_w: float | None = field(default=None, compare=False)
    floor_since: float | None = field(default=None, compare=False)


class PointResult(NamedTuple):
    """One per charge point and round, like SetpointIntent: a NamedTuple is immutable and a quarter of the cost of
    a frozen dataclass to build, which a round of 1 000 charge points pays 1 000 times."""

    charge_point: ChargePoint
    mode: PointMode
    allocated_w: float  # what the setpoint says: 0 while starting, the minimum while stopping
    allocated_a: int
    state: ChargePointStatus
    reason: str


class SetpointIntent(NamedTuple):
    """What one EVSE is told. `None` fields mean "do not touch" (docs/contract.md §6)."""

    evse_id: str
    power_w: float | None
    charge: bool | None
    phases: int
    voltage_v: float
    reason: str


@dataclass(frozen=True, slots=True)
class CircuitLoad:
    id: str
    limit_a: float
    load_a: tuple[float, ...]  # one per phase of the circuit
    headroom_a: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Allocation:
    mode: Mode
    charge_now_until: float | None
    available_w: float | None  # the solar/minsolar budget; None when the global mode is unlimited
    grid_w: float | None
    surplus_w: float | None  # solar surplus with every controllable draw added back; None when unknown
    grid_stale: bool
    points: tuple[PointResult, ...]
    setpoints: tuple[SetpointIntent, ...]
    circuits: tuple[CircuitLoad, ...]
    site: SiteLimit | None = None
    battery: Battery | None = None
    #: Some charge point in now, a schedule window or charge-now charges: the grid, not the battery, should feed it.
    grid_charging: bool = False
