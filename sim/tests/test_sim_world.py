"""The simulated world on its own: its config, its physics and its shutdown, without the services.

The TWC is driven over the real pty with the bridge's codec (a heartbeat is what a master offers), the cars through
the fake Fleet API over HTTP, and the house meter and TeslaMate are read back from real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import serial
from chargebus.config import SERVICE_CONFIGS, FullConfig, load_config
from chargebus.schema import PowerReading, parse_payload
from chargebus_sim.house import HomeBattery, House
from chargebus_sim.world import TWC_A, TWC_B, VIN_A, VIN_B, TwcCar, World, evse_id
from chargebus_twc.codec import MasterHeartbeat, encode, padding

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

SCALE = 50.0
MASTER = 0x7777


@pytest.fixture
async def world(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> AsyncIterator[World]:
    async with World(
        mqtt_broker.url, prefix, tmp_path, time_scale=SCALE, teslamate_prefix=f"{prefix}/teslamate"
    ) as running:
        yield running


def offer(world: World, slave_id: int, amps: float) -> None:
    """What a master does: one heartbeat with a current limit, over the pty."""
    tail = padding(MasterHeartbeat.FIXED, world.twc.slave(slave_id).spec.protocol)
    heartbeat = MasterHeartbeat(MASTER, slave_id, 0x09, round(amps * 100), tail=tail)
    with serial.Serial(world.twc.port, 9600, timeout=0) as port:
        port.write(encode(heartbeat))


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
    return result


async def offer_until(world: World, slave_id: int, amps: float, check: Callable[[], Any]) -> Any:
    """Offer `amps` with a heartbeat at every look, as a master keeps doing, until `check()` holds.

    One heartbeat is not enough to wait on: a slave that hears none for its master timeout (30 s simulated, 0.6 s
    real at this scale) drops the limit, and on a loaded machine the car can take longer than that to follow.
    """

    def offered() -> Any:
        offer(world, slave_id, amps)
        return check()

    return await eventually(offered)


async def command(world: World, vin: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{world.api.proxy_url}/api/1/vehicles/{vin}/command/{name}",
            json=body or {},
            headers={"Authorization": f"Bearer {world.api.access_token}"},
        )
    response.raise_for_status()
    result: dict[str, Any] = response.json()["response"]
    return result


async def test_the_config_is_valid_for_every_service_and_points_at_the_world(world: World, tmp_path: Path) -> None:
    path = world.write_config(tmp_path / "chargebus.toml", allocator={"enable_delay_s": 10})
    for config_cls in SERVICE_CONFIGS.values():
        load_config(config_cls, path)  # raises ConfigError on any problem
    config = load_config(FullConfig, path)
    assert config.twc.port == world.twc.port
    assert (config.tesla.api_base, config.tesla.command_base) == (world.api.url, world.api.proxy_url)
    assert [(car.vin, car.teslamate_car_id) for car in config.tesla.vehicles] == [(VIN_A, 1), (VIN_B, 2)]
    assert config.tesla.teslamate_prefix == world.teslamate_prefix
    assert config.allocator.mode == "solar"
    assert config.allocator.enable_delay_s == 10
    assert [circuit.id for circuit in config.allocator.circuits] == ["garage"]
    assert config.allocator.vehicles[VIN_A].priority > config.allocator.vehicles[VIN_B].priority
    assert config.allocator.evses[f"car-{VIN_B}"].circuit == "garage"
    assert config.allocator.evses[evse_id(TWC_A)].circuit == "garage"
    assert config.history.database == f"sqlite:///{(tmp_path / 'history.sqlite').absolute()}"
    # the seeded token is the fake API's, private to its owner, and valid far beyond a simulated day
    assert config.tesla.token_file is not None
    tokens = json.loads(config.tesla.token_file.read_text())
    assert tokens["access_token"] == world.api.access_token
    assert tokens["expires_at"] > world.clock.time() + 30 * 86_400
    assert config.tesla.token_file.stat().st_mode & 0o777 == 0o600


async def test_car_a_draws_what_twc_a_offers_and_only_while_it_is_set_to_charge(world: World) -> None:
    car = world.api.car(VIN_A)
    assert isinstance(car, TwcCar)
    offer(world, TWC_A, 16)
    await asyncio.sleep(0.2)
    assert world.twc.slave(TWC_A).draw_amps(world.clock.monotonic()) == 0  # the car is not set to charge yet
    assert (await command(world, VIN_A, "charge_start"))["result"] is True
    await offer_until(world, TWC_A, 16, lambda: world.api.car(VIN_A).actual_current_a == 16)
    assert world.api.car(VIN_A).power_w == 16 * 230
    # the TWC offers less: the car follows, whatever its own setting (32 A)
    await offer_until(world, TWC_A, 10, lambda: world.api.car(VIN_A).actual_current_a == 10)
    assert world.chargers_w()[evse_id(TWC_A)] == pytest.approx(10 * 230)
    assert (await command(world, VIN_A, "charge_stop"))["result"] is True
    # still offered 10 A: the car stops because it was told to, not because the master fell silent
    await offer_until(world, TWC_A, 10, lambda: world.twc.slave(TWC_A).draw_amps(world.clock.monotonic()) == 0)
    assert world.api.car(VIN_A).actual_current_a == 0
    assert world.chargers_w()[evse_id(TWC_B)] == 0  # TWC B has no car


async def test_car_b_draws_what_it_was_commanded(world: World) -> None:
    assert (await command(world, VIN_B, "set_charging_amps", {"charging_amps": 10}))["result"] is True
    assert (await command(world, VIN_B, "charge_start"))["result"] is True
    assert world.chargers_w()[f"car-{VIN_B}"] == 10 * 230
    assert world.api.count("command", vin=VIN_B) == 2


async def test_the_house_meter_balances_house_chargers_and_pv(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/power/+"]) as bus,
        World(mqtt_broker.url, prefix, tmp_path, time_scale=SCALE, power_period_s=5.0, start_hour=12.0) as world,
    ):
        await command(world, VIN_B, "set_charging_amps", {"charging_amps": 8})
        await command(world, VIN_B, "charge_start")
        await bus.wait_for(lambda: len(bus.on(f"{prefix}/power/grid")) >= 3, what="three grid readings")
        async with Recorder(mqtt_broker.url, [f"{prefix}/power/grid"]) as late:  # a newcomer gets the last reading
            retained = await late.wait_message(f"{prefix}/power/grid")
        assert retained.retain
    names = ("pv", "house", "grid")
    readings = {name: parse_payload(PowerReading, bus.on(f"{prefix}/power/{name}")[-1].payload) for name in names}
    assert readings["pv"].power_w > 8_000  # noon, sunny
    expected = readings["house"].power_w + 8 * 230 - readings["pv"].power_w
    assert readings["grid"].power_w == pytest.approx(expected, abs=1.0)
    sample = world.samples[-1]
    assert sample.grid_w == pytest.approx(sample.house_w + sum(sample.chargers_w.values()) - sample.pv_w, abs=0.2)


async def test_teslamate_publishes_both_cars_at_home_and_plugged_in(
    mqtt_broker: BrokerUnderTest, prefix: str, world: World
) -> None:
    topic = f"{prefix}/teslamate/cars"
    async with Recorder(mqtt_broker.url, [f"{topic}/#"]) as bus:
        for car_id in (1, 2):
            await bus.wait_message(f"{topic}/{car_id}/healthy", lambda m: m.text == "true")
            assert bus.last(f"{topic}/{car_id}/plugged_in").text == "true"  # type: ignore[union-attr]
            assert bus.last(f"{topic}/{car_id}/geofence").text == "Home"  # type: ignore[union-attr]
            assert bus.last(f"{topic}/{car_id}/state").text == "online"  # type: ignore[union-attr]
    assert bus.last(f"{topic}/2/charge_current_request_max").text == "16"  # type: ignore[union-attr]


async def test_the_sun_runs_day_factor_times_faster_than_the_clock(
    mqtt_broker: BrokerUnderTest, tmp_path: Path
) -> None:
    world = World(mqtt_broker.url, "t", tmp_path, time_scale=10.0, day_factor=36.0, start_hour=9.0)
    start = world.hour_of_day()
    assert start == pytest.approx(9.0, abs=0.01)
    assert world.hour_of_day(world.sun_time_to_clock(13.0)) == pytest.approx(13.0)
    # 4 sun hours = 4 × 3600 / 36 = 400 simulated seconds = 40 real seconds at scale 10
    assert world.real_seconds_until(13.0) == pytest.approx(40.0, abs=0.5)
    assert world.real_seconds_until(8.0) == pytest.approx(23 * 3600 / 36 / 10, abs=0.5)  # tomorrow


async def test_stop_closes_the_pty_and_the_servers_and_can_run_twice(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    world = World(mqtt_broker.url, prefix, tmp_path, time_scale=SCALE)
    await world.start()
    port, api = world.twc.port, world.api.url
    fds_before = len(list(Path("/proc/self/fd").iterdir()))
    await world.stop()
    await world.stop()
    assert len(list(Path("/proc/self/fd").iterdir())) < fds_before  # the pty pair and the sockets are closed
    with pytest.raises(serial.SerialException):
        serial.Serial(port, 9600, timeout=0).close()
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{api}/api/1/vehicles")
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("world-"))


def test_a_cloud_bank_dims_the_sun_only_while_it_passes() -> None:
    clear, shaded = House(), House(shade=((12.0, 13.0, 0.25),))
    assert shaded.pv_w(12.5) == pytest.approx(clear.pv_w(12.5) * 0.25, abs=0.1)
    assert shaded.pv_w(11.9) == clear.pv_w(11.9)
    assert shaded.pv_w(13.0) == clear.pv_w(13.0)


async def test_twc_b_can_hold_a_car_without_api_or_vin(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with World(mqtt_broker.url, prefix, tmp_path, time_scale=SCALE, twc_b_car=True) as world:
        slave = world.twc.slave(TWC_B)
        assert (slave.plugged_in, slave.vin, slave.spec.answers_vin) == (True, None, False)
        await offer_until(world, TWC_B, 12, lambda: world.chargers_w()[evse_id(TWC_B)] == 12 * 230)
        assert set(world.api.cars) == {VIN_A, VIN_B}  # no API car for it


async def test_a_home_battery_balances_the_meter_and_obeys_the_hold(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    battery = HomeBattery(capacity_wh=1e9, soc_pct=60.0)
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/power/+"]) as bus,
        World(
            mqtt_broker.url, prefix, tmp_path, time_scale=SCALE, power_period_s=5.0, start_hour=2.0, battery=battery
        ) as world,
    ):
        config = load_config(FullConfig, world.write_config(tmp_path / "c.toml"))
        assert config.allocator.battery_meter == "battery"
        await bus.wait_for(lambda: len(bus.on(f"{prefix}/power/battery")) >= 2, what="battery readings")
        night = parse_payload(PowerReading, bus.on(f"{prefix}/power/battery")[-1].payload)
        assert night.power_w > 0  # no sun: it covers the house
        assert night.soc_pct == pytest.approx(60.0, abs=0.1)
        await bus.publish(f"{prefix}/allocator/battery_hold", "true", retain=True)
        await bus.wait_for(lambda: world.battery_hold, what="the hold applied")
        mark = len(bus.on(f"{prefix}/power/battery"))
        await bus.wait_for(lambda: len(bus.on(f"{prefix}/power/battery")) >= mark + 2, what="held readings")
        assert parse_payload(PowerReading, bus.on(f"{prefix}/power/battery")[-1].payload).power_w == 0
        await bus.publish(f"{prefix}/allocator/battery_hold", "", retain=True)
    sample = world.samples[-1]
    assert sample.grid_w == pytest.approx(
        sample.house_w + sum(sample.chargers_w.values()) - sample.pv_w - sample.battery_w, abs=0.2
    )
