"""Commands as a user sends them — the real `mosquitto_pub` binary — change the running stack within a second.

The stack runs at noon with the garage circuit at 8 A, so only one car's minimum (6 A on the TWC, 5 A on the
mobile connector) fits: which car charges is decided by priority, and a priority command moves the charge to the
other car at once. Each effect is read from the retained `allocator/state`, timed from the moment mosquitto_pub was
started until the state arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chargebus_sim.house import House
from chargebus_sim.world import VIN_B

from tests.e2e.e2e_stack import CAR_A_ID, CAR_B_ID, Stack, allocated, group_state, group_with, running_stack
from tests.support.broker_fixture import BrokerUnderTest

pytestmark = pytest.mark.slow

log = logging.getLogger("tests.e2e")

#: What "within a second" means here: from starting mosquitto_pub to the state's arrival, on a busy machine.
EFFECT_WITHIN_S = 1.0
CIRCUIT_A = 8
NOON = House(cloudy_from_h=24.0)


async def mosquitto_pub(stack: Stack, port: int, rest: str, payload: str) -> None:
    binary = shutil.which("mosquitto_pub")
    assert binary is not None
    process = await asyncio.create_subprocess_exec(
        binary, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", stack.topic(rest), "-m", payload
    )
    assert await process.wait() == 0


async def command_takes_effect(
    stack: Stack, port: int, rest: str, payload: str, *, effect: Callable[[dict[str, Any]], bool], what: str
) -> tuple[dict[str, Any], float]:
    """Send one command with mosquitto_pub; the first allocator/state showing `effect` and the seconds it took."""
    topic = stack.topic("allocator/state")
    mark = len(stack.bus.messages)
    started = time.monotonic()
    await mosquitto_pub(stack, port, rest, payload)

    def shown() -> dict[str, Any] | None:
        for index, message in enumerate(stack.bus.messages[mark:], start=mark):
            if message.topic == topic and effect(state := json.loads(message.payload)):
                return {"state": state, "wall": stack.bus.arrivals[index].wall}
        return None

    found = await stack.bus.wait_for(shown, timeout=10.0, what=what)
    return found["state"], found["wall"] - started


async def test_e2e_mosquitto_pub_changes_mode_and_priorities_within_a_second(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("the mosquitto_pub binary (Debian/Ubuntu package mosquitto-clients) is not installed")
    port = mqtt_broker.port
    async with running_stack(mqtt_broker, prefix, tmp_path, house=NOON, start_hour=12.0, circuit_a=CIRCUIT_A) as stack:
        # Solar mode at noon: the circuit has room for one minimum; car A (priority 10) has it, car B waits.
        await stack.wait_allocator(
            lambda s: allocated(s, CAR_A_ID) > 0 and group_state(s, CAR_B_ID) == "kicked_out",
            until_hour=13.5,
            what="car A charging, car B kicked out by the 8 A circuit",
        )
        took: dict[str, float] = {}

        state, took["mode now"] = await command_takes_effect(
            stack,
            port,
            "allocator/mode/set",
            "now",
            effect=lambda s: s["mode"] == "now" and s["available_w"] is None,
            what="mode now",
        )
        assert {"key": "mode", "value": "now"}.items() <= next(
            o for o in state["overrides"] if o["key"] == "mode"
        ).items()
        assert allocated(state, CAR_A_ID) == CIRCUIT_A * 230  # the whole circuit, at once: no delays in `now`

        state, took["car B priority 50"] = await command_takes_effect(
            stack,
            port,
            f"vehicle/{VIN_B}/priority/set",
            "50",
            effect=lambda s: (group_with(s, CAR_B_ID) or {}).get("priority") == 50 and allocated(s, CAR_B_ID) > 0,
            what="car B charging once it has the higher priority",
        )
        assert allocated(state, CAR_A_ID) == 0
        assert group_state(state, CAR_A_ID) == "kicked_out"

        state, took["mode off (JSON)"] = await command_takes_effect(
            stack,
            port,
            "allocator/mode/set",
            json.dumps({"value": "off", "transaction": "e2e-off"}),
            effect=lambda s: s["mode"] == "off",
            what="mode off",
        )
        assert all(group["allocated_w"] == 0 for group in state["groups"])

        state, took["priority default"] = await command_takes_effect(
            stack,
            port,
            f"vehicle/{VIN_B}/priority/set",
            "default",
            effect=lambda s: (group_with(s, CAR_B_ID) or {}).get("priority") == 0,
            what="car B back to its configured priority",
        )
        state, took["mode default"] = await command_takes_effect(
            stack,
            port,
            "allocator/mode/set",
            "default",
            effect=lambda s: s["mode"] == "solar" and not s["overrides"],
            what="the configured mode again, no override left",
        )

        # A mistyped command changes nothing and is answered with one error.
        errors_before = len(stack.bus.on(stack.topic("allocator/error")))
        await mosquitto_pub(stack, port, "allocator/mode/set", "sunny")
        await stack.bus.wait_for(
            lambda: len(stack.bus.on(stack.topic("allocator/error"))) == errors_before + 1, what="one error"
        )
        await asyncio.sleep(0.5)
        assert len(stack.bus.on(stack.topic("allocator/error"))) == errors_before + 1
        latest = stack.latest_allocator()
        assert latest is not None
        assert latest["mode"] == "solar"
        stack.assert_alive()

    timings = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in took.items())
    log.info(f"command → visible in allocator/state: {timings}")
    assert max(took.values()) < EFFECT_WITHIN_S, took
