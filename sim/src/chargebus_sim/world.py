"""A whole simulated world for the four services: one object, one asyncio loop, one clock.

What it runs (everything a stack needs besides the services and the broker):

- a Gen2 TWC bus on a pseudo-terminal with two slaves: TWC A (`4a1b`) with car A plugged in, reporting its VIN;
  TWC B (`5c2d`) empty, or with a car that has no API (`twc_b_car=True`);
- the fake Fleet API over HTTP (data host, token endpoint, command proxy) with car A — the same VIN, on TWC A — and
  car B on a mobile connector, both at home, plugged in, awake;
- a TeslaMate publisher for both cars (`<teslamate_prefix>/cars/1|2/…`), mirroring the fake API's cars;
- the house and its PV (`House`: a sunny morning that turns cloudy), publishing `<p>/power/pv`, `<p>/power/house`
  and `<p>/power/grid` (PowerReading), where grid = house + Σ what the chargers really draw − PV;
- optionally a home battery (`HomeBattery`, run for self-consumption), publishing `<p>/power/battery` (PowerReading
  with `soc_pct`) and obeying `<p>/allocator/battery_hold`, as a user's automation would apply it; then grid = house
  + chargers − PV − the battery's power.

The physics is coupled: car A charges in the fake API exactly as fast as TWC A lets it (the slave simulator's car
draw, which follows the TWC's offer with a lag), and only while the car itself is set to charge (a `charge_stop`
through the API stops the draw on the TWC too); car B draws what it was last commanded (`set_charging_amps`).
The grid reading is the physical truth of the simulators, as a real meter would measure it — not a sum of the
reported EvseStates, which would count the merged car twice and lag behind.

Time: one `SystemClock(time_scale)` drives the TWC slaves, the cars, TeslaMate and the house. `day_factor` makes the
sun move that many times faster than the clock, so a simulated day takes a minute or two while the RS-485 bus and
the services run at a scale they can keep up with on a busy machine (a Gen2 slave is dropped after 26 s without a
heartbeat; at a clock scale of 600 that would be 43 ms).

    async with World(broker_url, "chargebus", workdir, time_scale=20, day_factor=30) as world:
        config = world.write_config(workdir / "chargebus.toml")
        ...  # start the services with CHARGEBUS_TIME_SCALE=20 and --config config
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiomqtt
from chargebus.broker import free_port
from chargebus.clock import SystemClock, iso_utc

from chargebus_sim.fleet_api import FakeCar, FakeFleetApi
from chargebus_sim.house import HomeBattery, House
from chargebus_sim.teslamate import CADENCE_S, TeslaMateSim
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_sim.world_config import HOME_LAT, HOME_LON, CarEntry, Scalar, StackAddresses, stack_toml

log = logging.getLogger("chargebus.sim.world")

VIN_A = "5YJ3E1EA8KF000001"
VIN_B = "5YJYGDEE0MF000002"
TWC_A = 0x4A1B
TWC_B = 0x5C2D
VOLTAGE_V = 230
#: A mobile connector on a 230 V outlet circuit: 16 A at most.
MOBILE_CONNECTOR_A = 16
#: Real seconds between two physics steps (coupling, energy, meter publication check).
TICK_S = 0.05
SECONDS_PER_DAY = 86_400.0
#: Real seconds between two checks whether a TeslaMate summary is due.
TESLAMATE_TICK_S = 0.1
#: Real seconds `stop()` waits for a task before cancelling it, and again after.
STOP_TIMEOUT_S = 2.0


def evse_id(twc_id: int) -> str:
    return f"twc-{twc_id:04x}"


@dataclass
class TwcCar(FakeCar):
    """A fake Fleet API car plugged into a Gen2 TWC: it draws what the TWC lets it, not what it was told."""

    #: The car's draw on the TWC's cable (amps), set by the world from the slave simulator each tick.
    pilot_draw_a: float = 0.0

    @property
    def actual_current_a(self) -> int:
        return round(self.pilot_draw_a) if self.charging else 0


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One physics step as the house meter saw it (simulated epoch seconds, hour of the simulated day, W)."""

    at: float
    hour: float
    pv_w: float
    house_w: float
    grid_w: float
    chargers_w: Mapping[str, float]
    battery_w: float = 0.0  # + discharging, − charging


