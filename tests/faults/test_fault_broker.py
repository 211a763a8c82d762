"""The MQTT broker restarts mid-charge under all four services (issue 9.2)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from chargebus.broker import BrokerProcess

from tests.faults.fault_support import (
    CAR_MAX_A,
    SERVICES,
    STACK_TTL_S,
    TWC_A,
    TWC_B,
    TWC_BUS_A,
    TWC_WIRING_A,
    VIN,
    TimedRecorder,
    amps_commands,
    assert_bus_cap,
    assert_clean_log,
    offers,
    running_stack,
    wait_stack_charging,
)
from tests.support.bus import Recorder

OUTAGE_S = 2.0
BACK_WITHIN_S = 5.0


def state_topics(bus: Recorder, prefix: str, *, retained_only: bool = False) -> set[str]:
    """The services' state topics seen so far (not the test's own topics, not TeslaMate's)."""
    owned = re.compile(
        rf"^{re.escape(prefix)}/("
        r"evse/[^/]+/(state|setpoint)|vehicle/[^/]+/state|allocator/state|tesla-bridge/usage|history/energy/[^/]+"
        r")$"
    )
    return {m.topic for m in bus.messages if m.payload and owned.match(m.topic) and (m.retain or not retained_only)}


async def test_broker_restart_mid_charge_every_service_back_within_5s_and_no_bridge_in_failsafe(
    own_broker: BrokerProcess, prefix: str, tmp_path: Path
) -> None:
    """Proves docs/contract.md §3 (presence re-published on every reconnect, with all retained state) and
    docs/contract.md §6/§9 (a setpoint holds until it expires) across a broker restart without persistence: the broker
    is down for 2 s (less than `setpoint_ttl_s` = 10 s) while two TWCs and a car charge; within 5 s of it listening
    again every service's `<p>/<service>/status` is `online` and every retained state topic the services had published
    is back; no TWC is offered anything but its setpoint (no failsafe amps, no 0 A) before, during or after the outage,
    the car is never sent its failsafe amps, and the processes stay up with clean logs."""
    async with running_stack(own_broker.url, prefix, tmp_path) as stack:
        async with TimedRecorder(own_broker.url, [f"{prefix}/#"]) as bus:
            await wait_stack_charging(stack, bus)
            await asyncio.sleep(1.0)  # the car's and history's retained topics settle
            before = state_topics(bus, prefix)
        expected = ["allocator/state", "evse/twc-4a1b/setpoint", f"evse/car-{VIN}/setpoint"]  # allocator
        expected += ["evse/twc-4a1b/state", "evse/twc-5c2d/state"]  # twc-bridge
        expected += [f"evse/car-{VIN}/state", f"vehicle/{VIN}/state", "tesla-bridge/usage"]  # tesla-bridge
        assert {stack.topic(t) for t in expected} <= before  # history publishes energy only after a minute
        await stack.disconnect_teslamate()  # TeslaMate loses the broker too
        charging_since = time.monotonic()
        commands_before = len(amps_commands(stack.api))

        own_broker.stop()
        await asyncio.sleep(OUTAGE_S)
        own_broker.start()
        up_at = time.monotonic()

        async with TimedRecorder(own_broker.url, [f"{prefix}/#"]) as bus:
            await stack.connect_teslamate()
            for name in SERVICES:
                await bus.wait_message(stack.topic(f"{name}/status"), lambda m: m.text == "online", timeout=8)
            statuses = {name: min(bus.arrivals(stack.topic(f"{name}/status"))) - up_at for name in SERVICES}
            assert all(delay <= BACK_WITHIN_S for delay in statuses.values()), statuses
            await bus.wait_for(
                lambda: before <= state_topics(bus, prefix),
                timeout=max(0.5, up_at + BACK_WITHIN_S - time.monotonic()),
                what=f"every retained state again: {sorted(before)}",
            )
            # Watch until well past the moment the pre-outage setpoints would have expired.
            await asyncio.sleep(max(0.0, charging_since + STACK_TTL_S + 2 - time.monotonic()))
            assert all(stack.alive().values()), stack.alive()
        async with Recorder(own_broker.url, [f"{prefix}/#"]) as late:  # the broker holds them as retained messages
            statuses_retained = {stack.topic(f"{name}/status") for name in SERVICES}
            await late.wait_for(
                lambda: (
                    before <= state_topics(late, prefix, retained_only=True)
                    and statuses_retained <= {m.topic for m in late.messages if m.retain and m.text == "online"}
                ),
                what="every state and status held as a retained message",
            )

    during = offers(stack.sim, since=charging_since)
    assert {o.slave_id for o in during} <= {TWC_A, TWC_B}
    assert [o for o in during if o.amps != TWC_WIRING_A] == []  # no failsafe, no 0 A: setpoints held throughout
    assert set(amps_commands(stack.api)[commands_before:]) <= {CAR_MAX_A}  # never TESLA_FAILSAFE_A
    assert_bus_cap(stack.sim, TWC_BUS_A, TWC_WIRING_A)
    for process in stack.processes.values():
        assert_clean_log(process)
