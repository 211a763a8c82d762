"""The ocpp-bridge and the wallbox simulator as users start them: their own processes, a config file, MQTT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chargebus.broker import free_port, wait_for_port

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess
from tests.support.ocpp_harness import wait_state


def write_config(path: Path, port: int, extra: str = "") -> Path:
    path.write_text(
        f"""state_dir = "{path.parent / "state"}"
[ocpp]
listen = "127.0.0.1:{port}"
meter_interval_s = 1
[[ocpp.charge_points]]
ocpp_id = "WB-0042"
name = "carport"
max_current_a = 16
{extra}""",
        encoding="utf-8",
    )
    return path


async def test_the_bridge_and_the_simulator_as_processes(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    secret = tmp_path / "wb.password"
    secret.write_text("s3cret-Pa55word\n", encoding="utf-8")
    secret.chmod(0o600)
    config = write_config(tmp_path / "chargebus.toml", port, f'password_file = "{secret}"\n')
    env = {"CHARGEBUS_MQTT_URL": mqtt_broker.url, "CHARGEBUS_TOPIC_PREFIX": prefix}
    bridge = ServiceProcess([sys.executable, "-m", "chargebus_ocpp", "--config", str(config)], env)
    wallbox = ServiceProcess(
        [
            sys.executable,
            "-m",
            "chargebus.cli",
            "sim",
            "ocpp",
            "--url",
            f"ws://127.0.0.1:{port}",
            "--id",
            "WB-0042",
            "--plug",
            "--car-max-a",
            "16",
            "--password-file",
            str(secret),
        ],
        {},
    )
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        bridge.start(tmp_path / "bridge.log")
        try:
            wait_for_port("127.0.0.1", port, 15)
            wallbox.start(tmp_path / "wallbox.log")
            # no allocator runs: the wallbox is held at the failsafe, and the car draws that
            state = await wait_state(
                bus, prefix, "ocpp-carport", lambda s: s.offered_a == 6 and s.current_a == 6, timeout=15
            )
            assert state.charging is True
            await bus.wait_message(f"{prefix}/ocpp-bridge/status", lambda m: m.text == "online")
        finally:
            wallbox.stop()
            bridge.stop()
        await bus.wait_message(f"{prefix}/ocpp-bridge/status", lambda m: m.text == "offline")
    assert "event=profile" in bridge.log()
    for where in (bridge.log(), wallbox.log(), *(m.text for m in bus.messages)):
        assert "s3cret-Pa55word" not in where  # the password is never logged nor published


def test_an_invalid_config_stops_the_bridge_with_one_line_per_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path / "chargebus.toml", 9000, 'min_current_a = 3\nrate_unit = "kW"\n')
    result = subprocess.run(
        [sys.executable, "-m", "chargebus_ocpp", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith("config: ocpp.charge_points.0.") for line in lines)
    assert "Traceback" not in result.stderr
