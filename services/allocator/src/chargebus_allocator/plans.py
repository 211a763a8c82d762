"""Departure plans between rounds: the requests, their deadlines, what each still needs, and when to re-plan.

`PlanBook` keeps the latest tariff and forecasts, the capacity each car has shown, and the plans of the last
planning; `plan` turns the charge points of a round into the planner's goals and plans them, `apply` marks the
charge points a planned slot (or an overrun) covers now. Pure: every time is passed in as epoch seconds.
docs/planning.md has the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from chargebus.config import WEEKDAYS
from chargebus.schema import (
    VIN_PATTERN,
    Co2Forecast,
    PlanRequest,
    PlanSlotState,
    PlanState,
    PlanStatus,
    PlanTarget,
    SolarForecast,
    Tariff,
    Weekday,
)

from chargebus_allocator import planner
from chargebus_allocator.model import ChargePoint, Circuit
from chargebus_allocator.planner import QUARTER_S, Goal, Outlook, Plan, Slot
from chargebus_allocator.schedules import local_to_epoch

#: Re-planned at least this often (and at every new tariff, forecast, plan, plug-in or unplug).
REPLAN_S = QUARTER_S
#: A capacity is learned once the SoC has risen this many points within one charge.
LEARN_SOC_POINTS = 10.0
#: At most this many cars' charges are followed for learning (far above any real installation).
MAX_LEARNING = 256
_VIN = re.compile(VIN_PATTERN)


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """A plan as set: the request and, for a plan that does not repeat, its departure fixed when it was set."""

    request: PlanRequest
    deadline: float | None  # epoch; None for a repeating plan (its next departure is found each time)

    def departure(self, zone: ZoneInfo, after: float) -> float:
        """The departure this plan means for a charge that began at `after`."""
        if self.deadline is not None:
            return self.deadline
        assert isinstance(self.request.by, str)
        return next_local_time(self.request.by, self.request.repeat, zone, after)


def store(request: PlanRequest, zone: ZoneInfo, now: float) -> StoredPlan:
    """A new plan: `by` as HH:MM without `repeat` means the next such local time from now, fixed now."""
    if isinstance(request.by, datetime):
        return StoredPlan(request, request.by.timestamp())
    if request.repeat is None:
        return StoredPlan(request, next_local_time(request.by, None, zone, now))
    return StoredPlan(request, None)


def next_local_time(clock: str, days: Sequence[Weekday] | None, zone: ZoneInfo, after: float) -> float:
    """The first `HH:MM` local time strictly after `after`, on one of `days` (any day when None); a time the clocks
    skip is the jump's instant, a time they pass twice its first occurrence."""
    hours, minutes = (int(part) for part in clock.split(":"))
    local = datetime.fromtimestamp(after, tz=zone)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if days is not None and WEEKDAYS[day.weekday()] not in days:
            continue
        candidate = local_to_epoch(day, time(hours, minutes), zone)  # schedule windows' rule across DST changes
        if candidate > after:
            return candidate
    raise AssertionError("a weekday set always has a day within a week")  # pragma: no cover


@dataclass(slots=True)
class _Charge:
    soc_pct: float
    energy_wh: float


#: A learned capacity outside this is a misreading, not a car.
CAPACITY_RANGE_WH = (1_000.0, 500_000.0)
#: A learned capacity is worth writing to the state file again once it moved this much (relative).
SAVE_CHANGE = 0.01


