"""The history service as users run it: its own process, a config file, a real broker, kill -9."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from chargebus_history.store import HistoryStore

from services.history.tests.history_support import VIN, charging, dumps, request, vehicle_state
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess


def write_config(tmp_path: Path, prefix: str, database: Path) -> Path:
    config = tmp_path / "chargebus.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n'
        "[history]\n"
        f'database = "sqlite:///{database}"\n'
        'timezone = "Europe/Berlin"\n'
        "[[meters]]\n"
        'name = "grid"\n'
        f'topic = "{prefix}-dev/em3"\n'
        'json_path = "emeters.0.power"\n'
        "invert = true\n",
        encoding="utf-8",
    )
    return config


def history_process(broker_url: str, prefix: str, config: Path) -> ServiceProcess:
    env = {"CHARGEBUS_MQTT_URL": broker_url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    return ServiceProcess([sys.executable, "-m", "chargebus_history", "--config", str(config)], env)


async def test_answered_samples_survive_kill_9(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    database = tmp_path / "history.sqlite"
    service = history_process(mqtt_broker.url, prefix, write_config(tmp_path, prefix, database))
    service.start(tmp_path / "history.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "online", timeout=20)
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging(power_w=7360.0)), retain=True)
            await bus.publish(f"{prefix}/vehicle/{VIN}/state", dumps(vehicle_state()), retain=True)
            await bus.publish(f"{prefix}-dev/em3", dumps({"emeters": [{"power": 950.5}]}))
            await bus.publish(f"{prefix}/power/house", '{"v": 1, "power_w": 640.0, "energy_wh": 12345.0}')
            body = request("sessions", span_s=600, response_topic=f"{prefix}/answers", transaction="s1")
            await bus.publish(f"{prefix}/history/request", dumps(body))
            answer = (await bus.wait_message(f"{prefix}/answers", timeout=15)).json()
            # The answer includes everything received before the request, so it is all committed by now.
            assert answer["status"] == "ok", answer
            assert answer["transaction"] == "s1"
            assert answer["data"][0]["evse_ids"] == ["twc-4a1b"]
            assert answer["data"][0]["end"] is None  # still charging
            service.kill(signal.SIGKILL)
            assert service.wait() == -signal.SIGKILL
            await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "offline", timeout=10)
    finally:
        service.stop()
    assert "Traceback" not in service.log()
    async with await HistoryStore.open(f"sqlite:///{database}") as store:
        (evse,) = await store.evse_records("twc-4a1b", 0, 4e9)
        (vehicle,) = await store.vehicle_records(VIN, 0, 4e9)
        (grid,) = await store.meter_records("grid", 0, 4e9)
        (house,) = await store.meter_records("house", 0, 4e9)
    assert evse.power_w == 7360.0
    assert vehicle.charger_power_w == 3680.0
    assert grid.power_w == -950.5
    assert (house.power_w, house.energy_wh) == (640.0, 12345.0)


def test_a_relative_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "chargebus.toml"
    config.write_text('[history]\ndatabase = "sqlite:///relative.sqlite"\n', encoding="utf-8")
    service = history_process("mqtt://127.0.0.1:1", "x", config).start(tmp_path / "log")
    assert service.wait(30) == 2
    assert service.log().strip().startswith("config: history.database")
    assert "Traceback" not in service.log()
