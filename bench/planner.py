"""The departure planner (`chargebus_allocator.planner.plan_jointly`) in closed loop over a simulated month, against
an offline optimum with perfect foresight.

Scenario (seeded, deterministic; `--days` 30 from 2027-06-01 or, with `--season december`, 2027-12-01; local time is
UTC here). Hourly import prices with a cheap night, a morning and an evening peak (a midday dip in summer), a level
that varies from day to day and a little noise per hour; a flat feed-in price of 0.08 per kWh. PV generation per
quarter hour: sunny or cloudy days (summer: 05:30-21:00, up to 7 kW, 60 % sunny; december: 08:15-16:15, up to
2.5 kW, 30 % sunny). The house's load per quarter hour: a base, a morning, a midday and an evening peak, with noise;
the planner is told its usual load per hour (the mean). Two cars on one 1-phase 32 A circuit at 230 V (each
1 380-7 360 W, 6-32 A; together at most 7 360 W): car-a (60 kWh) comes home 17:00-19:30 at 20-60 % and leaves at
07:00-07:45; car-b (77 kWh) comes home 18:00-22:30 at 30-70 % and leaves at 06:30-08:00, except on about a third
of the days, when it stays home and leaves at 14:00-16:30, so the sun matters. Each plan wants 80 % by departure
(the need in Wh at the wall); strategy `cheapest`, mode `solar` outside slots.

What the planner knows: the prices of today, and from 13:00 of tomorrow too (a day-ahead tariff); the PV forecast
48 h ahead per quarter hour, either `perfect` (the actual generation) or with `error` (the hourly mean of the
actual generation times a random factor per day, lognormal σ 0.30, and one per hour, σ 0.15); the house's usual
load by hour. It is called every 15 minutes (clock-aligned) and when a car plugs in, with the need still open and
each car's `ChargePoint.charging` saying whether it drew power the step before; a replan within a quarter passes
the slot power the car is charging at (`running_w`), which the planner keeps to the quarter's end.

Closed loop in `--step` second steps (60): a car inside a planned slot draws the slot's power (at least its 6 A
minimum: no car charges below it, and the planner may plan a slot's grid part below it); outside slots it
is in `solar` mode and draws the actual solar surplus (PV − house − what the other car draws) when that reaches
its minimum power, up to its maximum and the circuit's room; two cars in solar mode share the surplus fairly, and
when it does not reach both minimums the one leaving first takes it. A car stops when its plan's need is met (it
is at its charge limit). The solar mode's hysteresis (enable/disable delays, minimum on/off) is not modelled: PV
and house load change per quarter hour here.

Costing, for the planner and the optimum alike: energy from the grid at the import price of its hour; solar energy
the cars take at the feed-in price, the revenue foregone by not exporting it. A car's draw is covered by the
surplus (PV − house) first, both cars' draws pro rata; the rest is grid.

The offline optimum is a linear programme over the whole month with perfect foresight of the actual PV, house load
and prices, solved with HiGHS (`highspy`): per car and quarter hour, energy from the grid and from PV; each car at
most its maximum power (pro rata for the part of a quarter it is plugged in), both together at most the circuit,
PV used at most the actual surplus (PV − house) of the quarter; each plan's need met by its departure (a penalised
shortfall variable tells a plan no schedule could meet: such a plan is "infeasible" and not counted as missed).
Objective: Σ import price × grid energy + feed-in price × PV energy used. It ignores the minimum power (and whole
amperes and the per-quarter granularity of real slots), which makes it a lower bound for any real controller.

Figures per forecast mode: energy charged and cost per kWh charged, planner vs optimum (% above); grid kWh bought
although the sun later covered it (within the same plan window: grid energy bought while, after it and before
departure, surplus went to the grid that the car's solar mode could have taken — at least its minimum power, within
its maximum and the circuit; each purchase matched with the nearest later sun, the latest purchase first, so no sun
counts twice); plans missed (need not met by more than 0.1 kWh at
departure although the optimum met it) and the kWh short; starts (not charging → charging) per car per calendar
day, max and mean, and of them the starts into a planned slot (the rest are solar mode starting on the sun), and
per plug-in; the planner's run time per call (median, p99). Goals: ≤ 5 % above the optimum's cost per kWh
with perfect forecasts, ≤ 10 % with forecast error; 0 plans missed when feasible; ≤ 2 starts per car per day.

`--planner FILE` runs a copy of the planner module (same `plan_jointly` signature) instead, for experiments: copy
services/allocator/src/chargebus_allocator/planner.py, change it, and compare the two runs. `--strategy continuous`
plans with that strategy instead of `cheapest`.

    uv run python bench/planner.py [--days 30] [--seed 1] [--forecast perfect|error|both] [--season summer|december]
                                   [--step 60] [--strategy cheapest|continuous] [--planner FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

import highspy
import numpy as np
from chargebus.schema import PlanStrategy
from chargebus_allocator.model import ChargePoint, Circuit
from chargebus_allocator.planner import Goal, Outlook, Plan, Slot, plan_jointly

Season = Literal["summer", "december"]
ForecastMode = Literal["perfect", "error"]
PlanFunction = Callable[[Sequence[Goal], Outlook, Sequence[Circuit], float], dict[str, Plan]]

DAY_S = 86_400.0
HOUR_S = 3_600.0
QUARTER_S = 900.0
STARTS: dict[Season, float] = {"summer": 1_811_808_000.0, "december": 1_827_619_200.0}  # 2027-06-01, 2027-12-01
FEED_IN = 0.08  # per kWh, flat
VOLTS = 230.0
MIN_A, MAX_A, CIRCUIT_A = 6, 32, 32
MIN_W, MAX_W, CIRCUIT_W = MIN_A * VOLTS, MAX_A * VOLTS, CIRCUIT_A * VOLTS
CIRCUIT = Circuit("garage", max_current_a=CIRCUIT_A, phases=1, voltage_v=VOLTS, phase="L1")
TARGET_PCT = 80.0
FORECAST_AHEAD_S = 48 * HOUR_S
PRICES_PUBLISHED_H = 13  # tomorrow's prices are known from 13:00 today
DONE_WH = 0.5  # this close to its need a car is at its charge limit
MISSED_WH = 100.0  # short by more than this at departure: the plan was missed
SHORTFALL_PENALTY = 1_000.0  # per kWh, in the optimum: only an infeasible plan is left short
#: The usual house load by hour: base, morning, midday and evening peaks (W).
USUAL_HOUSE_W = tuple(
    350.0 + (400.0 if 6 <= h < 9 else 0.0) + (300.0 if 12 <= h < 13 else 0.0) + (1_200.0 if 18 <= h < 21 else 0.0)
    for h in range(24)
)


@dataclass(frozen=True, slots=True)
class SeasonShape:
    sunrise_h: float
    sunset_h: float
    peak_w: float
    sunny_share: float
    midday_dip: float  # how much cheaper midday hours are (PV on the market)


SEASONS: dict[Season, SeasonShape] = {
    "summer": SeasonShape(5.5, 21.0, 7_000.0, 0.6, 0.06),
    "december": SeasonShape(8.25, 16.25, 2_500.0, 0.3, 0.0),
}


@dataclass(frozen=True, slots=True)
class Car:
    id: str
    capacity_wh: float

    @property
    def point(self) -> ChargePoint:
        return ChargePoint(
            id=self.id, min_power_w=MIN_W, max_power_w=MAX_W, step_w=VOLTS, phases=1, voltage_v=VOLTS,
            circuit=CIRCUIT.id, wiring="L1",
        )  # fmt: skip


CARS = (Car("car-a", 60_000.0), Car("car-b", 77_000.0))


@dataclass(frozen=True, slots=True)
class Session:
    """One plug-in: a plan for `needed_wh` (to 80 %) by `depart`."""

    car: str
    arrive: float
    depart: float
    needed_wh: float
    home_day: bool  # leaves in the afternoon: the sun can help


@dataclass(frozen=True, slots=True)
class Scenario:
    start: float
    days: int
    season: Season
    price: tuple[float, ...]  # import price per kWh, per hour from `start`
    pv_w: tuple[float, ...]  # actual generation per quarter hour
    pv_forecast_w: tuple[float, ...]  # the forecast with error, per quarter hour
    house_w: tuple[float, ...]  # actual house load per quarter hour
    sessions: tuple[Session, ...]

    @property
    def end(self) -> float:
        return self.start + len(self.pv_w) * QUARTER_S

    def quarter(self, when: float) -> int:
        return int((when - self.start) // QUARTER_S)

    def price_at(self, when: float) -> float:
        return self.price[int((when - self.start) // HOUR_S)]

    def surplus_w(self, q: int) -> float:
        return max(0.0, self.pv_w[q] - self.house_w[q])

    def forecast(self, mode: ForecastMode) -> tuple[float, ...]:
        return self.pv_w if mode == "perfect" else self.pv_forecast_w


def generate(days: int, seed: int, season: Season) -> Scenario:
    """`days` evenings of arrivals, simulated to the end of the day after the last one."""
    rng = random.Random(seed)
    shape = SEASONS[season]
    start = STARTS[season]
    total_days = days + 1
    price: list[float] = []
    for _ in range(total_days):
        level = max(0.6, rng.gauss(1.0, 0.08))
        price.extend(round(level * _price_shape(h, shape) + rng.gauss(0.0, 0.012), 4) for h in range(24))
    pv: list[float] = []
    house: list[float] = []
    for _ in range(total_days):
        sunny = rng.random() < shape.sunny_share
        cloudiness = rng.uniform(0.9, 1.0) if sunny else rng.uniform(0.15, 0.55)
        for q in range(96):
            hour = (q + 0.5) / 4
            clear = _clear_sky_w(hour, shape)
            jitter = rng.uniform(0.97, 1.0) if sunny else min(1.0 / cloudiness, rng.lognormvariate(0.0, 0.45))
            pv.append(round(clear * cloudiness * jitter, 1))
            house.append(round(USUAL_HOUSE_W[q // 4] * rng.lognormvariate(-0.045, 0.3), 1))
    errors = random.Random(seed * 7919 + 1)  # its own stream: the actuals are the same with or without error
    forecast: list[float] = []
    for day in range(total_days):
        day_factor = errors.lognormvariate(0.0, 0.30)
        for hour in range(24):
            first = (day * 24 + hour) * 4
            mean = sum(pv[first : first + 4]) / 4
            factor = day_factor * errors.lognormvariate(0.0, 0.15)
            forecast.extend([round(mean * factor, 1)] * 4)
    sessions: list[Session] = []
    for day in range(days):
        midnight = start + day * DAY_S
        a_arrive = midnight + _minute(rng.uniform(17.0, 19.5))
        a_depart = midnight + DAY_S + _minute(rng.uniform(7.0, 7.75))
        sessions.append(Session("car-a", a_arrive, a_depart, _need(rng, 20.0, 60.0, CARS[0]), home_day=False))
        b_arrive = midnight + _minute(rng.uniform(18.0, 22.5))
        home_day = rng.random() < 0.35
        leave_h = rng.uniform(14.0, 16.5) if home_day else rng.uniform(6.5, 8.0)
        b_depart = midnight + DAY_S + _minute(leave_h)
        sessions.append(Session("car-b", b_arrive, b_depart, _need(rng, 30.0, 70.0, CARS[1]), home_day=home_day))
    return Scenario(start, days, season, tuple(price), tuple(pv), tuple(forecast), tuple(house), tuple(sessions))


def _price_shape(hour: int, shape: SeasonShape) -> float:
    base = {0: 0.15, 1: 0.14, 2: 0.13, 3: 0.13, 4: 0.14, 5: 0.18, 6: 0.28, 7: 0.34, 8: 0.32, 9: 0.27, 10: 0.25}
    later = {16: 0.27, 17: 0.33, 18: 0.39, 19: 0.41, 20: 0.38, 21: 0.30, 22: 0.24, 23: 0.19}
    if hour in base:
        return base[hour]
    if hour in later:
        return later[hour]
    return 0.24 - shape.midday_dip  # 11:00-16:00


def _clear_sky_w(hour: float, shape: SeasonShape) -> float:
    if not shape.sunrise_h < hour < shape.sunset_h:
        return 0.0
    height = math.sin(math.pi * (hour - shape.sunrise_h) / (shape.sunset_h - shape.sunrise_h))
    return shape.peak_w * math.pow(height, 1.3)


def _minute(hour: float) -> float:
    return round(hour * 60.0) * 60.0


def _need(rng: random.Random, low_pct: float, high_pct: float, car: Car) -> float:
    soc = rng.uniform(low_pct, high_pct)
    return round((TARGET_PCT - soc) / 100.0 * car.capacity_wh)


# --- the closed loop -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """What one run (the planner in closed loop, or the optimum) delivered and cost."""

    delivered_wh: float = 0.0
    grid_wh: float = 0.0
    solar_wh: float = 0.0
    import_cost: float = 0.0
    solar_cost: float = 0.0
    needed_wh: float = 0.0
    late_grid_wh: float = 0.0  # bought although the sun later in the same plan window covered it
    missed: list[tuple[Session, float]] = field(default_factory=list)  # (session, Wh short)
    infeasible: list[Session] = field(default_factory=list)
    starts: dict[tuple[str, int], int] = field(default_factory=dict)  # (car, day) -> starts
    slot_starts: dict[tuple[str, int], int] = field(default_factory=dict)  # of those, the starts into a slot
    plug_in_starts: list[int] = field(default_factory=list)  # starts per plug-in (one a car a day here)
    call_s: list[float] = field(default_factory=list)
    peak_circuit_w: float = 0.0

    @property
    def cost(self) -> float:
        return self.import_cost + self.solar_cost

    @property
    def per_kwh(self) -> float:
        return self.cost / (self.delivered_wh / 1000.0) if self.delivered_wh > 0 else math.nan


@dataclass(slots=True)
class _Plugged:
    session: Session
    remaining_wh: float
    first_step: int
    plan: Plan | None = None
    slot_w: float | None = None  # the slot power it drew last step; None: not in a slot
    starts: int = 0


@dataclass(slots=True)
class _Trace:
    """Per car and step, for the late-grid figure: the grid energy it drew, and what more it could have taken."""

    grid_wh: list[float]
    headroom_w: list[float]  # its maximum and the circuit's room, less what it and the other car drew
    windows: list[tuple[int, int]] = field(default_factory=list)  # [first, end) steps of each plug-in


@dataclass(frozen=True, slots=True)
class Setup:
    """How the loop is run: which forecast the planner gets, the step, the planner and the plans' strategy."""

    mode: ForecastMode = "perfect"
    step_s: float = 60.0  # divides a quarter hour
    planner: PlanFunction = plan_jointly
    strategy: PlanStrategy = "cheapest"


