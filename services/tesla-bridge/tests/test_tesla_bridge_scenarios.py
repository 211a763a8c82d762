"""Ten acceptance scenarios for the tesla-bridge and the issue's cost rules, end to end in one process.

Real mosquitto, the fake Fleet API over real HTTP, the TeslaMate simulator publishing over MQTT, and the bridge's
real `Service`; only time is simulated: a FakeClock shared by the bridge, the fake API and the TeslaMate sim. The
harness steps the cars the way their loops would (`TeslaBridge.step_all()` returns when to run next) and lets
TeslaMate publish at its cadence, waiting until the bridge has received each message, so a simulated day takes
about a second and the outcome is deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiomqtt
import pytest
from chargebus.broker import mosquitto_binary, mosquitto_broker
from chargebus.clock import FakeClock, iso_utc
from chargebus.config import HomeLocation, MqttConfig, TeslaBridgeConfig, TeslaConfig, TeslaVehicleConfig
from chargebus.mqtt import Service
from chargebus.schema import EvseState, Usage, VehicleState, parse_payload
from chargebus_sim.fleet_api import FakeFleetApi, RecordedCall
from chargebus_sim.house import House
from chargebus_sim.teslamate import CADENCE_S, TeslaMateSim
from chargebus_tesla.bridge import TeslaBridge
from chargebus_tesla.poll_policy import (
    ASLEEP_STATE_POLL_S,
    CONTROLLED_CHARGING_MAX_S,
    QUIET_S,
    WAKE_MIN_INTERVAL_S,
    utc_day_start,
)
from chargebus_tesla.service import setup
from chargebus_tesla.vehicle_data import CarReport

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder

VIN = "5YJ3E1EA8KF000001"
HOUR = 3600.0
DAY = 86_400.0
START = utc_day_start(1_800_000_000.0) + 6 * HOUR  # 06:00 UTC: a whole simulated day fits before midnight
TOKEN_TAG = "-Zq7sEcReT9x"  # makes every issued token unmistakable in a scan
#: TeslaMate's summaries every 5 simulated minutes instead of 30 s while asleep: the same freshness, fewer messages.
TEST_CADENCE = {**CADENCE_S, "asleep": 300.0, "offline": 300.0, "online": 60.0, "charging": 60.0}
#: The fake BLE proxy's 3 s per request take 3 ms of real time (the bridge's clock stands still meanwhile).
BLE_TIME_SCALE = 1000.0


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHARGEBUS_MQTT_URL", "CHARGEBUS_TOPIC_PREFIX", "CHARGEBUS_CONFIG", "CHARGEBUS_TIME_SCALE"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Harness:
    clock: FakeClock
    api: FakeFleetApi
    config: TeslaBridgeConfig
    bridge: TeslaBridge
    service: Service
    bus: Recorder
    tm: TeslaMateSim
    prefix: str
    teslamate_on: bool
    steps: int = 0
    extra_ticks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    # -- topics ------------------------------------------------------------------------------------------------

    @property
    def evse_topic(self) -> str:
        return f"{self.prefix}/evse/car-{VIN}/state"

    @property
    def vehicle_topic(self) -> str:
        return f"{self.prefix}/vehicle/{VIN}/state"

    @property
    def setpoint_topic(self) -> str:
        return f"{self.prefix}/evse/car-{VIN}/setpoint"

    @property
    def error_topic(self) -> str:
        return f"{self.prefix}/tesla-bridge/error"

    # -- time --------------------------------------------------------------------------------------------------

    async def settle_teslamate(self) -> None:
        """Wait until the bridge has received everything the TeslaMate sim published."""
        car = self.bridge.cars[VIN]
        if car.teslamate is None:
            return
        teslamate = car.teslamate
        for _ in range(5000):
            if teslamate.messages >= self.tm.published:
                return
            await asyncio.sleep(0.001)
        pytest.fail(f"bridge got {teslamate.messages} of {self.tm.published} TeslaMate messages")

    async def run_for(self, seconds: float, *, max_step: float = 600.0) -> None:
        """Let `seconds` of simulated time pass: the cars step when they asked to, TeslaMate at its cadence."""
        end = self.clock.time() + seconds
        for _ in range(200_000):
            now = self.clock.time()
            if self.teslamate_on:
                await self.tm.tick()
                await self.settle_teslamate()
            for tick in self.extra_ticks:
                await tick()
            next_at = await self.bridge.step_all()
            self.steps += 1
            now = self.clock.time()
            if now >= end:
                return
            target = min(next_at, end, now + max_step)
            if self.teslamate_on and self.tm.car(1).followed is not None:
                tm_next = self.tm.next_at(1)
                if tm_next is not None:
                    target = min(target, max(tm_next, now))
            if target > now:
                self.clock.advance(target - now)
        pytest.fail("the simulation did not advance")

    # -- inputs ------------------------------------------------------------------------------------------------

    async def setpoint(
        self,
        power_w: float | None,
        *,
        charge: bool | None,
        ttl_s: float = 600.0,
        voltage_v: float = 230,
        publisher: aiomqtt.Client | None = None,
    ) -> None:
        car = self.bridge.cars[VIN]
        before = car.setpoints_received
        payload = {
            "v": 1,
            "evse_id": f"car-{VIN}",
            "power_w": power_w,
            "charge": charge,
            "phases": 1,
            "voltage_v": voltage_v,
            "expires_at": iso_utc(self.clock.time() + ttl_s),
            "reason": "test",
        }
        if publisher is None:
            await self.bus.publish(self.setpoint_topic, json.dumps(payload), retain=True)
        else:
            await publisher.publish(self.setpoint_topic, json.dumps(payload), qos=1, retain=True)
        # Polled every millisecond (the recorder's wait_for wakes on its own messages only, else every 0.1 s).
        deadline = asyncio.get_running_loop().time() + 10.0
        while car.setpoints_received <= before:
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail("the bridge did not take the setpoint within 10 s")
            await asyncio.sleep(0.001)

    async def command(self, topic: str, payload: str) -> None:
        await self.bus.publish(f"{self.prefix}/{topic}", payload)

    # -- outputs -----------------------------------------------------------------------------------------------

    def calls(self, category: str | None = None, *, path_end: str | None = None) -> list[RecordedCall]:
        return [
            call
            for call in self.api.calls
            if (category is None or call.category == category) and (path_end is None or call.path.endswith(path_end))
        ]

    def billed(self) -> list[RecordedCall]:
        """Requests that reached "Tesla" (not the BLE proxy), token requests aside."""
        return self.api.billed()

    def ble_calls(self, category: str | None = None) -> list[RecordedCall]:
        return [c for c in self.api.calls if c.host == "ble" and (category is None or c.category == category)]

    def usage(self) -> Usage:
        return parse_payload(Usage, self.bus.last(f"{self.prefix}/tesla-bridge/usage").payload)  # type: ignore[union-attr]

    async def evse(self, predicate: Callable[[EvseState], bool] = lambda _e: True, what: str = "state") -> EvseState:
        def found() -> EvseState | None:
            last = self.bus.last(self.evse_topic)
            state = parse_payload(EvseState, last.payload) if last is not None else None
            return state if state is not None and predicate(state) else None

        result: EvseState = await self.bus.wait_for(found, what=f"EvseState {what}")
        return result

    async def vehicle(
        self, predicate: Callable[[VehicleState], bool] = lambda _v: True, what: str = "state"
    ) -> VehicleState:
        def found() -> VehicleState | None:
            last = self.bus.last(self.vehicle_topic)
            state = parse_payload(VehicleState, last.payload) if last is not None else None
            return state if state is not None and predicate(state) else None

        result: VehicleState = await self.bus.wait_for(found, what=f"VehicleState {what}")
        return result

    def errors(self) -> list[dict[str, Any]]:
        return [message.json() for message in self.bus.on(self.error_topic)]


def config_for(
    broker_url: str,
    prefix: str,
    state_dir: Path,
    api: FakeFleetApi,
    *,
    teslamate: bool,
    tesla: dict[str, Any] | None = None,
    car: dict[str, Any] | None = None,
) -> TeslaBridgeConfig:
    vehicle: dict[str, Any] = {
        "vin": VIN,
        "name": "Model 3",
        "teslamate_car_id": 1,
        "home": HomeLocation(lat=52.52, lon=13.40, radius_m=150),
        "phases": 1,
        "voltage_v": 230,
    }
    settings: dict[str, Any] = {
        "api_base": api.url,
        "command_base": api.proxy_url,
        "token_url": api.token_url,
        "client_id": api.client_id,
        "token_file": state_dir / "tesla-token.json",
        "teslamate_prefix": f"{prefix}/teslamate" if teslamate else "",
    }
    return TeslaBridgeConfig(
        state_dir=state_dir,
        mqtt=MqttConfig(url=broker_url, prefix=prefix),
        tesla=TeslaConfig(**(settings | (tesla or {})), vehicles=[TeslaVehicleConfig(**(vehicle | (car or {})))]),
    )


def nodelay_client(url: str) -> aiomqtt.Client:
    """An MQTT client with TCP_NODELAY, for tests that publish a message a simulated minute: with Nagle on, each
    publish waits for the broker's delayed ACK of the previous one (~40 ms)."""
    parts = urlsplit(url)
    return aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )


