"""Figures of a closed-loop run, from what was offered on the wire and what the cars drew (pure).

A run is a series of samples (`closed_loop_rig.LoopSample`): per slave the offered amps and the car's draw, with the
PV and house load of the same moment. For one step of the sun (from `start` to `end`, simulated epoch seconds):

- first change: seconds from the step to the first offer change on any slave;
- settle: seconds from the step to the last offer change inside the step (0 when nothing changed);
- changes: offer changes, counted per slave;
- over: seconds with Σ offers (W) above the true surplus (PV − house), in all and after the settle time;
- import: Wh the site drew from the grid (house + cars − PV, when positive);
- starts/stops: slaves whose offer went from 0 to a current or back.

Each sample stands for the time until the next one, so an irregular sampler (a busy machine) weighs correctly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Sample(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def offers_a(self) -> tuple[float, ...]: ...
    @property
    def offered_w(self) -> float: ...
    @property
    def surplus_w(self) -> float: ...
    @property
    def grid_w(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StepFigures:
    first_change_s: float | None
    settle_s: float
    changes: int
    over_s: float
    over_after_settle_s: float
    import_wh: float
    starts: int
    stops: int
    max_offered_a: float


def step_figures(samples: Sequence[Sample], start: float, end: float) -> StepFigures:
    """The figures of the step from `start` to `end` (samples outside it give the state before the step)."""
    before = [s for s in samples if s.at < start]
    inside = [s for s in samples if start <= s.at < end]
    previous = before[-1].offers_a if before else (inside[0].offers_a if inside else ())
    first: float | None = None
    settle = 0.0
    changes = starts = stops = 0
    for sample in inside:
        for was, now in zip(previous, sample.offers_a, strict=True):
            if now == was:
                continue
            changes += 1
            starts += was == 0 < now
            stops += now == 0 < was
            first = sample.at - start if first is None else first
            settle = sample.at - start
        previous = sample.offers_a
    over = over_after = import_wh = 0.0
    for sample, until in zip(inside, [*(s.at for s in inside[1:]), end], strict=True):
        length = max(0.0, until - sample.at)
        if sample.offered_w > sample.surplus_w:
            over += length
            if sample.at - start >= settle:
                over_after += length
        import_wh += max(0.0, sample.grid_w) * length / 3600
    most = max((sum(s.offers_a) for s in inside), default=0.0)
    return StepFigures(first, settle, changes, over, over_after, import_wh, starts, stops, most)


SampleT = TypeVar("SampleT", bound=Sample)


def resample(samples: Sequence[SampleT], start: float, end: float, step_s: float) -> list[SampleT]:
    """The sample in force at each of `start`, `start + step_s`, … before `end` (the last one at or before it)."""
    out: list[SampleT] = []
    index = 0
    at = start
    while at < end and samples:
        while index + 1 < len(samples) and samples[index + 1].at <= at:
            index += 1
        out.append(samples[index])
        at += step_s
    return out
