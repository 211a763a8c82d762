"""The offline oracle for solar capture, and the ledger a solar-following run is scored with.

Pure: `bench/solar_capture.py` drives the real allocator core through a simulated day and scores it here.

The oracle knows the PV surplus of each time step exactly and in advance, and has no hysteresis. At each step it
gives the cars the largest total power that (a) does not exceed the surplus (PV − house load), (b) gives each car
either 0 or a power between its minimum and its maximum in whole steps (one ampere at its voltage × phases, what an
EVSE can be told), with no reserve. `best_stepped_w` is that optimum; `best_continuous_w` drops the whole-step rule
and is an upper bound (no EVSE reaches it).

The ledger splits what the cars drew each step into solar (covered by the surplus) and grid import (the rest), and
records when each car started and stopped, so the most starts within any 30 minutes can be reported.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_EPSILON_W = 1e-6


@dataclass(frozen=True, slots=True)
class CarLimits:
    """What a car on its EVSE can be given: 0, or min..max in whole steps."""

    min_w: float
    max_w: float
    step_w: float

    @classmethod
    def from_amps(cls, min_a: int, max_a: int, voltage_v: float, phases: int) -> CarLimits:
        step = voltage_v * phases
        return cls(min_a * step, max_a * step, step)

    def levels(self) -> tuple[float, ...]:
        """Every power the car may be given, ascending: 0, then min, min + step, … up to max."""
        count = math.floor((self.max_w - self.min_w) / self.step_w + _EPSILON_W)
        return (0.0, *(self.min_w + n * self.step_w for n in range(count + 1)))


def best_stepped_w(surplus_w: float, cars: Sequence[CarLimits]) -> tuple[float, ...]:
    """Per car, the powers (each a level of that car) with the largest total that still fits in `surplus_w`.

    Among equal totals the first found wins (earlier cars at lower levels): deterministic.
    """
    if not cars:
        return ()
    levels = [car.levels() for car in cars]
    best: tuple[float, ...] = tuple(0.0 for _ in cars)
    best_total = 0.0
    *head, last = levels
    for choice in itertools.product(*head):
        left = surplus_w - sum(choice)
        if left < -_EPSILON_W:
            continue
        # The last car: its highest level that fits, by bisection.
        tail = last[max(0, bisect.bisect_right(last, left + _EPSILON_W) - 1)]
        total = sum(choice) + tail
        if total > best_total + _EPSILON_W:
            best, best_total = (*choice, tail), total
    return best


def best_continuous_w(surplus_w: float, cars: Sequence[CarLimits]) -> float:
    """The upper bound: any power in [min, max] (not whole steps) or 0, total at most `surplus_w`."""
    best = 0.0
    for chosen in itertools.product((False, True), repeat=len(cars)):
        picked = [car for car, on in zip(cars, chosen, strict=True) if on]
        if sum(car.min_w for car in picked) <= surplus_w + _EPSILON_W:
            best = max(best, min(sum(car.max_w for car in picked), max(0.0, surplus_w)))
    return best


def split_draw(draw_w: float, surplus_w: float) -> tuple[float, float]:
    """(solar, grid import) of the cars' total draw when the PV surplus is `surplus_w` (negative: none)."""
    solar = min(draw_w, max(0.0, surplus_w))
    return solar, draw_w - solar


def most_within(times: Sequence[float], window_s: float) -> int:
    """The largest number of `times` (ascending) inside any window of `window_s` seconds (ends included)."""
    most = 0
    first = 0
    for last, at in enumerate(times):
        while at - times[first] > window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


@dataclass
class Ledger:
    """Energy and start/stop bookkeeping of one run: call `step` once per time step with every car's draw."""

    step_s: float
    solar_wh: float = 0.0
    import_wh: float = 0.0
    drawn_wh: float = 0.0
    starts: list[list[float]] = field(default_factory=list)  # per car: when it went from 0 to drawing
    stops: list[list[float]] = field(default_factory=list)  # per car: when it went from drawing to 0
    _drawing: list[bool] = field(default_factory=list)

    def step(self, at: float, draws_w: Sequence[float], surplus_w: float) -> None:
        if not self._drawing:
            self._drawing = [False] * len(draws_w)
            self.starts = [[] for _ in draws_w]
            self.stops = [[] for _ in draws_w]
        total = sum(draws_w)
        solar, imported = split_draw(total, surplus_w)
        hours = self.step_s / 3600
        self.solar_wh += solar * hours
        self.import_wh += imported * hours
        self.drawn_wh += total * hours
        for car, draw in enumerate(draws_w):
            drawing = draw > 0
            if drawing and not self._drawing[car]:
                self.starts[car].append(at)
            elif not drawing and self._drawing[car]:
                self.stops[car].append(at)
            self._drawing[car] = drawing

    @property
    def start_count(self) -> int:
        return sum(len(times) for times in self.starts)

    @property
    def stop_count(self) -> int:
        return sum(len(times) for times in self.stops)

    def most_starts_within(self, window_s: float) -> int:
        """The most starts of any one car inside any window of `window_s`."""
        return max((most_within(times, window_s) for times in self.starts), default=0)

    def most_stops_within(self, window_s: float) -> int:
        return max((most_within(times, window_s) for times in self.stops), default=0)