class NoDelayService(Service):
    """The runtime with TCP_NODELAY, for the same reason as `fast_broker` on the other side of the socket: a
    publish right after our PUBACK would wait for the broker's delayed ACK. Behaviour is otherwise identical."""

    def _client_kwargs(self) -> dict[str, Any]:
        return super()._client_kwargs() | {"socket_options": ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)}


@asynccontextmanager
async def running_bridge(config: TeslaBridgeConfig, clock: FakeClock) -> AsyncIterator[tuple[TeslaBridge, Service]]:
    service = NoDelayService("tesla-bridge", config.mqtt, clock=clock)
    bridge = await setup(service, config, run_loops=False)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield bridge, service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)
        await bridge.client.aclose()


HarnessFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def fast_broker(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """A mosquitto of this module's own with `set_tcp_nodelay`: these tests exchange thousands of small messages
    in lockstep, and with Nagle on the broker's side every message that follows one of our publishes waits for a
    delayed TCP ACK (~40 ms), turning a simulated day into many real seconds. Otherwise the session's broker."""
    if mosquitto_binary() is None:
        broker: BrokerUnderTest = request.getfixturevalue("mqtt_broker")
        yield broker.url
        return
    process = mosquitto_broker(tmp_path_factory.mktemp("fast-broker"), extra_config="set_tcp_nodelay true\n")
    process.start()
    yield process.url
    process.stop()


@pytest.fixture
def make_harness(fast_broker: str, prefix: str, tmp_path: Path) -> Callable[..., Any]:
    """`async with make_harness(teslamate=True, car_state={...}, tesla={...}) as h:`."""

    @asynccontextmanager
    async def factory(
        *,
        teslamate: bool,
        car_state: dict[str, Any] | None = None,
        tesla: dict[str, Any] | None = None,
        car: dict[str, Any] | None = None,
        seed_teslamate: dict[str, Any] | None = None,
        follow: bool = True,
        ble: bool = False,
    ) -> AsyncIterator[Harness]:
        clock = FakeClock(START)
        state_dir = tmp_path / "state"
        state_dir.mkdir(exist_ok=True)
        fake = FakeFleetApi(clock=clock.time, token_tag=TOKEN_TAG, ble_proxy=ble, ble_time_scale=BLE_TIME_SCALE)
        async with fake as api:
            api.add_car(VIN, **(car_state or {}))
            token_file = state_dir / "tesla-token.json"
            token_file.write_text(json.dumps(api.token_file_content()))
            if ble:
                car = {"transport": "ble_proxy", "ble_proxy_url": api.ble_url} | (car or {})
            config = config_for(fast_broker, prefix, state_dir, api, teslamate=teslamate, tesla=tesla, car=car)
            tm = TeslaMateSim(fast_broker, f"{prefix}/teslamate", clock=clock.time, cadence=TEST_CADENCE)
            async with (
                Recorder(fast_broker, [f"{prefix}/#", "homeassistant/#"]) as bus,
                tm,
                running_bridge(config, clock) as (bridge, service),
            ):
                harness = Harness(clock, api, config, bridge, service, bus, tm, prefix, teslamate)
                if teslamate:
                    await tm.start_car(1)
                    if seed_teslamate:
                        await tm.set_values(1, **seed_teslamate)
                    if follow:
                        tm.follow(1, api, VIN)
                    await harness.settle_teslamate()
                yield harness

    return factory


#: What TeslaMate keeps retained from before the car fell asleep: plugged in at home, not charging.
PARKED_AT_HOME = {
    "plugged_in": True,
    "charging_state": "Stopped",
    "battery_level": 55,
    "charge_limit_soc": 80,
    "charge_current_request": 16,
    "charge_current_request_max": 32,
    "geofence": "🏡 Home",
    "location": {"latitude": 52.52, "longitude": 13.40},
}


# -- 1. asleep with TeslaMate: zero calls ----------------------------------------------------------------------------


async def test_asleep_car_with_teslamate_costs_nothing_for_a_whole_day(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, seed_teslamate=PARKED_AT_HOME) as h:
        await h.run_for(DAY - 7 * HOUR)  # until 23:00 UTC, one usage day
        assert h.api.calls == []  # no list, vehicle, data, wake, command nor token request
        assert h.api.car(VIN).state == "asleep"
        evse = await h.evse(lambda e: e.source == "teslamate" and e.state_code == "Stopped")
        assert evse.online  # asleep but wakeable: the allocator may still ask it to charge
        assert not evse.stale
        vehicle = await h.vehicle(lambda v: v.online_state == "asleep")
        assert vehicle.source == "teslamate"
        assert vehicle.at_home is True
        assert vehicle.plugged_in is True
        assert h.bus.last(f"{h.prefix}/tesla-bridge/status").text == "online"
        usage = parse_payload(Usage, h.bus.last(f"{h.prefix}/tesla-bridge/usage").payload)
        assert [(c.vin, c.data, c.command, c.wake, c.billed_usd) for c in usage.cars] == [(VIN, 0, 0, 0, 0.0)]
        assert h.errors() == []


# -- 9. asleep without TeslaMate: bounded, and the car still sleeps -------------------------------------------------


async def test_without_teslamate_calls_are_bounded_and_the_car_falls_asleep(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "online"}) as h:
        await h.run_for(17 * HOUR)
        car = h.api.car(VIN)
        assert car.state == "asleep"  # our polls never reset its sleep timer
        data_calls = h.calls("data")
        assert len(data_calls) <= 2  # one look after it came online (+ at most one after the quiet period)
        state_calls = h.calls("state")
        assert len(state_calls) <= 17 * HOUR / ASLEEP_STATE_POLL_S + 2
        assert h.calls("wake") == []
        assert h.calls("command") == []
        last_data = data_calls[-1].at
        fell_asleep_by = last_data + car.sleep_after_idle_s
        assert all(call.category == "state" for call in h.billed() if call.at > last_data)
        assert fell_asleep_by - START < HOUR
        await h.vehicle(lambda v: v.online_state == "asleep" and v.source == "fleet_api")
        usage = parse_payload(Usage, h.bus.last(f"{h.prefix}/tesla-bridge/usage").payload)
        assert usage.cars[0].data == len(h.billed())
        assert usage.cars[0].billed_usd == pytest.approx(0.002 * len(h.billed()))