@dataclass(slots=True)
class CapacityLearner:
    """A car's usable capacity from its own reports: Δ`charge_energy_added_wh` / Δ`soc_pct` within one charge.
    What it learned is kept in the allocator's state file (`capacity_wh`), so a restart does not forget it."""

    learned_wh: dict[str, float] = field(default_factory=dict)
    _start: dict[str, _Charge] = field(default_factory=dict)
    _saved: dict[str, float] = field(default_factory=dict)

    def observe(self, vin: str, soc_pct: float | None, energy_added_wh: float | None) -> bool:
        """Take one report; True when a capacity changed enough to be written to the state file again."""
        if soc_pct is None or energy_added_wh is None:
            return False
        start = self._start.get(vin)
        if start is None or energy_added_wh < start.energy_wh or soc_pct < start.soc_pct:
            if len(self._start) < MAX_LEARNING or vin in self._start:
                self._start[vin] = _Charge(soc_pct, energy_added_wh)  # a new charge (the counter restarted)
            return False
        rise = soc_pct - start.soc_pct
        if rise < LEARN_SOC_POINTS or energy_added_wh <= start.energy_wh:
            return False
        capacity = (energy_added_wh - start.energy_wh) / rise * 100
        low, high = CAPACITY_RANGE_WH
        if not low <= capacity <= high or (vin not in self.learned_wh and len(self.learned_wh) >= MAX_LEARNING):
            return False
        self.learned_wh[vin] = capacity
        saved = self._saved.get(vin)
        return saved is None or abs(capacity - saved) > SAVE_CHANGE * saved

    def dump(self) -> dict[str, float]:
        """For the state file: the capacities by VIN, in whole Wh."""
        self._saved = dict(self.learned_wh)
        return {vin: round(wh) for vin, wh in sorted(self.learned_wh.items())}

    def load(self, raw: object) -> list[str]:
        """The state file's `capacity_wh`; one problem line per entry skipped."""
        if raw is None:
            return []
        if not isinstance(raw, dict):
            return ["capacity_wh: expected an object of VIN → Wh"]
        problems = []
        low, high = CAPACITY_RANGE_WH
        for vin, wh in list(raw.items())[:MAX_LEARNING]:
            number = wh if isinstance(wh, int | float) and not isinstance(wh, bool) else None
            if not isinstance(vin, str) or _VIN.fullmatch(vin) is None or number is None or not low <= number <= high:
                problems.append(f"capacity_wh {vin!r}: expected a VIN and {low:g}…{high:g} Wh, got {wh!r}")
                continue
            self.learned_wh[vin] = float(number)
        self._saved = dict(self.learned_wh)
        return problems


@dataclass(frozen=True, slots=True)
class Need:
    """What a charge point's plan still needs, or why it cannot be planned."""

    target: PlanTarget
    needed_wh: float
    status: PlanStatus | None  # met / needs_capacity: settled without planning; None: to be planned
    reason: str = ""


def need_of(
    stored: StoredPlan, point: ChargePoint, session_wh: float | None, capacity_wh: float | None, efficiency: float
) -> Need:
    request = stored.request
    if request.energy_wh is not None:
        target = PlanTarget(energy_wh=request.energy_wh)
        done = session_wh or 0.0
        needed = max(0.0, request.energy_wh - done)
    else:
        assert request.soc_pct is not None
        target = PlanTarget(soc_pct=request.soc_pct)
        if capacity_wh is None:
            return Need(target, 0.0, "needs_capacity", "battery capacity unknown: set battery_wh or let it charge 10 %")
        if point.soc_pct is None:
            return Need(target, 0.0, "at_risk", "the car reports no SoC yet")
        needed = max(0.0, (request.soc_pct - point.soc_pct) / 100 * capacity_wh / efficiency)
    if needed <= planner.TOLERANCE_WH:
        return Need(target, 0.0, "met", "target reached")
    return Need(target, needed, None)


