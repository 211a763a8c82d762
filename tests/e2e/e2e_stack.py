"""The whole stack for the end-to-end tests: real mosquitto, the four services as real processes in accelerated time
(`CHARGEBUS_TIME_SCALE`), and the simulated world (`chargebus_sim.world`) in the test's own event loop.

Everything a test asserts is read from MQTT, as a user would see it; the fake Fleet API's request log is the only
look behind the curtain (what the car was told). Time: the services and the world run `SCALE` times faster than the
wall clock, and the sun another `DAY_FACTOR` times faster than that, so a day from 09:00 to dusk takes about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargebus_sim.house import House
from chargebus_sim.world import TWC_A, TWC_B, VIN_A, VIN_B, World, evse_id
from chargebus_sim.world_config import Scalar
from chargebus_sim.world_stack import ServiceSet

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder

log = logging.getLogger("tests.e2e")

#: The services' and the simulators' clock: 15 simulated seconds per real second. The Gen2 bus keeps real timing on
#: that scale (a slave is stale after 6 s = 0.4 s real), even on a busy machine.
SCALE = 15.0
#: The sun moves 36 times faster still: one hour of the day in 6.7 s.
DAY_FACTOR = 36.0
TWC_A_ID = evse_id(TWC_A)
TWC_B_ID = evse_id(TWC_B)
CAR_A_ID = f"car-{VIN_A}"
CAR_B_ID = f"car-{VIN_B}"
SERVICES = ("allocator", "history", "twc-bridge", "tesla-bridge")
#: Shorter hysteresis than the defaults (60/180/300/300 s), in simulated seconds, to fit the compressed day.
ALLOCATOR = {"enable_delay_s": 10, "disable_delay_s": 20, "min_on_s": 30, "min_off_s": 30, "setpoint_ttl_s": 120}
TESLA = {"command_min_interval_s": 10}
#: TeslaMate publishes every 5 simulated seconds while a car charges (it does every ~20 s on AC).
TESLAMATE_CADENCE: Mapping[str, float | None] = {
    "asleep": 30.0,
    "offline": 30.0,
    "online": 10.0,
    "charging": 5.0,
    "driving": 2.5,
    "suspended": None,
    "updating": 15.0,
}


@dataclass
class Arrival:
    """A message and when it arrived, on the world's clock (simulated epoch seconds) and the wall clock."""

    message: Received
    at: float
    wall: float


@dataclass
class TimedRecorder(Recorder):
    """A Recorder that also notes when each message arrived."""

    clock: Callable[[], float] = time.time
    arrivals: list[Arrival] = field(default_factory=list)

    async def _pump(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            received = Received(message.topic.value, payload, bool(message.retain))
            self.messages.append(received)
            self.arrivals.append(Arrival(received, self.clock(), time.monotonic()))
            self._changed.set()


@dataclass
class Stack:
    world: World
    services: ServiceSet
    bus: TimedRecorder
    prefix: str

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    # ----- what a user sees ----------------------------------------------------------------------------------------

    def json_on(self, rest: str) -> list[tuple[Arrival, Any]]:
        topic = self.topic(rest)
        return [(a, json.loads(a.message.payload)) for a in self.bus.arrivals if a.message.topic == topic]

    def allocator_states(self) -> list[tuple[Arrival, dict[str, Any]]]:
        return self.json_on("allocator/state")

    def latest_allocator(self) -> dict[str, Any] | None:
        last = self.bus.last(self.topic("allocator/state"))
        return None if last is None else dict(last.json())

    def evse_state(self, evse: str) -> dict[str, Any] | None:
        last = self.bus.last(self.topic(f"evse/{evse}/state"))
        return None if last is None or not last.payload else dict(last.json())

    def hour(self, arrival: Arrival) -> float:
        return self.world.hour_of_day(arrival.at)

    async def wait_allocator(
        self, predicate: Callable[[dict[str, Any]], bool], *, until_hour: float, what: str, margin_s: float = 10.0
    ) -> dict[str, Any]:
        """The latest allocator/state once it satisfies `predicate`, before the sun's clock shows `until_hour`
        (plus `margin_s` real seconds for a busy machine)."""

        def check() -> dict[str, Any] | None:
            state = self.latest_allocator()
            return state if state is not None and predicate(state) else None

        timeout = self.world.real_seconds_until(until_hour) + margin_s
        found: dict[str, Any] = await self.bus.wait_for(check, timeout=timeout, what=what)
        return found

    async def wait_evse(
        self, evse: str, predicate: Callable[[dict[str, Any]], bool], *, until_hour: float, what: str
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            state = self.evse_state(evse)
            return state if state is not None and predicate(state) else None

        timeout = self.world.real_seconds_until(until_hour) + 10.0
        found: dict[str, Any] = await self.bus.wait_for(check, timeout=timeout, what=what)
        return found

    def assert_alive(self) -> None:
        alive = self.services.alive()
        dead = [name for name, running in alive.items() if not running]
        assert not dead, f"services died: {dead}\n{self.log_tails()}"

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name} ---\n{self.services.log(name)[-chars:]}" for name in SERVICES)


def group_with(state: Mapping[str, Any], evse: str) -> dict[str, Any] | None:
    """The charge point (allocator group) that holds `evse`."""
    groups = state.get("groups") or []
    return next((dict(group) for group in groups if evse in group["evse_ids"]), None)


def group_state(state: Mapping[str, Any], evse: str) -> str | None:
    group = group_with(state, evse)
    return None if group is None else str(group["state"])


def allocated(state: Mapping[str, Any], evse: str) -> float:
    group = group_with(state, evse)
    return 0.0 if group is None else float(group["allocated_w"])


@contextlib.asynccontextmanager
async def running_stack(
    broker: BrokerUnderTest,
    prefix: str,
    workdir: Path,
    *,
    house: House,
    start_hour: float,
    allocator: Mapping[str, Scalar] | None = None,
    circuit_a: float = 40.0,
    ha_discovery: bool = False,
) -> AsyncIterator[Stack]:
    """World + recorder + the four services; yields once every service says `online`; stops everything after.

    With `ha_discovery` the services publish Home Assistant discovery configs under the default `homeassistant/`
    prefix (the recorder does not subscribe to it)."""
    world = World(
        broker.url,
        prefix,
        workdir,
        time_scale=SCALE,
        day_factor=DAY_FACTOR,
        start_hour=start_hour,
        house=house,
        teslamate_prefix=f"{prefix}/teslamate",
        teslamate_cadence=TESLAMATE_CADENCE,
        power_period_s=1.0,
    )
    async with world, TimedRecorder(broker.url, [f"{prefix}/#"], clock=world.clock.time) as bus:
        config = world.write_config(
            workdir / "chargebus.toml",
            ha_discovery=ha_discovery,
            circuit_a=circuit_a,
            allocator={**ALLOCATOR, **(allocator or {})},
            tesla=TESLA,
        )
        services = ServiceSet(config, SCALE, workdir / "logs")
        services.start()
        stack = Stack(world, services, bus, prefix)
        try:
            for name in SERVICES:
                await bus.wait_message(stack.topic(f"{name}/status"), lambda m: m.text == "online", timeout=45)
            yield stack
        finally:
            await asyncio.to_thread(services.stop)
            log.info(stack.log_tails())  # shown by pytest only when the test failed
