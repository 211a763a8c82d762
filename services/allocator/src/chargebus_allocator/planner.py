"""Departure plans: which quarter hours each charge point with a plan buys from the grid, planned jointly.

Pure: time comes in as epoch seconds, prices and forecasts as slots; nothing here reads the clock or MQTT.
docs/planning.md explains the rules; in short:

- Time is cut into clock-aligned quarter hours from now to the latest departure (the first one is what is left
  of the present quarter; a departure inside a quarter cuts it there). Every plan is made in the same grid, so
  two plans on one circuit share its amperes.
- Plans are made one after the other: higher priority first, then the earlier departure, then the id. Each takes
  what the earlier ones left: circuit room per phase, the site's import cap, and the forecast sun.
- The sun first: a charge point whose mode takes solar surplus counts on the forecast generation minus the house's
  usual load, where that surplus reaches its minimum power, and in a quarter no more than the grid could still bring
  after it before departure (so a sun that does not come can still be bought in time). It buys only the rest:
  `cheapest` takes the cheapest quarters before departure, a quarter that would start a new run counting
  START_PENALTY per kWh dearer than one next to a run (greener, then later, breaks ties, so a flat price charges as
  late as possible); `continuous` the cheapest run of consecutive quarters; `solar_only` buys nothing.
- The present quarter is never bought alone when less than a quarter hour of it is left, unless that charge point
  is already charging in a slot (a running slot is not cut short: it keeps its power to the quarter's end) or no
  other quarter before departure can carry it.
- What does not fit before departure makes the plan `at_risk`, with the reason; past its departure a plan that is
  not met is `overrun` and charges at its maximum.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chargebus.schema import PlanStrategy

from chargebus_allocator import wording
from chargebus_allocator.circuits import Footprint, Network, build_tree
from chargebus_allocator.model import ChargePoint, Circuit

QUARTER_S = 900.0
#: No plan looks further ahead than this (a departure later than that is planned as far as this reaches).
HORIZON_S = 4 * 86_400.0
#: Energy within this of the need counts as met (rounding of powers and quarter fractions).
TOLERANCE_WH = 1.0

PlanOutcome = Literal["on_track", "at_risk", "overrun"]


@dataclass(frozen=True, slots=True)
class Slot:
    """`[start, end)` with one value: a price per kWh, a mean power in W, or g CO2 per kWh."""

    start: float
    end: float
    value: float


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the planner knows about the coming hours."""

    grid_price: tuple[Slot, ...] = ()
    solar_w: tuple[Slot, ...] = ()
    co2: tuple[Slot, ...] = ()
    #: The house's usual load (W) by local hour of day (24 values), or one value for every hour.
    house_load_w: tuple[float, ...] = (400.0,)
    #: Seconds to add to epoch time to get the local time of day (the zone's offset now).
    utc_offset_s: float = 0.0
    #: The site's grid import cap in W; None for none.
    max_import_w: float | None = None


@dataclass(frozen=True, slots=True)
class Goal:
    """One charge point's departure goal, as the planner needs it."""

    point: ChargePoint
    needed_wh: float  # still to charge, at the wall
    by: float
    strategy: PlanStrategy
    solar_welcome: bool  # its mode outside slots takes solar surplus
    running_w: float = 0.0  # the power of the slot it is charging in now, 0 when none


@dataclass(frozen=True, slots=True)
class PlannedSlot:
    start: float
    end: float
    power_w: float


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    slots: tuple[PlannedSlot, ...]  # quarters that buy from the grid (served like `now` at up to power_w)
    solar_expected_wh: float
    grid_wh: float
    cost: float
    outcome: PlanOutcome
    reason: str

    def power_at(self, when: float) -> float | None:
        """The planned power of the slot covering `when`, None outside every slot."""
        for slot in self.slots:
            if slot.start <= when < slot.end:
                return slot.power_w
        return None


@dataclass(slots=True)
class _Quarter:
    start: float
    end: float
    price: float | None
    co2: float | None
    surplus_w: float  # forecast sun left after the house and earlier plans
    import_room_w: float  # what the site cap still lets the plans draw together: cap − house + sun (inf: no cap)
    room_a: list[float]  # per circuit slot

    @property
    def hours(self) -> float:
        return (self.end - self.start) / 3600.0


