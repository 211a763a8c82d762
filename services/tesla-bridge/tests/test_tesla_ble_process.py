"""`chargebus-tesla-bridge` with a BLE-proxy car, as a user runs it: its own process, a TOML config without any
Tesla account, real mosquitto, the fake BLE proxy over HTTP, accelerated time. The per-call timeout is simulated
seconds like everything else, so a proxy that answers too slowly opens the breaker in the real process too."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chargebus.clock import SystemClock, iso_utc
from chargebus.schema import EvseState, Usage, VehicleState, parse_payload
from chargebus_sim.fleet_api import FakeFleetApi

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

VIN = "5YJ3E1EA8KF000001"
SCALE = 60.0  # a 2-minute poll takes 2 s; the proxy's 3 s take 50 ms; the 30 s timeout 0.5 s


@dataclass
class Running:
    process: ServiceProcess
    api: FakeFleetApi
    bus: Recorder
    prefix: str

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    def evse(self) -> EvseState | None:
        last = self.bus.last(self.topic(f"evse/car-{VIN}/state"))
        return parse_payload(EvseState, last.payload) if last is not None else None


@pytest.fixture
async def running(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> AsyncIterator[Running]:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = tmp_path / "chargebus.toml"
    clock = SystemClock(SCALE)
    async with FakeFleetApi(clock=clock.time, ble_proxy=True, ble_time_scale=SCALE) as api:
        api.add_car(VIN, state="online", charging_state="Charging", charge_amps=16)
        config.write_text(
            f'state_dir = "{state_dir}"\n'
            f'[mqtt]\nurl = "{mqtt_broker.url}"\nprefix = "{prefix}"\nha_discovery = false\n'
            '[tesla]\nteslamate_prefix = ""\n'
            "[[tesla.vehicles]]\n"
            f'vin = "{VIN}"\nhome = {{ lat = 52.52, lon = 13.40, radius_m = 150 }}\n'
            f'transport = "ble_proxy"\nble_proxy_url = "{api.ble_url}"\n'
            "ble_timeout_s = 30\nble_breaker_failures = 2\nble_breaker_open_s = 240\n",
            encoding="utf-8",
        )
        env = {"CHARGEBUS_TIME_SCALE": str(SCALE), "CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": ""}
        process = ServiceProcess(["chargebus-tesla-bridge", "--config", str(config), "--log-level", "debug"], env)
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            process.start(tmp_path / "tesla-bridge.log")
            try:
                run = Running(process, api, bus, prefix)
                await bus.wait_message(run.topic("tesla-bridge/status"), lambda m: m.text == "online", timeout=20)
                yield run
            finally:
                process.stop()


async def test_process_drives_a_ble_car_and_survives_a_slow_proxy(running: Running) -> None:
    run = running
    setpoint = {
        "v": 1,
        "evse_id": f"car-{VIN}",
        "power_w": 10 * 230,
        "charge": True,
        "phases": 1,
        "voltage_v": 230,
        "expires_at": iso_utc(SystemClock().time() + 3600),  # an hour of real time: days of simulated time
    }
    await run.bus.publish(run.topic(f"evse/car-{VIN}/setpoint"), json.dumps(setpoint), retain=True)
    await run.bus.wait_for(lambda: run.api.car(VIN).charge_amps == 10, timeout=30, what="10 A over BLE")
    vehicle = await run.bus.wait_message(
        run.topic(f"vehicle/{VIN}/state"), lambda m: m.json()["charging_state"] == "Charging", timeout=30
    )
    assert parse_payload(VehicleState, vehicle.payload).source == "ble_proxy"
    usage = await run.bus.wait_message(
        run.topic("tesla-bridge/usage"), lambda m: m.json()["cars"][0]["ble"] >= 2, timeout=30
    )
    calls = parse_payload(Usage, usage.payload).cars[0]
    assert (calls.data, calls.command, calls.wake, calls.billed_usd) == (0, 0, 0, 0.0)
    # The proxy now takes 100 s a call: past the 30 s timeout. Two timeouts open the breaker: one error.
    run.api.ble_latency_s = 100.0
    error = await run.bus.wait_message(run.topic("tesla-bridge/error"), timeout=60)
    assert "BLE proxy" in error.json()["error"]
    assert "no answer within 30 s" in error.json()["error"]
    await run.bus.wait_for(lambda: (e := run.evse()) is not None and not e.online, timeout=30, what="offline EVSE")
    # Fast again: the trial after the pause closes the breaker, the EVSE is back, and no second error came.
    run.api.ble_latency_s = 3.0
    await run.bus.wait_for(
        lambda: (e := run.evse()) is not None and e.online and "BLE" not in (e.status_text or ""),
        timeout=60,
        what="the EVSE back online",
    )
    assert len(run.bus.on(run.topic("tesla-bridge/error"))) == 1
    assert run.api.billed() == []
    assert run.api.count("token") == 0
    run.process.kill(signal.SIGTERM)
    assert run.process.wait() == 0
    log = run.process.log()
    assert "Traceback" not in log
    assert "tesla_ble_breaker" in log