@dataclass(frozen=True, slots=True)
class Planned:
    """One charge point's plan as the last planning left it."""

    owner: str  # the VIN or EVSE id it was set for
    stored: StoredPlan
    by: float
    need: Need
    plan: Plan | None  # None when it was settled without planning (met, needs_capacity, unplugged…)
    currency: str | None

    def state(self) -> PlanState:
        plan = self.plan
        status: PlanStatus = self.need.status or (plan.outcome if plan is not None else "at_risk")
        reason = self.need.reason or (plan.reason if plan is not None else "")
        slots = plan.slots if plan is not None else ()
        return PlanState(
            target=self.need.target,
            by=datetime.fromtimestamp(self.by, tz=UTC),
            strategy=self.stored.request.strategy,
            needed_wh=round(self.need.needed_wh, 1),
            solar_expected_wh=round(plan.solar_expected_wh, 1) if plan is not None else 0.0,
            grid_wh=round(plan.grid_wh, 1) if plan is not None else 0.0,
            cost=round(plan.cost, 4) if plan is not None else 0.0,
            currency=self.currency,
            slots=[
                PlanSlotState(
                    start=datetime.fromtimestamp(slot.start, tz=UTC),
                    end=datetime.fromtimestamp(slot.end, tz=UTC),
                    power_w=slot.power_w,
                )
                for slot in slots
            ],
            status=status,
            reason=reason,
        )

    def cap_w(self, point: ChargePoint, now: float) -> float | None:
        """The power a planned slot allows now, None outside every slot."""
        if self.plan is None or self.need.status is not None:
            return None
        if self.plan.outcome == "overrun":
            return point.max_power_w
        return self.plan.power_at(now)


@dataclass(frozen=True, slots=True)
class PlanContext:
    """Everything a planning reads besides the charge points."""

    plans: Mapping[str, StoredPlan]  # by VIN or EVSE id, as set
    session_wh: Mapping[str, float | None]  # by EVSE id: the session energy it reports
    capacity_wh: Mapping[str, float]  # by VIN: configured, else learned
    solar_modes: frozenset[str]  # keys of charge points whose mode takes solar surplus
    circuits: tuple[Circuit, ...]
    zone: ZoneInfo
    efficiency: float
    house_load_w: tuple[float, ...]
    max_import_w: float | None


