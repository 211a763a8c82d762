"""Hysteresis timelines through `allocate`, on a fake clock: clouds must not cycle a car."""

from __future__ import annotations

import math
from collections.abc import Callable

from chargebus.clock import FakeClock
from chargebus_allocator.allocate import allocate
from chargebus_allocator.model import Delays, GridReading, Inputs, Settings, Timer

from services.allocator.tests.alloc_builders import T0, point

MIN_W = 1440.0  # a 240 V TWC at 6 A
HALF_HOUR = 1800.0

Surplus = Callable[[float], float]


def simulate(
    surplus: Surplus, duration_s: float, *, charging: bool = False, delays: Delays | None = None, step_s: float = 5
) -> tuple[list[tuple[str, float]], list[str]]:
    """Run the allocator every `step_s` against a house whose surplus (PV − house load) is `surplus(t)`.

    The car follows its setpoint at once, and the grid meter sees house + car − PV. Returns the starts and stops
    (as seconds from the beginning) and the state of every round.
    """
    clock = FakeClock(T0)
    settings = Settings(mode="solar", reserve_w=0, delays=delays or Delays())
    draw = MIN_W if charging else 0.0
    timers: dict[str, Timer] | None = None
    events: list[tuple[str, float]] = []
    states: list[str] = []
    while clock.time() < T0 + duration_s:
        now, elapsed = clock.time(), clock.time() - T0
        twc = point("twc-0001", power_w=draw, charging=draw > 0)
        grid = GridReading(draw - surplus(elapsed), now)
        allocation, timers = allocate(Inputs((twc,), grid=grid, settings=settings), timers, now)
        offered = allocation.points[0].allocated_w
        if offered > 0 and draw == 0:
            events.append(("start", elapsed))
        if offered == 0 and draw > 0:
            events.append(("stop", elapsed))
        states.append(allocation.points[0].state)
        draw = offered
        clock.advance(step_s)
    return events, states


def most_in_any_half_hour(events: list[tuple[str, float]], kind: str) -> int:
    times = [t for name, t in events if name == kind]
    return max((sum(1 for u in times if t <= u < t + HALF_HOUR) for t in times), default=0)


def clouds(mean_w: float) -> Surplus:
    return lambda t: mean_w + 300 * math.sin(2 * math.pi * t / 60)


def square_clouds(mean_w: float) -> Surplus:
    return lambda t: mean_w + (300 if (t // 30) % 2 == 0 else -300)


def test_a_surplus_oscillating_around_the_minimum_starts_and_stops_at_most_once_per_half_hour() -> None:
    for surplus in (clouds(MIN_W), square_clouds(MIN_W), clouds(MIN_W + 150), square_clouds(MIN_W - 150)):
        for charging in (False, True):
            events, _ = simulate(surplus, 4 * 3600, charging=charging)
            assert most_in_any_half_hour(events, "start") <= 1
            assert most_in_any_half_hour(events, "stop") <= 1


def test_a_charging_car_rides_through_short_dips_at_its_minimum() -> None:
    events, states = simulate(square_clouds(MIN_W), 3600, charging=True)
    assert events == []
    assert set(states) == {"charging", "stopping"}


def test_sun_then_a_long_cloud_then_sun() -> None:
    def surplus(t: float) -> float:
        return 500 if 600 <= t < 1200 else 3000

    events, _ = simulate(surplus, 1800)
    # Enable delay 60 s; the cloud at 600 s stops it 180 s later (min_on long passed); sun at 1200 s (min_off
    # over at 1080 s) starts it again after another enable delay.
    assert events == [("start", 60), ("stop", 780), ("start", 1260)]


def test_min_on_keeps_a_fresh_charge_going() -> None:
    def surplus(t: float) -> float:
        return 3000 if t < 120 else 0

    events, _ = simulate(surplus, 900)
    assert events == [("start", 60), ("stop", 360)]  # 60 + min_on 300, later than 120 + disable 180


def test_min_off_delays_the_restart() -> None:
    def surplus(t: float) -> float:
        return 0 if 400 <= t < 410 else 3000

    delays = Delays(enable_delay_s=60, disable_delay_s=0, min_on_s=0, min_off_s=300)
    events, states = simulate(surplus, 1000, delays=delays)
    assert events == [("start", 60), ("stop", 400), ("start", 760)]  # 400 + min_off 300 + enable 60
    assert "waiting" in states


def test_a_restart_does_not_stop_a_charging_car() -> None:
    # No timers (a fresh allocator), the EVSE reports charging, and there is no surplus at all.
    events, states = simulate(lambda _t: 0, 600, charging=True)
    assert states[0] == "stopping"
    assert events == [("stop", 300)]  # held at its minimum for min_on from the restart


def test_starting_offers_nothing_until_the_delay_has_passed() -> None:
    twc = point("twc-0001")
    settings = Settings(mode="solar", reserve_w=0)
    inputs = Inputs((twc,), grid=GridReading(-3000, T0), settings=settings)
    allocation, timers = allocate(inputs, None, T0)
    result = allocation.points[0]
    assert (result.state, result.allocated_w) == ("starting", 0)
    assert result.reason.startswith("starting in 60 s: 3 000 W available covers its minimum 1 440 W")
    (intent,) = allocation.setpoints
    assert (intent.power_w, intent.charge) == (0, False)
    later = Inputs((twc,), grid=GridReading(-3000, T0 + 60), settings=settings)
    allocation, _ = allocate(later, timers, T0 + 60)
    assert (allocation.points[0].state, allocation.points[0].allocated_w) == ("charging", 2880)


def test_mode_now_acts_at_once() -> None:
    twc = point("twc-0001")
    inputs = Inputs((twc,), settings=Settings(mode="now"))
    allocation, timers = allocate(inputs, None, T0)
    assert allocation.points[0].state == "charging"
    off = Inputs((twc,), settings=Settings(mode="off"))
    allocation, _ = allocate(off, timers, T0 + 1)
    assert (allocation.points[0].allocated_w, allocation.setpoints[0].charge) == (0, False)
