"""Closed-loop control quality of the allocator engine: does a step in the sun settle, or does it ring?

The real allocator engine (`chargebus_allocator.engine.Engine`, the code the service runs between MQTT messages) on
a simulated clock, in 0.1 s steps, against two simulated Gen2 wall connectors at 240 V: a 32 A and an 80 A unit
(no bus cap), each with a car that ramps its draw in 2 s and
draws 0.6 A below its offer (the offer in whole amps, rounded down, as the bridge does). The cars report their
draw every second, 0.3 s late, stamped with their measurement time. A site meter sees house − PV + the cars' real
draw, ±50 W uniform noise, every `cadence` seconds (1, 5, 10), as a plain number. Solar mode, enable 5 s /
disable 10 s / min on 5 s / min off 5 s, reserve 0.

Steps of generation (house load 0): 0 → 9 → 2 → 12 → 4 → 1 → 7 kW, each held 60 s. Per step it prints: first offer
change after the step, settle time (the last offer change after the step, from the step and from the end of the
enable/disable delay that applies), offer changes, seconds with Σ offers above the true surplus (PV − house) after
settling, and Wh imported. The MQTT, serial and bridge hops are not in this loop (`bench/latency.py` measures
them: a few ms); this measures the control law itself, deterministic for a given seed.

    uv run python bench/closed_loop_engine.py [--cadence 1,5,10] [--seed 1]
"""

from __future__ import annotations

import argparse
import inspect
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chargebus.config import AllocatorServiceConfig
from chargebus.schema import EvseState, to_json
from chargebus.topics import Topics
from chargebus_allocator.engine import Engine

T0 = 1_800_000_000.0
VOLTS = 240.0
DT = 0.1
STEPS_W = (9000.0, 2000.0, 12000.0, 4000.0, 1000.0, 7000.0)
HOLD_S = 60.0
DELAYS = {"enable_delay_s": 5, "disable_delay_s": 10, "min_on_s": 5, "min_off_s": 5}
_TAKES_ARRIVAL = "now" in inspect.signature(Engine.evse_state).parameters


@dataclass
class Car:
    evse_id: str
    max_a: int
    offer_w: float = 0.0
    draw_w: float = 0.0
    pending: list[tuple[float, float, float]] = field(default_factory=list)  # (arrives, measured at, watts)
    next_report: float = T0

    def step(self) -> None:
        amps = math.floor(min(self.offer_w / VOLTS, self.max_a) + 1e-9)
        target = max(0.0, amps * VOLTS - 0.6 * VOLTS) if amps >= 6 else 0.0
        rate = self.max_a * VOLTS / 2.0 * DT  # full range in 2 s
        self.draw_w += max(-rate, min(rate, target - self.draw_w))

    def state(self, measured_at: float, watts: float) -> bytes:
        return to_json(
            EvseState(
                evse_id=self.evse_id, kind="twc2", name=self.evse_id, controllable=True, controls=["current"],
                online=True, plugged_in=True, charging=watts > 0, phases=1, voltage_v=VOLTS, power_w=watts,
                min_power_w=6 * VOLTS, max_power_w=self.max_a * VOLTS, step_w=VOLTS, source="rs485",
                updated_at=datetime.fromtimestamp(measured_at, tz=UTC), stale=False,
            )
        )  # fmt: skip


@dataclass
class StepFigures:
    target_w: float
    first_s: float | None = None
    settle_s: float = 0.0
    changes: int = 0
    over_s: float = 0.0  # after settling
    over_total_s: float = 0.0
    import_wh: float = 0.0
    over_at: list[float] = field(default_factory=list)  # seconds into the step with Σ offers > surplus


def run(cadence_s: float, seed: int) -> list[StepFigures]:
    rng = random.Random(seed)
    config = AllocatorServiceConfig.model_validate({"allocator": {"mode": "solar", "reserve_w": 0, **DELAYS}})
    engine = Engine(config, Topics("p"), T0)
    cars = [Car("twc-0032", 32), Car("twc-0080", 80)]
    figures = [StepFigures(w) for w in STEPS_W]
    meter: list[tuple[float, float]] = []
    next_reading, now = T0, T0
    end = T0 + HOLD_S * len(STEPS_W)
    while now < end:
        index = int((now - T0) // HOLD_S)
        step, pv_w = figures[index], STEPS_W[index]
        for car in cars:
            car.step()
            if now >= car.next_report:
                car.pending.append((now + 0.3, now, car.draw_w))
                car.next_report = now + 1.0
        drawn = sum(car.draw_w for car in cars)
        if now >= next_reading:
            meter.append((now + 0.2, drawn - pv_w + rng.uniform(-50, 50)))
            next_reading = now + cadence_s
        into_step_s = now - T0 - index * HOLD_S
        step.import_wh += max(0.0, drawn - pv_w) * DT / 3600
        if sum(car.offer_w for car in cars) > pv_w + 1e-6:
            step.over_at.append(into_step_s)
        if _deliver(engine, cars, meter, now):
            _round(engine, cars, step, now, into_step_s)
        now += DT
    for step in figures:
        step.over_total_s = len(step.over_at) * DT
        step.over_s = sum(DT for at in step.over_at if at > step.settle_s)
    return figures


def _deliver(engine: Engine, cars: list[Car], meter: list[tuple[float, float]], now: float) -> bool:
    arrived = False
    for car in cars:
        for item in [p for p in car.pending if p[0] <= now]:
            car.pending.remove(item)
            payload = car.state(item[1], item[2])
            if _TAKES_ARRIVAL:
                engine.evse_state(car.evse_id, payload, now)
            else:
                engine.evse_state(car.evse_id, payload)
            arrived = True
    for reading in [m for m in meter if m[0] <= now]:
        meter.remove(reading)
        engine.meter_message("p/power/grid", f"{reading[1]:.0f}".encode(), now)
        arrived = True
    return arrived


def _round(engine: Engine, cars: list[Car], step: StepFigures, now: float, into_step_s: float) -> None:
    for setpoint in engine.compute(now).setpoints:
        car = next(c for c in cars if c.evse_id == setpoint.evse_id)
        watts = setpoint.power_w or 0.0
        if watts != car.offer_w:
            car.offer_w = watts
            step.changes += 1
            step.first_s = into_step_s if step.first_s is None else step.first_s
            step.settle_s = into_step_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cadence", default="1,5,10")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("cadence_s step_kW first_s settle_s changes over_after_settle_s over_total_s import_Wh")
    for cadence in (float(text) for text in args.cadence.split(",")):
        for step in run(cadence, args.seed):
            first = f"{step.first_s:.1f}" if step.first_s is not None else "-"
            print(
                f"{cadence:g} {step.target_w / 1000:g} {first} {step.settle_s:.1f} {step.changes} "
                f"{step.over_s:.1f} {step.over_total_s:.1f} {step.import_wh:.1f}"
            )


if __name__ == "__main__":
    main()