def plan_jointly(goals: Sequence[Goal], outlook: Outlook, circuits: Sequence[Circuit], now: float) -> dict[str, Plan]:
    """Every goal planned in one quarter-hour grid, so none counts on room an earlier one took."""
    if not goals:
        return {}
    network = Network(build_tree(circuits))
    last = min(max(*(goal.by for goal in goals), now + QUARTER_S), now + HORIZON_S)
    cuts = {goal.by for goal in goals if now < goal.by < last}  # and `last` ≥ now + a quarter: never an empty grid
    grid = _quarters(now, last, cuts, outlook, network.free())
    plans: dict[str, Plan] = {}
    for goal in sorted(goals, key=lambda g: (-g.point.priority, g.by, g.point.id)):
        plans[goal.point.key] = _plan_one(goal, grid, network.footprint(goal.point), outlook, now)
    return plans


def _quarters(now: float, last: float, cuts: set[float], outlook: Outlook, room_a: list[float]) -> list[_Quarter]:
    """Quarter hours from now to `last`, also cut at each departure so a plan's last one ends at its departure."""
    out: list[_Quarter] = []
    price, solar, co2 = _Series(outlook.grid_price), _Series(outlook.solar_w), _Series(outlook.co2)
    start = now
    while start < last:
        end = min((math.floor(start / QUARTER_S) + 1) * QUARTER_S, last)
        end = min([end, *(cut for cut in cuts if start < cut < end)])
        middle = (start + end) / 2
        load = _house_load_w(outlook, middle)
        sun = solar.at(middle) or 0.0
        cap = outlook.max_import_w
        import_room = math.inf if cap is None else max(0.0, cap - load + sun)
        out.append(
            _Quarter(
                start, end, price.at(middle), co2.at(middle), max(0.0, sun - load), import_room, list(room_a),
            )
        )  # fmt: skip
        start = end
    return out


