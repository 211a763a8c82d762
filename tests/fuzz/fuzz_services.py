"""Starting the services under fuzz the way users do: their own process, a TOML file, a real broker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chargebus_sim.fleet_api import FakeFleetApi

from tests.support.bus import ServiceProcess

VIN = "5YJ3E1EA8KF000001"


def allocator(url: str, prefix: str, tmp_path: Path, mode: str = "now") -> ServiceProcess:
    config = tmp_path / "allocator.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[mqtt]\nha_discovery = false\n[allocator]\nmode = "{mode}"\n',
        encoding="utf-8",
    )
    env = {"CHARGEBUS_MQTT_URL": url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    process = ServiceProcess([sys.executable, "-m", "chargebus_allocator", "--config", str(config)], env)
    return process.start(tmp_path / "allocator.log")


def history(url: str, prefix: str, tmp_path: Path, database: Path) -> ServiceProcess:
    config = tmp_path / "history.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n[mqtt]\nha_discovery = false\n[history]\ndatabase = "sqlite:///{database}"\n',
        encoding="utf-8",
    )
    env = {"CHARGEBUS_MQTT_URL": url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    process = ServiceProcess([sys.executable, "-m", "chargebus_history", "--config", str(config)], env)
    return process.start(tmp_path / "history.log")


def tesla_bridge(url: str, prefix: str, tmp_path: Path, api: FakeFleetApi) -> ServiceProcess:
    """One car, `VIN`, fed by TeslaMate under `<prefix>/teslamate` (car id 1), at home."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    token_file = state_dir / "tesla-token.json"
    token_file.write_text(json.dumps(api.token_file_content()), encoding="utf-8")
    config = tmp_path / "tesla.toml"
    config.write_text(
        f'state_dir = "{state_dir}"\n[mqtt]\nurl = "{url}"\nprefix = "{prefix}"\nha_discovery = false\n[tesla]\n'
        f'api_base = "{api.url}"\ncommand_base = "{api.proxy_url}"\ntoken_url = "{api.token_url}"\n'
        f'client_id = "{api.client_id}"\ntoken_file = "{token_file}"\nteslamate_prefix = "{prefix}/teslamate"\n'
        f'[[tesla.vehicles]]\nvin = "{VIN}"\nname = "Model 3"\nteslamate_car_id = 1\n'
        "home = { lat = 52.52, lon = 13.40, radius_m = 150 }\n",
        encoding="utf-8",
    )
    process = ServiceProcess(["chargebus-tesla-bridge", "--config", str(config)], {"CHARGEBUS_CONFIG": ""})
    return process.start(tmp_path / "tesla-bridge.log")
