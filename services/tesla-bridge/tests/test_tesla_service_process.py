"""`chargebus-tesla-bridge` as a user runs it: its own process, a TOML config, real mosquitto, the fake Fleet API.

One process per test, in accelerated time (`CHARGEBUS_TIME_SCALE`), with a password-protected TLS broker where
the session has one: the states it publishes, the commands it sends, one error per bad input with no state change,
and no token or password in its log or on the bus.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chargebus.clock import SystemClock, iso_utc
from chargebus.schema import EvseState, VehicleState, parse_payload
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.teslamate import TeslaMateSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder, ServiceProcess

VIN = "5YJ3E1EA8KF000001"
OTHER_VIN = "5YJ3E1EA7KF000002"
SCALE = 20.0
TOKEN_TAG = "-pRoC3ssS3cr3t"


@dataclass
class Running:
    process: ServiceProcess
    api: FakeFleetApi
    bus: Recorder
    tm: TeslaMateSim
    prefix: str

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    def errors(self) -> list[Received]:
        return self.bus.on(self.topic("tesla-bridge/error"))

    def state_of(self, topic: str) -> dict[str, object] | None:
        last = self.bus.last(self.topic(topic))
        if last is None:
            return None
        data: dict[str, object] = last.json()
        data.pop("updated_at", None)
        data.pop("data_age_s", None)
        return data


def write_config(path: Path, broker: BrokerUnderTest, prefix: str, api: FakeFleetApi, state_dir: Path) -> str:
    """The TOML a user would write; returns the MQTT password in use ("" without a password listener)."""
    if broker.tls_url and broker.password:
        mqtt = (
            f'url = "{broker.tls_url}"\nusername = "{broker.username}"\npassword = "{broker.password}"\n'
            f'ca_file = "{broker.ca_file}"\n'
        )
        password = broker.password
    else:
        mqtt, password = f'url = "{broker.url}"\n', ""
    token_file = state_dir / "tesla-token.json"
    token_file.write_text(json.dumps(api.token_file_content()))
    path.write_text(
        f'state_dir = "{state_dir}"\n'
        f'[mqtt]\n{mqtt}prefix = "{prefix}"\nha_discovery = false\n'
        "[tesla]\n"
        f'api_base = "{api.url}"\ncommand_base = "{api.proxy_url}"\ntoken_url = "{api.token_url}"\n'
        f'client_id = "{api.client_id}"\ntoken_file = "{token_file}"\n'
        f'teslamate_prefix = "{prefix}/teslamate"\nmin_amps = 5\n'
        "[[tesla.vehicles]]\n"
        f'vin = "{VIN}"\nname = "Model 3"\nteslamate_car_id = 1\n'
        "home = { lat = 52.52, lon = 13.40, radius_m = 150 }\n",
        encoding="utf-8",
    )
    return password


@pytest.fixture
async def running(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> AsyncIterator[tuple[Running, str]]:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = tmp_path / "chargebus.toml"
    clock = SystemClock(SCALE)
    async with FakeFleetApi(clock=clock.time, token_tag=TOKEN_TAG) as api:
        api.add_car(VIN, state="online", charging_state="Stopped", charge_amps=16)
        password = write_config(config, mqtt_broker, prefix, api, state_dir)
        env = {"CHARGEBUS_TIME_SCALE": str(SCALE), "CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": ""}
        process = ServiceProcess(["chargebus-tesla-bridge", "--config", str(config), "--log-level", "debug"], env)
        async with (
            Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
            TeslaMateSim(mqtt_broker.url, f"{prefix}/teslamate") as tm,
        ):
            process.start(tmp_path / "tesla-bridge.log")
            try:
                run = Running(process, api, bus, tm, prefix)
                await bus.wait_message(run.topic("tesla-bridge/status"), lambda m: m.text == "online", timeout=15)
                # TeslaMate knows the car: online, plugged in at home, not charging.
                await tm.summary(
                    1,
                    state="online",
                    plugged_in=True,
                    charging_state="Stopped",
                    charge_current_request=16,
                    charge_current_request_max=32,
                    battery_level=50,
                    charge_limit_soc=80,
                    geofence="Home",
                    location={"latitude": 52.52, "longitude": 13.40},
                )
                yield run, password
            finally:
                process.stop()


async def test_process_publishes_the_car_and_follows_a_setpoint(running: tuple[Running, str]) -> None:
    run, _password = running
    vehicle = await run.bus.wait_message(
        run.topic(f"vehicle/{VIN}/state"), lambda m: m.json()["plugged_in"] is True, timeout=10
    )
    assert parse_payload(VehicleState, vehicle.payload).source == "teslamate"
    evse = parse_payload(EvseState, run.bus.last(run.topic(f"evse/car-{VIN}/state")).payload)  # type: ignore[union-attr]
    assert (evse.kind, evse.controllable, evse.min_power_w) == ("vehicle", True, 5 * 230)
    assert run.api.calls == []  # TeslaMate is fresh: nothing to ask Tesla
    setpoint = {
        "v": 1,
        "evse_id": f"car-{VIN}",
        "power_w": 10 * 230,
        "charge": True,
        "phases": 1,
        "voltage_v": 230,
        "expires_at": iso_utc(SystemClock().time() + 3600),
    }
    await run.bus.publish(run.topic(f"evse/car-{VIN}/setpoint"), json.dumps(setpoint), retain=True)
    await run.bus.wait_for(
        lambda: len([c for c in run.api.calls if c.category == "command"]) >= 2, timeout=10, what="two commands"
    )
    commands = [(c.path.rsplit("/", 1)[-1], c.body) for c in run.api.calls if c.category == "command"]
    assert commands == [("set_charging_amps", {"charging_amps": 10}), ("charge_start", {})]
    assert all(c.host == "proxy" for c in run.api.calls if c.category == "command")
    await run.bus.wait_message(
        run.topic("tesla-bridge/usage"), lambda m: m.json()["cars"][0]["command"] == 2, timeout=10
    )
    run.process.kill(signal.SIGTERM)
    assert run.process.wait() == 0
    assert "Traceback" not in run.process.log()


async def test_bad_inputs_get_one_error_each_and_change_nothing(running: tuple[Running, str]) -> None:
    run, password = running
    await run.bus.wait_message(run.topic(f"vehicle/{VIN}/state"), lambda m: m.json()["plugged_in"] is True)
    await asyncio.sleep(0.5)
    states_before = (run.state_of(f"evse/car-{VIN}/state"), run.state_of(f"vehicle/{VIN}/state"))
    big = b"x" * 300_000
    limit, refresh = f"vehicle/{VIN}/charge_limit/set", f"vehicle/{VIN}/refresh/set"
    max_current, setpoint = f"evse/car-{VIN}/max_current/set", f"evse/car-{VIN}/setpoint"
    cases: list[tuple[str, bytes, bool]] = [
        (limit, b"{", False),
        (limit, b"abc", False),
        (limit, b"49", False),
        (limit, b"101", False),
        (limit, b'{"value": 80.5}', False),
        (limit, b"", False),
        (f"vehicle/{OTHER_VIN}/charge_limit/set", b"80", False),
        (limit, b"80", True),
        (limit, big, False),
        (f"vehicle/{OTHER_VIN}/refresh/set", b"1", False),
        (refresh, b"1", True),
        (refresh, big, False),
        (max_current, b"{", False),
        (max_current, b"4", False),
        (max_current, b"49", False),
        (f"evse/car-{OTHER_VIN}/max_current/set", b"16", False),
        (max_current, b"16", True),
        (max_current, big, False),
        ("evse/twc3-garage/max_current/set", b"16", False),  # Gen3: read-only, answered here
        (setpoint, b"{", False),
        (setpoint, b'{"v": 1, "evse_id": "car-' + VIN.encode() + b'", "power_w": -5}', False),
        (setpoint, b'{"v": 1, "evse_id": "car-' + OTHER_VIN.encode() + b'", "expires_at": "x"}', False),
        (f"evse/car-{OTHER_VIN}/setpoint", b'{"v": 1}', False),
        (setpoint, big, False),
    ]
    for topic, payload, retain in cases:
        await run.bus.publish(run.topic(topic), payload, retain=retain)
    await run.bus.wait_for(lambda: len(run.errors()) >= len(cases), timeout=15, what="one error per bad input")
    await asyncio.sleep(1.0)  # nothing more may come
    errors = [message.json() for message in run.errors()]
    assert len(errors) == len(cases)
    assert sorted(e["topic"] for e in errors) == sorted(run.topic(topic) for topic, _p, _r in cases)
    for event in errors:
        assert set(event) == {"v", "topic", "payload", "error", "transaction"}
        assert event["payload"] is None or len(event["payload"]) <= 200
    assert run.api.calls == []
    assert (run.state_of(f"evse/car-{VIN}/state"), run.state_of(f"vehicle/{VIN}/state")) == states_before
    for topic, _payload, retain in cases:
        if retain:
            await run.bus.publish(run.topic(topic), b"", retain=True)
    assert run.process.alive()
    run.process.stop()
    secrets = [f"{kind}-0{TOKEN_TAG}" for kind in ("access", "refresh")] + ([password] if password else [])
    log = run.process.log()
    traffic = b"\n".join(m.topic.encode() + b" " + m.payload for m in run.bus.messages)
    for secret in secrets:
        assert secret not in log
        assert secret.encode() not in traffic
