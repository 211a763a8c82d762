"""Allocator compute time for 10 / 100 / 1 000 / 10 000 charge points on 50 circuits.

Prints `name value unit` lines. Scenarios per size: `now` (circuits bind), `solar` (the budget binds, first round
with no timers) and `solar_steady` (a later round with timers, as the service runs). The seed's sharing rule (no
circuits, no priorities) runs on the same charge points as a baseline, and so does `outputs_only`: building the
results, setpoints and timers a round hands back, deciding nothing. `merge` builds every charge point from its
EVSE states; `merge_unchanged` is the engine's round when no state changed (its MergeCache). The goal is < 3 ms at
1 000 / 50 in every mode and < 50 ms at 10 000.

    uv run python bench/allocator_scale.py [--repeat N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from chargebus.schema import EvseState
from chargebus_allocator.allocate import allocate
from chargebus_allocator.merge import EvseSettings, MergeCache, merge
from chargebus_allocator.model import (
    ChargePoint,
    Circuit,
    Delays,
    GridReading,
    Inputs,
    Phase,
    PointResult,
    SetpointIntent,
    Settings,
    Timer,
    Wiring,
)

T0 = 1_800_000_000.0
SIZES = (10, 100, 1_000, 10_000)
CIRCUITS = 50
BOARDS = 7  # main → 7 three-phase boards → 42 leaves (1- and 3-phase): 50 circuits
PHASE_NAMES: tuple[Phase, ...] = ("L1", "L2", "L3")
WIRINGS: tuple[Wiring, ...] = ("L1", "L2", "L3")


def build_circuits(points_per_leaf: float, rng: random.Random) -> tuple[Circuit, ...]:
    """Tight on purpose: about 10 A per charge point on a leaf, and boards and main below the sum of their children,
    so circuits bind while sharing and some minimums do not fit (kick-outs with reasons)."""
    leaves = CIRCUITS - 1 - BOARDS
    leaf_a = max(16.0, round(10 * points_per_leaf))
    circuits = [Circuit("main", max_current_a=leaf_a * leaves / 3 * 0.7, phases=3)]
    circuits += [
        Circuit(f"board{b}", leaf_a * leaves / BOARDS / 3 * 0.8, phases=3, parent="main") for b in range(BOARDS)
    ]
    for leaf in range(leaves):
        single = leaf % 3 != 0
        circuits.append(
            Circuit(
                f"leaf{leaf}",
                max_current_a=leaf_a if single else leaf_a / 3,
                phases=1 if single else 3,
                parent=f"board{leaf % BOARDS}",
                phase=rng.choice(PHASE_NAMES),
            )
        )
    return tuple(circuits)


def build_points(count: int, rng: random.Random) -> tuple[tuple[ChargePoint, ...], tuple[Circuit, ...]]:
    leaves = CIRCUITS - 1 - BOARDS
    circuits = build_circuits(count / leaves, rng)
    points = []
    for n in range(count):
        leaf = circuits[1 + BOARDS + n % leaves]
        three = leaf.phases == 3
        volts, phases = (230.0, 3) if three else (240.0, 1)
        step = volts * phases
        max_a = rng.choice((16, 24, 32, 48))
        slow = rng.random() < 0.2
        points.append(
            ChargePoint(
                id=f"twc-{n:04x}",
                min_power_w=6 * step,
                max_power_w=max_a * step,
                step_w=step,
                phases=phases,
                voltage_v=volts,
                power_w=rng.choice((0.0, 6 * step, 16 * step)),
                controllable=rng.random() > 0.05,
                follows_slowly=slow,
                priority=rng.choice((-1, 0, 0, 0, 1, 2)),
                circuit=leaf.id,
                wiring="L1L2L3" if three else rng.choice(WIRINGS),
                plugged_in=rng.random() > 0.1,
                charging=rng.random() < 0.5,
                plugged_in_at=T0 - rng.uniform(0, 36_000),
            )
        )
    return tuple(points), circuits


def build_evse_states(count: int) -> list[EvseState]:
    at = datetime.fromtimestamp(T0, tz=UTC)
    return [
        EvseState(
            evse_id=f"twc-{n:04x}",
            kind="twc2",
            name=f"twc {n}",
            controllable=True,
            controls=["current"],
            online=True,
            plugged_in=True,
            charging=False,
            phases=1,
            voltage_v=240,
            power_w=0,
            min_power_w=1440,
            max_power_w=7680,
            step_w=240,
            source="rs485",
            updated_at=at,
            stale=False,
        )
        for n in range(count)
    ]


def seed_procedure(points: tuple[ChargePoint, ...], budget_w: float) -> list[float]:
    """The seed's rule: smallest maximum first, each offered an equal share of what is left (no circuits)."""
    offers = [0.0] * len(points)
    remaining = budget_w
    pending = sorted(range(len(points)), key=lambda i: points[i].max_power_w)
    for position, i in enumerate(pending):
        offer = min(remaining / (len(pending) - position), points[i].max_power_w)
        if 0 < offer < points[i].min_power_w:
            offer = 0.0
        offers[i] = offer
        remaining -= offer
    return offers