async def test_idle_car_gets_a_quiet_period_then_charging_resumes_polling(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "online"}) as h:
        await h.run_for(2 * HOUR)
        data_calls = h.calls("data")
        assert len(data_calls) == 1
        # No vehicle_data for at least the quiet period after the look, only the non-waking state call.
        quiet = [c for c in h.api.calls if data_calls[0].at < c.at < data_calls[0].at + QUIET_S]
        assert {c.category for c in quiet} <= {"state"}
        await h.vehicle(lambda v: v.online_state == "asleep")
        # The car wakes by itself and starts charging (a plug-in with a schedule): polling resumes.
        car = h.api.car(VIN)
        car.state, car.charging_state, car.last_activity_at = "online", "Charging", h.clock.time()
        before = len(h.calls("data"))
        await h.run_for(HOUR)
        assert len(h.calls("data")) > before
        vehicle = await h.vehicle(lambda v: v.charging_state == "Charging")
        assert vehicle.online_state == "online"


# -- 2. charging data comes from TeslaMate only ------------------------------------------------------------------------


async def test_charging_data_from_teslamate_only_and_empty_is_null(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, follow=False) as h:
        await h.tm.summary(
            1,
            state="charging",
            charging_state="Charging",
            plugged_in=True,
            charger_actual_current=16,
            charger_phases=3,
            charger_voltage=230,
            charger_power=11,
            geofence="Home",
            location={"latitude": 52.52, "longitude": 13.40},
        )
        await h.settle_teslamate()
        await h.run_for(600, max_step=60)
        vehicle = await h.vehicle(lambda v: v.charger_power_w == 11_000)
        assert (vehicle.charger_actual_current_a, vehicle.charger_phases, vehicle.charger_voltage_v) == (16, 3, 230)
        evse = await h.evse(lambda e: e.charging is True)
        assert (evse.phases, evse.voltage_v, evse.power_w) == (3, 230, 16 * 3 * 230)
        await h.tm.summary(1, charger_power=None)  # TeslaMate's "" for null
        await h.settle_teslamate()
        await h.run_for(120, max_step=60)
        await h.vehicle(lambda v: v.charger_power_w is None)
        assert h.calls("data") == []
        assert h.api.calls == []


# -- 10. TeslaMate goes stale and comes back --------------------------------------------------------------------------


