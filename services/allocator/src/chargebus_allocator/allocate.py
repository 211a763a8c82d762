"""One round of the allocator: `allocate(inputs, previous, now) -> (allocation, timers)`.

The steps, in order: who is a candidate at all (plugged in, online, wanting charge, allowed, not switched off, not
resting after a stop); the modes that act at once are admitted, shared and quantised first; then the solar budget
less what they got goes to solar and minsolar, through admission, the hysteresis timers, sharing and quantising.
A site import limit (site.py) is a hard cap over both groups together: admission, held minimums and sharing.
Every charge point gets a state and a sentence saying why; every controllable one gets a setpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from chargebus.schema import ChargePointStatus
from chargebus.units import watts_to_amps

from chargebus_allocator import budget, hysteresis, reasons
from chargebus_allocator.admission import Admission, Candidate, admit, turn_key
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
#: The dead band above a held offer is half a step, but no wider than this: about a household meter's noise
#: (±50 W), so a 690 W 3-phase step does not give up 345 W of sun to be safe from 100 W of noise.
DEAD_BAND_MAX_W = 100.0
#: Amps of rounding a circuit's room may show below zero and still count as fitting.
_EPS_A = 1e-9
_EPS_W = 1e-6
#: A car set through its API rises only to the lowest share it has had this long (docs/closed-loop-control.md §5),
#: the faster charge points of its group taking up the rest: the sun's swings under passing clouds go to the wall
#: connectors (a free frame on the wire), not to billed calls. After this long without a lower share it gets its
#: fair share again.
SLOW_FLOOR_S = 600.0
#: How many steps such a car may stay above a falling share while the faster charge points give up the difference
#: (about 1 kW at 240 V)...
SLOW_BAND_STEPS = 4
#: ...and for at most this long at a time: then it comes down to its share, never keeping a lasting place above it.
SLOW_KEEP_S = 180.0


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
        self.points = sorted(inputs.charge_points, key=_by_id)
        self.keys = [point.key for point in self.points]  # read once: the timers, floors and settling go by it
        self._check_unique()
        point_mode, mode, until = budget.point_mode, settings.mode, inputs.charge_now_until
        self.modes = [point_mode(p, mode, until, now) for p in self.points]
        # Timers are frozen values: every charge point seeded this round may share one (charging or not).
        seeds = (hysteresis.seed(charging=False, now=now), hysteresis.seed(charging=True, now=now))
        self.timers = [previous.get(key) or seeds[p.charging] for key, p in zip(self.keys, self.points, strict=True)]
        self.next_timers = list(self.timers)
        self._advanced: dict[tuple[int, hysteresis.Outcome, bool], Timer] = {}
        self._holds: dict[int, bool] = {}  # may_hold per distinct timer, by its id (they live as long as the round)
        self._said: dict[tuple[object, ...], str] = {}  # sentences written this round, by what they read
        count = len(self.points)
        self.states: list[ChargePointStatus] = ["kicked_out"] * count
        self.reasons: list[str] = [""] * count
        self.watts = [0.0] * count
        self.amps = [0] * count
        self.shares = [_NO_SHARE] * count
        self.held_back = [False] * count  # its share waits for a slow car to follow a decrease
        self.in_band = [False] * count  # its offer is kept: the new share is within the dead band around it
        self.kept_since: dict[str, float] = {}  # slow followers kept above their share, and since when
        self.floors: dict[str, tuple[float, float]] = {}  # slow followers' lowest recent share, and since when
        self.kept_slowly = [False] * count  # a slow follower held below its share while the fast ones take the rest
        self.network = Network(build_tree(inputs.circuits))
        self.footprints: list[Footprint] = [NO_LOAD] * count  # from 0 W: the steady load
        self.transient_footprints: list[Footprint] = [NO_LOAD] * count  # above a slow follower's present draw
        self.grid_stale = budget.grid_is_stale(inputs.grid, settings.grid_stale_after_s, now)
        self.surplus_w: float | None = None
        self.available_w = 0.0
        self.solar_group: list[int] = []
        self.any_baseline = False
        site = inputs.site
        #: The site's import limit: a hard cap on everything the controllable charge points draw together.
        self.site_cap = (site.headroom_w, site.describe(), site.house_alone_over) if site is not None else None
        self.site_left_w = site.headroom_w if site is not None else math.inf
        #: A stale grid meter with a site limit: nobody rises above its minimum.
        self.minimums_only = site is not None and site.minimums_only

    def _check_unique(self) -> None:
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("two charge points share a key (VIN or EVSE id): merge them first")

    def run(self) -> tuple[Allocation, dict[str, Timer]]:
        candidates = self._classify()
        first = [i for i in candidates if budget.served_first(self.modes[i])]
        self.solar_group = [i for i in candidates if not budget.served_first(self.modes[i])]
        rooms = (self.network.free(), self.network.transient_free())
        self.any_baseline = any(self.network.baseline)
        served_w = self._serve_at_once(first, rooms)
        self._serve_solar(self.solar_group, rooms, served_w)
        offered = [0.0] * len(self.points)
        allocation = self._allocation(offered)
        return allocation, self._timers_out(offered)

    def _timers_out(self, offered_w: list[float]) -> dict[str, Timer]:
        """Next round's timers: this round's phases with what was offered. A timer that would come out the same is
        passed on as it is (they are frozen values), so a steady round builds none."""
        timers = {}
        floors, kept_map = self.floors, self.kept_since
        built: dict[tuple[int, float], Timer] = {}  # charge points sharing a timer and an offer share the next
        for key, timer, before, offered in zip(self.keys, self.next_timers, self.timers, offered_w, strict=True):
            # Since when a slow follower has been kept above its falling share: the clock runs on while its offer
            # does not change, whichever rule (slow follower or dead band) held it this round, and stops when the
            # offer moves.
            kept = kept_map.get(key)
            if kept is None:
                kept = before.kept_since if offered == before.offered_w else None
            floor_w, floor_since = floors.get(key, _NO_FLOOR)
            if (
                kept is timer.kept_since
                and floor_w is timer.share_floor_w
                and floor_since is timer.floor_since
                and _same_number(offered, timer.offered_w)
            ):
                timers[key] = timer
                continue
            plain = kept is None and floor_w is None and floor_since is None
            shared = built.get((id(timer), offered)) if plain else None
            if shared is None or not _same_number(offered, shared.offered_w):
                shared = Timer(
                    timer.phase, timer.since, timer.charged_since, timer.stopped_at, offered, kept, floor_w, floor_since
                )
                if plain:
                    built[id(timer), offered] = shared
            timers[key] = shared
        return timers

    def _advance(self, timer: Timer, outcome: hysteresis.Outcome, *, delayed: bool) -> Timer:
        """`hysteresis.advance` this round, once per distinct timer: seeded charge points share a timer, and so do
        the ones it was handed on to unchanged, so most of a large round asks the same few questions."""
        key = (id(timer), outcome, delayed)  # the timers live as long as the round: their ids stay theirs
        advanced = self._advanced.get(key)
        if advanced is None:
            advanced = self._advanced[key] = hysteresis.advance(timer, outcome, self.delays, self.now, delayed=delayed)
        return advanced

    def _classify(self) -> list[int]:
        """Settle every charge point that cannot charge this round; count the draws the allocator does not steer."""
        candidates = []
        network = self.network
        footprints, transient = self.footprints, self.transient_footprints
        for i, point in enumerate(self.points):
            footprint = network.footprint(point)
            if not point.controllable or not point.online:
                network.add_fixed(footprint, point.power_w)  # not ours to steer: it weighs as measured
            else:
                footprints[i] = transient[i] = footprint
                if point.follows_slowly and point.power_w > 0:
                    network.add_baseline(footprint, point.power_w)
                    transient[i] = above_baseline(footprint, point.power_w)
            outcome = _blocker(point) or self._why_not(i, point)
            if outcome is None:
                candidates.append(i)
                continue
            self.states[i], self.reasons[i] = outcome
            timer = self.timers[i]
            self.next_timers[i] = (
                hysteresis.unplugged(timer, self.now)
                if not point.plugged_in
                else self._advance(timer, "dropped", delayed=False)
            )
        return candidates

    def _why_not(self, i: int, point: ChargePoint) -> tuple[ChargePointStatus, str] | None:
        """What keeps a charge point nothing blocks (`_blocker`) from being a candidate in its mode this round; None
        when nothing does."""
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

    def _candidates(self, group: list[int], *, exempt: bool | None, may_hold: bool | None) -> list[Candidate]:
        """The admission candidates of `group`; `exempt` and `may_hold` None ask `_exempt` and `_may_hold` per
        charge point."""
        points, timers, footprints, transient = self.points, self.timers, self.footprints, self.transient_footprints
        candidates = []
        for i in group:
            point, timer = points[i], timers[i]
            charging = hysteresis.counts_as_charging(timer)
            turn = turn_key(charging, timer.charged_since, timer.stopped_at)
            candidates.append(
                Candidate(
                    i, point.id, point.priority, charging, point.plugged_in_at, point.min_power_w, footprints[i],
                    transient[i].above_w,
                    self._exempt(i) if exempt is None else exempt,
                    self._may_hold(i) if may_hold is None else may_hold,
                    turn,
                )
            )  # fmt: skip
        return candidates

    def _serve_at_once(self, group: list[int], rooms: tuple[list[float], list[float]]) -> float:
        """now, schedule windows and charge-now: circuits, their own caps and the site's import limit bind them."""
        candidates = self._candidates(group, exempt=True, may_hold=False)
        admission = admit(candidates, math.inf, rooms, self.network.labels, self.site_cap)
        admitted = [i for i in admission.order if admission.verdicts[i] == "admitted"]
        for i in admitted:
            self.next_timers[i] = self._advance(self.timers[i], "admitted", delayed=False)
            self.states[i] = "charging"
        demands = [self._demand(i, rises=not self.minimums_only) for i in admitted]
        # Their load comes off the rooms only for a solar group that shares what is left after them.
        watts = self._share(admitted, demands, self.site_left_w, rooms, take_off=bool(self.solar_group))
        self._kick(admission, group, extra="")
        contexts: dict[PointMode, reasons.Context] = {}
        limit = self.site_cap[1] if self.site_cap is not None else None
        budget_w = self.site_left_w if self.site_cap is not None else None
        for i in admitted:
            self.reasons[i] = self._charging_reason(i, budget_w, len(admitted), contexts, limit=limit)
        served = sum(watts)
        self.site_left_w = max(0.0, self.site_left_w - served)
        return served

    def _serve_solar(self, group: list[int], rooms: tuple[list[float], list[float]], served_w: float) -> None:
        inputs = self.inputs
        if inputs.grid is not None and not self.grid_stale:
            draw = inputs.grid.chargers_w
            if draw is None:
                draw = sum(p.power_w for p in self.points if p.controllable and p.online)
            self.surplus_w = budget.solar_surplus_w(inputs.grid.power_w, draw, self.settings.reserve_w)
            if inputs.battery is not None:
                adjustment = inputs.battery.adjustment_w
                self.surplus_w = self.surplus_w - adjustment if adjustment is not None else None
        solar_w = budget.solar_budget_w(self.surplus_w, served_w)
        cap = None
        if self.site_cap is not None:
            cap = (self.site_left_w, self.site_cap[1], self.site_cap[2])
            solar_w = min(solar_w, self.site_left_w)
        candidates = self._candidates(group, exempt=None, may_hold=None)
        admission = admit(candidates, solar_w, rooms, self.network.labels, cap)
        sharing: list[int] = []
        for i in admission.order:
            verdict = admission.verdicts[i]
            if verdict != "kicked_out":
                self.next_timers[i] = self._advance(self.timers[i], verdict, delayed=True)
                sharing.append(i)
        # Starting ones reserve their minimum and stopping ones hold it: only charging ones rise above it.
        demands = [
            self._demand(i, rises=self.next_timers[i].phase == "charging" and not self.minimums_only) for i in sharing
        ]
        self.available_w = budget.effective_budget_w(solar_w, admission.admitted_min_w, admission.held_min_w)
        self.available_w = min(self.available_w, self.site_left_w)
        self._share(sharing, demands, self.available_w, rooms, take_off=True)  # the dead band checks what is left
        self._dead_band(sharing, rooms)
        self._keep_slow_followers(sharing, rooms)
        stale_note = f" ({reasons.stale_grid()})" if self.grid_stale else ""
        self._kick(admission, group, extra=stale_note)
        rising = sum(1 for i in sharing if self.next_timers[i].phase == "charging")
        contexts: dict[PointMode, reasons.Context] = {}
        for i in sharing:
            self._settle_solar(i, solar_w, stale_note, (rising, contexts))

    def _may_hold(self, i: int) -> bool:
        """`hysteresis.may_hold`, once per distinct timer (charge points share theirs)."""
        timer = self.timers[i]
        may_hold = self._holds.get(id(timer))
        if may_hold is None:
            may_hold = self._holds[id(timer)] = hysteresis.may_hold(timer, self.delays, self.now)
        return may_hold

    def _exempt(self, i: int) -> bool:
        """Its minimum needs no surplus: minsolar, or a solar charge point the battery may hold at its minimum."""
        if self.modes[i] == "minsolar":
            return True
        battery = self.inputs.battery
        charging = hysteresis.counts_as_charging(self.timers[i])
        return self.modes[i] == "solar" and battery is not None and battery.covers(charging=charging)

    def _dead_band(self, sharing: list[int], rooms: tuple[list[float], list[float]]) -> None:
        """Keep the charging points' offers while the budget stays within a band around them
        (docs/closed-loop-control.md §3): noise around a step's edge must not toggle an offer. A rise waits until the
        point's share clears its next step by the band. A fall waits while the kept offers together exceed the
        budget by no more than the band — judged on the total, because whole steps split a budget unevenly (15 A +
        14 A for two shares of 14.6 A) and a few watts of noise would otherwise move the rounded-up one — and only
        where every circuit still has room; the budget may then be exceeded by the band, never a circuit. Nor does an
        offer rise on a reading taken just after the point's draw changed (`GridReading.settling`): the meter may
        not show the new draw yet, and a rise it paid for would be taken back by the next reading."""
        falling: list[int] = []
        settling = self.inputs.grid.settling if self.inputs.grid is not None else frozenset()
        for i in sharing:
            held, now_w = self.timers[i].offered_w, self.watts[i]
            was_charging = self.timers[i].phase == "charging" and self.next_timers[i].phase == "charging"
            if not was_charging or held <= 0 or now_w == held:
                continue
            point = self.points[i]
            if held < point.min_power_w or held > budget.max_power_w(point, self.modes[i]):
                continue  # its limits moved: the held value is no longer one it may be offered
            if now_w < held:
                falling.append(i)
            elif self.shares[i].power_w < held + point.step_w + dead_band_w(point.step_w) or self.keys[i] in settling:
                self.watts[i] = held  # within the band, or the reading may not show its latest draw yet
                self.in_band[i] = True
        if not falling or self.available_w is None:
            return
        band = dead_band_w(min(self.points[i].step_w for i in falling))
        kept = sum(self.watts[i] for i in sharing) + sum(self.timers[i].offered_w - self.watts[i] for i in falling)
        if kept > self.available_w + band:
            return
        for i in falling:
            if self._fits(i, self.watts[i], self.timers[i].offered_w, rooms):
                self.watts[i] = self.timers[i].offered_w
                self.in_band[i] = True

    def _keep_slow_followers(self, sharing: list[int], rooms: tuple[list[float], list[float]]) -> None:
        """A car whose current is set through its API leaves the sun's swings to the faster charge points of its
        group (docs/closed-loop-control.md §5): every change of its current is a billed call and half a minute of
        lag, a wall connector's a free frame on the wire. It rises only to its share's recent floor (`_rise_slowly`)
        and keeps its offer against a fall of at most `SLOW_BAND_STEPS` the others can pay for, for at most
        `SLOW_KEEP_S`; never further than the others can follow."""
        fast = [
            j
            for j in sharing
            if not self.points[j].follows_slowly and self.next_timers[j].phase == "charging" and self.watts[j] > 0
        ]
        if not fast or self.minimums_only:
            return
        for i in sharing:
            if not self._slow_and_held(i):
                continue
            held, share_w = self.timers[i].offered_w, self.watts[i]
            floor_w = self._share_floor(i, share_w)
            if share_w > held:
                self._rise_slowly(i, floor_w, fast, rooms)
            elif share_w < held and self._may_stay_above(i):
                before = {j: self.watts[j] for j in fast}
                if self._take_back(fast, held - share_w, rooms):
                    if self._fits(i, share_w, held, rooms):
                        self._keep(i, held)
                    else:
                        self._restore(before, rooms)  # its circuit has no room for it: the car falls after all

    def _slow_and_held(self, i: int) -> bool:
        """A charging slow follower whose held offer is still one it may be given."""
        point, held = self.points[i], self.timers[i].offered_w
        if not point.follows_slowly or held <= 0 or not self._held_charging(i):
            return False
        return point.min_power_w <= held <= budget.max_power_w(point, self.modes[i])  # else its limits moved

    def _share_floor(self, i: int, share_w: float) -> float:
        """The lowest share this slow follower has had in the last `SLOW_FLOOR_S` (reset to the present share once
        that long has passed without a lower one, started from its offer): the current the recent sun has held up."""
        timer = self.timers[i]
        floor_w, since = timer.share_floor_w, timer.floor_since
        if floor_w is None or since is None:
            floor_w, since = min(share_w, timer.offered_w), self.now  # no record yet: it has held its offer so far
        elif share_w <= floor_w or self.now - since >= SLOW_FLOOR_S:
            floor_w, since = share_w, self.now
        self.floors[self.keys[i]] = (floor_w, since)
        return floor_w

    def _rise_slowly(self, i: int, floor_w: float, fast: list[int], rooms: tuple[list[float], list[float]]) -> None:
        """Its share would rise: it rises only as far as its floor (the recent sun's low), and the fast charge points
        take up the rest, as far as they can: sun none of them can use goes to the car after all, never unused to
        save a call. A rise the fast ones pay for by falling waits until their draws show the fall: the car may
        draw its new current while a wall connector is still ramping down, and the meter would see both."""
        held, share_w = self.timers[i].offered_w, self.watts[i]
        target = max(held, min(share_w, floor_w))
        self._fits(i, share_w, target, rooms)  # lowering a load always fits
        self.watts[i] = target
        unused = self._hand_out(fast, share_w - target, rooms)
        self._hand_out([i], unused, rooms)  # what none of them can use goes back to the car, in whole steps
        target = self.watts[i]
        if target > held and any(self._still_falling(j) for j in fast):
            self._fits(i, target, held, rooms)
            target = self.watts[i] = held
        self.kept_slowly[i] = target < share_w

    def _may_stay_above(self, i: int) -> bool:
        """May a slow follower keep an offer above its falling share: near enough to it, and not kept for
        `SLOW_KEEP_S` already."""
        point, held = self.points[i], self.timers[i].offered_w
        if held - self.shares[i].power_w > SLOW_BAND_STEPS * point.step_w:
            return False  # too far above its share: the car follows
        since = self.timers[i].kept_since
        # kept long enough: it comes down to its share (one call), and may be kept again from there
        return since is None or self.now - since < SLOW_KEEP_S

    def _still_falling(self, j: int) -> bool:
        """Is this charge point's offer falling this round, or its draw still above its (lowered) offer?"""
        return (
            self.watts[j] < self.timers[j].offered_w
            or self.points[j].power_w > self.watts[j] + self.points[j].step_w / 2
        )

    def _keep(self, i: int, held_w: float) -> None:
        self.watts[i], self.in_band[i] = held_w, True
        self.kept_since[self.keys[i]] = self.timers[i].kept_since or self.now

    def _held_charging(self, i: int) -> bool:
        return self.timers[i].phase == "charging" and self.next_timers[i].phase == "charging"

    def _restore(self, before: Mapping[int, float], rooms: tuple[list[float], list[float]]) -> None:
        """Put charge points back to the watts `before` says, with their load on the rooms: first the ones that fall
        back (freeing room), then the ones that rise back into it."""
        for j, watts_j in sorted(before.items(), key=lambda item: item[1] - self.watts[item[0]]):
            if watts_j != self.watts[j]:
                self._fits(j, self.watts[j], watts_j, rooms)
                self.watts[j] = watts_j

    def _hand_out(self, fast: list[int], spare_w: float, rooms: tuple[list[float], list[float]]) -> float:
        """Raise the fast charge points by whole steps, in turn, within `spare_w`, their maxima and the circuits;
        what is left of `spare_w`."""
        for j in fast:
            point = self.points[j]
            top = budget.max_power_w(point, self.modes[j])
            before = self.watts[j]
            after = min(math.floor((before + spare_w) / point.step_w + 1e-6) * point.step_w, top)
            while after > before and not self._fits(j, before, after, rooms):
                after -= point.step_w
            if after > before:
                self.watts[j] = after
                spare_w -= after - before
        return spare_w

    def _take_back(self, fast: list[int], needed_w: float, rooms: tuple[list[float], list[float]]) -> bool:
        """Lower the fast charge points by whole steps (never below their minimum) until together they give up
        `needed_w`; False, and nothing changed, when they cannot."""
        lowered: list[tuple[int, float]] = []
        left = needed_w
        for j in fast:
            if left <= _EPS_W:
                break
            point, before = self.points[j], self.watts[j]
            after = max(math.floor((before - left) / point.step_w + 1e-6) * point.step_w, point.min_power_w)
            if after < before:
                lowered.append((j, before))
                left -= before - after
                self.watts[j] = after
        if left > _EPS_W:
            for j, before in lowered:
                self.watts[j] = before
            return False
        for j, before in lowered:
            self._fits(j, before, self.watts[j], rooms)  # lowering a load always fits: it frees the circuits' room
        return True

    def _fits(self, i: int, shared_w: float, kept_w: float, rooms: tuple[list[float], list[float]]) -> bool:
        """Whether charge point i may draw `kept_w` instead of its `shared_w` in what the circuits have left; if so,
        the rooms are updated to it."""
        trials = []
        for room, footprint in zip(rooms, (self.footprints[i], self.transient_footprints[i]), strict=True):
            trial = list(room)
            footprint.add_to(trial, shared_w)
            footprint.add_to(trial, kept_w, -1.0)
            if any(trial[slot] < -_EPS_A for slot, _ in (*footprint.steady, *footprint.late)):
                return False
            trials.append(trial)
        for room, trial in zip(rooms, trials, strict=True):
            room[:] = trial
        return True

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
            said: tuple[object, ...] = ("starting", left, solar_w, point.min_power_w)  # all the sentence reads
            text = self._said.get(said)
            if text is None:
                text = self._said[said] = reasons.starting(point, left, solar_w, self.delays)
            self.reasons[i] = text
        elif timer.phase == "stopping":
            self.states[i] = "stopping"
            left = hysteresis.stop_left_s(timer, self.delays, self.now)
            said = ("stopping", left, solar_w, point.min_power_w, stale_note)
            text = self._said.get(said)
            if text is None:
                text = self._said[said] = reasons.stopping(point, left, solar_w).removesuffix(".") + stale_note + "."
            self.reasons[i] = text
        else:
            self.states[i] = "charging"
            binds = self.site_cap is not None and self.available_w >= self.site_left_w
            limit = self.site_cap[1] if binds and self.site_cap is not None else None
            self.reasons[i] = self._charging_reason(i, self.available_w, *rising, limit=limit)

    def _share(
        self,
        group: list[int],
        demands: list[Demand],
        budget_w: float,
        rooms: tuple[list[float], list[float]],
        *,
        take_off: bool,
    ) -> list[float]:
        """Share and quantise; record the result and, with `take_off`, take its load off both rooms for whoever
        comes next."""
        free, free_transient = rooms
        order = range(len(demands))
        # Share as if every slow car had already followed (steady load)...
        shares = self._share_rule(demands, order, budget_w, free)
        watts = quantise(demands, [share.power_w for share in shares], order, budget_w, free)
        if self.any_baseline:
            watts = self._hold_back(group, demands, (shares, watts), budget_w, free_transient)
        all_shares, all_watts = self.shares, self.watts
        footprints, transient = self.footprints, self.transient_footprints
        for i, share, power_w in zip(group, shares, watts, strict=True):
            all_shares[i] = share
            all_watts[i] = power_w
            if take_off:
                footprints[i].add_to(free, power_w, -1.0)
                transient[i].add_to(free_transient, power_w, -1.0)
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
        touches: dict[int, bool] = {}  # per footprint (charge points on one circuit and wiring share theirs)
        again = []
        for p, footprint in enumerate(footprints):
            over_here = touches.get(id(footprint))
            if over_here is None:
                over_here = touches[id(footprint)] = any(s in over for s, _ in footprint.steady + footprint.late)
            if over_here:
                again.append(p)
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
            self.next_timers[i] = self._advance(self.timers[i], "dropped", delayed=budget.delayed(self.modes[i]))

    def _charging_reason(
        self,
        i: int,
        budget_w: float | None,
        sharing: int,
        contexts: dict[PointMode, reasons.Context],
        *,
        limit: str | None = None,
    ) -> str:
        point, share, mode = self.points[i], self.shares[i], self.modes[i]
        context = contexts.get(mode)
        if context is None or context.limit != limit:
            phrase = reasons.mode_phrase(mode, point, self.inputs.charge_now_until)
            context = reasons.context(phrase, budget_w, sharing, self.settings.share, limit=limit)
            if mode not in ("schedule", "charge_now", "plan"):  # the others read the same for everyone
                contexts[mode] = context
        slot = None
        if share.slot is not None:
            circuit_id, phase = self.network.labels[share.slot]
            slot = (circuit_id, phase, self.network.limits[share.slot], self.held_back[i])
        amps = self.amps[i] = watts_to_amps(self.watts[i], point.voltage_v, point.phases)
        if self.minimums_only and self.site_cap is not None:
            return reasons.minimum_only(self.watts[i], amps, self.site_cap[1], context)
        watts, in_band, kept_slowly = self.watts[i], self.in_band[i], self.kept_slowly[i]
        # Everything the sentence reads: charge points given the same watts in the same group read the same.
        said = (watts, amps, share.bound, context, slot, in_band, kept_slowly, point.max_power_w, point.min_power_w)
        text = self._said.get(said)
        if text is None:
            text = self._said[said] = reasons.charging(
                point, watts, amps, share, context, slot=slot, in_band=in_band, kept_slowly=kept_slowly
            )
        return text

    def _allocation(self, offered: list[float]) -> Allocation:
        """The results, and every controllable charge point's setpoints; `offered` gets what each was offered."""
        results: list[PointResult] = []
        setpoints: list[SetpointIntent] = []
        states, modes, reasons_, all_amps = self.states, self.modes, self.reasons, self.amps
        grid_charging = False
        all_watts, add_result, add_setpoint = self.watts, results.append, setpoints.append
        for i, point in enumerate(self.points):
            state, reason = states[i], reasons_[i]
            watts = all_watts[i] if state in ("charging", "stopping") else 0.0
            offered[i] = watts
            amps = all_amps[i] if state == "charging" else watts_to_amps(watts, point.voltage_v, point.phases)
            add_result(PointResult(point, modes[i], watts, amps, state, reason))
            if not point.controllable:
                continue
            # A merged charge point: the current-controlling EVSE gets the watts, `car-<VIN>` only start/stop.
            # Offline (its bridge is gone or knows nothing yet) sends "do not touch" in both fields: a stop sent
            # while a bridge is away would be carried out the moment it comes back, when it knows better.
            target_w = None if state == "offline" else watts
            charge = None if target_w is None else target_w > 0
            current, start_stop = point.current_evse_id or point.id, point.start_stop_evse_id or point.id
            if current == start_stop:
                add_setpoint(SetpointIntent(current, target_w, charge, point.phases, point.voltage_v, reason))
            else:
                add_setpoint(SetpointIntent(current, target_w, None, point.phases, point.voltage_v, reason))
                add_setpoint(SetpointIntent(start_stop, None, charge, point.phases, point.voltage_v, reason))
            grid_charging = grid_charging or (watts > 0 and budget.served_first(modes[i]))
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
            site=self.inputs.site,
            battery=self.inputs.battery,
            grid_charging=grid_charging,
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


def _by_id(point: ChargePoint) -> str:
    return point.id


_NO_FLOOR: tuple[None, None] = (None, None)


def _same_number(a: float, b: float) -> bool:
    """Equal, and alike down to the type and the sign of a zero: the one may stand for the other in any output."""
    return a is b or (type(a) is type(b) and a == b and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b)))


def dead_band_w(step_w: float) -> float:
    """How far a share must clear the next step before a charging point's offer rises: half a step, at most
    `DEAD_BAND_MAX_W` (a meter's noise is the same whatever the step; a 3-phase step of 690 W needs no 345 W)."""
    return min(step_w / 2, DEAD_BAND_MAX_W)


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
