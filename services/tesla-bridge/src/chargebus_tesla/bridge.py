"""The tesla-bridge runtime: MQTT in and out, every car's loop, the usage meter and the command topics.

Decisions live in the pure modules (`poll_policy` when to call, `commands` what to send, `car_state` what the car
is, `teslamate` what TeslaMate said, `status` the status text, `fleet_problems` what a failure is reported as,
`usage_payload` the usage topic); each car's loop is `car.CarRuntime`, which sees only a narrow `CarContext`, not
this object. This module wires topics to cars. Incoming messages only update state and poke the car's loop, so a
slow Tesla call never holds up the MQTT dispatcher.

Tests and the cost benchmark drive `step()` themselves on a fake clock (`TeslaBridge.step_all()`); the service
runs `CarRuntime.run()` as supervised tasks.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from chargebus.clock import Clock, iso_utc
from chargebus.config import TeslaBridgeConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Incoming, Service
from chargebus.schema import (
    CommandEnvelope,
    PayloadError,
    Setpoint,
    evse_kind_of,
    parse_command,
    parse_for_topic,
    transaction_in,
    vin_of_car_evse,
)
from chargebus.topics import TESLA_BRIDGE, ParsedTopic, Topics, owning_bridge

from chargebus_tesla.bus import Bus
from chargebus_tesla.car import CarContext, CarRuntime, UserAction
from chargebus_tesla.commands import CAR_MAX_AMPS
from chargebus_tesla.discovery import car_entities
from chargebus_tesla.fleet import FleetClient
from chargebus_tesla.overrides import Overrides
from chargebus_tesla.problems import RATE_LIMITED, Problems
from chargebus_tesla.teslamate import car_topic_filter, parse_topic
from chargebus_tesla.usage_payload import usage_payload
from chargebus_tesla.user_commands import charge_limit_percent, max_current_amps

log = logging.getLogger(__name__)

SERVICE_NAME = "tesla-bridge"


class TeslaBridge:
    """Every configured car, the TeslaMate feed, the usage meter and the command topics."""

    def __init__(
        self,
        config: TeslaBridgeConfig,
        client: FleetClient,
        bus: Bus,
        clock: Clock,
        *,
        overrides_file: Path | None = None,
    ) -> None:
        self.config = config
        self.tesla = config.tesla
        self.client = client
        self.bus = bus
        self.clock = clock
        self.topics = Topics(config.mqtt.prefix)
        self.started_at = clock.time()
        self.overrides = Overrides(overrides_file)
        self.teslamate_prefix = self.tesla.teslamate_prefix.strip("/")
        self.problems = Problems(bus)
        context = CarContext(
            tesla=self.tesla,
            client=client,
            bus=bus,
            clock=clock,
            topics=self.topics,
            overrides=self.overrides,
            problems=self.problems,
            started_at=self.started_at,
            teslamate_prefix=self.teslamate_prefix,
            publish_usage=self.publish_usage,
        )
        self.cars: dict[str, CarRuntime] = {
            vehicle.vin: CarRuntime(context, vehicle) for vehicle in self.tesla.vehicles
        }
        self._by_teslamate_id = {car.teslamate.car_id: car for car in self.cars.values() if car.teslamate is not None}
        self._usage: bytes | None = None

    # -- wiring ------------------------------------------------------------------------------------------------

    def install(self, service: Service, *, run_loops: bool = True) -> None:
        topics = self.topics
        service.on_message(topics.filter("evse_setpoint"), self.on_setpoint)
        service.on_command(topics.filter("vehicle_charge_limit_set"), self.on_charge_limit)
        service.on_raw_command(topics.filter("vehicle_refresh_set"), self.on_refresh)
        # max_current/set of twc-* EVSEs belongs to the twc-bridge: only car-* ones are ours to answer.
        service.on_raw_command(topics.filter("evse_max_current_set"), self.on_max_current, owns=_owns_car_evse)
        if self.teslamate_prefix:
            for car_id in self._by_teslamate_id:
                service.on_message(car_topic_filter(self.teslamate_prefix, car_id), self.on_teslamate)
        if run_loops:
            for vin, car in self.cars.items():
                service.add_task(f"car-{vin}", car.run)

    async def publish_discovery(self, discovery: Discovery) -> None:
        for car in self.cars.values():
            for item in car_entities(self.topics, car.vehicle):
                await discovery.publish(item)

    async def publish_initial(self) -> None:
        """Usage (zeros) and every car's state, before the first call is made."""
        now = self.clock.time()
        await self.publish_usage()
        for car in self.cars.values():
            await car.publish(now, car.snapshot(now), force=True)

    # -- stepping ----------------------------------------------------------------------------------------------

    async def step_all(self) -> float:
        """Step every car once (tests and bench); the earliest time any of them wants to run again."""
        next_at = math.inf
        for car in self.cars.values():
            next_at = min(next_at, await car.step())
        return next_at

    async def publish_usage(self) -> None:
        now = self.clock.time()
        await self._report_storm_end(now)
        day, counts = self.client.counter.snapshot(now)
        usage = usage_payload(day, counts, self.cars, self.client.rate_limited_until)
        data = usage.model_dump_json(by_alias=True).encode()
        if data != self._usage:
            self._usage = data
            await self.bus.publish_retained(self.topics.build("tesla_usage"), data)

    # -- the end of a 429 storm, reported once ---------------------------------------------------------------

    async def _report_storm_end(self, now: float) -> None:
        """A 429 storm is over (Tesla answered again): one ErrorEvent says so and how many 429s it held."""
        storm = self.client.gate.take_ended()
        if storm is None:
            return
        self.problems.resolved("*", RATE_LIMITED)
        seconds = max(0.0, now - storm.started_at)
        log.info(f"tesla_rate_limit_over refusals={storm.refusals} duration_s={seconds:.0f}")
        await self.bus.report_error(
            self.topics.build("tesla_usage"),
            None,
            f"rate limit by Tesla over: requests answered again after {seconds:.0f} s "
            f"({storm.refusals} answered 429 since {iso_utc(storm.started_at)})",
        )

    # -- incoming messages -------------------------------------------------------------------------------------

    async def on_setpoint(self, message: Incoming) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        vin = vin_of_car_evse(evse_id)
        if vin is None:
            return  # another bridge's EVSE
        car = self.cars.get(vin)
        if not message.payload:
            if car is not None:
                car.clear_setpoint()
            return
        if car is None:
            raise ValueError(f"unknown EVSE {evse_id}: no [[tesla.vehicles]] entry has VIN {vin}")
        setpoint = parse_for_topic(Setpoint, message.payload, "evse_id", evse_id)
        if not car.vehicle.controllable:
            raise ValueError(f"{evse_id} is observe-only (controllable = false): setpoint ignored")
        car.set_setpoint(setpoint, self.clock.time())

    def _car_for(self, message: Incoming) -> CarRuntime:
        vin = message.parsed.ids.get("vin", "") if message.parsed else ""
        car = self.cars.get(vin)
        if car is None:
            raise ValueError(f"unknown VIN {vin!r}: not in [[tesla.vehicles]]")
        return car

    async def on_charge_limit(self, message: Incoming, command: CommandEnvelope) -> None:
        car = self._car_for(message)
        percent = charge_limit_percent(command.value)
        if not car.vehicle.controllable:
            raise ValueError(f"car {car.vehicle.vin} is observe-only (controllable = false): no commands are sent")
        car.enqueue(UserAction("charge_limit", message.topic, message.payload, command.transaction, percent))

    async def on_refresh(self, message: Incoming) -> None:
        transaction = transaction_in(message.payload)  # any payload is fine; a transaction is echoed
        try:
            car = self._car_for(message)
            car.refresh_limiter.take(self.clock.time())
        except ValueError as exc:
            raise PayloadError(str(exc), transaction) from None
        car.enqueue(UserAction("refresh", message.topic, message.payload, transaction))

    async def on_max_current(self, message: Incoming) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        command = parse_command(message.payload)
        if evse_kind_of(evse_id) == "twc3":
            raise PayloadError(
                f"{evse_id} is read-only: the Gen3 local API takes no commands (set its limit on the unit, and "
                "[[tesla.wall_connectors]] max_current_a)",
                command.transaction,
            )
        car = self.cars.get(vin_of_car_evse(evse_id) or "")
        if car is None:
            raise PayloadError(f"unknown EVSE {evse_id}: no [[tesla.vehicles]] entry has that VIN", command.transaction)
        try:
            amps = max_current_amps(command.value, self.tesla.min_amps, CAR_MAX_AMPS)
        except ValueError as exc:
            raise PayloadError(str(exc), command.transaction) from None
        self.overrides.set_max_current(car.vehicle.vin, amps)
        log.info(f"tesla_override vin={car.vehicle.vin} max_current={amps if amps is not None else 'default'}")
        car.poke()

    async def on_teslamate(self, message: Incoming) -> None:
        parsed = parse_topic(self.teslamate_prefix, message.topic)
        if parsed is None:
            return
        car_id, name = parsed
        car = self._by_teslamate_id.get(car_id)
        if car is None or car.teslamate is None:
            return
        was_fresh = car.teslamate_fresh(self.clock.time())
        changed = car.teslamate.apply(name, message.payload, self.clock.time(), retained=message.retain)
        if changed or not was_fresh:
            car.poke()


def _owns_car_evse(parsed: ParsedTopic) -> bool:
    return owning_bridge(parsed.ids.get("evse_id", "")) == TESLA_BRIDGE