async def test_stale_teslamate_falls_back_to_the_state_call_and_stops_when_it_returns(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(teslamate=True, follow=False) as h:
        await h.tm.summary(1, state="charging", charging_state="Charging", plugged_in=True, geofence="Home")
        await h.settle_teslamate()
        await h.run_for(600, max_step=60)
        assert h.api.calls == []
        # TeslaMate falls silent (no heartbeat, no values) beyond teslamate_stale_s (900 s).
        await h.run_for(900 + 120, max_step=60)
        first = h.billed()
        assert first, "the bridge should fall back to the API"
        assert first[0].category == "state"  # the non-waking call first
        await h.evse(lambda e: e.source == "fleet_api")
        # TeslaMate is back: the bridge stops calling within one cycle.
        await h.tm.summary(1, state="asleep")
        await h.settle_teslamate()
        await h.run_for(60, max_step=60)
        count = len(h.billed())
        for _ in range(20):
            await h.tm.heartbeat(1)
            await h.settle_teslamate()
            await h.run_for(300, max_step=60)
        assert len(h.billed()) == count
        await h.evse(lambda e: e.source == "teslamate")


async def test_no_staleness_while_teslamate_is_suspended(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, follow=False) as h:
        await h.tm.summary(1, state="suspended", plugged_in=True, charging_state="Stopped", geofence="Home")
        await h.settle_teslamate()
        await h.run_for(20 * 60, max_step=60)  # TeslaMate is silent for its whole suspend period
        assert h.api.calls == []


# -- 3. amps: below 5 A twice, one call otherwise, 0 A is a stop, clamped at the car's maximum ----------------------


async def test_amps_commands_and_the_low_amps_quirk(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_current_request_max": 16}
    async with make_harness(
        teslamate=True, car_state=car_state, tesla={"min_amps": 2, "command_min_interval_s": 60}
    ) as h:
        await h.run_for(60, max_step=30)
        await h.setpoint(3 * 230, charge=True)
        await h.run_for(30, max_step=10)
        amps_calls = h.calls("command", path_end="set_charging_amps")
        assert [c.body for c in amps_calls] == [{"charging_amps": 3}, {"charging_amps": 3}]
        assert 4 <= amps_calls[1].at - amps_calls[0].at <= 10
        assert h.api.car(VIN).charge_amps == 3  # the repeat was taken
        await h.run_for(120, max_step=30)
        await h.setpoint(10 * 230, charge=True)
        await h.run_for(30, max_step=10)
        assert [c.body for c in h.calls("command", path_end="set_charging_amps")][2:] == [{"charging_amps": 10}]
        await h.run_for(120, max_step=30)
        await h.setpoint(40 * 230, charge=True)  # above the car's 16 A maximum: clamped, one call
        await h.run_for(30, max_step=10)
        assert [c.body for c in h.calls("command", path_end="set_charging_amps")][3:] == [{"charging_amps": 16}]
        await h.setpoint(0, charge=True)  # 0 W: a stop, never set_charging_amps 0
        await h.run_for(30, max_step=10)
        assert len(h.calls("command", path_end="set_charging_amps")) == 4
        assert len(h.calls("command", path_end="charge_stop")) == 1
        assert h.api.car(VIN).charging_state == "Stopped"
        assert h.calls("data") == []  # TeslaMate told us everything


async def test_twenty_setpoint_changes_in_a_minute_make_at_most_one_amps_call(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_amps": 16}
    async with make_harness(teslamate=True, car_state=car_state, tesla={"command_min_interval_s": 60}) as h:
        await h.setpoint(16 * 230, charge=True)
        await h.run_for(120, max_step=30)
        assert h.calls("command") == []  # already at 16 A and charging: nothing to send
        start = h.clock.time()
        for amps in [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 6, 7, 8, 9, 10, 11, 12, 13, 14, 12]:
            await h.setpoint(amps * 230, charge=True)
            await h.run_for(2.9, max_step=1)
        assert h.clock.time() - start < 60
        in_minute = [c for c in h.calls("command") if c.at < start + 60]
        assert len(in_minute) <= 1
        await h.run_for(90, max_step=10)
        amps_calls = h.calls("command", path_end="set_charging_amps")
        assert amps_calls[-1].body == {"charging_amps": 12}  # the burst collapsed into the latest value
        assert len(amps_calls) <= 2
        assert all(b.at - a.at >= 60 for a, b in itertools.pairwise(amps_calls))


# -- 4. 429 ---------------------------------------------------------------------------------------------------------


async def test_429_is_honoured_reported_and_survives_a_restart(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Stopped"}
    async with make_harness(teslamate=True, car_state=car_state) as h:
        await h.run_for(60, max_step=30)
        h.api.fail_next(429, category="command", retry_after="30")
        await h.setpoint(10 * 230, charge=True)
        await h.run_for(1, max_step=1)
        limited_at = h.calls()[-1].at
        assert h.calls()[-1].status == 429
        await h.run_for(29, max_step=1)
        assert h.calls()[-1].at == limited_at  # nothing at all before Retry-After
        await h.run_for(60, max_step=1)
        after = [c for c in h.api.calls if c.at > limited_at]
        assert after, "the command is retried after Retry-After"
        assert after[0].at - limited_at >= 30
        assert all(c.status == 200 for c in after)
        assert h.api.car(VIN).charging_state == "Charging"
        error = await h.bus.wait_message(h.error_topic, lambda m: "rate limited" in m.json()["error"])
        assert "in 30 s" in error.json()["error"]
        # Without a Retry-After header: the default 300 s, persisted for the next process.
        h.api.fail_next(429, category="command")
        await h.setpoint(0, charge=False)
        await h.run_for(1, max_step=1)
        assert h.calls()[-1].status == 429
        blocked_at = h.clock.time()
    state_dir = h.config.state_dir
    stored = json.loads((state_dir / "tesla-rate-limit.json").read_text())
    assert stored["blocked_until"] >= blocked_at + 299 - 1


async def test_rate_limit_deadline_is_kept_across_restarts(make_harness: HarnessFactory, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "tesla-rate-limit.json").write_text(json.dumps({"blocked_until": START + 2 * HOUR}))
    async with make_harness(teslamate=False, car_state={"state": "asleep"}) as h:
        await h.run_for(2 * HOUR - 60, max_step=300)
        assert h.api.calls == []
        await h.evse(lambda e: "rate limited" in (e.status_text or ""))
        await h.run_for(600, max_step=60)
        assert h.calls("state")
        usage = parse_payload(Usage, h.bus.last(f"{h.prefix}/tesla-bridge/usage").payload)
        assert usage.rate_limited_until is None


# -- 5. 401: one refresh, one retry; refused refresh stops all calls ------------------------------------------------


async def test_401_refreshes_once_and_a_refused_refresh_stops_all_calls(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "asleep"}) as h:
        await h.run_for(60, max_step=30)
        h.api.expire_access_token()
        await h.run_for(ASLEEP_STATE_POLL_S, max_step=60)
        tokens = h.calls("token")
        assert len(tokens) == 1
        assert tokens[0].body["grant_type"] == "refresh_token"
        assert tokens[0].body["refresh_token"] == f"refresh-0{TOKEN_TAG}"
        retried = h.calls("state")[-1]
        assert (retried.status, retried.bearer) == (200, f"access-1{TOKEN_TAG}")
        stored = json.loads(h.config.tesla.token_file.read_text())
        assert stored["refresh_token"] == f"refresh-1{TOKEN_TAG}"
        # The user's refresh token is revoked: one refused refresh, then silence and an auth error state.
        h.api.expire_access_token()
        h.api.refresh_token = "revoked"
        await h.run_for(ASLEEP_STATE_POLL_S, max_step=60)
        assert len(h.calls("token")) == 2
        count = len(h.api.calls)
        await h.run_for(3 * HOUR, max_step=600)
        assert len(h.api.calls) == count
        evse = await h.evse(lambda e: "login" in (e.status_text or ""))
        assert not evse.online
        assert any("login" in e["error"] for e in h.errors())


# -- 6. proactive refresh, single-flight -------------------------------------------------------------------------------


async def test_token_is_refreshed_once_before_expiry_while_charging(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "battery_level": 20.0, "capacity_wh": 500_000.0}
    async with make_harness(teslamate=False, car_state=car_state) as h:
        await h.setpoint(16 * 230, charge=True, ttl_s=10 * HOUR)
        await h.run_for(8 * HOUR - 60, max_step=600)
        tokens = h.calls("token")
        assert len(tokens) == 1
        lifetime = h.api.access_token_lifetime_s
        assert 0.75 * lifetime <= tokens[0].at - START <= 0.95 * lifetime
        assert all(c.status != 401 for c in h.api.calls)
        # Charging under control and following our commands: polled at least every CONTROLLED_CHARGING_MAX_S.
        data_at = [START] + [call.at for call in h.calls("data")]
        assert max(b - a for a, b in itertools.pairwise(data_at)) <= CONTROLLED_CHARGING_MAX_S


# -- 7. waking a sleeping car ---------------------------------------------------------------------------------------


async def test_no_wake_allowed_means_no_request(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, seed_teslamate=PARKED_AT_HOME, tesla={"max_wakes_per_day": 0}) as h:
        await h.setpoint(16 * 230, charge=True, ttl_s=2 * HOUR)
        await h.run_for(HOUR, max_step=300)
        assert h.api.calls == []
        evse = await h.evse(lambda e: "not woken" in (e.status_text or ""))
        assert "asleep" in (evse.status_text or "")
        assert not evse.online


async def test_wake_then_state_polls_then_one_start(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "asleep"}, tesla={"max_wakes_per_day": 3}) as h:
        # The bridge knew the car plugged in at home before it fell asleep.
        seed_parked_at_home(h)
        await h.run_for(60, max_step=30)
        await h.setpoint(16 * 230, charge=True)
        await h.run_for(5 * 60, max_step=5)
        calls = [c for c in h.billed() if c.category != "state" or c.at > h.calls("wake")[0].at]
        categories = [c.category for c in calls]
        assert categories.count("wake") == 1
        first_online = next(i for i, c in enumerate(calls) if c.category == "data")
        assert set(categories[1:first_online]) == {"state"}
        assert [c.path.rsplit("/", 1)[-1] for c in h.calls("command")] == ["charge_start"]
        assert h.api.car(VIN).charging_state == "Charging"


async def test_a_car_that_does_not_wake_is_reported_and_not_woken_again_soon(make_harness: HarnessFactory) -> None:
    car_state = {"state": "asleep", "wakeable": False}
    async with make_harness(teslamate=False, car_state=car_state, tesla={"max_wakes_per_day": 6}) as h:
        seed_parked_at_home(h)
        await h.setpoint(16 * 230, charge=True, ttl_s=2 * HOUR)
        await h.run_for(WAKE_MIN_INTERVAL_S - 60, max_step=10)
        assert len(h.calls("wake")) == 1
        assert any("did not come online" in e["error"] for e in h.errors())
        await h.run_for(120, max_step=10)
        wakes = h.calls("wake")
        assert len(wakes) == 2
        assert wakes[1].at - wakes[0].at >= WAKE_MIN_INTERVAL_S
        assert h.calls("command") == []


def seed_parked_at_home(h: Harness) -> None:
    """What the bridge learnt before the car fell asleep an hour ago: plugged in at home, not charging."""
    car, fake = h.bridge.cars[VIN], h.api.cars[VIN]
    report = CarReport(charging_state="Stopped", latitude=fake.latitude, longitude=fake.longitude)
    car.state.observe_report(h.clock.time() - HOUR, report)
    car.state.observe_online_state(h.clock.time() - HOUR + 900, "asleep")


# -- 8. 408 is "asleep", not an error storm ---------------------------------------------------------------------------


async def test_408_is_asleep_not_an_error(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "online"}) as h:
        h.api.fail_next(408, category="data")
        await h.run_for(4 * 60, max_step=10)
        data = h.calls("data")
        assert [c.status for c in data] == [408]
        await h.vehicle(lambda v: v.online_state == "asleep")
        await h.run_for(HOUR, max_step=60)
        assert h.calls("wake") == []
        assert all(c.category == "state" for c in h.api.calls if c.at > data[0].at + 1)
        after = [c for c in h.api.calls if c.at > data[0].at]
        assert after[0].at - data[0].at >= ASLEEP_STATE_POLL_S  # no retry within the back-off window
        assert h.errors() == []
        assert h.bus.last(f"{h.prefix}/tesla-bridge/status").text == "online"


# -- away from home, expiry ----------------------------------------------------------------------------------------


async def test_a_car_away_from_home_is_never_commanded_nor_woken(make_harness: HarnessFactory) -> None:
    away = {**PARKED_AT_HOME, "geofence": "Office", "location": {"latitude": 48.14, "longitude": 11.58}}
    car_state = {"state": "online", "charging_state": "Stopped", "latitude": 48.14, "longitude": 11.58}
    async with make_harness(teslamate=True, car_state=car_state, seed_teslamate=away) as h:
        await h.setpoint(16 * 230, charge=True)
        await h.run_for(HOUR, max_step=60)
        h.api.car(VIN).state = "asleep"
        await h.setpoint(16 * 230, charge=True)
        await h.run_for(HOUR, max_step=60)
        assert h.calls("command") == []
        assert h.calls("wake") == []
        vehicle = await h.vehicle(lambda v: v.at_home is False)
        assert vehicle.at_home is False
        evse = await h.evse(lambda e: "away from home" in (e.status_text or ""))
        assert evse.controllable


async def test_setpoint_expiry_leaves_the_car_alone_with_failsafe_zero(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_amps": 16}
    async with make_harness(teslamate=True, car_state=car_state) as h:
        await h.setpoint(10 * 230, charge=True, ttl_s=120)
        await h.run_for(60, max_step=10)
        assert [c.body for c in h.calls("command")] == [{"charging_amps": 10}]
        await h.run_for(HOUR, max_step=60)  # the setpoint expired long ago: failsafe_amps = 0 → no call
        assert len(h.calls("command")) == 1
        assert h.api.car(VIN).charging_state == "Charging"


async def test_setpoint_expiry_applies_failsafe_amps(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_amps": 16}
    async with make_harness(teslamate=True, car_state=car_state, tesla={"failsafe_amps": 6}) as h:
        await h.setpoint(10 * 230, charge=True, ttl_s=120)
        await h.run_for(60, max_step=10)
        await h.run_for(10 * 60, max_step=10)
        assert [c.body for c in h.calls("command")] == [{"charging_amps": 10}, {"charging_amps": 6}]
        assert h.api.car(VIN).charging_state == "Charging"  # failsafe sets a current, it neither starts nor stops


# -- user commands --------------------------------------------------------------------------------------------------


async def test_charge_limit_is_one_billed_command_and_not_repeated(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, car_state={"state": "online"}) as h:
        await h.run_for(60, max_step=30)
        await h.command(f"vehicle/{VIN}/charge_limit/set", '{"value": 90, "transaction": "lim-1"}')
        await h.bus.wait_for(lambda: h.bridge.cars[VIN].actions, what="the queued command")
        await h.run_for(10, max_step=5)
        assert [c.body for c in h.calls("command")] == [{"percent": 90}]
        assert h.api.car(VIN).charge_limit_soc == 90
        await h.vehicle(lambda v: v.charge_limit_pct == 90)
        await h.command(f"vehicle/{VIN}/charge_limit/set", "90")  # already 90: no call
        await h.bus.wait_for(lambda: h.bridge.cars[VIN].actions, what="the queued command")
        await h.run_for(10, max_step=5)
        assert len(h.calls("command")) == 1


async def test_charge_limit_to_a_sleeping_car_is_refused_without_a_call(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, seed_teslamate=PARKED_AT_HOME) as h:
        await h.command(f"vehicle/{VIN}/charge_limit/set", '{"value": 70, "transaction": 7}')
        await h.bus.wait_for(lambda: h.bridge.cars[VIN].actions, what="the queued command")
        await h.run_for(10, max_step=5)
        error = await h.bus.wait_message(h.error_topic)
        assert error.json()["transaction"] == 7
        assert "asleep" in error.json()["error"]
        assert h.api.calls == []


async def test_refresh_is_one_data_call_and_rate_limited(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=True, car_state={"state": "online"}) as h:
        await h.run_for(60, max_step=30)
        assert h.api.calls == []
        await h.command(f"vehicle/{VIN}/refresh/set", "")
        await h.bus.wait_for(lambda: h.bridge.cars[VIN].actions, what="the queued refresh")
        await h.run_for(5, max_step=5)
        assert [c.category for c in h.api.calls] == ["data"]
        await h.command(f"vehicle/{VIN}/refresh/set", '{"value": 1, "transaction": "again"}')
        error = await h.bus.wait_message(h.error_topic)
        assert error.json()["transaction"] == "again"
        assert "next is allowed at" in error.json()["error"]
        await h.run_for(5, max_step=5)
        assert len(h.api.calls) == 1
        await h.run_for(60, max_step=30)
        await h.command(f"vehicle/{VIN}/refresh/set", "please")
        await h.bus.wait_for(lambda: h.bridge.cars[VIN].actions, what="the second refresh")
        await h.run_for(5, max_step=5)
        assert len(h.api.calls) == 2


# -- HA discovery and the cost meter --------------------------------------------------------------------------------


async def test_home_assistant_entities_and_usage(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, car_state={"state": "online"}) as h:
        await h.run_for(HOUR, max_step=60)

        def config_of(kind: str, suffix: str) -> dict[str, Any] | None:
            topic = f"homeassistant/{kind}/chargebus/tesla_{VIN.lower()}_{suffix}/config"
            last: Received | None = h.bus.last(topic)
            return last.json() if last is not None else None

        soc = await h.bus.wait_for(lambda: config_of("sensor", "soc"), what="SoC sensor")
        assert soc["state_topic"] == h.vehicle_topic
        for kind, suffix in [
            ("sensor", "charger_power"),
            ("number", "charge_limit"),
            ("button", "refresh"),
            ("sensor", "api_calls_today"),
            ("sensor", "api_cost_today"),
        ]:
            assert config_of(kind, suffix) is not None, suffix
        cost = config_of("sensor", "api_cost_today")
        assert cost is not None
        assert cost["state_topic"] == f"{h.prefix}/tesla-bridge/usage"
        usage = parse_payload(Usage, h.bus.last(f"{h.prefix}/tesla-bridge/usage").payload)
        calls = usage.cars[0]
        assert calls.data == len(h.billed()) > 0
        assert calls.last_call_at is not None


# -- secrets --------------------------------------------------------------------------------------------------------


async def test_no_token_ever_reaches_mqtt_or_the_logs(
    make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with make_harness(teslamate=False, car_state={"state": "online", "charging_state": "Stopped"}) as h:
        await h.setpoint(10 * 230, charge=True)
        await h.run_for(HOUR, max_step=60)
        h.api.expire_access_token()
        await h.run_for(HOUR, max_step=60)
        h.api.refresh_token = "revoked"
        h.api.expire_access_token()
        await h.run_for(HOUR, max_step=60)
        assert len(h.calls("token")) == 2
        traffic = b"\n".join(m.topic.encode() + b" " + m.payload for m in h.bus.messages)
    secrets = [f"{kind}-{n}{TOKEN_TAG}" for kind in ("access", "refresh") for n in range(3)]
    logs = caplog.text
    assert TOKEN_TAG.encode() not in traffic
    assert TOKEN_TAG not in logs
    for secret in secrets:
        assert secret not in logs


# -- max_current override -------------------------------------------------------------------------------------------


async def test_max_current_override_caps_the_car_and_survives_a_restart(make_harness: HarnessFactory) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_amps": 16}
    async with make_harness(teslamate=True, car_state=car_state) as h:
        await h.command(f"evse/car-{VIN}/max_current/set", '{"value": 8, "transaction": "cap"}')
        await h.bus.wait_for(lambda: h.bridge.overrides.max_current.get(VIN) == 8, what="the override")
        await h.setpoint(16 * 230, charge=True)
        await h.run_for(60, max_step=10)
        assert [c.body for c in h.calls("command")] == [{"charging_amps": 8}]
        await h.evse(lambda e: e.max_power_w == 8 * 230)
        stored = json.loads((h.config.state_dir / "tesla-bridge-overrides.json").read_text())
        assert stored == {"max_current": {VIN: 8}}
        await h.command(f"evse/car-{VIN}/max_current/set", "default")
        await h.bus.wait_for(lambda: VIN not in h.bridge.overrides.max_current, what="the override cleared")
        await h.run_for(120, max_step=10)
        await h.evse(lambda e: e.max_power_w == 32 * 230)
        assert h.errors() == []


async def test_teslamate_sim_publishes_real_field_names_retained_with_null_as_empty(
    make_harness: HarnessFactory,
) -> None:
    car_state = {"state": "online", "charging_state": "Charging", "charge_amps": 16, "phases": 3}
    async with make_harness(teslamate=True, car_state=car_state) as h:
        await h.run_for(120, max_step=30)
        topic = f"{h.prefix}/teslamate/cars/1/"
        by_field = {m.topic.removeprefix(topic): m.text for m in h.bus.messages if m.topic.startswith(topic)}
        assert by_field["state"] == "charging"
        assert by_field["charging_state"] == "Charging"
        assert by_field["charger_actual_current"] == "16"
        assert by_field["charger_phases"] == "3"
        assert by_field["plugged_in"] == "true"
        assert by_field["healthy"] == "true"
        assert by_field["time_to_full_charge"] == ""  # null
        assert json.loads(by_field["location"]) == {"latitude": 52.52, "longitude": 13.4}
        async with Recorder(h.bus.url, [f"{topic}#"]) as late:  # a late subscriber sees the retained values
            await late.wait_for(lambda: late.last(f"{topic}charging_state"), what="retained charging_state")
            assert late.last(f"{topic}charging_state").retain  # type: ignore[union-attr]
            await asyncio.sleep(0.2)
            assert late.last(f"{topic}healthy") is None  # never retained


# -- BLE command proxy: not billed, a breaker for its outages, the Fleet API as an optional fallback ------------------


class SolarFollower:
    """A small stand-in for the allocator's solar mode for one 1-phase 16 A car: start after 60 s of surplus above
    the car's minimum, stop after 180 s below it, follow the surplus in between."""

    def __init__(self) -> None:
        self.house = House()
        self.charging = False
        self.condition_since: float | None = None

    def setpoint(self, now: float) -> tuple[float, bool]:
        hour = (now - utc_day_start(now)) / HOUR
        surplus = self.house.pv_w(hour) - self.house.house_w(hour) - 100.0
        enough = surplus >= 5 * 230
        if enough == self.charging:
            self.condition_since = None
        else:
            self.condition_since = now if self.condition_since is None else self.condition_since
            if now - self.condition_since >= (60.0 if enough else 180.0):
                self.charging, self.condition_since = enough, None
        if not self.charging:
            return 0.0, False
        return max(5 * 230.0, min(surplus, 16 * 230.0)), True


async def test_a_solar_day_on_ble_makes_no_billed_call(make_harness: HarnessFactory) -> None:
    car_state = {"state": "asleep", "charging_state": "Stopped", "battery_level": 20.0, "charge_limit_soc": 90}
    async with (
        make_harness(teslamate=False, ble=True, car_state=car_state, tesla={"max_wakes_per_day": 3}) as h,
        nodelay_client(h.bus.url) as publisher,
    ):
        seed_parked_at_home(h)
        follower = SolarFollower()
        while h.clock.time() < START + 15 * HOUR:  # 06:00 to 21:00 UTC, a setpoint a minute
            power_w, charge = follower.setpoint(h.clock.time())
            await h.setpoint(power_w, charge=charge, ttl_s=180, publisher=publisher)
            await h.run_for(60, max_step=60)
        # Woken, started, followed and stopped over Bluetooth: nothing reached Tesla, not even a token request.
        assert h.billed() == []
        assert h.api.count("token") == 0
        assert h.api.car(VIN).charge_energy_added_wh > 10_000
        assert len(h.ble_calls("wake")) >= 1
        commands = [c.path.rsplit("/", 1)[-1] for c in h.ble_calls("command")]
        assert "charge_start" in commands
        assert "charge_stop" in commands
        assert commands.count("set_charging_amps") >= 10
        assert h.api.ble_max_queued == 1  # one request at a time
        usage = h.usage()
        calls = usage.cars[0]
        assert (calls.data, calls.command, calls.wake, calls.billed_usd) == (0, 0, 0, 0.0)
        assert calls.ble == len(h.ble_calls())
        vehicle = await h.vehicle(lambda v: v.source == "ble_proxy")
        assert vehicle.soc_pct is not None
        assert vehicle.soc_pct > 20
        evse = await h.evse(lambda e: e.source == "ble_proxy")
        assert evse.controllable
        assert h.errors() == []
        sensor = h.bus.last(f"homeassistant/sensor/chargebus/tesla_{VIN.lower()}_ble_calls_today/config")
        assert sensor is not None
        assert "c.ble" in sensor.json()["value_template"]


OUTAGE_CAR = {"ble_breaker_failures": 3, "ble_breaker_open_s": 600}
CHARGING = {"state": "online", "charging_state": "Charging", "charge_amps": 16}


async def test_a_ble_outage_falls_back_to_the_fleet_api_billed_and_is_reported_once(
    make_harness: HarnessFactory,
) -> None:
    car = OUTAGE_CAR | {"ble_fallback": "fleet"}
    async with make_harness(teslamate=False, ble=True, car_state=CHARGING, car=car) as h:
        await h.setpoint(10 * 230, charge=True, ttl_s=3 * HOUR)
        await h.run_for(10 * 60, max_step=60)
        assert h.api.car(VIN).charge_amps == 10
        assert h.billed() == []
        # The car drives out of the proxy's range while charging goes on: 30 minutes of outage.
        h.api.cars[VIN].ble_in_range = False
        outage_start = h.clock.time()
        await h.run_for(10 * 60, max_step=60)
        await h.setpoint(8 * 230, charge=True, ttl_s=3 * HOUR)
        await h.run_for(20 * 60, max_step=60)
        assert h.api.car(VIN).charge_amps == 8  # followed through the Fleet API
        billed = h.billed()
        assert billed, "the fallback should have called the Fleet API"
        assert {c.host for c in billed} <= {"fleet", "proxy"}
        assert any(c.category == "command" and c.path.endswith("set_charging_amps") for c in billed)
        usage = h.usage().cars[0]
        assert usage.data + usage.command == len(billed)
        assert usage.billed_usd > 0
        # BLE is tried again once per pause, not on every call.
        ble_during = [c for c in h.ble_calls() if c.at >= outage_start]
        assert len(ble_during) <= 3 + (30 * 60) // 600 + 1
        evse = await h.evse(lambda e: e.source == "fleet_api" and "BLE proxy" in (e.status_text or ""))
        assert evse.online  # the Fleet API stands in
        errors = h.errors()
        assert len(errors) == 1, errors
        assert "BLE proxy" in errors[0]["error"]
        assert "Fleet API (billed)" in errors[0]["error"]
        assert errors[0]["topic"] == h.evse_topic
        # Back in range: the next trial closes the breaker and the Fleet API is no longer called.
        h.api.cars[VIN].ble_in_range = True
        await h.run_for(15 * 60, max_step=60)
        settled = len(h.billed())
        await h.setpoint(12 * 230, charge=True, ttl_s=3 * HOUR)
        await h.run_for(30 * 60, max_step=60)
        assert len(h.billed()) == settled
        assert h.api.car(VIN).charge_amps == 12
        await h.evse(lambda e: e.source == "ble_proxy" and "BLE proxy" not in (e.status_text or ""))
        assert len(h.errors()) == 1


async def test_a_ble_outage_without_fallback_never_calls_tesla(make_harness: HarnessFactory) -> None:
    async with make_harness(teslamate=False, ble=True, car_state=CHARGING, car=OUTAGE_CAR) as h:
        await h.setpoint(10 * 230, charge=True, ttl_s=3 * HOUR)
        await h.run_for(10 * 60, max_step=60)
        h.api.cars[VIN].ble_in_range = False
        await h.run_for(10 * 60, max_step=60)
        await h.setpoint(0, charge=False, ttl_s=3 * HOUR)  # a stop the car cannot be told yet
        await h.run_for(40 * 60, max_step=60)
        assert h.api.calls, "BLE calls were made"
        assert h.billed() == []
        assert h.api.count("token") == 0
        assert h.api.car(VIN).charging_state == "Charging"
        evse = await h.evse(lambda e: not e.online and "not reached" in (e.status_text or ""))
        assert evse.controllable
        errors = h.errors()
        assert len(errors) == 1, errors
        assert 'ble_fallback = "none"' in errors[0]["error"]
        usage = h.usage().cars[0]
        assert (usage.data, usage.command, usage.wake, usage.billed_usd) == (0, 0, 0, 0.0)
        # Back in range: the stop goes out over BLE within one pause, and the EVSE is reachable again.
        h.api.cars[VIN].ble_in_range = True
        await h.run_for(11 * 60, max_step=60)
        assert h.api.car(VIN).charging_state == "Stopped"
        assert h.billed() == []
        await h.evse(lambda e: e.online and e.source == "ble_proxy")
        assert len(h.errors()) == 1


# -- 12. without TeslaMate: trusted commanded current, backed-off polls, surprises still seen --------------------------


async def test_solar_following_without_teslamate_polls_less_and_the_state_stays_right(
    make_harness: HarnessFactory,
) -> None:
    # Plugged in and idle: the first look locates it (at home), then the setpoints start and follow it.
    car_state = {"state": "online", "charging_state": "Stopped", "charge_current_request_max": 16, "charge_amps": 16}
    async with make_harness(teslamate=False, car_state=car_state) as h:
        car = h.api.car(VIN)
        await h.run_for(300, max_step=30)
        amps_cycle = itertools.cycle([6, 10, 14, 8, 12, 16, 9])
        checked = 0
        for _ in range(48):  # four hours, a new offer every five minutes
            await h.setpoint(next(amps_cycle) * 230, charge=True)
            await h.run_for(60, max_step=30)
            actual = car.actual_current_a
            # The allocator's view: the current the EvseState shows is the car's real one, to within one step.
            evse = await h.evse(lambda e, a=actual: e.current_a is not None and abs(e.current_a - a) <= 1.0)
            assert evse.stale is False
            checked += 1
            await h.run_for(240, max_step=60)
        assert checked == 48
        data = h.calls("data")
        # The fixed 2-minute cadence made 120 data calls in these four hours; trusted commands and back-off far fewer.
        assert len(data) <= 4 * HOUR / CONTROLLED_CHARGING_MAX_S + 8
        evse = await h.evse(lambda e: e.current_commanded is True)
        vehicle = await h.vehicle()
        assert vehicle.data_age_s is not None
        assert vehicle.data_age_s > 0  # honest: the last report's age
        usage = h.usage().cars[0]
        assert usage.by_reason.get("charging_watch", 0) + usage.by_reason.get("confirm_command", 0) >= 1
        assert usage.by_reason["set_charging_amps"] == len(h.calls("command", path_end="set_charging_amps"))
        assert sum(
            v for k, v in usage.by_reason.items() if k not in {"set_charging_amps", "charge_start", "charge_stop"}
        ) == len(h.billed()) - len(h.calls("command"))
        # A surprise the bridge cannot predict: the car is unplugged. Seen within the longest gap, never later.
        unplugged_at = h.clock.time()
        car.unplug()
        await h.run_for(CONTROLLED_CHARGING_MAX_S + 60, max_step=60)
        evse = await h.evse(lambda e: e.plugged_in is False)
        assert evse.current_commanded is False
        seen = [c.at for c in h.calls("data") if c.at > unplugged_at]
        assert seen
        assert seen[0] - unplugged_at <= CONTROLLED_CHARGING_MAX_S


# -- a car found charging at start-up, no TeslaMate feed: controlled from the first look on -----------------------


class StartupCase(NamedTuple):
    home: bool  # `home` configured, so the first report says whether the car is at home
    setpoint_first: bool  # the allocator's setpoint is there before the bridge's first look
    amps: int
    charge: bool
    start_amps: int


@pytest.mark.parametrize(
    "case",
    [
        StartupCase(home=True, setpoint_first=True, amps=10, charge=True, start_amps=16),
        StartupCase(home=False, setpoint_first=False, amps=16, charge=True, start_amps=6),
        StartupCase(home=True, setpoint_first=False, amps=0, charge=False, start_amps=16),
    ],
    ids=["home-setpoint-first-lower", "no-home-setpoint-later-higher", "home-setpoint-later-stop"],
)
async def test_a_car_found_charging_at_startup_without_teslamate_is_controlled(
    make_harness: HarnessFactory, case: StartupCase
) -> None:
    """Not only once it stops: the first command goes out at the bridge's first look (3 min settle)."""
    state = {"state": "online", "charging_state": "Charging", "charge_amps": case.start_amps}
    async with make_harness(teslamate=False, car_state=state, car={} if case.home else {"home": None}) as h:
        if not case.setpoint_first:
            await h.run_for(5 * 60, max_step=30)
        for _ in range(10):  # the allocator's cadence: every 60 s, ttl 120 s
            await h.setpoint(case.amps * 230, charge=case.charge, ttl_s=120)
            await h.run_for(60, max_step=30)
        car = h.api.car(VIN)
        expected = (case.amps, "Charging") if case.charge else (case.start_amps, "Stopped")
        assert (car.charge_amps, car.charging_state) == expected
        first_command = h.calls("command")[0]
        assert first_command.at - START <= 5 * 60 + 1  # at the first look or at the first setpoint after it
        evse = await h.evse(lambda e: e.source == "fleet_api")
        assert "not controlled" not in (evse.status_text or "")
        assert h.errors() == []