@dataclass(slots=True)
class PlanBook:
    """The latest inputs of planning and its result, and when the next planning is due."""

    tariff: Tariff | None = None
    feedin: Tariff | None = None
    solar: SolarForecast | None = None
    co2: Co2Forecast | None = None
    learner: CapacityLearner = field(default_factory=CapacityLearner)
    planned: dict[str, Planned] = field(default_factory=dict)  # by charge point key
    planned_at: float | None = None
    dirty: bool = True  # a new tariff, forecast or plan: re-plan at the next round
    signature: object = None

    def outlook(self, context: PlanContext, now: float) -> Outlook:
        offset = datetime.fromtimestamp(now, tz=context.zone).utcoffset()
        return Outlook(
            grid_price=_slots(self.tariff, "price", now),
            solar_w=_slots(self.solar, "power_w", now),
            co2=_slots(self.co2, "g_per_kwh", now),
            house_load_w=context.house_load_w,
            utc_offset_s=offset.total_seconds() if offset is not None else 0.0,
            max_import_w=context.max_import_w,
        )

    def due(self, points: Iterable[ChargePoint], context: PlanContext, now: float) -> bool:
        signature = (
            tuple((p.key, p.plugged_in, _plan_of(p, context.plans) is not None) for p in sorted(points, key=_key)),
            context.solar_modes,
        )
        changed = signature != self.signature
        self.signature = signature
        late = self.planned_at is None or now >= self.planned_at + REPLAN_S
        return self.dirty or changed or late or self._crossed_a_target(points, context)

    def _crossed_a_target(self, points: Iterable[ChargePoint], context: PlanContext) -> bool:
        """A plan still being served reached its target: re-plan now, not at the next quarter hour."""
        for point in points:
            planned = self.planned.get(point.key)
            if planned is None or planned.need.status is not None:
                continue
            need = need_of(
                planned.stored, point, _session_wh(point, context), _capacity(point, context), context.efficiency
            )
            if need.status == "met":
                return True
        return False

    def plan(self, points: Sequence[ChargePoint], context: PlanContext, now: float) -> None:
        """Plan every plugged-in charge point with a plan, jointly."""
        goals: list[Goal] = []
        settled: dict[str, tuple[str, StoredPlan, float, Need]] = {}
        for point in points:
            found = _plan_of(point, context.plans)
            if found is None:
                continue
            owner, stored = found
            began = point.plugged_in_at if point.plugged_in_at is not None else now
            by = self._departure(point, stored, context.zone, began, now)
            need = need_of(stored, point, _session_wh(point, context), _capacity(point, context), context.efficiency)
            if not point.plugged_in:
                need = Need(need.target, need.needed_wh, "at_risk", "not plugged in")
            elif not point.controllable:
                need = Need(need.target, need.needed_wh, "at_risk", "read-only: it takes no setpoints")
            settled[point.key] = (owner, stored, by, need)
            if need.status is None:
                previous = self.planned.get(point.key)
                running = previous.cap_w(point, now) if previous is not None and point.charging else None
                goals.append(
                    Goal(point, need.needed_wh, by, stored.request.strategy, point.key in context.solar_modes,
                         running_w=running or 0.0)
                )  # fmt: skip
        plans = planner.plan_jointly(goals, self.outlook(context, now), context.circuits, now)
        currency = self.tariff.currency if self.tariff is not None else None
        self.planned = {
            key: Planned(owner, stored, by, need, plans.get(key), currency)
            for key, (owner, stored, by, need) in settled.items()
        }
        self.planned_at = now
        self.dirty = False

    def _departure(self, point: ChargePoint, stored: StoredPlan, zone: ZoneInfo, began: float, now: float) -> float:
        """A repeating plan's departure: the first after the charge began, moved on once passed and met."""
        by = stored.departure(zone, began)
        previous = self.planned.get(point.key)
        if stored.deadline is None and by <= now and previous is not None and previous.need.status == "met":
            by = stored.departure(zone, now)
        return by

    def apply(self, points: Sequence[ChargePoint], now: float) -> tuple[ChargePoint, ...]:
        """The charge points with `plan_cap_w` set where a planned slot (or an overrun) covers now."""
        out = []
        for point in points:
            planned = self.planned.get(point.key)
            cap = planned.cap_w(point, now) if planned is not None else None
            out.append(replace(point, plan_cap_w=cap) if cap is not None else point)
        return tuple(out)

    def states(self) -> dict[str, PlanState]:
        return {key: planned.state() for key, planned in self.planned.items()}

    def next_change(self, now: float) -> float | None:
        """The next slot edge of any plan, or the next re-planning, whichever comes first."""
        edges = [self.planned_at + REPLAN_S] if self.planned_at is not None and self.planned else []
        for planned in self.planned.values():
            if planned.plan is not None:
                edges += [edge for slot in planned.plan.slots for edge in (slot.start, slot.end) if edge > now]
        return min(edges) if edges else None


def _plan_of(point: ChargePoint, plans: Mapping[str, StoredPlan]) -> tuple[str, StoredPlan] | None:
    """The plan serving a charge point and the VIN or EVSE id it was set for: a car's plan wins over a plan on one
    of the EVSEs that reach it."""
    for owner in (point.vin, *point.members):
        if owner is not None and owner in plans:
            return owner, plans[owner]
    return None


def _session_wh(point: ChargePoint, context: PlanContext) -> float | None:
    measured = point.measured_evse_id or point.id
    return context.session_wh.get(measured)


def _capacity(point: ChargePoint, context: PlanContext) -> float | None:
    return context.capacity_wh.get(point.vin) if point.vin is not None else None


def _key(point: ChargePoint) -> str:
    return point.key


def _slots(message: Tariff | SolarForecast | Co2Forecast | None, attribute: str, now: float) -> tuple[Slot, ...]:
    """A message's slots as the planner's, or none when it is absent or already over (older than its last slot)."""
    if message is None or not message.slots or message.slots[-1].end.timestamp() <= now:
        return ()
    return tuple(
        Slot(slot.start.timestamp(), slot.end.timestamp(), float(getattr(slot, attribute))) for slot in message.slots
    )
