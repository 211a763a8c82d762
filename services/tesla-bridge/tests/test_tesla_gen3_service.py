"""The Gen3 pollers in a real `Service` against real mosquitto and the Gen3 simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from chargebus.config import (
    MqttConfig,
    TeslaBridgeConfig,
    TeslaConfig,
    TeslaVehicleConfig,
    WallConnectorConfig,
)
from chargebus.mqtt import Service
from chargebus.schema import EvseState, VehicleState, parse_payload, to_json
from chargebus_sim.gen3 import Gen3Sim
from chargebus_tesla.gen3 import register_wall_connectors

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder

VIN = "5YJ3E1EA8KF000001"
OTHER_VIN = "5YJ3E1EA7KF000002"
FAST = 0.1


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHARGEBUS_MQTT_URL", "CHARGEBUS_TOPIC_PREFIX", "CHARGEBUS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def sim() -> AsyncIterator[Gen3Sim]:
    async with Gen3Sim.three_phase() as unit:
        yield unit


def make_config(
    broker: BrokerUnderTest, prefix: str, tmp_path: Path, units: list[dict[str, str]], vehicles: list[dict[str, Any]]
) -> TeslaBridgeConfig:
    names = {unit["name"] for unit in units}
    tesla = TeslaConfig(
        client_id="chargebus",
        token_file=tmp_path / "tesla-token.json",
        vehicles=[TeslaVehicleConfig(**vehicle) for vehicle in vehicles],
        wall_connectors=[WallConnectorConfig(name=name, host="127.0.0.1") for name in sorted(names)],
    )
    # Unvalidated on purpose: the loader refuses bad hosts and repeated names at start (exit 2), and the poller
    # must still cope if one gets through.
    unvalidated = [WallConnectorConfig.model_construct(name=unit["name"], host=unit["host"]) for unit in units]
    config = TeslaBridgeConfig(state_dir=tmp_path, mqtt=MqttConfig(url=broker.url, prefix=prefix), tesla=tesla)
    return config.model_copy(update={"tesla": tesla.model_copy(update={"wall_connectors": unvalidated})})


@asynccontextmanager
async def running(config: TeslaBridgeConfig, **settings: Any) -> AsyncIterator[Service]:
    service = Service("tesla-bridge", config.mqtt)
    register_wall_connectors(service, config, **({"poll_s": FAST} | settings))
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def config(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, sim: Gen3Sim) -> TeslaBridgeConfig:
    return make_config(
        mqtt_broker,
        prefix,
        tmp_path,
        [{"name": "garage", "host": sim.host}],
        [{"vin": VIN, "wall_connector": "garage"}, {"vin": OTHER_VIN}],
    )


def evse(message: Received) -> EvseState:
    return parse_payload(EvseState, message.payload)


def vehicle_state(vin: str, *, plugged_in: bool, at_home: bool = True) -> bytes:
    return to_json(
        VehicleState(
            vin=vin,
            name="Model 3",
            online_state="online",
            at_home=at_home,
            plugged_in=plugged_in,
            charging_state="Charging" if plugged_in else "Disconnected",
            source="teslamate",
            updated_at="2026-11-24T12:00:00.000Z",
        )
    )


@pytest.fixture
def topics(prefix: str) -> dict[str, str]:
    return {
        "state": f"{prefix}/evse/twc3-garage/state",
        "error": f"{prefix}/tesla-bridge/error",
        "vehicle": f"{prefix}/vehicle/{VIN}/state",
        "other_vehicle": f"{prefix}/vehicle/{OTHER_VIN}/state",
    }


async def test_charging_unit_publishes_retained_state_with_its_power(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    sim.plug_in()
    sim.charge(16)
    async with running(config, lifetime_s=0.3), Recorder(mqtt_broker.url, [topics["state"]]) as bus:
        message = await bus.wait_message(topics["state"], lambda m: evse(m).power_w == pytest.approx(11_040))
        state = evse(message)
        assert (state.phases, state.voltage_v, state.current_a) == (3, 230.0, 16.0)
        assert (state.online, state.stale, state.charging, state.plugged_in) == (True, False, True, True)
        assert (state.kind, state.controllable, state.controls, state.source) == ("twc3", False, [], "local_api")
        assert state.vin is None  # no car report yet
        # Lifetime energy arrives (read every lifetime_s), the version is read exactly once.
        await bus.wait_message(topics["state"], lambda m: (evse(m).lifetime_energy_wh or 0) > 1_000_000)
        await bus.wait_for(lambda: len(sim.requests_to("/api/1/lifetime")) >= 3, what="three lifetime reads")
        assert len(sim.requests_to("/api/1/version")) == 1
        assert evse(bus.messages[-1]).max_power_w == pytest.approx(32 * 230 * 3)
        # The load changes: the state follows.
        sim.charge(10, phases=1)
        changed = await bus.wait_message(topics["state"], lambda m: evse(m).phases == 1)
        assert evse(changed).power_w == pytest.approx(2_300)

        async with Recorder(mqtt_broker.url, [topics["state"]]) as late:
            retained = await late.wait_message(topics["state"])
            assert retained.retain
            assert evse(retained).evse_id == "twc3-garage"


async def test_unchanged_state_is_republished_periodically_not_every_poll(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    async with running(config, republish_s=0.6), Recorder(mqtt_broker.url, [topics["state"]]) as bus:
        await bus.wait_message(topics["state"])
        await asyncio.sleep(1.5)
        polls = len(sim.requests_to("/api/1/vitals"))
        published = len(bus.on(topics["state"]))
        assert polls >= 8
        assert 2 <= published <= 4, f"{published} publications for {polls} polls"


async def test_vin_while_the_configured_car_is_plugged_in_at_home(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    sim.plug_in()
    sim.charge(16)
    async with running(config), Recorder(mqtt_broker.url, [topics["state"], topics["error"]]) as bus:
        await bus.wait_message(topics["state"], lambda m: evse(m).charging is True)
        # A car that is not configured for this unit never lends it its VIN.
        await bus.publish(topics["other_vehicle"], vehicle_state(OTHER_VIN, plugged_in=True), retain=True)
        await bus.publish(topics["vehicle"], vehicle_state(VIN, plugged_in=True, at_home=False), retain=True)
        await asyncio.sleep(0.5)
        assert all(evse(m).vin is None for m in bus.on(topics["state"]))

        await bus.publish(topics["vehicle"], vehicle_state(VIN, plugged_in=True), retain=True)
        with_vin = await bus.wait_message(topics["state"], lambda m: evse(m).vin == VIN)
        assert evse(with_vin).power_w == pytest.approx(11_040)

        mark = len(bus.messages)
        await bus.publish(topics["vehicle"], vehicle_state(VIN, plugged_in=False), retain=True)
        await bus.wait_message(topics["state"], lambda m: evse(m).vin is None, after=mark)

        # The car plugs in again but the unit sees no vehicle: it is on another charger.
        sim.unplug()
        await bus.wait_message(topics["state"], lambda m: evse(m).plugged_in is False)
        mark = len(bus.messages)
        await bus.publish(topics["vehicle"], vehicle_state(VIN, plugged_in=True), retain=True)
        await asyncio.sleep(0.5)
        assert all(evse(m).vin is None for m in bus.messages[mark:] if m.topic == topics["state"])
        assert bus.on(topics["error"]) == []
        await bus.publish(topics["vehicle"], b"", retain=True)
        await bus.publish(topics["other_vehicle"], b"", retain=True)


async def test_a_retained_vehicle_state_is_read_at_start(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    sim.plug_in()
    async with Recorder(mqtt_broker.url, [topics["state"]]) as bus:
        await bus.publish(topics["vehicle"], vehicle_state(VIN, plugged_in=True), retain=True)
        async with running(config):
            await bus.wait_message(topics["state"], lambda m: evse(m).vin == VIN)
        await bus.publish(topics["vehicle"], b"", retain=True)


async def test_unreachable_unit_goes_offline_with_exactly_one_error_and_recovers(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    sim.plug_in()
    sim.charge(16)
    async with (
        running(config, offline_after=3, timeout_s=0.5),
        Recorder(mqtt_broker.url, [topics["state"], topics["error"]]) as bus,
    ):
        await bus.wait_message(topics["state"], lambda m: evse(m).online)
        sim.unreachable = True
        offline = evse(await bus.wait_message(topics["state"], lambda m: not evse(m).online))
        assert offline.stale is True
        assert offline.power_w is None
        assert offline.status_text == "not answering"
        # Many more failed polls: still one error.
        dropped = len([r for r in sim.requests if r.status is None])
        await bus.wait_for(
            lambda: len([r for r in sim.requests if r.status is None]) >= dropped + 8, what="more failed polls"
        )
        errors = bus.on(topics["error"])
        assert len(errors) == 1
        event = errors[0].json()
        assert sim.host in event["topic"]
        assert event["payload"] is None
        assert event["transaction"] is None
        assert "garage" in event["error"]

        sim.unreachable = False
        back = evse(await bus.wait_message(topics["state"], lambda m: evse(m).online))
        assert back.stale is False
        assert back.power_w == pytest.approx(11_040)
        await asyncio.sleep(0.3)
        assert len(bus.on(topics["error"])) == 1


async def test_unit_unreachable_from_the_start_is_published_offline(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, topics: dict[str, str]
) -> None:
    async with Gen3Sim() as sim:
        host = sim.host
    # The simulator is gone: connections are refused.
    config = make_config(mqtt_broker, prefix, tmp_path, [{"name": "garage", "host": host}], [])
    async with Recorder(mqtt_broker.url, [topics["state"], topics["error"]]) as bus, running(config, offline_after=2):
        state = evse(await bus.wait_message(topics["state"]))
        assert (state.online, state.stale, state.plugged_in) == (False, True, None)
        await bus.wait_message(topics["error"])
        await asyncio.sleep(0.5)
        assert len(bus.on(topics["error"])) == 1
        assert len(bus.on(topics["state"])) == 1


async def test_invalid_vehicle_state_gives_one_error_and_no_change(
    mqtt_broker: BrokerUnderTest, config: TeslaBridgeConfig, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    sim.plug_in()
    async with running(config) as service, Recorder(mqtt_broker.url, [topics["state"], topics["error"]]) as bus:
        await bus.wait_message(topics["state"])
        bad_payloads = [
            b"{not json",
            json.dumps({"v": 1, "vin": VIN}).encode(),  # fields missing
            vehicle_state(OTHER_VIN, plugged_in=True),  # another car's state on this car's topic
            b"x" * 300_000,  # oversize
        ]
        for number, payload in enumerate(bad_payloads, start=1):
            await bus.publish(topics["vehicle"], payload)
            await bus.wait_for(lambda: len(bus.on(topics["error"])) >= number, what=f"error {number}")  # noqa: B023
        await asyncio.sleep(0.3)
        assert len(bus.on(topics["error"])) == len(bad_payloads)
        assert all(m.json()["topic"] == topics["vehicle"] for m in bus.on(topics["error"]))
        assert all(evse(m).vin is None for m in bus.on(topics["state"]))
        assert service.connected.is_set()
        # Still polling and publishing.
        sim.charge(16)
        await bus.wait_message(topics["state"], lambda m: evse(m).charging is True)


async def test_bad_host_and_repeated_name_are_reported_once_and_others_still_run(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, sim: Gen3Sim, topics: dict[str, str]
) -> None:
    units = [
        {"name": "garage", "host": sim.host},
        {"name": "carport", "host": "192.168.1.50:http"},
        {"name": "garage", "host": "192.168.1.51"},
    ]
    with pytest.raises(ValueError, match="host"):
        WallConnectorConfig(**units[1])  # refused at load: config problem, exit 2
    config = make_config(mqtt_broker, prefix, tmp_path, units, [])
    async with Recorder(mqtt_broker.url, [topics["state"], topics["error"]]) as bus, running(config):
        await bus.wait_message(topics["state"])
        await bus.wait_for(lambda: len(bus.on(topics["error"])) >= 2, what="two config errors")
        await asyncio.sleep(0.3)
        errors = [m.json()["error"] for m in bus.on(topics["error"])]
        assert len(errors) == 2
        assert any("port" in error for error in errors)
        assert any("used twice" in error for error in errors)
