"""The allocator dies with SIGKILL mid-charge, then comes back (issue 9.2)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.faults.fault_support import (
    CAR_MAX_A,
    STACK_TTL_S,
    TESLA_FAILSAFE_A,
    TWC_A,
    TWC_B,
    TWC_BUS_A,
    TWC_FAILSAFE_A,
    TWC_WIRING_A,
    VIN,
    TimedRecorder,
    amps_commands,
    assert_bus_cap,
    assert_clean_log,
    fleet_calls,
    offers,
    running_stack,
    wait_offers,
    wait_stack_charging,
)
from tests.support.broker_fixture import BrokerUnderTest

#: A heartbeat reaches each slave about once a second and a failsafe offer may be staged behind another slave's.
HEARTBEAT_SLACK_S = 2.0


async def test_allocator_sigkill_sends_both_bridges_to_failsafe_within_the_ttl_and_a_restart_resumes(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves docs/contract.md §6/§9 from outside: with the allocator killed (no goodbye, only its LWT), every bridge
    falls back to failsafe by itself within `setpoint_ttl_s` of the last setpoint it received — the TWC sim sees
    `failsafe_amps` on both slaves, never more than the bus cap in sum at any heartbeat, and the car gets
    `[tesla] failsafe_amps` — and a restarted allocator's setpoints are obeyed again on the wire and by the car."""
    async with (
        running_stack(mqtt_broker.url, prefix, tmp_path) as stack,
        TimedRecorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
    ):
        await wait_stack_charging(stack, bus)
        setpoint_topics = [stack.topic(f"evse/{e}/setpoint") for e in ("twc-4a1b", "twc-5c2d")]

        mark = len(bus.messages)
        stack.kill("allocator")
        killed_at, killed_wall = time.monotonic(), time.time()
        await bus.wait_message(stack.topic("allocator/status"), lambda m: m.text == "offline", timeout=10)
        last_setpoint = max(max(bus.arrivals(topic)) for topic in setpoint_topics)
        assert killed_at - last_setpoint <= STACK_TTL_S / 2 + 1  # refreshed every ttl / 2 while it lived

        failsafe = dict.fromkeys((TWC_A, TWC_B), float(TWC_FAILSAFE_A))
        failsafe_at = await wait_offers(stack.sim, failsafe, timeout=STACK_TTL_S + 5, what="failsafe on both")
        assert failsafe_at - last_setpoint <= STACK_TTL_S + HEARTBEAT_SLACK_S
        # Not before the setpoints expired either: the last valid one held until its ttl.
        assert min(o.at for o in offers(stack.sim, since=killed_at) if o.amps == TWC_FAILSAFE_A) >= (
            last_setpoint + STACK_TTL_S - 1.0
        )
        await bus.wait_for(
            lambda: TESLA_FAILSAFE_A in amps_commands(stack.api, since=killed_wall),
            timeout=5,
            what="the car set to failsafe amps",
        )
        to_wall = time.time() - time.monotonic()
        car_setpoint = max(bus.arrivals(stack.topic(f"evse/car-{VIN}/setpoint"))) + to_wall
        commands = fleet_calls(stack.api, "command", since=killed_wall)
        (car_failsafe,) = [c for c in commands if c.body == {"charging_amps": TESLA_FAILSAFE_A}]
        assert STACK_TTL_S - 1.0 <= car_failsafe.at - car_setpoint <= STACK_TTL_S + HEARTBEAT_SLACK_S
        for slave in ("4a1b", "5c2d"):
            await bus.wait_message(
                stack.topic(f"evse/twc-{slave}/state"),
                lambda m: "failsafe" in (m.json()["status_text"] or "") and m.json()["offered_a"] == TWC_FAILSAFE_A,
                after=mark,
            )
        resumed_from = len(amps_commands(stack.api))

        stack.start("allocator")
        await bus.wait_message(stack.topic("allocator/status"), lambda m: m.text == "online", timeout=15)
        wanted = dict.fromkeys((TWC_A, TWC_B), float(TWC_WIRING_A))
        await wait_offers(stack.sim, wanted, timeout=15, what="the allocator's offers again")
        await bus.wait_for(
            lambda: CAR_MAX_A in amps_commands(stack.api)[resumed_from:], timeout=10, what="the car back at 32 A"
        )
        assert all(stack.alive().values()), stack.alive()

    assert_bus_cap(stack.sim, TWC_BUS_A, TWC_WIRING_A)
    for process in stack.processes.values():
        assert_clean_log(process)