def _house_load_w(outlook: Outlook, when: float) -> float:
    profile = outlook.house_load_w
    if len(profile) == 1:
        return profile[0]
    hour = int(((when + outlook.utc_offset_s) % 86_400) // 3600)
    return profile[hour % len(profile)]


class _Series:
    """Sorted, contiguous slots, looked up by time (their starts indexed once, not once per quarter)."""

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = slots
        self.starts = [slot.start for slot in slots]

    def at(self, when: float) -> float | None:
        """The value of the slot covering `when`, None outside them."""
        index = bisect.bisect_right(self.starts, when) - 1
        if index >= 0 and when < self.slots[index].end:
            return self.slots[index].value
        return None


class _Planning:
    """One goal against what is left of the grid."""

    def __init__(self, goal: Goal, grid: list[_Quarter], footprint: Footprint) -> None:
        self.goal = goal
        self.point = goal.point
        self.grid = grid
        self.footprint = footprint
        self.window = [i for i, quarter in enumerate(grid) if quarter.end <= goal.by]
        self.solar_w = [0.0] * len(grid)
        self.grid_w = [0.0] * len(grid)

    def room_w(self, i: int) -> float:
        """What this charge point may still draw in quarter i: its maximum, the circuits' and the site's room."""
        quarter = self.grid[i]
        room = min(self.point.max_power_w - self.solar_w[i] - self.grid_w[i], quarter.import_room_w)
        for slot, amps_per_w in self.footprint.steady:
            room = min(room, quarter.room_a[slot] / amps_per_w)
        return max(0.0, room)

    def take(self, i: int, watts: float, *, solar: bool) -> None:
        """Count `watts` of its draw in quarter i (negative: give them back)."""
        quarter = self.grid[i]
        for slot, amps_per_w in self.footprint.steady:
            quarter.room_a[slot] -= amps_per_w * watts
        quarter.import_room_w -= watts  # the cap counts every draw: the sun's share is already in its room
        if solar:
            self.solar_w[i] += watts
            quarter.surplus_w -= watts
        else:
            self.grid_w[i] += watts

    def usable_w(self, i: int, wanted_w: float) -> float:
        """The power a quarter can give toward `wanted_w`: 0 when not even the minimum fits."""
        room = self.room_w(i)
        total = self.solar_w[i] + self.grid_w[i]
        if total + room < self.point.min_power_w:
            return 0.0
        watts = min(room, wanted_w)
        return max(watts, self.point.min_power_w - total)

    def count_sun(self, needed_wh: float) -> float:
        """Take forecast surplus toward `needed_wh`, where at least the minimum power is there to start on, and in
        each quarter no more than the grid could still bring after it before departure: when the forecast sun
        does not come, a later planning can still buy what it was counted for."""
        expected = 0.0
        fallback_wh = [0.0] * (len(self.window) + 1)  # what the grid could bring after each quarter of the window
        for k in range(len(self.window) - 1, -1, -1):
            i = self.window[k]
            fallback_wh[k] = fallback_wh[k + 1] + self.room_w(i) * self.grid[i].hours
        for k, i in enumerate(self.window):
            left = needed_wh - expected
            if left <= TOLERANCE_WH:
                break
            quarter = self.grid[i]
            available = min(self.room_w(i), quarter.surplus_w)
            if self.goal.strategy != "solar_only":  # solar_only would not buy the fallback anyway
                available = min(available, fallback_wh[k + 1] / quarter.hours)
            if available < self.point.min_power_w:
                continue  # solar mode would not start on it, or the grid could not stand in for it in time
            watts = min(available, max(self.point.min_power_w, left / quarter.hours))
            self.take(i, watts, solar=True)
            expected += watts * quarter.hours
        return expected

    def buy(self, needed_wh: float, order: list[int]) -> float:
        bought = 0.0
        for i in order:
            if needed_wh - bought <= TOLERANCE_WH:
                break
            quarter = self.grid[i]
            watts = self.usable_w(i, (needed_wh - bought) / quarter.hours)
            if watts > 0:
                self.take(i, watts, solar=False)
                bought += watts * quarter.hours
        return bought

    def release(self, i: int) -> float:
        """Give back what quarter i buys; the energy it would have brought."""
        watts = self.grid_w[i]
        self.take(i, -watts, solar=False)
        return watts * self.grid[i].hours


def _price_key(quarter: _Quarter) -> tuple[float, float, float]:
    price = math.inf if quarter.price is None else quarter.price
    return (price, quarter.co2 if quarter.co2 is not None else 0.0, -quarter.start)


def _plan_one(goal: Goal, grid: list[_Quarter], footprint: Footprint, outlook: Outlook, now: float) -> Plan:
    planning = _Planning(goal, grid, footprint)
    point = goal.point
    if now >= goal.by:
        return _overrun(planning)
    needed = max(0.0, goal.needed_wh)
    first = planning.window[0] if planning.window else None
    if first is not None and goal.running_w > 0:
        # A running slot is not cut short: it keeps its power to the end of the present quarter.
        planning.take(first, min(goal.running_w, planning.room_w(first)), solar=False)
        needed -= planning.grid_w[first] * grid[first].hours
    solar = planning.count_sun(max(0.0, needed)) if goal.solar_welcome else 0.0
    rest = max(0.0, needed - solar)
    if goal.strategy != "solar_only" and rest > TOLERANCE_WH:
        order = _purchase_order(planning, goal.strategy, rest)
        bought = planning.buy(rest, order)
        if first is not None and goal.running_w <= 0 and _alone(planning, first):
            # less than a quarter hour left of the present one, and nothing after it: do not start for so little,
            # unless nothing else before departure can carry it (a departure minutes away)
            bought -= planning.release(first)
            bought += planning.buy(rest - bought, [i for i in order if i != first])
            bought += planning.buy(rest - bought, [first])
    grid_wh = sum(w * grid[i].hours for i, w in enumerate(planning.grid_w))
    solar_wh = sum(w * grid[i].hours for i, w in enumerate(planning.solar_w))
    short_wh = max(0.0, goal.needed_wh - solar_wh - grid_wh)
    reason = ""
    outcome: PlanOutcome = "on_track"
    if short_wh > TOLERANCE_WH:
        outcome = "at_risk"
        reason = _why_short(planning, short_wh, goal, outlook)
    return Plan(
        point.key, _runs(planning), solar_wh, grid_wh, _cost(planning), outcome, reason,
    )  # fmt: skip


def _alone(planning: _Planning, first: int) -> bool:
    grid = planning.grid
    short = grid[first].end - grid[first].start < QUARTER_S
    following = first + 1 < len(grid) and planning.grid_w[first + 1] > 0
    return short and planning.grid_w[first] > 0 and not following


#: Per kWh: how much cheaper a quarter that starts a new run must be than one next to a run (a start costs: the
#: car wakes, the contactor clicks, and each start is a chance to fail).
START_PENALTY = 0.02


def _purchase_order(planning: _Planning, strategy: PlanStrategy, needed_wh: float) -> list[int]:
    if strategy == "cheapest":
        return _cheapest_joined(planning, needed_wh)
    return _cheapest_run(planning, needed_wh)


def _cheapest_joined(planning: _Planning, needed_wh: float) -> list[int]:
    """`cheapest`, one quarter at a time: the cheapest, where a quarter next to one it charges in (from the grid or
    the sun, or, for the present quarter, the charge running now) counts START_PENALTY per kWh cheaper than one
    that would start a new run. The quarters are taken here to find the order, then given back: `buy` replays it."""
    grid = planning.grid
    window = set(planning.window)
    before_first = planning.window[0] - 1 if planning.window else None

    def charges_in(j: int) -> bool:
        if j == before_first:
            return planning.point.charging
        return j in window and (planning.grid_w[j] > 0 or planning.solar_w[j] > 0)

    def key(i: int) -> tuple[float, float, float]:
        price, co2, late = _price_key(grid[i])
        joined = charges_in(i - 1) or charges_in(i + 1)
        return (price + (0.0 if joined else START_PENALTY), co2, late)

    order: list[int] = []
    taken: list[tuple[int, float]] = []
    left = set(planning.window)
    bought = 0.0
    while left and needed_wh - bought > TOLERANCE_WH:
        best = min(left, key=key)
        left.remove(best)
        order.append(best)
        watts = planning.usable_w(best, (needed_wh - bought) / grid[best].hours)
        if watts > 0:
            planning.take(best, watts, solar=False)
            taken.append((best, watts))
            bought += watts * grid[best].hours
    for i, watts in reversed(taken):
        planning.take(i, -watts, solar=False)
    return order + sorted(left, key=lambda i: _price_key(grid[i]))


def _cheapest_run(planning: _Planning, needed_wh: float) -> list[int]:
    """`continuous`: the consecutive quarters that bring `needed_wh` at the lowest cost (the latest on a tie)."""
    grid, window = planning.grid, planning.window
    best: tuple[float, float, list[int]] | None = None
    for a in range(len(window)):
        energy = cost = 0.0
        run: list[int] = []
        for i in window[a:]:
            watts = planning.usable_w(i, (needed_wh - energy) / grid[i].hours)
            if watts <= 0:
                break  # a gap ends a continuous run
            run.append(i)
            energy += watts * grid[i].hours
            price = grid[i].price
            cost += watts * grid[i].hours * (math.inf if price is None else price)
            if energy >= needed_wh - TOLERANCE_WH:
                break
        if energy < needed_wh - TOLERANCE_WH:
            continue
        key = (cost, -grid[run[0]].start)
        if best is None or key < (best[0], best[1]):
            best = (cost, -grid[run[0]].start, run)
    if best is None:  # no run fits: the cheapest quarters, so it gets as close as it can
        return sorted(window, key=lambda i: _price_key(grid[i]))
    return best[2]


def _overrun(planning: _Planning) -> Plan:
    """Past departure and not met: charge at its maximum through the present quarter (re-planned after it)."""
    grid = planning.grid
    point = planning.goal.point
    watts = planning.usable_w(0, point.max_power_w)
    planning.take(0, watts, solar=False)
    slots = (PlannedSlot(grid[0].start, grid[0].end, watts),) if watts > 0 else ()
    grid_wh = sum(slot.power_w * (slot.end - slot.start) / 3600 for slot in slots)
    reason = f"departure passed with {wording.kilowatt_hours(planning.goal.needed_wh)} still to charge"
    return Plan(point.key, slots, 0.0, grid_wh, _cost(planning), "overrun", reason)


def _runs(planning: _Planning) -> tuple[PlannedSlot, ...]:
    """The quarters that buy from the grid, consecutive ones at the same power joined into one slot. A slot's power
    is everything planned in it, the sun's part included: the charge point draws it all, whatever feeds it."""
    out: list[PlannedSlot] = []
    for i, watts in enumerate(planning.grid_w):
        if watts <= 0:
            continue
        quarter = planning.grid[i]
        rounded = round(watts + planning.solar_w[i], 1)
        if out and out[-1].end == quarter.start and out[-1].power_w == rounded:
            out[-1] = PlannedSlot(out[-1].start, quarter.end, rounded)
        else:
            out.append(PlannedSlot(quarter.start, quarter.end, rounded))
    return tuple(out)


def _cost(planning: _Planning) -> float:
    total = 0.0
    for i, watts in enumerate(planning.grid_w):
        price = planning.grid[i].price
        if watts > 0 and price is not None:
            total += watts * planning.grid[i].hours / 1000 * price
    return total


def _why_short(planning: _Planning, short_wh: float, goal: Goal, outlook: Outlook) -> str:
    missing = wording.kilowatt_hours(short_wh)
    if goal.strategy == "solar_only":
        return f"the forecast sun brings {missing} too little before departure (solar_only buys none)"
    hours = sum(planning.grid[i].hours for i in planning.window)
    at_max = goal.point.max_power_w * hours
    if at_max < goal.needed_wh - TOLERANCE_WH:
        return f"{missing} short: even at its maximum {wording.watts(goal.point.max_power_w)} until departure"
    limits = []
    if goal.point.circuit is not None:
        limits.append(f"circuit {goal.point.circuit}")
    if outlook.max_import_w is not None:
        limits.append(f"the site import cap {wording.watts(outlook.max_import_w)}")
    shared = " and ".join(limits) or "its limits"
    return f"{missing} short: {shared} leave no more room before departure after plans that come first"
