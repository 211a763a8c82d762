"""The allocator's own process over a real broker, in closed loop with a simulated house and home battery.

The test plays the bridge (the TWC draws what its setpoint says), the house and PV, the battery (a
self-consumption inverter that obeys `battery_hold`) and the meters that see all of it, so the battery's
thresholds, `battery_hold` and the import cap are checked where they matter: on the readings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargebus.schema import to_json
from chargebus_sim.house import HomeBattery

from services.allocator.tests.alloc_builders import evse_state
from services.allocator.tests.test_alloc_service import FAST, TWC, allocator, last_json, write_config
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

SLOW = 30.0
STEP_S = 0.25


@dataclass
class Site:
    """PV, house load and the battery; the car draws its setpoint at once."""

    bus: Recorder
    prefix: str
    pv_w: float = 0.0
    house_w: float = 500.0
    battery: HomeBattery = field(default_factory=lambda: HomeBattery(capacity_wh=1e9, soc_pct=40))
    grid_readings: list[float] = field(default_factory=list)

    def car_w(self) -> float:
        setpoint = last_json(self.bus, f"{self.prefix}/evse/{TWC}/setpoint")
        if not setpoint or not setpoint.get("charge"):
            return 0.0
        return float(setpoint.get("power_w") or 0.0)

    def hold(self) -> bool:
        message = self.bus.last(f"{self.prefix}/allocator/battery_hold")
        return message is not None and message.payload == b"true"

    async def step(self) -> None:
        car = self.car_w()
        net = self.house_w + car - self.pv_w
        battery_w = self.battery.step(net, STEP_S, hold=self.hold())
        grid = round(net - battery_w, 1)
        self.grid_readings.append(grid)
        now = datetime.now(tz=UTC)
        state = evse_state(TWC, power_w=car, charging=car > 0, updated_at=now)
        await self.bus.publish(f"{self.prefix}/evse/{TWC}/state", to_json(state), retain=True)
        await self.bus.publish(f"{self.prefix}/power/grid", json.dumps({"v": 1, "power_w": grid}))
        reading = {"v": 1, "power_w": battery_w, "soc_pct": round(self.battery.soc_pct, 2)}
        await self.bus.publish(f"{self.prefix}/power/battery", json.dumps(reading))

    async def run(self, steps: int) -> list[float]:
        """A few more steps; the grid readings they produced."""
        for _ in range(steps):
            await self.step()
            await asyncio.sleep(STEP_S)
        return self.grid_readings[-steps:]

    async def settle(self, check: Any, what: str, timeout: float = SLOW) -> None:
        """Run the loop until `check()` holds for a few steps in a row."""
        deadline, good = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            await self.step()
            await asyncio.sleep(STEP_S)
            good = good + 1 if check() else 0
            if good >= 4:
                return
        raise AssertionError(f"timed out waiting for {what}: car {self.car_w()} W, grid {self.grid_readings[-3:]}")


@asynccontextmanager
async def running(bus: Recorder, prefix: str) -> AsyncIterator[Site]:
    site = Site(bus, prefix)
    await site.step()
    yield site


def group(bus: Recorder, prefix: str) -> dict[str, Any]:
    state = last_json(bus, f"{prefix}/allocator/state")
    return state["groups"][0] if state and state["groups"] else {}


async def test_battery_thresholds_hold_and_import_cap_in_closed_loop(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    settings = {"mode": "solar", "battery_meter": "battery", "max_import_w": 6000, **FAST}
    config = write_config(tmp_path / "c.toml", prefix, allocator=settings)
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus, running(bus, prefix) as site:
        service = allocator(mqtt_broker, prefix, config)
        try:
            # Sunny, battery at 40 %: it takes 5 000 W of the 5 500 W surplus and the car may not have it.
            site.pv_w, site.house_w = 6000.0, 500.0
            await site.settle(lambda: group(bus, prefix).get("state") == "kicked_out", "kicked out below priority")
            assert site.car_w() == 0
            assert bus.last(f"{prefix}/allocator/battery_hold") is not None  # a retained value from the start
            assert not site.hold()

            # At 60 % the battery's charging power is the car's too.
            site.battery.soc_pct = 60.0
            await site.settle(lambda: site.car_w() >= 5000, "the battery's charging power for the car")
            state = last_json(bus, f"{prefix}/allocator/state")
            assert state["site"]["battery_soc_pct"] == 60.0
            assert state["site"]["max_import_w"] == 6000

            # Night, mode now: the car charges from the grid, the battery is held, the import capped at 6 kW.
            site.pv_w, site.house_w = 0.0, 2000.0
            await bus.publish(f"{prefix}/allocator/mode/set", "now")
            await site.settle(lambda: site.hold() and site.car_w() == 3840, "hold on and the car capped")
            assert site.battery.power_w == 0  # held: nothing discharged into the car
            assert max(await site.run(4)) <= 6000
            assert "site import cap 6 kW" in group(bus, prefix)["reason"]

            # A grid operator's dimming signal lowers it; nonsense is refused; default clears it.
            await bus.publish(f"{prefix}/allocator/grid_limit/set", "4000")
            await site.settle(lambda: site.car_w() == 1920, "the car under the 4 kW grid limit")
            assert max(await site.run(4)) <= 4000
            mark = len(bus.messages)
            await bus.publish(f"{prefix}/allocator/grid_limit/set", '{"value": "4 kW", "transaction": "t1"}')
            error = await bus.wait_message(f"{prefix}/allocator/error", after=mark, timeout=SLOW)
            assert error.json()["transaction"] == "t1"
            assert "grid_limit takes watts" in error.json()["error"]
            await bus.publish(f"{prefix}/allocator/grid_limit/set", "default")
            await site.settle(lambda: site.car_w() == 3840, "back under the configured cap")

            # Back to solar: the hold is released in the round that stops the grid charging.
            await bus.publish(f"{prefix}/allocator/mode/set", "solar")
            await site.settle(lambda: not site.hold(), "hold released")

            hold_entity = last_json(bus, f"{prefix}/ha/binary_sensor/chargebus/allocator_battery_hold/config")
            assert hold_entity["state_topic"] == f"{prefix}/allocator/battery_hold"
            number = last_json(bus, f"{prefix}/ha/number/chargebus/allocator_grid_limit/config")
            assert number["command_topic"] == f"{prefix}/allocator/grid_limit/set"
        finally:
            service.stop()
    assert service.wait() == 0
    assert "Traceback" not in service.log()