def outputs_only(points: tuple[ChargePoint, ...], timers: dict[str, Timer]) -> tuple[object, ...]:
    """What any round must build whatever it decides: the charge points in id order, and per charge point its
    result, its setpoint and its timer for the next round. No decision is made; it shows how much of a round's time
    is left for deciding."""
    ordered = sorted(points, key=lambda point: point.id)
    results = tuple(PointResult(point, "now", 0.0, 0, "kicked_out", "") for point in ordered)
    setpoints = tuple(SetpointIntent(p.id, 0.0, None, p.phases, p.voltage_v, "") for p in ordered)
    next_timers = {point.key: timers[point.key] for point in ordered}
    return results, setpoints, next_timers


def timed(repeat: int, work: Callable[[], object]) -> tuple[float, float]:
    """Median and worst of `repeat` runs, in milliseconds (after one warm-up run)."""
    work()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def measure(count: int, repeat: int) -> None:
    points, circuits = build_points(count, random.Random(count))
    export_w = 0.5 * sum(p.max_power_w for p in points)
    scenarios = {
        "now": Inputs(points, circuits, settings=Settings(mode="now")),
        "solar": Inputs(points, circuits, GridReading(-export_w, T0), settings=Settings(mode="solar")),
    }
    for name, inputs in scenarios.items():
        median, worst = timed(repeat, partial(allocate, inputs, None, T0))
        print(f"allocate_{name}_{count} {median:.3f} ms")
        print(f"allocate_{name}_{count}_max {worst:.3f} ms")
    # As the service runs: timers from the round before, a fresh grid reading.
    _, timers = allocate(scenarios["solar"], None, T0)
    steady = Inputs(points, circuits, GridReading(-export_w, T0 + 5), settings=Settings(mode="solar"))
    median, worst = timed(repeat, partial(allocate, steady, timers, T0 + 5))
    print(f"allocate_solar_steady_{count} {median:.3f} ms")
    print(f"allocate_solar_steady_{count}_max {worst:.3f} ms")
    print(f"allocations_per_s_{count} {1000 / median:.0f} 1/s")
    flat = tuple(replace(p, circuit=None) for p in points)
    no_delays = Settings(mode="solar", delays=Delays(0, 0, 0, 0))
    flat_inputs = Inputs(flat, (), GridReading(-export_w, T0), settings=no_delays)
    median, _ = timed(repeat, partial(allocate, flat_inputs, None, T0))
    print(f"allocate_no_circuits_{count} {median:.3f} ms")
    median, _ = timed(repeat, partial(seed_procedure, flat, export_w))
    print(f"baseline_seed_procedure_{count} {median:.3f} ms")
    median, _ = timed(repeat, partial(outputs_only, points, timers))
    print(f"baseline_outputs_only_{count} {median:.3f} ms")
    states = build_evse_states(count)
    settings = {state.evse_id: EvseSettings() for state in states}
    median, _ = timed(repeat, partial(merge, states, (), settings))
    print(f"merge_{count} {median:.3f} ms")
    median, _ = timed(repeat, partial(merge, states, (), settings, cache=MergeCache()))  # warmed by the first run
    print(f"merge_unchanged_{count} {median:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=0, help="runs per measurement (default: by size)")
    args = parser.parse_args()
    for count in SIZES:
        measure(count, args.repeat or max(5, 2000 // count))


if __name__ == "__main__":
    main()
