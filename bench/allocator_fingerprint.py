"""A fingerprint of everything the allocator core outputs, to show that a restructure of it changes nothing.

Generates `--scenarios` random scenarios from `--seed` and runs each for 3 to 8 rounds of `allocate`, feeding each
round's timers to the next (now and then none, as after a restart). The scenarios cover circuit trees (none, random,
or main → boards → 1- and 3-phase leaves, with metered loads of each kind), wall connectors, cars set through their
API (slow followers), merged cars and read-only EVSEs, every mode, override, charge-now timer, schedule and plan cap,
both sharing rules, delays, missing, stale and fresh grid readings (paired or not, with settling charge points), site
import limits and a home battery; most have 1 to 12 charge points, a few up to 1 000. Between rounds the clock moves
on 1 to 400 s, the charge points follow their offers (all the way, half way or not yet), the sun and the house
drift, cars come and go: so the hysteresis timers, the dead band, slow followers and held-back shares all get used.
A fifth of the scenarios are calm (every charge point ready, a solar mode, a slowly drifting sun, short rounds): the
dead band and slow followers kept above a falling share need several such rounds in a row.

Every round's `repr(allocation)` and `repr(sorted(timers.items()))` go into one sha256 per scenario; a ValueError
(a few scenarios have a broken round on purpose) is hashed as its repr and ends the scenario. stdout is
deterministic: counters of which states, modes and paths occurred, then the fingerprint of all scenarios as the last
line; the time taken goes to stderr. Run it against the sources of two commits and compare the last lines (or
the whole outputs):

    uv run python bench/allocator_fingerprint.py [--scenarios N] [--seed S] [--verbose] [--only N]
    git worktree add /tmp/base <commit>
    PYTHONPATH=/tmp/base/services/allocator/src uv run python bench/allocator_fingerprint.py

PYTHONPATH swaps only the allocator package (chargebus_allocator); chargebus itself and this script come from the
tree it runs in. With `--verbose` a `scenario <n> <sha256>` line per scenario shows which ones differ; `--only n`
runs just that one, for a closer look.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from chargebus.schema import MODES, ChargePointStatus, Mode
from chargebus_allocator import site
from chargebus_allocator.allocate import allocate
from chargebus_allocator.model import (
    Allocation,
    ChargePoint,
    Circuit,
    Delays,
    GridReading,
    Inputs,
    MeteredLoad,
    Phase,
    PointMode,
    Settings,
    ShareRule,
    Timer,
    Wiring,
)

T0 = 1_800_000_000.0
PHASES: tuple[Phase, ...] = ("L1", "L2", "L3")
SHARES: tuple[ShareRule, ...] = ("fair", "priority")
NO_DELAYS = Delays(0, 0, 0, 0)
LARGE_SHARE = 0.02  # scenarios with 100 to 1 000 charge points
BROKEN_SHARE = 0.01  # scenarios with one round of invalid inputs (a ValueError is behaviour too)
RESTART_SHARE = 0.04  # rounds fed no timers, as after a restart
CALM_SHARE = 0.2  # scenarios of ready charge points under a slowly drifting sun (see `_calm`)
GridKind = Literal["none", "stale", "fresh"]
PointKind = Literal["twc", "car", "merged", "read_only", "ocpp"]
KINDS: tuple[PointKind, ...] = ("twc", "car", "merged", "read_only", "ocpp")


# -- the scenario --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SiteConfig:
    """The site's configured limits; the window's import is integrated here from the readings the rounds saw."""

    cap_w: float | None
    limit_w: float | None  # the window average's limit, None: no average limit
    window_s: float
    start: float = math.nan
    imported_j: float = 0.0


@dataclass(slots=True)
class BatteryState:
    thresholds: site.BatteryThresholds
    soc_pct: float | None
    power_w: float | None
    level: site.BatteryLevel | None = None  # what the last round's level was (the thresholds' bands hold it)


@dataclass(slots=True)
class World:
    """One scenario's state between rounds: the charge points as they report, the sun, the house and the clock."""

    rng: random.Random
    now: float
    points: list[ChargePoint]
    circuits: tuple[Circuit, ...]
    settings: Settings
    charge_now_until: float | None
    grid: GridKind
    paired: bool  # readings come with the chargers' draw at their own moment
    solar_w: float
    peak_w: float
    house_w: float
    clouds: float  # how far the sun moves between rounds (sigma of a log-normal factor)
    storms: float  # the odds of a cloud, and of the sun coming back, each round
    house_noise: float  # how far the house's load moves between rounds (sigma, W): calm ones keep the dead band
    limits: SiteConfig | None  # the site's import limits, None: none configured
    battery: BatteryState | None
    trend: float = 0.0  # the sun's drift per round (log): a slow fall keeps slow followers above their share
    longest_step_s: int = 400
    events: bool = True  # charge points come and go, settings change (calm ones: none of that)
    changed: frozenset[str] = frozenset()  # charge points whose draw changed since the last round
    last_grid_w: float | None = None

    def inputs(self) -> Inputs:
        battery = self._battery()
        grid = self._reading(battery)
        points = list(self.points)
        if self.rng.random() < 0.2:
            self.rng.shuffle(points)  # the result must not depend on the order charge points come in
        return Inputs(
            charge_points=tuple(points),
            circuits=self.circuits,
            grid=grid,
            charge_now_until=self.charge_now_until,
            settings=self.settings,
            site=self._site(grid, battery),
            battery=battery,
        )

    def _reading(self, battery: site.Battery | None) -> GridReading | None:
        rng = self.rng
        if self.grid == "none":
            self.last_grid_w = None
            return None
        draw = sum(max(0.0, p.power_w) for p in self.points)
        discharge = battery.power_w if battery is not None and battery.power_w is not None else 0.0
        power_w = self.house_w + draw - self.solar_w - discharge + rng.uniform(-40.0, 40.0)  # meter noise
        stale_after = self.settings.grid_stale_after_s
        age = rng.uniform(0.0, min(5.0, stale_after)) if self.grid == "fresh" else rng.uniform(stale_after + 1, 900)
        chargers_w = None
        if self.paired:
            chargers_w = sum(p.power_w for p in self.points if p.controllable and p.online)
            chargers_w += rng.choice((0.0, 0.0, rng.uniform(-300.0, 300.0)))  # a draw that moved since
        roll = rng.random()
        settling = self.changed if roll < 0.4 else frozenset(p.key for p in self.points[::3]) if roll < 0.5 else None
        self.last_grid_w = power_w if self.grid == "fresh" else None
        return GridReading(power_w, self.now - age, chargers_w, settling or frozenset())

    def _battery(self) -> site.Battery | None:
        state = self.battery
        if state is None:
            return None
        state.level = site.battery_level(state.soc_pct, state.thresholds, state.level)
        return site.Battery(state.power_w, state.soc_pct, state.level)

    def _site(self, grid: GridReading | None, battery: site.Battery | None) -> site.SiteLimit | None:
        """As the engine figures it: the house is the reading less the chargers' draw, plus the battery's discharge
        while it is below its buffer SoC; unknown while the reading is stale."""
        config = self.limits
        if config is None:
            return None
        average = None
        if config.limit_w is not None:
            start = math.floor(self.now / config.window_s) * config.window_s
            if start != config.start:
                config.start, config.imported_j = start, config.limit_w * (self.now - start) * self.rng.uniform(0, 1.3)
            average = (config.limit_w, config.window_s, config.imported_j, self.now, start + config.window_s)
        house_w = None
        if grid is not None and self.grid == "fresh":
            house_w = grid.power_w - (grid.chargers_w or 0.0)
            if battery is not None and battery.power_w is not None and not battery.level.buffer:
                house_w += max(0.0, battery.power_w)
        return site.site_limit(config.cap_w, average, house_w)

    def advance(self, allocation: Allocation) -> None:
        """The world after a round: the clock, the charge points' draws and plugs, the sun, the house, the battery."""
        rng = self.rng
        top = self.longest_step_s
        dt = float(rng.randint(1, top)) if rng.random() < 0.8 else rng.uniform(1.0, top)
        if self.limits is not None and self.last_grid_w is not None:
            self.limits.imported_j += max(0.0, self.last_grid_w) * dt
        self.now += dt
        offered = {result.charge_point.key: result.allocated_w for result in allocation.points}
        points, changed = [], set()
        for point in self.points:
            moved = _follow(point, offered.get(point.key, 0.0), rng)
            moved = _event(moved, rng, self.now) if self.events else moved
            if moved.power_w != point.power_w:
                changed.add(moved.key)
            points.append(moved)
        self.points, self.changed = points, frozenset(changed)
        self._weather()
        if self.events:
            self._settings()

    def _weather(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < self.storms:
            self.solar_w *= rng.uniform(0.05, 0.6)  # a cloud
        elif roll < 2 * self.storms:
            self.solar_w = max(self.solar_w * rng.uniform(1.5, 4.0), rng.uniform(0.0, self.peak_w))  # sun again
        else:
            self.solar_w *= math.exp(self.trend + rng.gauss(0.0, self.clouds))
        self.solar_w = min(self.solar_w, self.peak_w)
        self.house_w = max(50.0, self.house_w + rng.gauss(0.0, self.house_noise))
        if rng.random() < 0.05:
            self.grid = rng.choice(("none", "stale", "fresh", "fresh"))
        if rng.random() < 0.03:
            self.paired = not self.paired
        if rng.random() < 0.1 and self.circuits:
            self.circuits = tuple(replace(c, metered=_metered(rng)) if c.metered else c for c in self.circuits)
        state = self.battery
        if state is not None:
            if state.soc_pct is not None:
                state.soc_pct = min(100.0, max(0.0, state.soc_pct + rng.uniform(-3.0, 3.0)))
            state.power_w = None if rng.random() < 0.08 else rng.uniform(-5000.0, 5000.0)

    def _settings(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            self.settings = replace(self.settings, mode=rng.choice(MODES))
        elif roll < 0.05:
            self.settings = replace(self.settings, share=rng.choice(SHARES))
        elif roll < 0.07:
            self.charge_now_until = self.now + rng.uniform(0.0, 900.0)


# -- building it ---------------------------------------------------------------------------------------------------


def build_world(rng: random.Random) -> World:
    now = T0 + rng.uniform(0.0, 86_400.0)
    count = _size(rng)
    circuits = build_circuits(rng, count)
    points = [build_point(rng, n, circuits, now) for n in range(count)]
    peak_w = sum(p.max_power_w for p in points if p.controllable) * rng.uniform(0.3, 1.5)
    grid: GridKind = rng.choices(("none", "stale", "fresh"), weights=(8, 10, 82))[0]
    world = World(
        rng=rng,
        now=now,
        points=points,
        circuits=circuits,
        settings=build_settings(rng),
        charge_now_until=now + rng.uniform(-30.0, 1200.0) if rng.random() < 0.08 else None,
        grid=grid,
        paired=rng.random() < 0.5,
        solar_w=peak_w * rng.choice((0.0, rng.uniform(0.0, 0.3), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))),
        peak_w=peak_w,
        house_w=rng.uniform(100.0, 3000.0),
        clouds=rng.choice((0.0, 0.0, 0.01, 0.05, 0.2)),
        storms=rng.choice((0.0, 0.05, 0.1, 0.25)),
        house_noise=rng.choice((0.0, 20.0, 60.0, 150.0)),
        limits=build_site(rng, peak_w) if rng.random() < 0.25 else None,
        battery=build_battery(rng) if rng.random() < 0.2 else None,
    )
    return _calm(world) if rng.random() < CALM_SHARE else world


def _calm(world: World) -> World:
    """Cars beside wall connectors, all ready, in a solar mode under a sun that drifts slowly, in short rounds:
    the dead band, slow followers kept above a falling share and their share floor need several such rounds."""
    rng = world.rng
    world.points = [_ready(p) if rng.random() < 0.9 else p for p in world.points]
    world.points = [
        replace(p, follows_slowly=True) if n == 0 or rng.random() < 0.3 else p for n, p in enumerate(world.points)
    ]
    mode: Mode = rng.choice(("solar", "minsolar"))
    world.settings = replace(world.settings, mode=mode)
    world.charge_now_until = None
    world.grid = "fresh"
    if rng.random() < 0.6:
        world.circuits = ()  # a tight tree kicks them out at once, then min_off_s keeps them out all scenario
        world.points = [replace(p, circuit=None) for p in world.points]
    world.events = False
    demand_w = sum(p.max_power_w for p in world.points if p.controllable)
    world.solar_w = world.house_w + demand_w * rng.uniform(0.3, 0.9)  # shares below the maxima
    world.peak_w = 1.3 * world.solar_w
    world.clouds, world.storms, world.house_noise = rng.choice((0.0, 0.01, 0.03)), 0.0, rng.choice((0.0, 20.0))
    world.trend = rng.choice((rng.uniform(-0.1, 0.03), rng.uniform(-0.03, 0.0)))
    world.longest_step_s = rng.choice((30, 60, 90, 200))
    return world


def _ready(point: ChargePoint) -> ChargePoint:
    """Plugged in, online, allowed, wanting charge, on no override and charging (its timer seeded so)."""
    return replace(
        point,
        charging=True,
        controllable=True,
        online=True,
        plugged_in=True,
        authorized=True,
        wants_charge=True,
        mode=None,
        charge_now_until=None,
        schedule_cap_w=None,
        plan_cap_w=None,
    )


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < LARGE_SHARE:
        return rng.randint(100, 1000)
    if roll < LARGE_SHARE + 0.01:
        return 0
    return rng.randint(1, 12)


def build_settings(rng: random.Random) -> Settings:
    delays = rng.choice(
        (
            Delays(),
            Delays(),
            NO_DELAYS,
            Delays(*(float(rng.choice((0, 5, 15, 30, 60, 120, 240))) for _ in range(4))),
        )
    )
    return Settings(
        mode=rng.choices(MODES, weights=(15, 20, 35, 30))[0],  # the solar modes have the most paths
        reserve_w=rng.choice((0.0, 100.0, rng.uniform(0.0, 500.0))),
        share=rng.choice(SHARES),
        delays=delays,
        grid_stale_after_s=rng.choice((30.0, 30.0, 30.0, 10.0, 120.0)),
    )


def build_site(rng: random.Random, peak_w: float) -> SiteConfig:
    cap_w = rng.choice((None, rng.uniform(1000.0, 4000.0) + peak_w * rng.uniform(0.1, 0.9)))
    limit_w = (
        rng.uniform(1000.0, 4000.0) + peak_w * rng.uniform(0.1, 0.9) if cap_w is None or rng.random() < 0.4 else None
    )
    return SiteConfig(cap_w, limit_w, rng.choice((900.0, 3600.0)))


def build_battery(rng: random.Random) -> BatteryState:
    thresholds = rng.choice(
        (
            site.BatteryThresholds(),
            site.BatteryThresholds(rng.uniform(10, 60), rng.uniform(60, 90), rng.uniform(85, 99)),
        )
    )
    soc = None if rng.random() < 0.1 else rng.choice((rng.uniform(0, 100), thresholds.buffer_soc + rng.uniform(-3, 3)))
    return BatteryState(thresholds, soc, None if rng.random() < 0.1 else rng.uniform(-5000.0, 5000.0))


def build_circuits(rng: random.Random, count: int) -> tuple[Circuit, ...]:
    roll = rng.random()
    if roll < 0.3:
        return ()
    if roll < 0.45:
        return _random_tree(rng)
    return _site_tree(rng, count)


def _random_tree(rng: random.Random) -> tuple[Circuit, ...]:
    """Any shape: parents picked among the circuits before, 1- and 3-phase mixed as they come."""
    circuits: list[Circuit] = []
    for n in range(rng.randint(1, 6)):
        circuits.append(
            Circuit(
                id=f"c{n}",
                max_current_a=float(rng.choice((6, 10, 16, 20, 25, 32, 40, 63))),
                phases=rng.choice((1, 3)),
                voltage_v=rng.choice((230.0, 240.0)),
                parent=rng.choice([None, *(c.id for c in circuits)]),
                phase=rng.choice(PHASES),
                metered=_metered(rng) if rng.random() < 0.4 else None,
            )
        )
    return tuple(circuits)


def _site_tree(rng: random.Random, count: int) -> tuple[Circuit, ...]:
    """main → 3-phase boards → 1- and 3-phase leaves, sized to bind: parents below the sum of their children."""
    boards = 7 if count >= 100 else rng.randint(1, 3)
    per_board = 6 if count >= 100 else rng.randint(1, 3)
    per_leaf = max(1.0, count / (boards * per_board))
    circuits: list[Circuit] = []
    board_total = 0.0
    for b in range(boards):
        leaf_total = 0.0
        for n in range(per_board):
            single = rng.random() < 0.6
            amps = max(10.0, round(per_leaf * rng.uniform(6.0, 24.0)))
            amps = amps if single else max(10.0, round(amps * rng.uniform(0.3, 0.8)))
            leaf_total += amps / 3 if single else amps
            circuits.append(
                Circuit(
                    id=f"leaf{b}.{n}",
                    max_current_a=amps,
                    phases=1 if single else 3,
                    voltage_v=rng.choice((230.0, 240.0)) if single else 230.0,
                    parent=f"board{b}",
                    phase=rng.choice(PHASES),
                    metered=_metered(rng) if rng.random() < 0.25 else None,
                )
            )
        board_a = max(16.0, round(leaf_total * rng.uniform(0.4, 1.1)))
        board_total += board_a
        circuits.append(
            Circuit(f"board{b}", board_a, parent="main", metered=_metered(rng) if rng.random() < 0.2 else None)
        )
    main_a = max(16.0, round(board_total * rng.uniform(0.4, 1.1)))
    circuits.append(Circuit("main", main_a, metered=_metered(rng) if rng.random() < 0.3 else None))
    return tuple(circuits)


def _metered(rng: random.Random) -> MeteredLoad:
    """Each kind of meter reading: a total only, per-phase powers, per-phase currents (which win over powers)."""
    total = rng.uniform(-2000.0, 8000.0)
    kind = rng.randrange(3)
    if kind == 0:
        return MeteredLoad(total)
    powers = (rng.uniform(-1000.0, 3000.0), rng.uniform(-1000.0, 3000.0), rng.uniform(-1000.0, 3000.0))
    if kind == 1:
        return MeteredLoad(total, phase_power_w=powers)
    currents = (rng.uniform(-5.0, 15.0), rng.uniform(-5.0, 15.0), rng.uniform(-5.0, 15.0))
    return MeteredLoad(total, phase_power_w=rng.choice((None, powers)), phase_current_a=currents)


def build_point(rng: random.Random, n: int, circuits: tuple[Circuit, ...], now: float) -> ChargePoint:
    kind = rng.choices(KINDS, weights=(50, 15, 10, 10, 15))[0]
    three = rng.random() < (0.7 if kind == "ocpp" else 0.0 if kind == "car" else 0.3)
    volts, phases = (230.0, 3) if three else (240.0, 1)
    step = volts * phases
    min_w = rng.choice((6, 6, 6, 5)) * step
    if rng.random() < 0.1:
        min_w += rng.choice((37.5, step / 3, 100.0))  # a minimum that is no whole step
    max_w = rng.randint(10, 48) * step
    circuit = _circuit_for(rng, circuits, three=three)
    wiring: Wiring = "L1L2L3" if three and rng.random() < 0.9 else rng.choice(("L1", "L2", "L3", "L1L2L3"))
    vin = f"5YJ3E1EA8KF{n:06d}" if kind in ("car", "merged") or rng.random() < 0.05 else None
    evse_id = f"car-{vin}" if kind == "car" else f"{'ocpp' if kind == 'ocpp' else 'twc'}-{n:04x}"
    merged = kind == "merged" and vin is not None
    power_w = rng.choice((0.0, 0.0, min_w + rng.uniform(-50.0, 50.0), rng.uniform(0.0, max_w), max_w))
    return ChargePoint(
        id=evse_id,
        min_power_w=min_w,
        max_power_w=max_w,
        step_w=step,
        phases=phases,
        voltage_v=volts,
        power_w=power_w,
        measured_evse_id=evse_id if merged else None,
        evse_ids=(evse_id, f"car-{vin}") if merged else (),
        vin=vin,
        controllable=kind != "read_only" and rng.random() > 0.03,
        current_evse_id=evse_id if merged else None,
        start_stop_evse_id=f"car-{vin}" if merged else None,
        follows_slowly=kind == "car" or (merged and rng.random() < 0.5),
        priority=rng.choice((-1, 0, 0, 0, 1, 2)),
        circuit=circuit,
        wiring=wiring,
        plugged_in=rng.random() > 0.1,
        online=rng.random() > 0.07,
        wants_charge=rng.random() > 0.06,
        authorized=rng.random() > 0.05,
        charging=power_w > 0 and rng.random() < 0.8,
        plugged_in_at=_plugged_at(rng, now),
        mode=rng.choice((None, None, None, None, *MODES)),
        charge_now_until=now + rng.uniform(-60.0, 1800.0) if rng.random() < 0.04 else None,
        schedule_cap_w=_cap(rng, 0.06),
        plan_cap_w=_cap(rng, 0.04),
        soc_pct=rng.uniform(10.0, 100.0) if vin is not None and rng.random() < 0.7 else None,
        charge_limit_pct=rng.choice((80.0, 90.0, 100.0)) if vin is not None else None,
    )


def _circuit_for(rng: random.Random, circuits: tuple[Circuit, ...], *, three: bool) -> str | None:
    """Mostly a leaf of the right kind, sometimes any circuit (an inconsistent config is valid input too)."""
    if not circuits or rng.random() < 0.08:
        return None
    parents = {c.parent for c in circuits}
    leaves = [c for c in circuits if c.id not in parents]
    fitting = [c for c in leaves if (c.phases == 3) == three] or leaves
    return rng.choice(fitting if rng.random() < 0.85 else circuits).id


def _plugged_at(rng: random.Random, now: float) -> float | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.3:
        return now - 3600.0 * rng.randint(1, 3)  # ties: the admission order falls back to the id
    return now - rng.uniform(0.0, 36_000.0)


def _cap(rng: random.Random, share: float) -> float | None:
    if rng.random() >= share:
        return None
    return rng.choice((1000.0, 3000.0, 7400.0, 11_000.0, rng.uniform(500.0, 15_000.0)))


# -- between rounds ------------------------------------------------------------------------------------------------


def _follow(point: ChargePoint, offered_w: float, rng: random.Random) -> ChargePoint:
    """A charge point's next draw: its offer, half way there, or still the last one (slow followers lag)."""
    if not point.plugged_in:
        return point if point.power_w == 0 and not point.charging else replace(point, power_w=0.0, charging=False)
    roll = rng.random()
    if point.controllable and point.online:
        follows = 0.3 if point.follows_slowly else 0.75
        power_w = point.power_w
        if roll < follows:
            power_w = offered_w
        elif roll < follows + 0.2:
            power_w = (point.power_w + offered_w) / 2
        elif roll > 0.97:
            power_w = max(0.0, offered_w + rng.uniform(-30.0, 30.0))
        charging = offered_w > 0 if rng.random() < 0.9 else point.charging
    else:
        power_w = point.power_w if roll < 0.7 else rng.uniform(0.0, point.max_power_w)  # whatever it does
        charging = power_w > 0
    if power_w == point.power_w and charging == point.charging:
        return point
    return replace(point, power_w=power_w, charging=charging)


def _plug(point: ChargePoint, _rng: random.Random, now: float) -> ChargePoint:
    if point.plugged_in:
        return replace(point, plugged_in=False, power_w=0.0, charging=False, plugged_in_at=None)
    return replace(point, plugged_in=True, plugged_in_at=now)


def _online(point: ChargePoint, _rng: random.Random, _now: float) -> ChargePoint:
    return replace(point, online=not point.online)


def _authorized(point: ChargePoint, _rng: random.Random, _now: float) -> ChargePoint:
    return replace(point, authorized=not point.authorized)


def _full(point: ChargePoint, _rng: random.Random, _now: float) -> ChargePoint:
    return replace(point, wants_charge=not point.wants_charge)


def _override(point: ChargePoint, rng: random.Random, _now: float) -> ChargePoint:
    mode: Mode | None = rng.choice((None, *MODES))
    return replace(point, mode=mode)


def _charge_now(point: ChargePoint, rng: random.Random, now: float) -> ChargePoint:
    return replace(point, charge_now_until=now + rng.uniform(-10.0, 900.0))


def _schedule(point: ChargePoint, rng: random.Random, _now: float) -> ChargePoint:
    return replace(point, schedule_cap_w=None if point.schedule_cap_w is not None else _cap(rng, 1.0))


def _plan(point: ChargePoint, rng: random.Random, _now: float) -> ChargePoint:
    return replace(point, plan_cap_w=None if point.plan_cap_w is not None else _cap(rng, 1.0))


#: What may happen to a charge point between rounds, and how likely (cumulative odds; the rest: nothing).
EVENTS: tuple[tuple[float, Callable[[ChargePoint, random.Random, float], ChargePoint]], ...] = (
    (0.03, _plug),
    (0.045, _online),
    (0.055, _authorized),
    (0.075, _full),
    (0.09, _override),
    (0.095, _charge_now),
    (0.105, _schedule),
    (0.11, _plan),
)


def _event(point: ChargePoint, rng: random.Random, now: float) -> ChargePoint:
    roll = rng.random()
    for odds, happen in EVENTS:
        if roll < odds:
            return happen(point, rng, now)
    return point


def _broken(inputs: Inputs, rng: random.Random) -> Inputs:
    """Inputs the core must refuse with a ValueError: two charge points with one key, a charge point on a circuit
    that does not exist, a loop of circuits, a circuit defined twice."""
    kind = rng.randrange(4) if inputs.charge_points else rng.randrange(2, 4)
    points, circuits = inputs.charge_points, inputs.circuits
    if kind == 0:
        twin = points[0]
        twin = replace(twin, id=f"{twin.id}-twin") if twin.vin is not None else twin
        return replace(inputs, charge_points=(*points, twin))
    if kind == 1:
        return replace(inputs, charge_points=(replace(points[0], circuit="nowhere"), *points[1:]))
    if kind == 2:
        loop = (Circuit("loop-a", 16.0, parent="loop-b"), Circuit("loop-b", 16.0, parent="loop-a"))
        return replace(inputs, circuits=(*circuits, *loop))
    return replace(inputs, circuits=(*circuits, Circuit("twice", 16.0), Circuit("twice", 32.0)))


# -- running and counting ------------------------------------------------------------------------------------------

#: Paths a reason tells of (reasons.py's wording): a hint that they ran, not part of the fingerprint.
PHRASES = (
    ("offer_kept_in_band", "within the dead band"),  # the dead band, or a slow follower kept above a falling share
    ("slow_follower_below_share", "kept for fewer API calls"),  # rising only to its share's recent floor
    ("held_back_for_slow_cars", "until slower cars there have followed"),
    ("circuit_full", "is full on"),
    ("site_minimum_only", "charge points get at most their minimum"),
    ("grid_stale_no_surplus", "so no solar surplus is assumed"),
)


@dataclass(slots=True)
class Tally:
    states: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    rounds: Counter[str] = field(default_factory=Counter)  # rounds with each feature
    phrases: Counter[str] = field(default_factory=Counter)  # point-rounds whose reason tells of a path

    def count(self, inputs: Inputs, allocation: Allocation, now: float) -> None:
        rounds = self.rounds
        for result in allocation.points:
            self.states[result.state] += 1
            self.modes[result.mode] += 1
            for name, phrase in PHRASES:
                if phrase in result.reason:
                    self.phrases[name] += 1
        features = {
            "site_limit": inputs.site is not None,
            "site_minimums_only": inputs.site is not None and inputs.site.minimums_only,
            "site_house_alone_over": inputs.site is not None and inputs.site.house_alone_over,
            "battery": inputs.battery is not None,
            "priority_share": inputs.settings.share == "priority",
            "slow_followers_with_power": any(
                p.follows_slowly and p.power_w > 0 and p.controllable and p.online for p in inputs.charge_points
            ),
            "circuits": bool(inputs.circuits),
            "grid_none": inputs.grid is None,
            "grid_stale": inputs.grid is not None and allocation.grid_stale,
            "grid_paired": inputs.grid is not None and inputs.grid.chargers_w is not None,
            "grid_settling": inputs.grid is not None and bool(inputs.grid.settling),
            "global_charge_now": inputs.charge_now_until is not None and now < inputs.charge_now_until,
            "grid_charging": allocation.grid_charging,
        }
        for name, present in features.items():
            rounds[name] += present


def run_scenario(seed: int, number: int, tally: Tally) -> str:
    rng = random.Random(seed * 1_000_003 + number)  # one stream per scenario: `--only n` reproduces it alone
    world = build_world(rng)
    digest = hashlib.sha256()
    timers: dict[str, Timer] | None = None
    rounds = rng.randint(3, 8)
    broken = rng.randrange(rounds) if rng.random() < BROKEN_SHARE else -1
    for n in range(rounds):
        inputs = world.inputs()
        if n == broken:
            inputs = _broken(inputs, rng)
        if timers is not None and rng.random() < RESTART_SHARE:
            timers = None
            tally.rounds["restarts"] += 1
        tally.rounds["all"] += 1
        try:
            allocation, timers = allocate(inputs, timers, world.now)
        except ValueError as error:
            digest.update(repr(error).encode())
            tally.rounds["value_errors"] += 1
            break
        digest.update(repr(allocation).encode())
        digest.update(repr(sorted(timers.items())).encode())
        tally.count(inputs, allocation, world.now)
        world.advance(allocation)
    return digest.hexdigest()


def report(tally: Tally) -> None:
    for state in get_args(ChargePointStatus):
        print(f"state_{state} {tally.states[state]} point-rounds")
    for mode in get_args(PointMode):
        print(f"mode_{mode} {tally.modes[mode]} point-rounds")
    for name, _ in PHRASES:
        print(f"reason_{name} {tally.phrases[name]} point-rounds")
    for name, count in sorted(tally.rounds.items()):
        print(f"rounds_{name} {count} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=1500, help="how many scenarios (default 1500)")
    parser.add_argument("--seed", type=int, default=0, help="the random seed (default 0)")
    parser.add_argument("--only", type=int, default=None, help="run just this scenario")
    parser.add_argument("--verbose", action="store_true", help="a line per scenario")
    args = parser.parse_args()
    started = time.perf_counter()
    tally = Tally()
    overall = hashlib.sha256()
    numbers = range(args.scenarios) if args.only is None else (args.only,)
    for number in numbers:
        hexdigest = run_scenario(args.seed, number, tally)
        overall.update(hexdigest.encode())
        if args.verbose or args.only is not None:
            print(f"scenario {number} {hexdigest}")
    report(tally)
    points = sum(tally.states.values())
    rounds = tally.rounds["all"]
    print(f"fingerprint {overall.hexdigest()} scenarios={len(numbers)} rounds={rounds} points={points}")
    print(f"took {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