def simulate(
    scenario: Scenario, setup: Setup = Setup(), feasible: Callable[[Session], bool] = lambda _session: True
) -> Figures:
    """The planner in closed loop over the scenario; `feasible` tells a missed plan from one nothing could meet."""
    if QUARTER_S % setup.step_s:
        raise ValueError("the step must divide a quarter hour")
    loop = _Loop(scenario, setup, feasible)
    for n in range(loop.steps):
        loop.step(n)
    return loop.finish()


class _Loop:
    def __init__(self, scenario: Scenario, setup: Setup, feasible: Callable[[Session], bool]) -> None:
        self.scenario = scenario
        self.setup = setup
        self.feasible = feasible
        self.forecast = scenario.forecast(setup.mode)
        self.figures = Figures()
        self.steps = int((scenario.end - scenario.start) // setup.step_s)
        self.hours = setup.step_s / HOUR_S
        self.pending = {car.id: sorted((s for s in scenario.sessions if s.car == car.id), key=_arrival) for car in CARS}
        self.plugged: dict[str, _Plugged] = {}
        self.traces = {car.id: _Trace([0.0] * self.steps, [0.0] * self.steps) for car in CARS}
        self.export_wh = [0.0] * self.steps
        self.charging = dict.fromkeys(self.pending, False)

    def step(self, n: int) -> None:
        now = self.scenario.start + n * self.setup.step_s
        plugged_in = self._arrivals(n, now)
        if plugged_in or (now - self.scenario.start) % QUARTER_S == 0:
            self._replan(now)
        draws = self._draws(now)
        self._account(n, now, draws)
        for car_id, was_on in self.charging.items():
            on = draws.get(car_id, 0.0) > 0
            if on and not was_on:
                key = (car_id, int((now - self.scenario.start) // DAY_S))
                self.figures.starts[key] = self.figures.starts.get(key, 0) + 1
                self.plugged[car_id].starts += 1
                if self.plugged[car_id].slot_w is not None:
                    self.figures.slot_starts[key] = self.figures.slot_starts.get(key, 0) + 1
            self.charging[car_id] = on

    def finish(self) -> Figures:
        for car_id in list(self.plugged):
            self._depart(car_id, self.steps)
        self.figures.late_grid_wh = _late_grid_wh(self.traces, self.export_wh, self.setup.step_s)
        return self.figures

    def _arrivals(self, n: int, now: float) -> bool:
        """Departures and plug-ins at this step; True when a car plugged in."""
        arrived = False
        for car_id, waiting in self.pending.items():
            held = self.plugged.get(car_id)
            if held is not None and now >= held.session.depart:
                self._depart(car_id, n)
            if car_id not in self.plugged and waiting and waiting[0].arrive <= now:
                session = waiting.pop(0)
                self.plugged[car_id] = _Plugged(session, session.needed_wh, n)
                self.figures.needed_wh += session.needed_wh
                arrived = True
        return arrived

    def _depart(self, car_id: str, n: int) -> None:
        held = self.plugged.pop(car_id)
        self.traces[car_id].windows.append((held.first_step, n))
        self.figures.plug_in_starts.append(held.starts)
        if held.remaining_wh <= MISSED_WH:
            return
        if self.feasible(held.session):
            self.figures.missed.append((held.session, held.remaining_wh))
        else:
            self.figures.infeasible.append(held.session)

    def _replan(self, now: float) -> None:
        mid_quarter = (now - self.scenario.start) % QUARTER_S != 0
        goals = [
            Goal(
                point=replace(_POINTS[car_id], charging=self.charging[car_id]),
                needed_wh=held.remaining_wh,
                by=held.session.depart,
                strategy=self.setup.strategy,
                solar_welcome=True,
                running_w=held.slot_w if mid_quarter and held.slot_w else 0.0,
            )
            for car_id, held in self.plugged.items()
            if held.remaining_wh > DONE_WH
        ]
        if not goals:
            return
        outlook = _outlook(self.scenario, self.forecast, now)
        began = time.perf_counter()
        plans = self.setup.planner(goals, outlook, (CIRCUIT,), now)
        self.figures.call_s.append(time.perf_counter() - began)
        for car_id, held in self.plugged.items():
            held.plan = plans.get(car_id)

    def _draws(self, now: float) -> dict[str, float]:
        """Every car's draw this step: planned slots first, then solar mode on what the sun leaves."""
        room = CIRCUIT_W
        draws: dict[str, float] = {}
        solar_cars: list[tuple[str, float]] = []  # (car, the most it takes), the one leaving first first
        for car_id, held in sorted(self.plugged.items(), key=lambda item: (item[1].session.depart, item[0])):
            held.slot_w = None
            if held.remaining_wh <= DONE_WH:
                continue  # at its charge limit
            wanted = min(MAX_W, held.remaining_wh / self.hours)
            slot_w = held.plan.power_at(now) if held.plan is not None else None
            if slot_w is None:
                solar_cars.append((car_id, wanted))
                continue
            watts = min(max(slot_w, MIN_W), wanted, room)  # no car charges below its 6 A minimum
            if watts > 0:
                draws[car_id] = watts
                room -= watts
                held.slot_w = slot_w
        q = self.scenario.quarter(now)
        surplus = self.scenario.pv_w[q] - self.scenario.house_w[q] - sum(draws.values())
        draws.update(_share_sun(min(surplus, room), solar_cars))
        return draws

    def _account(self, n: int, now: float, draws: dict[str, float]) -> None:
        """Energy, its source and its cost; what each car could still have taken, for the late-grid figure."""
        figures, hours = self.figures, self.hours
        total = sum(draws.values())
        figures.peak_circuit_w = max(figures.peak_circuit_w, total)
        sun_w = self.scenario.surplus_w(self.scenario.quarter(now))
        solar_total = min(total, sun_w)
        self.export_wh[n] = (sun_w - solar_total) * hours
        price = self.scenario.price_at(now)
        for car_id, held in self.plugged.items():
            watts = draws.get(car_id, 0.0)
            solar = watts * solar_total / total if total > 0 else 0.0
            grid = watts - solar
            figures.delivered_wh += watts * hours
            figures.solar_wh += solar * hours
            figures.grid_wh += grid * hours
            figures.import_cost += grid * hours / 1000.0 * price
            figures.solar_cost += solar * hours / 1000.0 * FEED_IN
            held.remaining_wh -= watts * hours
            self.traces[car_id].grid_wh[n] = grid * hours
            self.traces[car_id].headroom_w[n] = max(0.0, min(MAX_W - watts, CIRCUIT_W - total))


_POINTS = {car.id: car.point for car in CARS}


def _arrival(session: Session) -> float:
    return session.arrive


def _outlook(scenario: Scenario, forecast: tuple[float, ...], now: float) -> Outlook:
    """What is known at `now`: today's prices (and tomorrow's from 13:00), the PV forecast 48 h ahead."""
    hour_index = int((now - scenario.start) // HOUR_S)
    day, hour_of_day = divmod(hour_index, 24)
    known_hours = (day + (2 if hour_of_day >= PRICES_PUBLISHED_H else 1)) * 24
    prices = tuple(
        Slot(scenario.start + h * HOUR_S, scenario.start + (h + 1) * HOUR_S, scenario.price[h])
        for h in range(hour_index, min(known_hours, len(scenario.price)))
    )
    first = scenario.quarter(now)
    last = min(len(forecast), first + int(FORECAST_AHEAD_S // QUARTER_S))
    solar = tuple(
        Slot(scenario.start + q * QUARTER_S, scenario.start + (q + 1) * QUARTER_S, forecast[q])
        for q in range(first, last)
    )
    return Outlook(grid_price=prices, solar_w=solar, house_load_w=USUAL_HOUSE_W)


def _share_sun(budget_w: float, cars: list[tuple[str, float]]) -> dict[str, float]:
    """Solar mode: the budget shared fairly where it reaches every sharing car's minimum, else among fewer cars."""
    sharing = list(cars)
    while sharing and budget_w >= MIN_W:
        shares = _water_fill(budget_w, [cap for _, cap in sharing])
        if all(share >= min(MIN_W, cap) for share, (_, cap) in zip(shares, sharing, strict=True)):
            return {car_id: share for share, (car_id, _) in zip(shares, sharing, strict=True) if share > 0}
        sharing.pop()
    return {}


def _water_fill(budget: float, caps: list[float]) -> list[float]:
    """Equal shares of `budget`, none above its cap, what a capped one leaves going to the others."""
    shares = [0.0] * len(caps)
    left = budget
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    for rank, i in enumerate(order):
        shares[i] = min(caps[i], left / (len(order) - rank))
        left -= shares[i]
    return shares


def _late_grid_wh(traces: dict[str, _Trace], export_wh: list[float], step_s: float) -> float:
    """Grid energy bought in a plan window while, later in the same window, sun the car could have taken went to the
    grid: each purchase matched against the later export nearest to it (latest purchase first), the export used up
    as it is matched, so two cars never count the same sun."""
    hours = step_s / HOUR_S
    left = list(export_wh)
    total = 0.0
    for trace in traces.values():
        for first, end in trace.windows:
            later: list[list[float]] = []  # [step, Wh still unmatched], the nearest at the end
            for n in range(end - 1, first - 1, -1):
                bought = trace.grid_wh[n]
                while bought > 1e-9 and later:
                    step, wh = later[-1]
                    matched = min(bought, wh)
                    bought -= matched
                    total += matched
                    left[int(step)] -= matched
                    if matched >= wh:
                        later.pop()
                    else:
                        later[-1][1] = wh - matched
                usable_w = min(left[n] / hours, trace.headroom_w[n])
                if usable_w >= MIN_W:
                    later.append([float(n), usable_w * hours])
    return total


# --- the offline optimum ---------------------------------------------------------------------------------------


Row = tuple[list[int], list[float], float, float]  # (columns, coefficients, lower bound, upper bound)


def optimum(scenario: Scenario) -> tuple[Figures, dict[Session, float]]:
    """The month as one linear programme with perfect foresight; also every plan's shortfall in Wh (0: feasible)."""
    columns: list[tuple[int, int, float]] = []  # (session, quarter, share of the quarter plugged in)
    for k, session in enumerate(scenario.sessions):
        q = scenario.quarter(session.arrive)
        while q < len(scenario.pv_w):
            begin = scenario.start + q * QUARTER_S
            if begin >= session.depart:
                break
            share = (min(begin + QUARTER_S, session.depart) - max(begin, session.arrive)) / QUARTER_S
            columns.append((k, q, share))
            q += 1
    pairs = len(columns)
    sessions = len(scenario.sessions)
    quarter_kwh = QUARTER_S / HOUR_S / 1000.0  # kWh per W over a quarter hour
    costs = np.zeros(2 * pairs + sessions)
    upper = np.zeros(2 * pairs + sessions)
    rows: list[Row] = []
    by_quarter: dict[int, list[int]] = {}
    by_session: dict[int, list[int]] = {}
    for j, (k, q, share) in enumerate(columns):
        grid, sun = 2 * j, 2 * j + 1
        costs[grid] = scenario.price[int(q // 4)]
        costs[sun] = FEED_IN
        car_kwh = MAX_W * quarter_kwh * share
        upper[grid] = car_kwh
        upper[sun] = min(car_kwh, scenario.surplus_w(q) * quarter_kwh * share)
        rows.append(([grid, sun], [1.0, 1.0], 0.0, car_kwh))
        by_quarter.setdefault(q, []).append(j)
        by_session.setdefault(k, []).append(j)
    for q, js in by_quarter.items():
        rows.append(([c for j in js for c in (2 * j, 2 * j + 1)], [1.0] * 2 * len(js), 0.0, CIRCUIT_W * quarter_kwh))
        rows.append(([2 * j + 1 for j in js], [1.0] * len(js), 0.0, scenario.surplus_w(q) * quarter_kwh))
    for k, session in enumerate(scenario.sessions):
        short = 2 * pairs + k
        costs[short] = SHORTFALL_PENALTY
        upper[short] = session.needed_wh / 1000.0
        js = by_session.get(k, [])
        need = session.needed_wh / 1000.0
        rows.append(([c for j in js for c in (2 * j, 2 * j + 1)] + [short], [1.0] * (2 * len(js) + 1), need, need))
    solution = _solve(costs, upper, rows)
    figures = Figures()
    for j, (_k, q, _share) in enumerate(columns):
        grid_kwh, sun_kwh = solution[2 * j], solution[2 * j + 1]
        figures.grid_wh += grid_kwh * 1000.0
        figures.solar_wh += sun_kwh * 1000.0
        figures.import_cost += grid_kwh * scenario.price[int(q // 4)]
        figures.solar_cost += sun_kwh * FEED_IN
    figures.delivered_wh = figures.grid_wh + figures.solar_wh
    shortfall = {session: solution[2 * pairs + k] * 1000.0 for k, session in enumerate(scenario.sessions)}
    figures.needed_wh = sum(session.needed_wh for session in scenario.sessions)
    for session, short_wh in shortfall.items():
        if short_wh > MISSED_WH:
            figures.infeasible.append(session)
    return figures, shortfall


def _solve(costs: np.ndarray, upper: np.ndarray, rows: list[Row]) -> list[float]:
    highs = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy's own __init__ has no annotation
    highs.setOptionValue("output_flag", False)  # noqa: FBT003 - HiGHS takes the option's value positionally
    count = len(costs)
    no_entries = np.zeros(0, dtype=np.int32)
    highs.addCols(count, costs, np.zeros(count), upper, 0, np.zeros(count, dtype=np.int32), no_entries, np.zeros(0))
    starts = np.zeros(len(rows), dtype=np.int32)
    indices: list[int] = []
    values: list[float] = []
    for r, (cols, coefficients, _lower, _upper) in enumerate(rows):
        starts[r] = len(indices)
        indices.extend(cols)
        values.extend(coefficients)
    highs.addRows(
        len(rows), np.array([row[2] for row in rows]), np.array([row[3] for row in rows]), len(indices), starts,
        np.array(indices, dtype=np.int32), np.array(values),
    )  # fmt: skip
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"the optimum's linear programme was not solved: {highs.modelStatusToString(status)}")
    return list(highs.getSolution().col_value)


# --- the report ------------------------------------------------------------------------------------------------

GOAL_PCT: dict[ForecastMode, float] = {"perfect": 5.0, "error": 10.0}
GOAL_STARTS = 2


def _load_planner(path: Path) -> PlanFunction:
    spec = importlib.util.spec_from_file_location("planner_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return cast("PlanFunction", module.plan_jointly)


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)]


def report(scenario: Scenario, mode: ForecastMode, run: Figures, best: Figures) -> list[str]:
    """The table for one forecast mode, and whether each goal is met."""
    above = 100.0 * (run.per_kwh / best.per_kwh - 1.0)
    car_days = len(CARS) * (scenario.days + 1)
    car_day_keys = [(car.id, day) for car in CARS for day in range(scenario.days + 1)]
    starts = [run.starts.get(key, 0) for key in car_day_keys]
    slot_starts = [run.slot_starts.get(key, 0) for key in car_day_keys]
    short_kwh = sum(wh for _, wh in run.missed) / 1000.0
    median_ms = 1000 * statistics.median(run.call_s)
    p99_ms = 1000 * _percentile(run.call_s, 99)
    sessions = len(scenario.sessions)
    goal_pct = GOAL_PCT[mode]
    rows = [
        ("energy charged", f"{run.delivered_wh / 1000:.1f} kWh", f"{best.delivered_wh / 1000:.1f} kWh"),
        (
            "from the grid / from the sun",
            f"{run.grid_wh / 1000:.1f} / {run.solar_wh / 1000:.1f} kWh",
            f"{best.grid_wh / 1000:.1f} / {best.solar_wh / 1000:.1f} kWh",
        ),
        (
            f"cost: import + sun at the feed-in price ({FEED_IN:.2f}/kWh)",
            f"{run.import_cost:.2f} + {run.solar_cost:.2f} = {run.cost:.2f}",
            f"{best.import_cost:.2f} + {best.solar_cost:.2f} = {best.cost:.2f}",
        ),
        ("cost per kWh charged", f"{run.per_kwh:.4f} (**{above:+.1f} %**)", f"{best.per_kwh:.4f}"),
        ("grid kWh bought although the sun later covered it", f"{run.late_grid_wh / 1000:.1f} kWh", "0"),
        (
            f"plans missed although feasible (short by > {MISSED_WH / 1000:.1f} kWh)",
            f"{len(run.missed)} of {sessions} ({short_kwh:.1f} kWh short)",
            f"{len(best.infeasible)} infeasible",
        ),
        ("starts per car per day: max / mean", f"{max(starts)} / {sum(starts) / car_days:.2f}", "–"),
        (
            "of which into a planned slot: max / mean",
            f"{max(slot_starts)} / {sum(slot_starts) / car_days:.2f}",
            "–",
        ),
        (
            "starts per plug-in (evening to departure): max / mean",
            f"{max(run.plug_in_starts)} / {statistics.mean(run.plug_in_starts):.2f}",
            "–",
        ),
        (f"planner call: median / p99 ({len(run.call_s)} calls)", f"{median_ms:.2f} / {p99_ms:.2f} ms", "–"),
        (f"highest draw of both cars (circuit {CIRCUIT_W:.0f} W)", f"{run.peak_circuit_w:.0f} W", "–"),
    ]
    over = sum(1 for count in starts if count > GOAL_STARTS)
    lines = [
        (
            f"forecast {mode} ({scenario.season}, {scenario.days} days, {sessions} plans,"
            f" {run.needed_wh / 1000:.1f} kWh needed)"
        ),
        "",
        "| | planner | optimum |",
        "|---|---|---|",
        *(f"| {name} | {ours} | {theirs} |" for name, ours, theirs in rows),
        "",
        f"goal cost ≤ {goal_pct:.0f} % above the optimum: {_verdict(above <= goal_pct)} ({above:+.1f} %)",
        f"goal 0 plans missed when feasible: {_verdict(not run.missed)} ({len(run.missed)})",
        (
            f"goal ≤ {GOAL_STARTS} starts per car per day: {_verdict(max(starts) <= GOAL_STARTS)}"
            f" (max {max(starts)}, {over} of {car_days} car-days above; into planned slots alone: max"
            f" {max(slot_starts)}, {sum(1 for count in slot_starts if count > GOAL_STARTS)} car-days above)"
        ),
    ]
    lines.extend(
        f"  missed: {session.car} {_clock(session.arrive)} → {_clock(session.depart)} needed"
        f" {session.needed_wh / 1000:.1f} kWh, {short_wh / 1000:.1f} kWh short"
        for session, short_wh in run.missed
    )
    return lines


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%m-%d %H:%M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--forecast", choices=("perfect", "error", "both"), default="both")
    parser.add_argument("--season", choices=tuple(SEASONS), default="summer")
    parser.add_argument("--step", type=float, default=60.0, help="simulation step in seconds (divides 900)")
    parser.add_argument("--strategy", choices=("cheapest", "continuous"), default="cheapest")
    parser.add_argument("--planner", type=Path, help="a copy of planner.py to run instead of the allocator's")
    args = parser.parse_args()
    began = time.perf_counter()
    scenario = generate(args.days, args.seed, cast("Season", args.season))
    best, shortfall = optimum(scenario)
    solved = time.perf_counter() - began
    planner = _load_planner(args.planner) if args.planner else plan_jointly
    modes: list[ForecastMode] = ["perfect", "error"] if args.forecast == "both" else [args.forecast]
    print(
        f"planner bench: season {args.season}, {args.days} days, seed {args.seed}, step {args.step:.0f} s,"
        f" strategy {args.strategy},"
        f" planner {args.planner or 'chargebus_allocator.planner'}; optimum solved in {solved:.2f} s"
    )
    print(
        f"costing: grid energy at the import price of its hour, the cars' solar energy at the feed-in price"
        f" {FEED_IN:.2f}/kWh (export revenue foregone); the optimum ignores the 6 A minimum (a lower bound)"
    )
    for mode in modes:
        setup = Setup(mode, args.step, planner, cast("PlanStrategy", args.strategy))
        run = simulate(scenario, setup, lambda session: shortfall[session] <= MISSED_WH)
        print()
        print("\n".join(report(scenario, mode, run, best)))
    print(f"\ntotal run time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
