"""One round of the allocator: `allocate(inputs, previous, now) -> (allocation, timers)`.

The steps, in order: who is a candidate at all (plugged in, online, wanting charge, allowed, not switched off, not
resting after a stop); the modes that act at once are admitted, shared and quantised first; then the solar budget
less what they got goes to solar and minsolar, through admission, the hysteresis timers, sharing and quantising.
Every charge point gets a state and a sentence saying why; every controllable one gets a setpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from chargebus.schema import ChargePointStatus
from chargebus.units import watts_to_amps

from chargebus_allocator import budget, hysteresis, reasons
from chargebus_allocator.admission import Admission, Candidate, admit
from chargebus_allocator.circuits import NO_LOAD, Footprint, Network, above_baseline, build_tree, slot_loads
from chargebus_allocator.fairshare import Demand, Share, quantise, share_fair, share_priority
from chargebus_allocator.model import (
    Allocation,
    ChargePoint,
    CircuitLoad,
    Inputs,
    PointMode,
    PointResult,
    SetpointIntent,
    Timer,
)

_NO_SHARE = Share(0.0, "budget")


def allocate(inputs: Inputs, previous: Mapping[str, Timer] | None, now: float) -> tuple[Allocation, dict[str, Timer]]:
    """Pure: the same inputs, timers and time give the same result, whatever order the inputs come in.

    `previous` is the timers this returned last round, keyed by `ChargePoint.key`; None after a restart, when each
    charge point's state is seeded from its EVSE's `charging` report.
    """
    return _Round(inputs, previous or {}, now).run()


class _Round:
    def __init__(self, inputs: Inputs, previous: Mapping[str, Timer], now: float) -> None:
        self.inputs = inputs
        self.settings = settings = inputs.settings
        self.delays = settings.delays
        self.now = now
        self.points = sorted(inputs.charge_points, key=lambda point: point.id)
        self._check_unique()
        self.modes = [budget.point_mode(p, settings.mode, inputs.charge_now_until, now) for p in self.points]
        self.timers = [previous.get(p.key) or hysteresis.seed(p.charging, now) for p in self.points]
        self.next_timers = list(self.timers)
        count = len(self.points)
        self.states: list[ChargePointStatus] = ["kicked_out"] * count
        self.reasons: list[str] = [""] * count
        self.watts = [0.0] * count
        self.amps = [0] * count
        self.shares = [_NO_SHARE] * count
        self.held_back = [False] * count  # its share waits for a slow car to follow a decrease
        self.network = Network(build_tree(inputs.circuits))
        self.footprints: list[Footprint] = [NO_LOAD] * count  # from 0 W: the steady load
        self.transient_footprints: list[Footprint] = [NO_LOAD] * count  # above a slow follower's present draw
        self.grid_stale = budget.grid_is_stale(inputs.grid, settings.grid_stale_after_s, now)
        self.surplus_w: float | None = None
        self.available_w = 0.0
        self.solar_group: list[int] = []
        self.any_baseline = False

    def _check_unique(self) -> None:
        keys = [point.key for point in self.points]
        if len(set(keys)) != len(keys):
            raise ValueError("two charge points share a key (VIN or EVSE id): merge them first")

    def run(self) -> tuple[Allocation, dict[str, Timer]]:
        candidates = self._classify()
        first = [i for i in candidates if budget.served_first(self.modes[i])]
        self.solar_group = [i for i in candidates if not budget.served_first(self.modes[i])]
        rooms = (self.network.free(), self.network.transient_free())
        self.any_baseline = any(self.network.baseline)
        served_w = self._serve_at_once(first, rooms)
        self._serve_solar(self.solar_group, rooms, served_w)
        return self._allocation(), {p.key: timer for p, timer in zip(self.points, self.next_timers, strict=True)}

    def _classify(self) -> list[int]:
        """Settle every charge point that cannot charge this round; count the draws the allocator does not steer."""
        candidates = []
        network = self.network
        for i, point in enumerate(self.points):
            footprint = network.footprint(point)
            if not point.controllable or not point.online:
                network.add_fixed(footprint, point.power_w)  # not ours to steer: it weighs as measured
            else:
                self.footprints[i] = self.transient_footprints[i] = footprint
                if point.follows_slowly and point.power_w > 0:
                    network.add_baseline(footprint, point.power_w)
                    self.transient_footprints[i] = above_baseline(footprint, point.power_w)
            outcome = self._why_not(i, point)
            if outcome is None:
                candidates.append(i)
                continue
            self.states[i], self.reasons[i] = outcome
            timer = self.timers[i]
            self.next_timers[i] = (
                hysteresis.unplugged(timer, self.now)
                if not point.plugged_in
                else hysteresis.advance(timer, "dropped", self.delays, self.now, delayed=False)
            )
        return candidates

    def _why_not(self, i: int, point: ChargePoint) -> tuple[ChargePointStatus, str] | None:
        blocker = _blocker(point)
        if blocker is not None:
            return blocker
        mode = self.modes[i]
        if mode == "off":
            return "waiting", reasons.switched_off()
        max_w = budget.max_power_w(point, mode)
        if max_w < point.min_power_w:
            return "kicked_out", reasons.limits_inverted(point, max_w)
        resting = hysteresis.min_off_left_s(self.timers[i], self.delays, self.now)
        if budget.delayed(mode) and resting > 0:
            return "waiting", reasons.waiting_off(resting, self.delays)
        return None

    def _candidate(self, i: int, *, exempt: bool, may_hold: bool) -> Candidate:
        point = self.points[i]
        charging = hysteresis.counts_as_charging(self.timers[i])
        baseline = self.transient_footprints[i].above_w
        return Candidate(
            i, point.id, point.priority, charging, point.plugged_in_at, point.min_power_w, self.footprints[i],
            baseline, exempt, may_hold,
        )  # fmt: skip

    def _serve_at_once(self, group: list[int], rooms: tuple[list[float], list[float]]) -> float:
        """now, schedule windows and charge-now: circuits and their own caps are the only limits."""
        candidates = [self._candidate(i, exempt=True, may_hold=False) for i in group]
        admission = admit(candidates, math.inf, rooms, self.network.labels)
        admitted = [i for i in admission.order if admission.verdicts[i] == "admitted"]
        for i in admitted:
            self.next_timers[i] = hysteresis.advance(self.timers[i], "admitted", self.delays, self.now, delayed=False)
            self.states[i] = "charging"
        demands = [self._demand(i, rises=True) for i in admitted]
        watts = self._share(admitted, demands, math.inf, rooms)
        self._kick(admission, group, extra="")
        contexts: dict[PointMode, reasons.Context] = {}
        for i in admitted:
            self.reasons[i] = self._charging_reason(i, None, len(admitted), contexts)
        return sum(watts)

    def _serve_solar(self, group: list[int], rooms: tuple[list[float], list[float]], served_w: float) -> None:
        inputs, now, delays = self.inputs, self.now, self.delays
        if inputs.grid is not None and not self.grid_stale:
            draw = sum(p.power_w for p in self.points if p.controllable and p.online)
            self.surplus_w = budget.solar_surplus_w(inputs.grid.power_w, draw, self.settings.reserve_w)
        solar_w = budget.solar_budget_w(self.surplus_w, served_w)
        candidates = [
            self._candidate(
                i, exempt=self.modes[i] == "minsolar", may_hold=hysteresis.may_hold(self.timers[i], delays, now)
            )
            for i in group
        ]
        admission = admit(candidates, solar_w, rooms, self.network.labels)
        sharing: list[int] = []
        for i in admission.order:
            verdict = admission.verdicts[i]
            if verdict != "kicked_out":
                self.next_timers[i] = hysteresis.advance(self.timers[i], verdict, delays, now, delayed=True)
                sharing.append(i)
        # Starting ones reserve their minimum and stopping ones hold it: only charging ones rise above it.
        demands = [self._demand(i, rises=self.next_timers[i].phase == "charging") for i in sharing]
        self.available_w = budget.effective_budget_w(solar_w, admission.admitted_min_w, admission.held_min_w)
        self._share(sharing, demands, self.available_w, rooms)
        stale_note = f" ({reasons.stale_grid()})" if self.grid_stale else ""
        self._kick(admission, group, extra=stale_note)
        rising = sum(1 for i in sharing if self.next_timers[i].phase == "charging")
        contexts: dict[PointMode, reasons.Context] = {}
        for i in sharing:
            self._settle_solar(i, solar_w, stale_note, (rising, contexts))

    def _demand(self, i: int, *, rises: bool) -> Demand:
        point = self.points[i]
        max_w = budget.max_power_w(point, self.modes[i]) if rises else point.min_power_w
        return Demand(point.min_power_w, max_w, point.step_w, self.footprints[i])

    def _settle_solar(
        self, i: int, solar_w: float, stale_note: str, rising: tuple[int, dict[PointMode, reasons.Context]]
    ) -> None:
        timer, point = self.next_timers[i], self.points[i]
        if timer.phase == "starting":
            self.states[i] = "starting"
            self.watts[i] = 0.0  # reserved, not yet offered: the enable delay is still running
            left = hysteresis.start_left_s(timer, self.delays, self.now)
            self.reasons[i] = reasons.starting(point, left, solar_w, self.delays)
        elif timer.phase == "stopping":
            self.states[i] = "stopping"
            left = hysteresis.stop_left_s(timer, self.delays, self.now)
            self.reasons[i] = reasons.stopping(point, left, solar_w).removesuffix(".") + stale_note + "."
        else:
            self.states[i] = "charging"
            self.reasons[i] = self._charging_reason(i, self.available_w, *rising)

    def _share(
        self, group: list[int], demands: list[Demand], budget_w: float, rooms: tuple[list[float], list[float]]
    ) -> list[float]:
        """Share and quantise; record the result and take its load off both rooms for whoever comes next."""
        free, free_transient = rooms
        order = range(len(demands))
        # Share as if every slow car had already followed (steady load)...
        shares = self._share_rule(demands, order, budget_w, free)
        watts = quantise(demands, [share.power_w for share in shares], order, budget_w, free)
        if self.any_baseline:
            watts = self._hold_back(group, demands, (shares, watts), budget_w, free_transient)
        for position, i in enumerate(group):
            self.shares[i] = shares[position]
            self.watts[i] = watts[position]
            self.footprints[i].add_to(free, watts[position], -1.0)
            self.transient_footprints[i].add_to(free_transient, watts[position], -1.0)
        return watts

    def _hold_back(
        self,
        group: list[int],
        demands: list[Demand],
        fair: tuple[list[Share], list[float]],
        budget_w: float,
        free_transient: list[float],
    ) -> list[float]:
        """...then hold back what slow cars' present draws still occupy: nobody gets more than its fair share, and
        the current a slow car frees is handed out only once it has followed. Only the charge points on a slot that
        would be over its limit are shared again; everyone else keeps the fair result."""
        shares, watts = fair
        footprints = [self.transient_footprints[i] for i in group]
        used = [0.0] * len(free_transient)
        for footprint, power_w in zip(footprints, watts, strict=True):
            footprint.add_to(used, power_w)
        over = {slot for slot, (load, room) in enumerate(zip(used, free_transient, strict=True)) if load > room + 1e-9}
        if not over:
            return watts
        again = [
            p for p, footprint in enumerate(footprints) if any(s in over for s, _ in footprint.steady + footprint.late)
        ]
        room, budget_left = list(free_transient), budget_w
        for position in set(range(len(group))) - set(again):
            footprints[position].add_to(room, watts[position], -1.0)
            budget_left -= watts[position]
        capped = [
            Demand(demands[p].min_w, max(demands[p].min_w, watts[p]), demands[p].step_w, footprints[p]) for p in again
        ]
        order = range(len(capped))
        held = self._share_rule(capped, order, budget_left, room)
        held_watts = quantise(capped, [share.power_w for share in held], order, budget_left, room)
        watts = list(watts)
        for share, power_w, position in zip(held, held_watts, again, strict=True):
            if power_w < watts[position]:
                self.held_back[group[position]] = True
                shares[position] = share
                watts[position] = power_w
        return watts

    def _share_rule(
        self, demands: Sequence[Demand], order: Sequence[int], budget_w: float, free: Sequence[float]
    ) -> list[Share]:
        if self.settings.share == "priority":
            return share_priority(demands, order, budget_w, free)
        return share_fair(demands, budget_w, free)

    def _kick(self, admission: Admission, group: list[int], extra: str) -> None:
        for i in group:
            if admission.verdicts[i] != "kicked_out":
                continue
            self.states[i] = "kicked_out"
            self.reasons[i] = admission.reasons[i] + extra
            self.next_timers[i] = hysteresis.advance(
                self.timers[i], "dropped", self.delays, self.now, delayed=budget.delayed(self.modes[i])
            )

    def _charging_reason(
        self, i: int, budget_w: float | None, sharing: int, contexts: dict[PointMode, reasons.Context]
    ) -> str:
        point, share, mode = self.points[i], self.shares[i], self.modes[i]
        context = contexts.get(mode)
        if context is None:
            phrase = reasons.mode_phrase(mode, point, self.inputs.charge_now_until)
            context = reasons.context(phrase, budget_w, sharing, self.settings.share)
            if mode not in ("schedule", "charge_now"):  # the others read the same for everyone
                contexts[mode] = context
        slot = None
        if share.slot is not None:
            circuit_id, phase = self.network.labels[share.slot]
            slot = (circuit_id, phase, self.network.limits[share.slot], self.held_back[i])
        amps = self.amps[i] = watts_to_amps(self.watts[i], point.voltage_v, point.phases)
        return reasons.charging(point, self.watts[i], amps, share, context, slot=slot)

    def _allocation(self) -> Allocation:
        results = []
        setpoints: list[SetpointIntent] = []
        offered = [0.0] * len(self.points)
        for i, point in enumerate(self.points):
            state = self.states[i]
            watts = self.watts[i] if state in ("charging", "stopping") else 0.0
            offered[i] = watts
            amps = self.amps[i] if state == "charging" else watts_to_amps(watts, point.voltage_v, point.phases)
            results.append(PointResult(point, self.modes[i], watts, amps, state, self.reasons[i]))
            if point.controllable:
                _add_setpoints(setpoints, point, None if state == "offline" else watts, self.reasons[i])
        return Allocation(
            mode=self.settings.mode,
            charge_now_until=self.inputs.charge_now_until,
            available_w=self._available(),
            grid_w=None if self.grid_stale or self.inputs.grid is None else self.inputs.grid.power_w,
            surplus_w=self.surplus_w,
            grid_stale=self.grid_stale,
            points=tuple(results),
            setpoints=tuple(setpoints),
            circuits=self._circuit_loads(offered),
        )

    def _available(self) -> float | None:
        mode: PointMode = budget.effective_global_mode(self.settings.mode, self.inputs.charge_now_until, self.now)
        if budget.served_first(mode):
            return None
        # Switched off, nothing is available, unless some EVSE's own mode still shares a solar budget.
        return 0.0 if mode == "off" and not self.solar_group else self.available_w

    def _circuit_loads(self, offered: list[float]) -> tuple[CircuitLoad, ...]:
        """Per circuit phase: metered + read-only + uncontrolled + allocated, slow cars at max(allocation, draw)."""
        network = self.network
        loads = slot_loads(network, self.transient_footprints, offered)
        result = []
        for circuit_id in network.tree.order:
            per_phase = tuple(loads[slot] for slot in network.circuit_slots(circuit_id))
            limit = network.tree.circuits[circuit_id].max_current_a
            result.append(CircuitLoad(circuit_id, limit, per_phase, tuple(limit - load for load in per_phase)))
        return tuple(result)


def _blocker(point: ChargePoint) -> tuple[ChargePointStatus, str] | None:
    """What stops a charge point whatever the mode."""
    if not point.controllable:
        return "read_only", reasons.read_only(point)
    if not point.online:
        return "offline", reasons.offline(point)
    if not point.plugged_in:
        return "unplugged", reasons.unplugged()
    if not point.authorized:
        return "refused", reasons.refused(point)
    if not point.wants_charge:
        return "full", reasons.full(point)
    return None


def _add_setpoints(setpoints: list[SetpointIntent], point: ChargePoint, watts: float | None, reason: str) -> None:
    """A merged charge point: the current-controlling EVSE gets the watts, `car-<VIN>` only start/stop.

    `watts` None (offline: its bridge is gone or knows nothing yet) sends "do not touch" in both fields: a stop
    sent while a bridge is away would be carried out the moment it comes back, when it knows better.
    """
    charge = None if watts is None else watts > 0
    current, start_stop = point.current_target, point.start_stop_target
    if current == start_stop:
        setpoints.append(SetpointIntent(current, watts, charge, point.phases, point.voltage_v, reason))
    else:
        setpoints.append(SetpointIntent(current, watts, None, point.phases, point.voltage_v, reason))
        setpoints.append(SetpointIntent(start_stop, None, charge, point.phases, point.voltage_v, reason))
