"""A solar day, end to end: broker, the four services as processes, two TWCs on a pty, two cars behind the fake
Fleet API, TeslaMate, and a house whose PV is sunny in the morning, dips under a cloud bank around midday, comes
back and fades behind broken clouds until dusk. Everything asserted is what a user sees on MQTT.

- car A on TWC A is one charge point with both EVSEs (merged by VIN), and follows the sun within the budget;
- car B on its mobile connector gets its share while there is enough sun for both;
- under the cloud bank there is room for one minimum only: car B (priority 0 < 10) is kicked out, car A keeps
  charging, and car B comes back when the sun does;
- at dusk car A is stopped through the car API (`charge: false` on `car-<VIN>`, a `charge_stop` at the API);
- in solar mode the grid import stays within `IMPORT_TOLERANCE_W` apart from transients (see `measure_import`).
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chargebus_sim.house import House
from chargebus_sim.world import VIN_A

from tests.e2e.e2e_stack import (
    CAR_A_ID,
    CAR_B_ID,
    TWC_A_ID,
    Arrival,
    Stack,
    allocated,
    group_state,
    group_with,
    running_stack,
)
from tests.support.broker_fixture import BrokerUnderTest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
log = logging.getLogger("tests.e2e")

START_HOUR = 9.0
CLOUD_BANK = (12.5, 14.0)
#: Sunny morning; a cloud bank lets 30 % through from 12:30 to 14:00; broken clouds from 16:00 (an hour-long
#: pattern); the evening house load and the setting sun leave no surplus after about 18:15.
DAY = House(cloudy_from_h=16.0, cloud_period_s=3600.0, shade=((*CLOUD_BANK, 0.3),))
END_HOUR = 18.9
#: Grid import allowed in solar mode outside transients (W).
IMPORT_TOLERANCE_W = 500.0
#: A transient: the simulated seconds after the PV fell by more than `PV_DROP_W` between two readings, after a charge
#: point started (a car on the API draws at once while a TWC car is still ramping down) or while one was stopping (the
#: allocator holds its minimum for `disable_delay_s` by design).
TRANSIENT_S = 30.0
#: The garage circuit both cars share (the stack's 40 A at 230 V): the most they can take together.
CIRCUIT_W = 40 * 230.0
PV_DROP_W = 300.0


@dataclass(frozen=True)
class ImportReport:
    samples: int
    transients: int
    max_w: float
    p95_w: float
    mean_w: float
    worst_hour: float
    #: the same over every reading, transients included
    all_max_w: float
    all_p95_w: float
    all_mean_w: float


def measure_import(stack: Stack, from_hour: float, to_hour: float) -> ImportReport:
    """Grid import (W, export counts as 0) of every `power/grid` reading between the hours, outside transients."""
    pv = [(a.at, float(p["power_w"])) for a, p in stack.json_on("power/pv")]
    drops = [at for (_, before), (at, after) in itertools.pairwise(pv) if before - after > PV_DROP_W]
    quiet_starts = sorted(drops + changes_of_charge(stack))
    kept: list[tuple[float, float]] = []
    every: list[float] = []
    transients = 0
    for arrival, reading in stack.json_on("power/grid"):
        if not from_hour <= stack.hour(arrival) <= to_hour:
            continue
        every.append(max(0.0, float(reading["power_w"])))
        if any(0 <= arrival.at - start <= TRANSIENT_S for start in quiet_starts):
            transients += 1
            continue
        kept.append((stack.hour(arrival), max(0.0, float(reading["power_w"]))))
    imports = sorted(value for _, value in kept)
    worst = max(kept, key=lambda item: item[1])
    every.sort()
    return ImportReport(
        samples=len(kept),
        transients=transients,
        max_w=imports[-1],
        p95_w=imports[int(0.95 * (len(imports) - 1))],
        mean_w=statistics.fmean(imports),
        worst_hour=worst[0],
        all_max_w=every[-1],
        all_p95_w=every[int(0.95 * (len(every) - 1))],
        all_mean_w=statistics.fmean(every),
    )


def changes_of_charge(stack: Stack) -> list[float]:
    """When a charge point started charging, and every moment one was stopping (holding its minimum)."""
    moments: list[float] = []
    previous: dict[str, str] = {}
    for arrival, state in stack.allocator_states():
        for group in state.get("groups") or []:
            key, now = group["primary_evse_id"], group["state"]
            if now == "stopping" or (now == "charging" and previous.get(key, "charging") != "charging"):
                moments.append(arrival.at)
            previous[key] = now
    return moments


#: The most an offer kept against a fall may exceed the budget by (docs/closed-loop-control.md §3).
DEAD_BAND_W = 100.0


def within_budget(states: Sequence[tuple[Arrival, dict[str, Any]]]) -> list[str]:
    """Solar-mode states whose allocations exceed the budget (a stopping charge point's held minimum aside, and the
    dead band)."""
    wrong = []
    for _, state in states:
        groups = state.get("groups") or []
        if state["mode"] != "solar" or state["available_w"] is None:
            continue
        if any(group["state"] == "stopping" for group in groups):
            continue
        total = sum(float(group["allocated_w"]) for group in groups)
        # An offer kept against a fall may exceed the budget by the dead band (docs/closed-loop-control.md §3).
        if total > float(state["available_w"]) + DEAD_BAND_W + 1.0:
            wrong.append(f"allocated {total:.0f} W > available {state['available_w']:.0f} W")
    return wrong


def mean_allocated(stack: Stack, evse: str, from_hour: float, to_hour: float) -> float:
    values = [
        allocated(state, evse)
        for arrival, state in stack.allocator_states()
        if from_hour <= stack.hour(arrival) < to_hour
    ]
    assert values, f"no allocator/state between {from_hour} and {to_hour}"
    return statistics.fmean(values)


def charges(state: dict[str, Any], evse: str) -> bool:
    return group_state(state, evse) == "charging" and allocated(state, evse) > 0


async def test_e2e_solar_day_merge_share_kick_out_and_stop_at_dusk(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with running_stack(mqtt_broker, prefix, tmp_path, house=DAY, start_hour=START_HOUR) as stack:
        world = stack.world
        # Morning: car A is one charge point with both EVSEs, its current set through the TWC.
        merged = await stack.wait_allocator(
            lambda s: (group_with(s, CAR_A_ID) or {}).get("evse_ids") == [TWC_A_ID, CAR_A_ID],
            until_hour=10.0,
            what="car A merged with TWC A by VIN",
        )
        merged_at = world.clock.time()
        group_a = group_with(merged, CAR_A_ID)
        assert group_a is not None
        assert (group_a["vin"], group_a["primary_evse_id"], group_a["priority"]) == (VIN_A, TWC_A_ID, 10)

        # Sunny morning: both cars charge, each with its share, and their draw shows on their EVSEs.
        await stack.wait_allocator(
            lambda s: charges(s, CAR_A_ID) and charges(s, CAR_B_ID), until_hour=11.0, what="both cars charging"
        )
        await stack.wait_evse(TWC_A_ID, lambda e: (e["power_w"] or 0) > 0, until_hour=11.5, what="TWC A delivering")
        await stack.wait_evse(CAR_B_ID, lambda e: (e["power_w"] or 0) > 0, until_hour=11.5, what="car B drawing")
        stack.assert_alive()

        # The cloud bank: room for one minimum only, so the lower priority (car B) is kicked out; car A charges on.
        kicked = await stack.wait_allocator(
            lambda s: group_state(s, CAR_B_ID) == "kicked_out" and charges(s, CAR_A_ID),
            until_hour=CLOUD_BANK[1],
            what="car B kicked out under the cloud bank while car A charges",
        )
        reason_b = (group_with(kicked, CAR_B_ID) or {}).get("reason", "")
        assert "kicked out" in reason_b
        assert world.hour_of_day() >= CLOUD_BANK[0]

        # The sun is back: car B charges again.
        await stack.wait_allocator(
            lambda s: charges(s, CAR_B_ID) and charges(s, CAR_A_ID),
            until_hour=15.5,
            what="car B back after the cloud bank",
        )
        stack.assert_alive()

        # Dusk: car A is stopped through the car API.
        dusk = world.sun_time_to_clock(17.5)

        def stopped_at_dusk() -> bool:
            setpoints = stack.json_on(f"evse/{CAR_A_ID}/setpoint")
            told = any(arrival.at >= dusk and sp["charge"] is False for arrival, sp in setpoints)
            stopped = any(
                call.path.endswith("/command/charge_stop") and call.vin == VIN_A and call.at >= dusk
                for call in world.api.calls
            )
            return told and stopped

        await stack.bus.wait_for(
            stopped_at_dusk,
            timeout=world.real_seconds_until(END_HOUR) + 10,
            what="car A told charge: false and the API's charge_stop at dusk",
        )
        final = await stack.wait_allocator(
            lambda s: allocated(s, CAR_A_ID) == 0 and allocated(s, CAR_B_ID) == 0,
            until_hour=END_HOUR,
            what="nothing allocated after dusk",
        )
        assert group_state(final, CAR_A_ID) in {"waiting", "kicked_out"}
        assert not world.api.car(VIN_A).charging
        # the history service recorded the day: car A's all-time energy, as Home Assistant would read it
        energy = await stack.bus.wait_message(
            stack.topic(f"history/energy/{VIN_A}"), lambda m: float(m.text) > 0, timeout=20
        )
        stack.assert_alive()

    # The merged car's current went through the TWC (no billed set_charging_amps), its start/stop through the car.
    after_merge = [call for call in world.api.calls if call.vin == VIN_A and call.at > merged_at + 1]
    assert not [call for call in after_merge if call.path.endswith("/set_charging_amps")]
    twc_charge = [
        (stack.hour(a), sp)
        for a, sp in stack.json_on(f"evse/{TWC_A_ID}/setpoint")
        if a.at > merged_at + 1 and sp["charge"] is not None
    ]
    assert not twc_charge
    car_power = [
        (stack.hour(a), sp)
        for a, sp in stack.json_on(f"evse/{CAR_A_ID}/setpoint")
        if a.at > merged_at + 1 and sp["power_w"] is not None
    ]
    assert not car_power
    # Start and stop went through the car's API. When the morning's first start comes within a second of the merge
    # (the round that merged the two EVSEs may be the one that starts the car), it falls outside `after_merge`: the
    # start is looked for over the whole day, the stop after the merge.
    commands_a = {
        call.path.rsplit("/", 1)[-1] for call in world.api.calls if call.vin == VIN_A and call.category == "command"
    }
    assert "charge_start" in commands_a
    assert "charge_stop" in {call.path.rsplit("/", 1)[-1] for call in after_merge if call.category == "command"}
    latest = stack.bus.last(energy.topic) or energy
    log.info(f"history energy of car A after the day: {float(latest.text):.0f} Wh")

    # After the day: the allocations stayed within the solar budget, car A followed the sun, the grid stayed near 0.
    assert within_budget(stack.allocator_states()) == []
    morning = mean_allocated(stack, CAR_A_ID, START_HOUR, 10.0)
    noon = mean_allocated(stack, CAR_A_ID, 11.5, CLOUD_BANK[0])
    shaded = mean_allocated(stack, CAR_A_ID, CLOUD_BANK[0] + 0.5, CLOUD_BANK[1])
    assert noon > morning + 500, (morning, noon)
    assert shaded < noon - 2000, (noon, shaded)
    # Car B in the sunny hours: a car set through its API rises only to the lowest share it had in the last
    # SLOW_FLOOR_S (docs/closed-loop-control.md §5) while TWC A takes the rest, and this day passes far faster than
    # the allocator's clock, so how far above its minimum car B sits depends on the morning's dips (a mean of
    # 2 070-3 220 W over runs). What holds: car B charges throughout, and the two cars take (nearly) all the sun.
    sunny = [s for a, s in stack.allocator_states() if 11.5 <= stack.hour(a) < CLOUD_BANK[0] and s["available_w"]]
    b_charging = sum(1 for s in sunny if charges(s, CAR_B_ID))
    assert b_charging >= 0.9 * len(sunny), (b_charging, len(sunny))
    log.info(f"car B allocated {mean_allocated(stack, CAR_B_ID, 11.5, CLOUD_BANK[0]):.0f} W (11:30-12:30)")
    taken = statistics.fmean(allocated(s, CAR_A_ID) + allocated(s, CAR_B_ID) for s in sunny)
    offered = statistics.fmean(min(float(s["available_w"]), CIRCUIT_W) for s in sunny)
    assert taken >= 0.9 * offered, (taken, offered)
    log.info(f"car A allocated {morning:.0f} W (09-10 h), {noon:.0f} W (11:30-12:30), {shaded:.0f} W (under the cloud)")
    report = measure_import(stack, 10.0, 18.0)
    log.info(f"grid import in solar mode: {report}")
    assert report.samples >= 100
    assert report.max_w <= IMPORT_TOLERANCE_W, report
