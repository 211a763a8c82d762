"""A bridge dies with SIGKILL mid-charge and is started again at once (a crash, a Docker restart, an upgrade)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.faults.fault_support import (
    SERVICES,
    TWC_A,
    TWC_B,
    TWC_BUS_A,
    TWC_WIRING_A,
    TimedRecorder,
    assert_bus_cap,
    fleet_calls,
    offers,
    running_stack,
    wait_offers,
    wait_stack_charging,
)
from tests.support.broker_fixture import BrokerUnderTest

RESTARTS = 5


async def test_twc_bridge_restart_mid_charge_keeps_every_car_charging(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves that a twc-bridge crash and restart is invisible to the cars: the slaves keep their last
    offer while no master talks (their own 30 s timeout), and the restarted bridge, which relinks them within
    seconds, offers each one nothing but its setpoint (never 0 A, never failsafe) while both cars charge."""
    async with (
        running_stack(mqtt_broker.url, prefix, tmp_path) as stack,
        TimedRecorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
    ):
        await wait_stack_charging(stack, bus)
        since = time.monotonic()
        for _ in range(2):
            mark = len(bus.messages)
            stack.kill("twc-bridge")
            await asyncio.sleep(1.0)
            stack.start("twc-bridge")
            await bus.wait_message(stack.topic("twc-bridge/status"), lambda m: m.text == "online", after=mark)
            # The slaves are linked again and heard: their heartbeat answers say a car is charging.
            for slave in ("4a1b", "5c2d"):
                await bus.wait_message(
                    stack.topic(f"evse/twc-{slave}/state"),
                    lambda m: m.json()["charging"] is True,
                    after=mark,
                    timeout=10,
                )
            await wait_offers(stack.sim, dict.fromkeys((TWC_A, TWC_B), float(TWC_WIRING_A)), timeout=10)
            await asyncio.sleep(1.0)
        assert all(stack.alive().values()), stack.alive()
    assert [o for o in offers(stack.sim, since=since) if o.amps != TWC_WIRING_A] == []
    assert_bus_cap(stack.sim, TWC_BUS_A, TWC_WIRING_A)


async def test_tesla_bridge_restart_mid_charge_never_stops_the_car(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves that a tesla-bridge crash and restart never stops a car that is charging under the
    allocator's control: over 5 SIGKILL + restart cycles the fake Fleet API receives no `charge_stop` (and hence
    no `charge_start` either), and every service stays up."""
    async with (
        running_stack(mqtt_broker.url, prefix, tmp_path) as stack,
        TimedRecorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
    ):
        await wait_stack_charging(stack, bus)
        since = time.time()
        for _ in range(RESTARTS):
            mark = len(bus.messages)
            stack.kill("tesla-bridge")
            stack.start("tesla-bridge")
            await bus.wait_message(stack.topic("tesla-bridge/status"), lambda m: m.text == "online", after=mark)
            await asyncio.sleep(1.0)
        assert {name: stack.alive()[name] for name in SERVICES} == dict.fromkeys(SERVICES, True)
    starts_and_stops = [
        c.path.rsplit("/", 1)[-1]
        for c in fleet_calls(stack.api, "command", since=since)
        if c.path.endswith(("/charge_stop", "/charge_start"))
    ]
    assert starts_and_stops == []
