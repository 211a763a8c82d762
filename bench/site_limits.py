"""A simulated month with a home battery, a capacity-tariff limit and evening peaks: does the site limit hold, how
much do the cars still get, and how much of the battery do they use?

The real allocator engine (`chargebus_allocator.engine.Engine`, the code the service runs between MQTT messages) on
a simulated clock in `--dt` steps (10 s), against a simulated house (`chargebus_sim.house`): PV of up to 6 kW with a
random cloudiness per day, a base load with morning and evening peaks and, on random evenings, a 3 kW cooking peak
and a 2 kW washing machine; a 10 kWh / 5 kW home battery run for self-consumption that obeys `battery_hold`; a
230 V 1-phase wall connector, 6–32 A (1 380–7 360 W), whose car draws its offer within the step. Weekdays the car
comes home at 18:00 needing 12–20 kWh and leaves at 07:30, mode `now` (the worst case for a capacity tariff);
weekends it is home 09:00–17:00 needing 15 kWh, mode `solar`. Meters: grid and battery (with `soc_pct`) every
step, ±30 W noise on the grid.

Two runs over the same weather, house and cars: `aware` (battery_meter, import_average 4 kW over 15 min, the hold
applied by the battery) and `unaware` (neither: the allocator as it was). Per run it prints the highest
clock-aligned 15-minute average import and how many windows were above the limit (all of them, and those where
the house alone, without the car, stayed at or below it), the energy the cars got and the share of their need,
the car's starts, and the battery energy the car caused to be discharged (the battery's discharge less what it
would have discharged at the same moment without the car) as full cycles, split by the SoC at the time: below
`battery_priority_soc` (goal: none) and above it; and how much charge the battery lost to the car below the
priority SoC (the car taking a surplus the battery would have stored).

    uv run python bench/site_limits.py [--days 30] [--dt 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chargebus.config import AllocatorServiceConfig
from chargebus.schema import EvseState, to_json
from chargebus.topics import Topics
from chargebus_allocator import overrides
from chargebus_allocator.engine import Engine
from chargebus_sim.house import HomeBattery, House

T0 = 1_798_761_600.0  # 2027-01-01 00:00 UTC, a Friday: windows align to the clock from here
DAY_S = 86_400.0
WINDOW_S = 900
LIMIT_W = 4000.0
PRIORITY_SOC = 50.0
VOLTS = 230.0
MIN_A, MAX_A = 6, 32
EVSE = "twc-0001"
TOPICS = Topics("bench")


@dataclass(frozen=True)
class Day:
    cloud: float  # fraction of the sun that gets through
    cooking_h: float | None  # start of a 45 min 3 kW peak
    washing_h: float | None  # start of a 90 min 2 kW load
    need_wh: float
    weekend: bool


def plan_month(days: int, seed: int) -> list[Day]:
    rng = random.Random(seed)  # a reproducible scenario, not a secret
    month = []
    for index in range(days):
        weekend = datetime.fromtimestamp(T0 + index * DAY_S, tz=UTC).weekday() >= 5
        month.append(
            Day(
                cloud=rng.choice((0.15, 0.3, 0.6, 0.9, 1.0)),
                cooking_h=rng.uniform(17.5, 19.5) if rng.random() < 0.6 else None,
                washing_h=rng.uniform(8.0, 21.0) if rng.random() < 0.4 else None,
                need_wh=15_000.0 if weekend else rng.uniform(12_000, 20_000),
                weekend=weekend,
            )
        )
    return month


@dataclass
class World:
    month: list[Day]
    house: House = field(default_factory=lambda: House(pv_peak_w=6000.0, cloudy_from_h=25.0))

    def day(self, at: float) -> tuple[Day, float]:
        index = int((at - T0) // DAY_S)
        return self.month[min(index, len(self.month) - 1)], ((at - T0) % DAY_S) / 3600.0

    def pv_w(self, at: float) -> float:
        day, hour = self.day(at)
        return self.house.pv_w(hour) * day.cloud

    def house_w(self, at: float) -> float:
        day, hour = self.day(at)
        load = self.house.house_w(hour)
        if day.cooking_h is not None and day.cooking_h <= hour < day.cooking_h + 0.75:
            load += 3000.0
        if day.washing_h is not None and day.washing_h <= hour < day.washing_h + 1.5:
            load += 2000.0
        return load

    def car_home(self, at: float) -> tuple[bool, int, str]:
        """(plugged in, the session's day index, mode) at this moment."""
        index = int((at - T0) // DAY_S)
        hour = ((at - T0) % DAY_S) / 3600.0
        today = self.month[min(index, len(self.month) - 1)]
        if hour < 7.5 and index > 0 and not self.month[index - 1].weekend:
            return True, index - 1, "now"  # the night after a weekday evening, a Friday's too
        if today.weekend:
            return 9.0 <= hour < 17.0, index, "solar"
        return hour >= 18.0, index, "now"


@dataclass
class Figures:
    windows: list[tuple[float, float]] = field(default_factory=list)  # (average import, house-alone average)
    car_wh: float = 0.0
    need_wh: float = 0.0
    starts: int = 0
    car_discharge_below_wh: float = 0.0
    car_discharge_above_wh: float = 0.0
    charge_lost_below_wh: float = 0.0
    battery_discharged_wh: float = 0.0
    compute_s: float = 0.0
    rounds: int = 0


def evse_payload(at: float, draw_w: float, plugged: bool) -> bytes:
    return to_json(
        EvseState(
            evse_id=EVSE, kind="twc2", name="garage", controllable=True, controls=["current"], online=True,
            plugged_in=plugged, charging=draw_w > 0, phases=1, voltage_v=VOLTS, power_w=draw_w,
            min_power_w=MIN_A * VOLTS, max_power_w=MAX_A * VOLTS, step_w=VOLTS, source="rs485",
            updated_at=datetime.fromtimestamp(at, tz=UTC), stale=False,
        )
    )  # fmt: skip


def make_engine(*, aware: bool) -> Engine:
    allocator: dict[str, object] = {"mode": "now", "reserve_w": 100, "setpoint_ttl_s": 120}
    if aware:
        allocator |= {
            "battery_meter": "battery",
            "battery_priority_soc": PRIORITY_SOC,
            "import_average": {"limit_w": LIMIT_W, "window_s": WINDOW_S},
        }
    config = AllocatorServiceConfig.model_validate({"allocator": allocator})
    return Engine(config, TOPICS, T0)


def account_battery(
    figures: Figures, battery: HomeBattery, nets: tuple[float, float], dt: float, *, hold: bool
) -> float:
    """Count what the car made the battery do this step (before it does it); returns what it would do without it."""
    net, net_alone = nets
    alone_b = battery.power_for(net_alone, dt, hold=False)
    with_b = battery.power_for(net, dt, hold=hold)
    caused = max(0.0, with_b - max(0.0, alone_b)) * dt / 3600.0
    lost = max(0.0, -alone_b - max(0.0, -with_b)) * dt / 3600.0
    if battery.soc_pct < PRIORITY_SOC:
        figures.car_discharge_below_wh += caused
        figures.charge_lost_below_wh += lost
    else:
        figures.car_discharge_above_wh += caused
    return alone_b


def run(month: list[Day], *, aware: bool, dt: float, seed: int) -> Figures:
    world = World(month)
    engine = make_engine(aware=aware)
    battery = HomeBattery(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=5_000, soc_pct=50.0)
    rng = random.Random(seed)  # meter noise
    figures = Figures()
    offer_w, hold, mode = 0.0, False, ""
    delivered: dict[int, float] = {}
    window_start, window_j, alone_j = T0, 0.0, 0.0
    was_drawing = False
    steps = int(len(month) * DAY_S / dt)
    for step in range(steps):
        now = T0 + step * dt
        plugged, session, want_mode = world.car_home(now)
        need = month[session].need_wh
        if plugged and session not in delivered:
            delivered[session] = 0.0
            figures.need_wh += need
        full = plugged and delivered.get(session, 0.0) >= need
        draw = offer_w if plugged and not full else 0.0
        if draw > 0 and not was_drawing:
            figures.starts += 1
        was_drawing = draw > 0
        pv, house = world.pv_w(now), world.house_w(now)
        net, net_alone = house + draw - pv, house - pv
        alone_b = account_battery(figures, battery, (net, net_alone), dt, hold=hold)
        battery_w = battery.step(net, dt, hold=hold)
        grid = net - battery_w
        # The true import of this step, in clock-aligned windows; and the house's alone (no car, battery as it is).
        if now >= window_start + WINDOW_S:
            figures.windows.append((window_j / WINDOW_S, alone_j / WINDOW_S))
            window_start, window_j, alone_j = window_start + WINDOW_S, 0.0, 0.0
        window_j += max(0.0, grid) * dt
        alone_j += max(0.0, net_alone - alone_b) * dt
        if plugged:
            delivered[session] += draw * dt / 3600.0
        figures.car_wh += draw * dt / 3600.0

        if want_mode != mode:
            mode = want_mode
            engine.overrides.put(overrides.MODE, mode, now)
        engine.evse_state(EVSE, evse_payload(now, draw, plugged and not full), now)
        reading = round(grid + rng.uniform(-30, 30), 1)
        engine.meter_message(TOPICS.power("grid"), f"{reading}".encode(), now)
        if aware:
            payload = f'{{"v":1,"power_w":{battery_w},"soc_pct":{battery.soc_pct:.2f}}}'.encode()
            engine.meter_message(TOPICS.power("battery"), payload, now)
        started = time.perf_counter()
        result = engine.compute(now)
        figures.compute_s += time.perf_counter() - started
        figures.rounds += 1
        offer_w = result.allocation.points[0].allocated_w if result.allocation.points else 0.0
        hold = bool(result.battery_hold) if result.battery_hold is not None else hold
    figures.battery_discharged_wh = battery.discharged_wh
    return figures


def report(name: str, figures: Figures) -> None:
    averages = [avg for avg, _ in figures.windows]
    over = [avg for avg, alone in figures.windows if avg > LIMIT_W + 1.0]
    over_alone_ok = [avg for avg, alone in figures.windows if avg > LIMIT_W + 1.0 and alone <= LIMIT_W]
    alone_over = sum(1 for _, alone in figures.windows if alone > LIMIT_W)
    print(f"{name}:")
    print(
        f"  highest {WINDOW_S // 60}-min average import {max(averages):.0f} W (limit {LIMIT_W:.0f} W); windows above "
        f"the limit: {len(over)} of {len(averages)}, of which the house alone was at or below it: {len(over_alone_ok)}"
        f" (the house alone was above it in {alone_over})"
    )
    highest_ok = max((avg for avg, alone in figures.windows if alone <= LIMIT_W), default=math.nan)
    print(f"  highest average where the house alone stayed at or below the limit: {highest_ok:.0f} W")
    print(
        f"  energy to the car {figures.car_wh / 1000:.1f} kWh of {figures.need_wh / 1000:.1f} kWh needed "
        f"({100 * figures.car_wh / figures.need_wh:.1f} %), {figures.starts} starts"
    )
    print(
        f"  battery discharge caused by the car: {figures.car_discharge_below_wh / 1000:.2f} kWh "
        f"({figures.car_discharge_below_wh / 10_000:.2f} cycles) below {PRIORITY_SOC:.0f} % SoC, "
        f"{figures.car_discharge_above_wh / 1000:.2f} kWh ({figures.car_discharge_above_wh / 10_000:.2f} cycles) "
        f"above; charge the battery lost to the car below {PRIORITY_SOC:.0f} %: "
        f"{figures.charge_lost_below_wh / 1000:.2f} kWh; "
        f"battery total {figures.battery_discharged_wh / 10_000:.1f} cycles"
    )
    print(f"  engine: {figures.rounds} rounds, {1000 * figures.compute_s / figures.rounds:.3f} ms each on average")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dt", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    month = plan_month(args.days, args.seed)
    print(
        f"{args.days} days from {datetime.fromtimestamp(T0, tz=UTC):%Y-%m-%d}, {args.dt:g} s steps, seed {args.seed}; "
        f"import_average {LIMIT_W:.0f} W over {WINDOW_S} s; battery 10 kWh / 5 kW, priority SoC {PRIORITY_SOC:.0f} %"
    )
    for name, aware in (
        ("aware (battery + import average + hold)", True),
        ("unaware (the allocator as before)", False),
    ):
        report(name, run(month, aware=aware, dt=args.dt, seed=args.seed))


if __name__ == "__main__":
    main()