@dataclass
class World:
    """Start with `async with` (or `start()`/`stop()`); then `write_config()` for the services."""

    mqtt_url: str
    prefix: str
    workdir: Path
    time_scale: float = 20.0
    day_factor: float = 1.0
    start_hour: float = 8.0
    house: House = field(default_factory=House)
    #: A home battery, or None; `write_config` then names its meter `battery` for the allocator.
    battery: HomeBattery | None = None
    #: What `<p>/allocator/battery_hold` said last (the battery does not discharge while it is true).
    battery_hold: bool = False
    #: Simulated seconds between two publications of pv/house/grid.
    power_period_s: float = 5.0
    teslamate_prefix: str = "teslamate"
    teslamate_cadence: Mapping[str, float | None] = field(default_factory=lambda: dict(CADENCE_S))
    twc_b_car: bool = False
    #: Simulated seconds a car stays awake without activity (Tesla: about 15 min).
    car_sleep_after_s: float = 900.0
    mqtt_protocol: str = "auto"
    #: The ocpp-bridge's address in this world (no wallbox connects yet): loopback, a free port.
    ocpp_listen: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")

    clock: SystemClock = field(init=False)
    twc: TwcSlaveSim = field(init=False)
    api: FakeFleetApi = field(init=False)
    teslamate: TeslaMateSim | None = field(init=False, default=None)
    samples: deque[PowerSample] = field(init=False, default_factory=lambda: deque(maxlen=200_000))
    _origin: float = field(init=False, default=0.0)
    _client: aiomqtt.Client | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _last_power_at: float | None = field(init=False, default=None)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    #: What failed to publish and is not back yet (logged once per outage, not at every tick).
    _failing: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.clock = SystemClock(self.time_scale)
        self._origin = self.clock.time()
        self.twc = TwcSlaveSim(self._slave_specs(), clock=self.clock)
        self.api = FakeFleetApi(clock=self.clock.time)
        self._add_cars()

    # ----- the scenery ---------------------------------------------------------------------------------------------

    def _slave_specs(self) -> list[SlaveSpec]:
        volts = (VOLTAGE_V, 0, 0)
        slave_a = SlaveSpec(TWC_A, plugged_in=True, vin=VIN_A, car_max_amps=0.0, voltages=volts)
        slave_b = SlaveSpec(TWC_B, voltages=volts)
        if self.twc_b_car:
            slave_b = SlaveSpec(
                TWC_B, plugged_in=True, car_max_amps=MOBILE_CONNECTOR_A, answers_vin=False, voltages=volts
            )
        return [slave_a, slave_b]

    def _add_cars(self) -> None:
        now = self.clock.time()
        common: dict[str, Any] = {
            "state": "online",
            "charging_state": "Stopped",
            "voltage_v": VOLTAGE_V,
            "latitude": HOME_LAT,
            "longitude": HOME_LON,
            "sleep_after_idle_s": self.car_sleep_after_s,
        }
        car_a = TwcCar(
            vin=VIN_A,
            vehicle_id=100_000,
            display_name="Model 3",
            charge_amps=32,
            charge_current_request_max=32,
            battery_level=30.0,
            charge_limit_soc=90,
            **common,
        )
        car_a.last_activity_at = car_a.integrated_at = now
        self.api.cars[VIN_A] = car_a
        self.api.add_car(
            VIN_B,
            display_name="Model Y",
            charge_amps=MOBILE_CONNECTOR_A,
            charge_current_request_max=MOBILE_CONNECTOR_A,
            battery_level=40.0,
            charge_limit_soc=90,
            **common,
        )

    def cars(self) -> list[CarEntry]:
        """The `[[tesla.vehicles]]` of this world: car A (priority 10) on TWC A, car B (priority 0) on the garage
        circuit through its mobile connector."""
        return [
            CarEntry(VIN_A, "Model 3", 1, priority=10),
            CarEntry(VIN_B, "Model Y", 2, priority=0, circuit="garage"),
        ]

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.twc.start()
        await self.api.start()
        try:
            parts = urlsplit(self.mqtt_url)
            self._client = aiomqtt.Client(
                parts.hostname or "127.0.0.1",
                parts.port or 1883,
                identifier=f"chargebus-sim-house-{id(self):x}",
                socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            )
            await self._client.__aenter__()
            self.teslamate = TeslaMateSim(
                self.mqtt_url, self.teslamate_prefix, clock=self.clock.time, cadence=self.teslamate_cadence
            )
            await self.teslamate.__aenter__()
            for car_id, vin in ((1, VIN_A), (2, VIN_B)):
                await self.teslamate.start_car(car_id)
                self.teslamate.follow(car_id, self.api, vin)
        except BaseException:
            await self.stop()
            raise
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._physics_forever(), name="world-physics"),
            asyncio.create_task(self._teslamate_forever(), name="world-teslamate"),
        ]
        if self.battery is not None:
            self._tasks.append(asyncio.create_task(self._hold_forever(), name="world-battery-hold"))
        log.info(f"event=world_started twc_port={self.twc.port} api={self.api.url} proxy={self.api.proxy_url}")

    async def stop(self) -> None:
        """Stop every task, close the MQTT clients, the HTTP servers and the pty (idempotent)."""
        # The loops end at the next tick; cancelling alone is not enough, as a client library may swallow it.
        self._stopping.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
        self._tasks = []
        if self.teslamate is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(self.teslamate.__aexit__(None, None, None), STOP_TIMEOUT_S)
            self.teslamate = None
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(self._client.__aexit__(None, None, None), STOP_TIMEOUT_S)
            self._client = None
        await self.api.stop()
        await self.twc.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ----- configuration -------------------------------------------------------------------------------------------

    def addresses(self) -> StackAddresses:
        state_dir = self.workdir / "state"
        return StackAddresses(
            mqtt_url=self.mqtt_url,
            prefix=self.prefix,
            state_dir=state_dir,
            twc_port=self.twc.port,
            api_base=self.api.url,
            command_base=self.api.proxy_url,
            token_url=self.api.token_url,
            client_id=self.api.client_id,
            token_file=state_dir / "tesla-token.json",
            teslamate_prefix=self.teslamate_prefix,
            history_db=(self.workdir / "history.sqlite").absolute(),
            mqtt_protocol=self.mqtt_protocol,
            ocpp_listen=self.ocpp_listen,
        )

    def write_config(
        self,
        path: Path,
        *,
        ha_discovery: bool = True,
        circuit_a: float = 40.0,
        allocator: Mapping[str, Scalar] | None = None,
        tesla: Mapping[str, Scalar] | None = None,
        twc: Mapping[str, Scalar] | None = None,
        history: Mapping[str, Scalar] | None = None,
    ) -> Path:
        """Write `chargebus.toml` for the four services and seed the Tesla token file (valid for a year).

        Both TWCs and car B's mobile connector sit on one single-phase circuit `garage` of `circuit_a` amps."""
        where = self.addresses()
        where.state_dir.mkdir(parents=True, exist_ok=True)
        tokens = self.api.token_file_content(expires_at=self.clock.time() + 365 * SECONDS_PER_DAY)
        where.token_file.write_text(json.dumps(tokens), encoding="utf-8")
        where.token_file.chmod(0o600)
        if self.battery is not None:
            allocator = {"battery_meter": "battery", **(allocator or {})}
        text = stack_toml(
            where,
            cars=self.cars(),
            twc_ids=[f"{slave:04x}" for slave in (TWC_A, TWC_B)],
            ha_discovery=ha_discovery,
            circuit_a=circuit_a,
            allocator=allocator,
            tesla=tesla,
            twc=twc,
            history=history,
        )
        path.write_text(text, encoding="utf-8")
        return path

    # ----- time and physics ----------------------------------------------------------------------------------------

    def hour_of_day(self, at: float | None = None) -> float:
        """The hour of the simulated day (the sun's clock): `start_hour` at start, `day_factor` times faster."""
        now = self.clock.time() if at is None else at
        return (self.start_hour + (now - self._origin) * self.day_factor / 3600.0) % 24.0

    def sun_time_to_clock(self, hour: float) -> float:
        """Simulated epoch seconds (the services' clock) when the sun's clock first shows `hour` after the start."""
        hours_ahead = (hour - self.start_hour) % 24.0
        return self._origin + hours_ahead * 3600.0 / self.day_factor

    def real_seconds_until(self, hour: float) -> float:
        """Real seconds from now until the sun's clock shows `hour` (0 when it is past)."""
        return max(0.0, (self.sun_time_to_clock(hour) - self.clock.time()) / self.time_scale)

    def chargers_w(self) -> dict[str, float]:
        """What every charger really draws now (W): the TWCs from the slave simulator, car B from the fake API."""
        now = self.clock.monotonic()
        draws = {
            evse_id(slave_id): self.twc.slave(slave_id).draw_amps(now) * sum(self.twc.slave(slave_id).spec.voltages)
            for slave_id in (TWC_A, TWC_B)
        }
        draws[f"car-{VIN_B}"] = self.api.car(VIN_B).power_w
        return draws

    def couple(self) -> None:
        """Car A ↔ TWC A: the car takes at most its own charge-amps setting while it is set to charge, and the fake
        API reports what the TWC's car really draws."""
        car = self.api.car(VIN_A)
        slave = self.twc.slave(TWC_A)
        wants = float(min(car.charge_amps, car.charge_current_request_max)) if car.charging else 0.0
        if slave.spec.car_max_amps != wants:
            slave.spec.car_max_amps = wants
            slave.retarget(self.clock.monotonic())
        if isinstance(car, TwcCar):
            car.pilot_draw_a = slave.draw_amps(self.clock.monotonic()) if slave.plugged_in else 0.0

    def sample(self) -> PowerSample:
        now = self.clock.time()
        hour = self.hour_of_day(now)
        chargers = self.chargers_w()
        pv = self.house.pv_w(hour)
        house = self.house.house_w(hour)
        net = house + sum(chargers.values()) - pv
        battery_w = 0.0
        if self.battery is not None:
            previous = self.samples[-1].at if self.samples else now - self.power_period_s
            battery_w = self.battery.step(net, max(0.0, now - previous), hold=self.battery_hold)
        return PowerSample(now, hour, pv, house, round(net - battery_w, 1), chargers, battery_w)

    async def publish_power(self, sample: PowerSample) -> None:
        if self._client is None:
            return
        stamp = iso_utc(sample.at)
        for name, watts in (("pv", sample.pv_w), ("house", sample.house_w), ("grid", sample.grid_w)):
            reading = {"v": 1, "power_w": watts, "ts": stamp}
            await self._client.publish(f"{self.prefix}/power/{name}", json.dumps(reading), qos=1, retain=True)
        if self.battery is not None:
            reading = {"v": 1, "power_w": sample.battery_w, "soc_pct": round(self.battery.soc_pct, 2), "ts": stamp}
            await self._client.publish(f"{self.prefix}/power/battery", json.dumps(reading), qos=1, retain=True)

    def _failed(self, what: str, exc: Exception) -> None:
        if what not in self._failing and not self._stopping.is_set():
            self._failing.add(what)
            log.warning(f"event=publish_failed what={what} error={exc!r}")

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info(f"event=publish_recovered what={what}")

    async def _tick(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _physics_forever(self) -> None:
        while not self._stopping.is_set():
            self.couple()
            now = self.clock.time()
            if self._last_power_at is None or now - self._last_power_at >= self.power_period_s:
                self._last_power_at = now
                sample = self.sample()
                self.samples.append(sample)
                try:
                    await self.publish_power(sample)
                except aiomqtt.MqttError as exc:
                    self._failed("power", exc)
                else:
                    self._recovered("power")
            await self._tick(TICK_S)

    async def _hold_forever(self) -> None:
        """Apply `battery_hold` to the battery, as the user's automation would."""
        parts = urlsplit(self.mqtt_url)
        topic = f"{self.prefix}/allocator/battery_hold"
        try:
            async with aiomqtt.Client(
                parts.hostname or "127.0.0.1", parts.port or 1883, identifier=f"chargebus-sim-battery-{id(self):x}"
            ) as client:
                await client.subscribe(topic, qos=1)
                reader = asyncio.ensure_future(self._read_hold(client))
                try:
                    await self._stopping.wait()
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await reader
        except aiomqtt.MqttError as exc:
            self._failed("battery_hold", exc)

    async def _read_hold(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.battery_hold = message.payload == b"true"

    async def _teslamate_forever(self) -> None:
        while not self._stopping.is_set():
            if self.teslamate is not None:
                try:
                    await self.teslamate.tick()
                except aiomqtt.MqttError as exc:
                    self._failed("teslamate", exc)
                else:
                    self._recovered("teslamate")
            await self._tick(TESLAMATE_TICK_S)
