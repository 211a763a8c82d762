"""Sharing watts among admitted charge points: a water level over circuits, priority filling, whole-amp steps.

Fair sharing is progressive filling (docs/allocation.md §4): one level L rises; a charge point sits at its minimum until
L reaches it, then rises with L, and freezes at its maximum or when a circuit slot on its path fills; the rise
stops when the budget is spent. Without circuits this is the seed's "smallest maximum first, equal share of what is
left" procedure. It runs event by event (a minimum reached, a maximum reached, a slot full, the budget spent), so the
cost grows with the number of charge points, not with the size of the budget.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

from chargebus_allocator.circuits import NO_LOAD, Footprint

Bound = Literal["max", "budget", "circuit"]

_EPS_W = 1e-6
_EPS_A = 1e-9
#: How far below a whole step a share may be and still count as that step: the error of float division, no more.
_STEP_NOISE = 1e-9


class Demand(NamedTuple):
    """Per charge point and round, like Share: NamedTuples are cheap to build, which matters at 1 000 of them."""

    min_w: float
    max_w: float  # equal to min_w for a charge point that only holds its minimum (starting, stopping)
    step_w: float
    footprint: Footprint = NO_LOAD


class Share(NamedTuple):
    power_w: float
    bound: Bound  # what stopped it rising: its maximum, the budget, or a circuit slot
    slot: int | None = None


def share_fair(demands: Sequence[Demand], budget_w: float, free_a: Sequence[float]) -> list[Share]:
    """Max-min fair shares. The minimums must already fit `budget_w` and `free_a` (admission sees to it).

    Charge points with the same minimum, maximum, step and footprint (one circuit, one wiring, one kind of car)
    join, rise and freeze together, so the level rises over those classes, each counted as often as it has members:
    at 10 000 charge points there are a few hundred of them.
    """
    classes: dict[tuple[float, float, float, int], int] = {}
    members: list[Demand] = []
    counts: list[int] = []
    class_of = []
    for demand in demands:
        key = (demand.min_w, demand.max_w, demand.step_w, id(demand.footprint))
        found = classes.get(key)
        if found is None:
            found = classes[key] = len(members)
            members.append(demand)
            counts.append(0)
        counts[found] += 1
        class_of.append(found)
    # The total at everyone's minimum is summed per charge point, exactly, as quantising sums it.
    total_w = sum(demand.min_w for demand in demands)
    shares = _WaterLevel(members, counts, budget_w, total_w, free_a).run()
    return [shares[found] for found in class_of]


def share_priority(
    demands: Sequence[Demand], order: Sequence[int], budget_w: float, free_a: Sequence[float]
) -> list[Share]:
    """Everyone at their minimum, then each in `order` raised as far as its maximum, the budget and circuits allow."""
    powers = [demand.min_w for demand in demands]
    used = _usage(demands, powers, len(free_a))
    total = sum(powers)
    shares: list[Share] = [Share(demand.min_w, "max") for demand in demands]
    for index in order:
        demand = demands[index]
        room = demand.max_w - demand.min_w
        bound: Bound = "max"
        bound_slot: int | None = None
        if budget_w - total < room:
            room, bound = budget_w - total, "budget"
        footprint = demand.footprint
        for slot, per_w in footprint.steady:
            fits = (free_a[slot] - used[slot]) / per_w
            if fits < room:
                room, bound, bound_slot = fits, "circuit", slot
        for slot, per_w in footprint.late:
            fits = max(0.0, footprint.above_w - demand.min_w) + (free_a[slot] - used[slot]) / per_w
            if fits < room:
                room, bound, bound_slot = fits, "circuit", slot
        room = max(0.0, room)
        before = powers[index]
        powers[index] = before + room
        total += room
        _add_load(footprint, before, powers[index], used)
        shares[index] = Share(powers[index], bound, bound_slot)
    return shares


def quantise(
    demands: Sequence[Demand],
    powers: Sequence[float],
    order: Sequence[int],
    budget_w: float,
    free_a: Sequence[float],
) -> list[float]:
    """Round down to whole steps, then hand out what is left one step at a time, round-robin in `order`."""
    floor = math.floor
    # The epsilon keeps 4 600 W at 230 W per step (19.999999999999996) from flooring to 19 steps. It is float noise,
    # not a tolerance: a share held just under a whole step by a circuit (8.999999 A) must stay under it, or the
    # circuit would carry a millionth of an ampere too much. The minimum is a floor of its own for an EVSE whose
    # minimum is not a whole number of steps.
    result = [
        min(max(floor(power / d.step_w + _STEP_NOISE) * d.step_w, d.min_w), d.max_w)
        for power, d in zip(powers, demands, strict=True)
    ]
    used = _usage(demands, result, len(free_a))
    total = sum(result)
    candidates = list(order)
    while candidates:
        still = []
        for index in candidates:
            demand = demands[index]
            step_w = demand.step_w
            before = result[index]
            after = before + step_w
            # Budget and headroom only shrink and an allocation only grows, so a refusal is final.
            if after > demand.max_w + _EPS_W or total + step_w > budget_w + _EPS_W:
                continue
            if not _raise_if_fits(demand.footprint, before, after, used, free_a):
                continue
            total += step_w
            result[index] = after
            still.append(index)
        candidates = still
    return result


def _raise_if_fits(
    footprint: Footprint, before_w: float, after_w: float, used: list[float], free_a: Sequence[float]
) -> bool:
    """Whether the charge point may draw `after_w` instead of `before_w` in every slot's room; if so, `used` gets the
    difference (as `_add_load` would add it). One call per step quantising tries."""
    steady, late = footprint.steady, footprint.late
    rise = after_w - before_w
    for slot, per_w in steady:
        if used[slot] + per_w * rise > free_a[slot] + _EPS_A:
            return False
    if late:
        above = footprint.above_w
        extra = max(0.0, after_w - above) - max(0.0, before_w - above)
        for slot, per_w in late:
            if used[slot] + per_w * extra > free_a[slot] + _EPS_A:
                return False
        for slot, per_w in steady:
            used[slot] += per_w * rise
        for slot, per_w in late:
            used[slot] += per_w * extra
        return True
    for slot, per_w in steady:
        used[slot] += per_w * rise
    return True


def _usage(
    demands: Sequence[Demand], powers: Sequence[float], slots: int, counts: Sequence[int] | None = None
) -> list[float]:
    """Amps per slot at `powers`; with `counts`, each demand stands for that many charge points."""
    used = [0.0] * slots
    for demand, power_w, count in zip(demands, powers, counts or [1] * len(demands), strict=True):
        footprint = demand.footprint
        for slot, per_w in footprint.steady:
            used[slot] += per_w * power_w * count
        above = power_w - footprint.above_w
        if above > 0:
            for slot, per_w in footprint.late:
                used[slot] += per_w * above * count
    return used


def _add_load(footprint: Footprint, before_w: float, after_w: float, used: list[float]) -> None:
    for slot, per_w in footprint.steady:
        used[slot] += per_w * (after_w - before_w)
    above = footprint.above_w
    for slot, per_w in footprint.late:
        used[slot] += per_w * (max(0.0, after_w - above) - max(0.0, before_w - above))


class _WaterLevel:
    """Progressive filling over classes of identical charge points. Slot usage and the total are kept as (value at
    a reference level, rate) so that only the slots a joining or freezing class touches are updated at each event;
    a class adds its members' count to the rates. Joining and freezing are written out in place: at 1 000 charge
    points their call overhead was most of the cost."""

    def __init__(
        self,
        demands: Sequence[Demand],
        counts: Sequence[int],
        budget_w: float,
        minimums_w: float,
        free_a: Sequence[float],
    ) -> None:
        self.demands = demands  # one per class of identical charge points
        self.counts = counts  # how many charge points each class stands for
        self.budget_w = budget_w
        self.free = list(free_a)
        count = len(demands)
        self.level = 0.0
        self.power = [demand.min_w for demand in demands]
        # A charge point the level never reached sits at its minimum because the budget ran out first.
        self.shares: list[Share | None] = [None] * count
        self.active: set[int] = set()
        self.active_count = 0  # charge points rising: the classes in `active`, each as often as it has members
        self.counting_late = [False] * count
        slots = len(free_a)
        # Per class (its load once, times its members): this may differ from a sum per charge point in the last
        # bit, which moves the level a slot fills at by as much; quantising checks every slot per charge point.
        self.used = _usage(demands, self.power, slots, counts)
        self.used_at = [0.0] * slots
        self.rate = [0.0] * slots
        self.version = [0] * slots
        self.full = [False] * slots
        # Who counts on each slot: appended when they start, never removed (frozen ones are skipped when it fills).
        self.members: list[list[int]] = [[] for _ in range(slots)]
        self.counting = [0] * slots
        self.slot_heap: list[tuple[float, int, int]] = []
        self.total = minimums_w  # summed per charge point by the caller
        self.total_at = 0.0
        self.delta: dict[int, float] = {}
        self.pending: list[int] = []  # by minimum: who joins the rise next
        self.next_join = 0
        # Everyone by maximum, with a cursor: the next maximum to reach is the first one still rising (one not yet
        # rising has a minimum above the level, hence a maximum no lower than the next join).
        self.by_max: list[int] = []
        self.next_max = 0
        self.late_heap: list[tuple[float, int]] = []

    def run(self) -> list[Share]:
        demands = self.demands
        rising = []
        for i, demand in enumerate(demands):
            if demand.max_w <= demand.min_w + _EPS_W:
                self.shares[i] = Share(demand.min_w, "max")
            else:
                rising.append(i)
        # Stable sorts of a list in index order: ties stay by index, as (value, index) keys would have them.
        self.by_max = sorted(rising, key=[demand.max_w for demand in demands].__getitem__)
        rising.sort(key=self.power.__getitem__)  # the minimums, as nobody has risen yet
        self.pending = rising
        # Each pass handles an event: a class joins, reaches its maximum or starts its late load once, a slot fills
        # once, the budget runs out once. More passes than those can only be a fault looping for ever; failing the
        # round is better than hanging the event loop that every service of a one-process install shares (the
        # round's task restarts, and setpoints left unrefreshed expire into the failsafe).
        passes_left = 4 * (len(demands) + len(self.free)) + 16
        while True:
            passes_left -= 1
            if passes_left < 0:
                raise RuntimeError("the water level stopped making progress: a fault in fair sharing")
            target = self._next_event()
            if target == math.inf:
                break
            self._rise_to(max(target, self.level))
            if not self._handle_events():
                break
            self._apply_rates()
        for i in sorted(self.active):  # only when nothing limits the rise: cannot happen with finite maximums
            self._freeze(i, Share(self.level, "budget"))
        return [share if share is not None else Share(self.power[i], "budget") for i, share in enumerate(self.shares)]

    def _next_event(self) -> float:
        """The level of the next event: a minimum reached, a maximum reached, a slot full, the budget spent."""
        target = math.inf
        if self.next_join < len(self.pending):
            target = self.demands[self.pending[self.next_join]].min_w
        by_max, shares = self.by_max, self.shares
        while self.next_max < len(by_max) and shares[by_max[self.next_max]] is not None:
            self.next_max += 1  # frozen already
        if self.next_max < len(by_max):
            target = min(target, self.demands[by_max[self.next_max]].max_w)
        if self.late_heap:
            target = min(target, self.late_heap[0][0])
        target = min(target, self._next_full_slot())
        if self.active:
            target = min(target, self.level + (self.budget_w - self._total()) / self.active_count)
        return target

    def _handle_events(self) -> bool:
        """Everything that happens at the current level; False once the budget is spent."""
        level = self.level + _EPS_W
        demands = self.demands
        by_max, position = self.by_max, self.next_max
        active = self.active
        while position < len(by_max) and demands[by_max[position]].max_w <= level:
            i = by_max[position]
            if i in active:
                # Within a hair of its maximum: freeze at the level, so the total never passes the budget.
                self._freeze(i, Share(min(demands[i].max_w, self.level), "max"))
            position += 1
        self._fill_slots()
        if active and self._total() >= self.budget_w - _EPS_W:
            share = Share(self.level, "budget")
            for i in sorted(active):
                self._freeze(i, share)
            self._apply_rates()
            return False
        while self.late_heap and self.late_heap[0][0] <= level:
            _, i = heapq.heappop(self.late_heap)
            if i in active:
                self._count_late(i)
        pending, join = self.pending, self._join
        while self.next_join < len(pending) and demands[pending[self.next_join]].min_w <= level:
            join(pending[self.next_join])
            self.next_join += 1
        return True

    def _total(self) -> float:
        return self.total + self.active_count * (self.level - self.total_at)

    def _rise_to(self, level: float) -> None:
        self.level = level  # the total and slot usage follow lazily from their reference levels and rates

    def _next_full_slot(self) -> float:
        heap = self.slot_heap
        while heap:
            _, version, slot = heap[0]
            if version == self.version[slot] and not self.full[slot]:
                return heap[0][0]
            heapq.heappop(heap)
        return math.inf

    def _fill_slots(self) -> None:
        active, freeze = self.active, self._freeze
        while self.slot_heap and self._next_full_slot() <= self.level + _EPS_W:
            _, _, slot = heapq.heappop(self.slot_heap)
            self.full[slot] = True
            share = Share(self.level, "circuit", slot)
            for i in self.members[slot]:
                if i in active:
                    freeze(i, share)

    def _join(self, i: int) -> None:
        demand = self.demands[i]
        footprint = demand.footprint
        full = self.full
        steady, late = footprint.steady, footprint.late
        late_now = bool(late) and demand.min_w >= footprint.above_w
        for slot, _ in (*steady, *late) if late_now else steady:
            if full[slot]:
                self.shares[i] = Share(demand.min_w, "circuit", slot)
                return
        level, count = self.level, self.counts[i]
        self.total += self.active_count * (level - self.total_at)
        self.total_at = level
        self.active.add(i)
        self.active_count += count
        members, counting, delta = self.members, self.counting, self.delta
        for slot, per_w in steady:
            members[slot].append(i)
            counting[slot] += count
            delta[slot] = delta.get(slot, 0.0) + per_w * count
        if late:
            if late_now:
                self.counting_late[i] = True
                self._start(i, late)
            else:
                heapq.heappush(self.late_heap, (footprint.above_w, i))

    def _count_late(self, i: int) -> None:
        late = self.demands[i].footprint.late
        blocked = self._full_slot(late)
        if blocked is not None:
            self._freeze(i, Share(self.level, "circuit", blocked))
            return
        self.counting_late[i] = True
        self._start(i, late)

    def _freeze(self, i: int, share: Share) -> None:
        level, count = self.level, self.counts[i]
        self.total += self.active_count * (level - self.total_at)
        self.total_at = level
        self.active.discard(i)
        self.active_count -= count
        self.power[i] = share.power_w
        self.shares[i] = share
        counting, delta = self.counting, self.delta
        footprint = self.demands[i].footprint
        for slot, per_w in footprint.steady:
            counting[slot] -= count
            delta[slot] = delta.get(slot, 0.0) - per_w * count
        if self.counting_late[i]:
            self._stop(i, footprint.late)

    def _start(self, i: int, entries: tuple[tuple[int, float], ...]) -> None:
        members, counting, delta, count = self.members, self.counting, self.delta, self.counts[i]
        for slot, per_w in entries:
            members[slot].append(i)
            counting[slot] += count
            delta[slot] = delta.get(slot, 0.0) + per_w * count

    def _stop(self, i: int, entries: tuple[tuple[int, float], ...]) -> None:
        counting, delta, count = self.counting, self.delta, self.counts[i]
        for slot, per_w in entries:
            counting[slot] -= count
            delta[slot] = delta.get(slot, 0.0) - per_w * count

    def _full_slot(self, entries: tuple[tuple[int, float], ...]) -> int | None:
        for slot, _ in entries:
            if self.full[slot]:
                return slot
        return None

    def _apply_rates(self) -> None:
        """Re-aim the slots whose rate of filling changed at this level."""
        level = self.level
        for slot, change in self.delta.items():
            self.used[slot] += self.rate[slot] * (level - self.used_at[slot])
            self.used_at[slot] = level
            # Reset when nobody counts any more, so rounding cannot leave a phantom rate behind.
            self.rate[slot] = self.rate[slot] + change if self.counting[slot] else 0.0
            self.version[slot] += 1
            if self.rate[slot] > 0 and not self.full[slot]:
                room = max(0.0, self.free[slot] - self.used[slot])
                heapq.heappush(self.slot_heap, (level + room / self.rate[slot], self.version[slot], slot))
        self.delta.clear()
