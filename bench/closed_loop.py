"""Closed-loop control quality of the real services: does a step in the sun settle, or does it ring?

Real `twc-bridge` and `allocator` processes over a real mosquitto, the Gen2 slave simulator on a pseudo-terminal
(a 32 A and an 80 A unit on a 40 A bus at 240 V; each car ramps in 2 s and draws 0.6 A below its offer), and a site
meter that sees what the simulated cars really draw (`chargebus_sim.closed_loop_rig`), ±50 W uniform noise, as a
plain number every `cadence` seconds (1, 5, 10). Solar mode, reserve 0. The services run in accelerated time
(`--scale`); every figure is in simulated seconds.

Profiles:
- `steps`: generation 0 → 9 (a cold start) → 2 → 12 → 4 → 1 → 7 kW, 60 s each, house load 0, delays enable 5 s /
  disable 10 s / min on 5 s / min off 5 s. Per step: first offer change on the wire after the step (and after the
  first meter reading that shows it: the reaction, which includes the enable delay on a start), settle time (the
  last offer change after the step; also counted from the end of the enable/disable delay that applies), offer
  changes, seconds with Σ offers above the surplus (after settling, and in all), Wh imported, the largest Σ offer
  (the bus cap is 40 A). Each run starts once nothing has been offered or drawn for 10 s: a freshly linked bus
  gets the bridge's failsafe current until the allocator's first setpoint.
- `cloudy`: an hour of passing clouds (`chargebus_sim.house.House(cloudy_from_h=0)`, 11:00–12:00) with its house
  load and the default delays (60/180/300/300 s). Solar capture vs the oracle (`chargebus_sim.oracle`: every second
  the largest total the surplus allows, each car 0 or 6..max whole amps, no hysteresis, no lag; its cars draw 0.6 A
  below their offer as the simulated ones do, so the oracle is the best any controller could do with these cars;
  and beside it an oracle that, like the allocator, keeps its *offers* within the surplus), grid import, most
  starts of one car in any 30 minutes.
- `api`: the simulated world (`chargebus_sim.world`) on the same cloudy hour: car B on a mobile connector through
  the fake Fleet API (the tesla-bridge), car A on a TWC; `set_charging_amps` calls per hour car B charged.

    uv run python bench/closed_loop.py [--profiles steps,cloudy,api] [--cadence 1,5,10] [--scale 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chargebus.broker import local_broker
from chargebus_sim.closed_loop_rig import VOLTS, ClosedLoopRig, LoopSample
from chargebus_sim.house import House
from chargebus_sim.loop_figures import resample, step_figures
from chargebus_sim.oracle import CarLimits, Ledger, best_stepped_w
from chargebus_sim.world import VIN_B, World
from chargebus_sim.world_stack import ServiceSet

STEPS_W = (9000.0, 2000.0, 12000.0, 4000.0, 1000.0, 7000.0)
HOLD_S = 60.0
STEP_DELAYS = {"enable_delay_s": 5, "disable_delay_s": 10, "min_on_s": 5, "min_off_s": 5}
#: Simulated seconds with no sun before the first step: the bridge links the slaves, nothing charges.
WARMUP_S = 20.0
CLOUDY = House(cloudy_from_h=0.0)
CLOUDY_FROM_H = 11.0
WINDOW_S = 1800.0
#: The simulated cars draw this much below their offer; the oracle's cars do the same.
UNDER_DRAW_A = 0.6


@dataclass
class Profile:
    """The sun and the house as functions of the simulated clock, from `start` on (nothing before)."""

    kind: str
    start: float | None = None

    def pv_w(self, at: float) -> float:
        if self.start is None or at < self.start:
            return 0.0
        if self.kind == "steps":
            index = int((at - self.start) // HOLD_S)
            return STEPS_W[index] if index < len(STEPS_W) else 0.0
        return CLOUDY.pv_w(self.hour(at))

    def house_w(self, at: float) -> float:
        if self.start is None or at < self.start or self.kind == "steps":
            return 0.0
        return CLOUDY.house_w(self.hour(at))

    def hour(self, at: float) -> float:
        assert self.start is not None
        return CLOUDY_FROM_H + (at - self.start) / 3600.0


async def run_rig(
    url: str,
    workdir: Path,
    profile: Profile,
    *,
    cadence: float,
    scale: float,
    seconds: float,
    seed: int,
    allocator: dict[str, int],
) -> tuple[list[LoopSample], float, list[float]]:
    rig = ClosedLoopRig(
        url, f"bench/{profile.kind}-{cadence:g}", workdir, pv_w=profile.pv_w, house_w=profile.house_w,
        cadence_s=cadence, noise_w=50.0, seed=seed, time_scale=scale, allocator=allocator,
    )  # fmt: skip
    async with rig:
        await rig.wait_ready()
        await rig.wait_idle()
        await rig.run_for(WARMUP_S)
        profile.start = rig.clock.time()
        await rig.run_for(seconds + 1.0)
        samples = list(rig.samples)
        readings = [at for at, _watts in rig.meter.published]
    logs = "".join(rig.services.log(name) for name in ("allocator", "twc-bridge"))
    if "Traceback" in logs:
        print(f"note: a service logged a traceback; see {workdir / 'logs'}", file=sys.stderr)
    if "multiple access" in logs:  # another process opened the pseudo-terminal (a recycled /dev/pts path)
        print(f"WARNING: someone else used the simulated bus; these figures are not valid ({workdir})", file=sys.stderr)
    assert profile.start is not None
    return samples, profile.start, readings


async def steps(url: str, workdir: Path, *, cadence: float, scale: float, seed: int, trace: bool) -> None:
    profile = Profile("steps")
    samples, start, readings = await run_rig(
        url,
        workdir,
        profile,
        cadence=cadence,
        scale=scale,
        seconds=HOLD_S * len(STEPS_W),
        seed=seed,
        allocator=STEP_DELAYS,
    )
    for index, target_w in enumerate(STEPS_W):
        begin = start + index * HOLD_S
        figures = step_figures(samples, begin, begin + HOLD_S)
        delay = max(STEP_DELAYS["enable_delay_s"] if figures.starts else 0,
                    STEP_DELAYS["disable_delay_s"] if figures.stops else 0)  # fmt: skip
        first = f"{figures.first_change_s:.1f}" if figures.first_change_s is not None else "-"
        # From the first reading that shows the step: what the services add to the meter's own cadence.
        shown_at = next((at - begin for at in readings if at >= begin), None)
        reaction = "-"
        if figures.first_change_s is not None and shown_at is not None:
            reaction = f"{figures.first_change_s - shown_at:.1f}"
        if trace:
            _print_changes(samples, begin, begin + HOLD_S)
        print(
            f"{cadence:g} {target_w / 1000:g} {first} {reaction} {figures.settle_s:.1f} {figures.settle_s - delay:.1f} "
            f"{figures.changes} {figures.over_after_settle_s:.1f} {figures.over_s:.1f} {figures.import_wh:.1f} "
            f"{figures.max_offered_a:g}"
        )


def _print_changes(samples: list[LoopSample], start: float, end: float) -> None:
    """Every offer change inside the step: seconds into it, the offers (A), the surplus and the grid (W)."""
    previous: tuple[float, ...] | None = None
    for sample in samples:
        if sample.at >= end:
            break
        if sample.offers_a != previous and sample.at >= start:
            print(f"#   +{sample.at - start:5.1f} s offers {sample.offers_a} surplus {sample.surplus_w:.0f} W "
                  f"grid {sample.grid_w:.0f} W")  # fmt: skip
        previous = sample.offers_a


def oracle_cars(*, offers: bool) -> list[CarLimits]:
    """The 32 A unit and the 80 A unit (the 40 A bus is its limit). `offers`: the levels are what each car is
    offered (the oracle keeps its offers within the surplus, as the allocator does); otherwise what it draws, 0.6 A
    under its offer (the oracle keeps only the draws within the surplus)."""
    under = 0.0 if offers else UNDER_DRAW_A
    return [CarLimits((6 - under) * VOLTS, (max_a - under) * VOLTS, VOLTS) for max_a in (32, 40)]


def drawn(offers_w: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(max(0.0, w - UNDER_DRAW_A * VOLTS) if w > 0 else 0.0 for w in offers_w)


async def cloudy(url: str, workdir: Path, *, cadence: float, scale: float, seed: int, minutes: float) -> None:
    profile = Profile("cloudy")
    seconds = minutes * 60.0
    samples, start, _readings = await run_rig(
        url, workdir, profile, cadence=cadence, scale=scale, seconds=seconds, seed=seed, allocator={}
    )
    run, by_draw, by_offer = Ledger(step_s=1.0), Ledger(step_s=1.0), Ledger(step_s=1.0)
    draw_cars, offer_cars = oracle_cars(offers=False), oracle_cars(offers=True)
    for sample in resample(samples, start, start + seconds, 1.0):
        run.step(sample.at, sample.draws_w, sample.surplus_w)
        by_draw.step(sample.at, best_stepped_w(sample.surplus_w, draw_cars), sample.surplus_w)
        by_offer.step(sample.at, drawn(best_stepped_w(sample.surplus_w, offer_cars)), sample.surplus_w)

    def pct(oracle: Ledger) -> float:
        return 100 * run.solar_wh / oracle.solar_wh if oracle.solar_wh else 0.0

    print(
        f"{cadence:g} {pct(by_draw):.1f} {pct(by_offer):.1f} {run.solar_wh:.0f} {by_draw.solar_wh:.0f} "
        f"{by_offer.solar_wh:.0f} {run.import_wh:.0f} {run.start_count} {run.most_starts_within(WINDOW_S)} "
        f"{by_draw.most_starts_within(WINDOW_S)}"
    )


async def api_car(url: str, workdir: Path, scale: float, minutes: float, *, trace: bool) -> None:
    world = World(
        url, "bench/api", workdir, time_scale=scale, day_factor=1.0, start_hour=CLOUDY_FROM_H, house=CLOUDY,
        teslamate_prefix="bench/api/teslamate",
    )  # fmt: skip
    async with world:
        config = world.write_config(workdir / "chargebus.toml", ha_discovery=False)
        services = ServiceSet(
            config, scale, workdir / "logs", log_level="warning", only=("allocator", "twc-bridge", "tesla-bridge")
        )
        services.start()
        try:
            await world.clock.sleep(minutes * 60.0)
        finally:
            await asyncio.to_thread(services.stop)
        samples = list(world.samples)
        calls = [c for c in world.api.calls if c.vin == VIN_B and c.path.endswith("/set_charging_amps")]
        if trace:
            for call in calls:
                print(f"#   +{world.hour_of_day(call.at):6.3f} h set_charging_amps {call.body}")
    charging_s = sum(
        later.at - sample.at
        for sample, later in itertools.pairwise(samples)
        if sample.chargers_w.get(f"car-{VIN_B}", 0.0) > 0
    )
    hours = charging_s / 3600.0
    per_hour = len(calls) / hours if hours else 0.0
    print(f"set_charging_amps {len(calls)} count; car B charged {hours:.2f} h; {per_hour:.1f} per charging hour")


async def main_async(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="chargebus-closed-loop-"))
    (workdir / "broker").mkdir()
    broker = local_broker(workdir / "broker").start()
    cadences = [float(text) for text in args.cadence.split(",")]
    profiles = args.profiles.split(",")
    try:
        if "steps" in profiles:
            print("# steps: cadence_s step_kW first_s reaction_s settle_s settle_after_delay_s changes "
                  "over_after_settle_s over_total_s import_Wh max_offer_A")  # fmt: skip
            for cadence in cadences:
                here = workdir / f"steps-{cadence:g}"
                await steps(broker.url, here, cadence=cadence, scale=args.scale, seed=args.seed, trace=args.trace)
        if "cloudy" in profiles:
            print("# cloudy: cadence_s capture_pct capture_vs_offer_oracle_pct solar_Wh oracle_Wh offer_oracle_Wh "
                  "import_Wh starts most_starts_30min oracle_most_starts_30min")  # fmt: skip
            for cadence in cadences:
                await cloudy(
                    broker.url, workdir / f"cloudy-{cadence:g}", cadence=cadence, scale=args.cloudy_scale,
                    seed=args.seed, minutes=args.minutes,
                )  # fmt: skip
        if "api" in profiles:
            print("# api: cloudy hour, car B on a mobile connector through the fake Fleet API")
            await api_car(broker.url, workdir / "api", args.cloudy_scale, args.minutes, trace=args.trace)
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="steps,cloudy,api")
    parser.add_argument("--cadence", default="1,5,10")
    parser.add_argument("--scale", type=float, default=5.0, help="time scale of the steps profile")
    parser.add_argument("--cloudy-scale", type=float, default=15.0, help="time scale of the cloudy and api runs")
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of the cloudy and api runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", action="store_true", help="print every offer change of the steps profile")
    args = parser.parse_args()
    started = time.monotonic()
    asyncio.run(main_async(args))
    print(f"# {time.monotonic() - started:.0f} s real", file=sys.stderr)


if __name__ == "__main__":
    main()
