"""docker-compose.yml, the Dockerfile pattern and the `sim` profile, checked without a Docker engine (CI machines have
none): the YAML as data, the simulators' commands parsed by the simulators themselves, the simulated stack's config
through `chargebus config check`, and each simulator command run for real against the services it stands in for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from chargebus.broker import free_port, wait_for_port
from chargebus.schema import EvseState, PowerReading
from chargebus_sim.cli import SIM_TOKEN_TAG, SIMULATORS, chargers_w, check_arguments, write_sim_token_file

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history", "ocpp-bridge", "forecast")
SIM_CONFIG = ROOT / "docker" / "chargebus.sim.toml"
SIM_ENV = ROOT / "docker" / "sim.env"
VIN = "5YJ3E1EA8KF000001"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def sim_services() -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in compose()["services"].items() if "sim" in spec.get("profiles", [])}


def sim_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in SIM_ENV.read_text(encoding="utf-8").splitlines())
    return {key.strip(): value.strip() for key, value in (p for p in pairs if len(p) == 2 and not p[0].startswith("#"))}


def chargebus_command(*args: str) -> list[str]:
    """`chargebus …` as a user types it, with this interpreter."""
    return [sys.executable, "-m", "chargebus.cli", *args]


# ----- the broker and the four services ---------------------------------------------------------------------------


def test_broker_has_config_persistence_and_healthcheck() -> None:
    broker = compose()["services"]["mosquitto"]
    assert broker["image"].startswith("eclipse-mosquitto:2")
    assert any("mosquitto.conf" in volume for volume in broker["volumes"])
    assert any(volume.startswith("mosquitto-data:") for volume in broker["volumes"])
    assert broker["restart"] == "unless-stopped"
    assert "healthcheck" in broker
    conf = (ROOT / "docker" / "mosquitto.conf").read_text(encoding="utf-8")
    assert "persistence true" in conf
    assert "persistence_location /mosquitto/data/" in conf


def test_every_service_has_a_dockerfile_from_the_one_pattern() -> None:
    pattern = (ROOT / "docker" / "Dockerfile.service").read_text(encoding="utf-8")
    assert "USER chargebus" in pattern
    assert "HEALTHCHECK" in pattern
    assert "uv sync --frozen" in pattern
    for name in SERVICES:
        service = compose()["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile.service"
        assert service["build"]["args"]["SERVICE"] == name
        assert (ROOT / "services" / name / "Dockerfile").exists()


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_healthchecked_restarted_unprivileged_configured_and_keeps_state(name: str) -> None:
    service = compose()["services"][name]
    assert service["restart"] == "unless-stopped"
    assert service["healthcheck"]["test"] == ["CMD", "chargebus", "health", name]
    assert service["user"] not in ("root", "0", "0:0")
    assert service["user"] == "chargebus"  # the image's uid 10001
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    volumes = service["volumes"]
    config = [v for v in volumes if isinstance(v, dict) and v["target"] == "/config/chargebus.toml"]
    assert config == [
        {
            "type": "bind",
            "source": "${CHARGEBUS_CONFIG_FILE:-./chargebus.toml}",
            "target": "/config/chargebus.toml",
            "read_only": True,
            "bind": {"create_host_path": False},  # no empty directory where the user forgot the file
        }
    ]
    assert f"{name.partition('-')[0]}-data:/data" in volumes
    assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert service["environment"]["CHARGEBUS_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert "profiles" not in service  # always part of the stack


def test_the_image_reads_the_mounted_config_and_keeps_state_in_data() -> None:
    pattern = (ROOT / "docker" / "Dockerfile.service").read_text(encoding="utf-8")
    assert "CHARGEBUS_CONFIG=/config/chargebus.toml" in pattern
    assert "CHARGEBUS_STATE_DIR=/data" in pattern
    assert "--uid 10001" in pattern
    ignore = (ROOT / "docker" / "Dockerfile.service.dockerignore").read_text(encoding="utf-8").split()
    for never in (".git", ".venv", "chargebus.toml", "tesla-token.json"):
        assert never in ignore  # no local config with passwords, no venv, in the build context


def test_service_dockerfiles_are_the_pattern_with_the_service_preset() -> None:
    pattern = (ROOT / "docker" / "Dockerfile.service").read_text(encoding="utf-8")
    for name in SERVICES:
        expected = pattern.replace("ARG SERVICE=allocator\n", f"ARG SERVICE={name}\n")
        assert (ROOT / "services" / name / "Dockerfile").read_text(encoding="utf-8") == expected, (
            f"services/{name}/Dockerfile is out of step: run scripts/gen-dockerfiles"
        )


def test_named_volumes_are_declared() -> None:
    data = compose()
    used = {
        volume.split(":", 1)[0]
        for service in data["services"].values()
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and not volume.startswith((".", "/"))
    }
    assert used <= set(data["volumes"])


def test_the_twc_serial_passthrough_is_there_and_documented() -> None:
    bridge = compose()["services"]["twc-bridge"]
    assert bridge["devices"] == ["${CHARGEBUS_TWC_DEVICE:-/dev/ttyUSB0}:/dev/ttyUSB0"]
    assert bridge["group_add"] == ["${CHARGEBUS_TWC_GROUP:-dialout}"]
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "/dev/serial/by-id/" in text  # the comment says how to find the stable device name
    guide = (ROOT / "docker" / "README.md").read_text(encoding="utf-8")
    assert "### Serial passthrough for the Gen2 TWCs" in guide
    for needed in ("CHARGEBUS_TWC_DEVICE", "CHARGEBUS_TWC_GROUP", "/dev/serial/by-id/", "socket://"):
        assert needed in guide
    assert "CHARGEBUS_TWC_DEVICE" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_variable_has_a_default() -> None:
    """`docker compose up` works with no .env at all; docker/sim.env only sets variables the file uses."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    variables = re.findall(r"\$\{([A-Z_]+)([^}]*)\}", text)
    assert variables
    for name, rest in variables:
        assert rest.startswith(":-"), f"${{{name}}} has no default"
    used = {name for name, _ in variables} | {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"}
    assert set(sim_env()) <= used


# ----- the all-in-one variant ---------------------------------------------------------------------------------------


def all_in_one() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.all-in-one.yml").read_text(encoding="utf-8"))
    return data


def test_the_all_in_one_variant_is_the_per_service_stack_in_one_container() -> None:
    data = all_in_one()
    assert set(data["services"]) == {"mosquitto", "chargebus"}
    assert data["services"]["mosquitto"] == compose()["services"]["mosquitto"]  # the same broker
    one = data["services"]["chargebus"]
    assert one["build"]["dockerfile"] == "docker/Dockerfile.service"
    assert one["build"]["args"]["SERVICE"] == "all"
    assert one["entrypoint"] == ["chargebus", "run", "--all"]
    assert one["healthcheck"]["test"] == ["CMD", "chargebus", "health", "--all"]
    twc = compose()["services"]["twc-bridge"]
    # what every per-service container has, and the serial passthrough of the twc-bridge's
    for key in ("restart", "user", "cap_drop", "security_opt", "environment", "depends_on", "devices", "group_add"):
        assert one[key] == twc[key], key
    config = next(v for v in twc["volumes"] if isinstance(v, dict))
    assert config in one["volumes"]
    assert "chargebus-data:/data" in one["volumes"]
    assert {"mosquitto-data", "chargebus-data"} == set(data["volumes"])
    # its own project: never the per-service stack's volumes
    assert data["name"] == "chargebus-all-in-one"


def test_the_all_in_one_variables_have_defaults_and_the_image_builds_every_service() -> None:
    text = (ROOT / "docker-compose.all-in-one.yml").read_text(encoding="utf-8")
    for name, rest in re.findall(r"\$\{([A-Z_]+)([^}]*)\}", text):
        assert rest.startswith(":-"), f"${{{name}}} has no default"
    pattern = (ROOT / "docker" / "Dockerfile.service").read_text(encoding="utf-8")
    assert '[ "$SERVICE" = all ]' in pattern
    for name in SERVICES:
        assert name in pattern.split('[ "$SERVICE" = all ]', 1)[1].split("else", 1)[0]
    assert "exec chargebus run --all" in pattern
    assert "chargebus health --all" in pattern


# ----- the sim profile -----------------------------------------------------------------------------------------------


def test_the_sim_profile_runs_each_simulator_as_a_chargebus_sim_command() -> None:
    sims = sim_services()
    assert set(sims) == {"twc-sim", "tesla-sim", "gen3-sim", "house-sim", "ocpp-sim"}
    commands = {}
    for name, spec in sims.items():
        assert spec["build"]["args"]["SERVICE"] == "sim"
        assert spec["entrypoint"] == ["chargebus", "sim"]
        assert spec["user"] == "chargebus"
        assert spec["restart"] == "unless-stopped"
        simulator, *args = spec["command"]
        assert simulator in SIMULATORS, f"{name}: `chargebus sim {simulator}` does not exist"
        check_arguments(simulator, args)  # the simulator's own parser accepts them (SystemExit otherwise)
        commands[simulator] = args
    assert set(commands) == {"twc-tcp", "fleet-api", "gen3", "house", "ocpp"}
    assert sim_env()["COMPOSE_PROFILES"] == "sim"


def test_a_wrong_simulator_argument_is_caught_by_the_check() -> None:
    with pytest.raises(SystemExit):
        check_arguments("twc-tcp", ["--ids", "4a1b", "--no-such-option"])
    with pytest.raises(SystemExit):
        check_arguments("warp-drive", [])


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_sim_config_is_wired_to_the_sim_services() -> None:
    sims = sim_services()
    config = tomllib.loads(SIM_CONFIG.read_text(encoding="utf-8"))
    twc_args = sims["twc-sim"]["command"][1:]
    assert config["twc"]["port"] == f"socket://twc-sim:{_option(twc_args, '--port')}"
    tesla_args = sims["tesla-sim"]["command"][1:]
    tesla = config["tesla"]
    assert urlsplit(tesla["api_base"]).netloc == f"tesla-sim:{_option(tesla_args, '--port')}"
    assert urlsplit(tesla["command_base"]).netloc == f"tesla-sim:{_option(tesla_args, '--proxy-port')}"
    assert tesla["token_url"] == tesla["api_base"] + "/oauth2/v3/token"
    assert tesla["token_file"] == _option(tesla_args, "--token-file")
    assert "tesla-data:/data" in sims["tesla-sim"]["volumes"]  # the bridge's volume: the seeded token is its own
    assert "tesla-data:/data" in compose()["services"]["tesla-bridge"]["volumes"]
    cars = [tesla_args[i + 1] for i, arg in enumerate(tesla_args) if arg == "--car"]
    assert [(v["vin"], v["teslamate_car_id"]) for v in tesla["vehicles"]] == [(vin, i) for i, vin in enumerate(cars, 1)]
    assert tesla["teslamate_prefix"] == _option(tesla_args, "--teslamate-prefix")
    gen3_args = sims["gen3-sim"]["command"][1:]
    assert tesla["wall_connectors"][0]["host"] == f"gen3-sim:{_option(gen3_args, '--port')}"
    house_args = sims["house-sim"]["command"][1:]
    assert _option(house_args, "--prefix") == config["mqtt"]["prefix"]
    assert config["allocator"]["grid_meter"] == "grid"
    assert config["mqtt"]["url"] == _option(house_args, "--url") == "mqtt://mosquitto:1883"
    assert sim_env()["CHARGEBUS_CONFIG_FILE"] == "./docker/chargebus.sim.toml"
    ocpp_args = sims["ocpp-sim"]["command"][1:]
    assert _option(ocpp_args, "--url") == f"ws://ocpp-bridge:{config['ocpp']['listen'].rpartition(':')[2]}"
    assert [cp["ocpp_id"] for cp in config["ocpp"]["charge_points"]] == [_option(ocpp_args, "--id")]
    assert compose()["services"]["ocpp-bridge"]["ports"] == ["${CHARGEBUS_OCPP_PORT:-9000}:9000"]


@pytest.mark.parametrize("service", [None, *SERVICES])
def test_the_sim_config_passes_config_check(service: str | None) -> None:
    extra = [] if service is None else ["--service", service]
    result = subprocess.run(
        chargebus_command("config", "check", "--config", str(SIM_CONFIG), *extra),
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config: ok"


def _answers(command: list[str]) -> bool:
    return (
        shutil.which(command[0]) is not None
        and subprocess.run([*command, "version"], capture_output=True, check=False).returncode == 0
    )


def test_docker_compose_config_where_a_compose_answers(tmp_path: Path) -> None:
    """`docker compose config` needs no engine. Where only the old v1 `docker-compose` exists, it checks the same
    file less `bind.create_host_path`, the one key here that v1 does not know."""
    source = ROOT / "docker-compose.yml"
    if _answers(["docker", "compose"]):
        command = ["docker", "compose", "-f", str(source)]
    elif _answers(["docker-compose"]):
        text = source.read_text(encoding="utf-8")
        v1 = tmp_path / "docker-compose.yml"
        v1.write_text(re.sub(r"\n  bind:\n    create_host_path: false\n", "\n", text), encoding="utf-8")
        assert "create_host_path" not in v1.read_text(encoding="utf-8")
        command = ["docker-compose", "-f", str(v1), "--project-directory", str(ROOT)]
    else:
        pytest.skip("no docker compose here; the YAML is checked by the other tests")
    for env_file in ([], ["--env-file", str(SIM_ENV)]):
        result = subprocess.run(
            [*command, *env_file, "config", "-q"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    if command[:2] == ["docker", "compose"]:
        small = ["docker", "compose", "-f", str(ROOT / "docker-compose.all-in-one.yml"), "config", "-q"]
        result = subprocess.run(small, cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


# ----- the simulators' commands, for real ---------------------------------------------------------------------------


def _write_twc_config(path: Path, broker: BrokerUnderTest, prefix: str, port: str) -> Path:
    path.write_text(
        f'state_dir = "{path.parent / "state"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nprefix = "{prefix}"\nha_discovery = false\n'
        f'[twc]\nport = "{port}"\nvoltage_v = 230\n',
        encoding="utf-8",
    )
    return path


async def test_twc_tcp_serves_the_twc_bus_to_a_bridge_on_a_socket_url(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """`chargebus sim twc-tcp` (twc-sim in the compose file) and the twc-bridge on `socket://…`, both processes."""
    port = free_port()
    sim = ServiceProcess(
        chargebus_command("sim", "twc-tcp", "--port", str(port), "--ids", "4a1b", "--vin", f"4a1b={VIN}"), {}
    ).start(tmp_path / "twc-sim.log")
    config = _write_twc_config(tmp_path / "chargebus.toml", mqtt_broker, prefix, f"socket://127.0.0.1:{port}")
    bridge = ServiceProcess([sys.executable, "-m", "chargebus_twc", "--config", str(config)], {"CHARGEBUS_CONFIG": ""})
    try:
        wait_for_port("127.0.0.1", port)
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            bridge.start(tmp_path / "twc-bridge.log")
            found = await bus.wait_message(
                f"{prefix}/evse/twc-4a1b/state",
                lambda m: bool(m.payload) and EvseState.model_validate_json(m.payload).vin == VIN,
                timeout=20,
            )
        state = EvseState.model_validate_json(found.payload)
        assert (state.online, state.plugged_in, state.source, state.kind) == (True, True, "rs485", "twc2")
    finally:
        bridge.stop()
        sim.stop()
    assert sim.wait() == 0  # SIGTERM: a clean stop, as `docker stop` asks for it
    assert f"socket://127.0.0.1:{port}" in sim.log()
    assert "event=client_connected" in sim.log()
    assert "Traceback" not in sim.log() + bridge.log()


async def test_fleet_api_sim_serves_seeds_the_token_file_and_feeds_teslamate(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    port, proxy_port = free_port(), free_port()
    token_file = tmp_path / "tesla-token.json"
    args = ["--port", str(port), "--proxy-port", str(proxy_port), "--car", VIN, "--token-file", str(token_file)]
    teslamate = ["--teslamate", mqtt_broker.url, "--teslamate-prefix", f"{prefix}/teslamate"]
    sim = ServiceProcess(chargebus_command("sim", "fleet-api", *args, *teslamate), {}).start(tmp_path / "fleet.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/teslamate/#"]) as bus:
            wait_for_port("127.0.0.1", port)
            wait_for_port("127.0.0.1", proxy_port)
            state = await bus.wait_message(f"{prefix}/teslamate/cars/1/state", timeout=15)
            assert state.text == "online"
            plugged = await bus.wait_message(f"{prefix}/teslamate/cars/1/plugged_in")
            assert plugged.text == "true"
        tokens = json.loads(token_file.read_text(encoding="utf-8"))
        assert token_file.stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/1/vehicles", headers=headers) as answer:
                assert answer.status == 200
                listed = await answer.json()
            assert [car["vin"] for car in listed["response"]] == [VIN]
            form = {"grant_type": "refresh_token", "client_id": "chargebus", "refresh_token": tokens["refresh_token"]}
            async with http.post(f"http://127.0.0.1:{port}/oauth2/v3/token", data=form) as answer:
                assert answer.status == 200
            command = f"http://127.0.0.1:{proxy_port}/api/1/vehicles/{VIN}/command/charge_start"
            async with http.post(command, headers=headers) as answer:
                assert answer.status in (200, 401)  # reached the proxy (the old token was just refreshed away)
    finally:
        sim.stop()
    assert sim.wait() == 0
    assert tokens["access_token"] not in sim.log()


def test_the_sim_never_overwrites_tokens_it_did_not_issue(tmp_path: Path) -> None:
    path = tmp_path / "tesla-token.json"
    real = {"access_token": "eyJreal", "refresh_token": "NA_real", "expires_at": 1}
    path.write_text(json.dumps(real), encoding="utf-8")
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        write_sim_token_file(path, {"access_token": "a", "refresh_token": f"r{SIM_TOKEN_TAG}", "expires_at": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == real
    earlier = {"access_token": "a", "refresh_token": f"refresh-3{SIM_TOKEN_TAG}", "expires_at": 2}
    path.write_text(json.dumps(earlier), encoding="utf-8")
    fresh = {"access_token": "b", "refresh_token": f"refresh-0{SIM_TOKEN_TAG}", "expires_at": 3}
    write_sim_token_file(path, fresh)  # an earlier simulator's tokens: replaced
    assert json.loads(path.read_text(encoding="utf-8")) == fresh


async def test_house_sim_publishes_meters_with_the_chargers_in_the_grid_reading(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    args = ["--url", mqtt_broker.url, "--prefix", prefix, "--period", "0.2", "--start-hour", "12", "--time-scale", "1"]
    sim = ServiceProcess(chargebus_command("sim", "house", *args), {}).start(tmp_path / "house.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/power/#"]) as bus:
            first = await bus.wait_message(f"{prefix}/power/grid", timeout=15)
            pv = PowerReading.model_validate_json((await bus.wait_message(f"{prefix}/power/pv")).payload)
            assert pv.power_w > 1000  # midday sun
            before = PowerReading.model_validate_json(first.payload).power_w
            charging = {"online": True, "power_w": 7000.0, "vin": VIN}
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", json.dumps(charging), retain=True)
            await bus.wait_for(
                lambda: any(
                    PowerReading.model_validate_json(m.payload).power_w > before + 6000
                    for m in bus.on(f"{prefix}/power/grid")
                ),
                timeout=10,
                what="the grid reading with the charger's 7 kW",
            )
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", b"", retain=True)
    finally:
        sim.stop()
    assert sim.wait() == 0


def test_chargers_count_a_car_reported_by_two_evses_once() -> None:
    states: dict[str, dict[str, Any]] = {
        "twc": {"online": True, "power_w": 7000.0, "vin": VIN},
        "car": {"online": True, "power_w": 6900.0, "vin": VIN},
        "other": {"online": True, "power_w": 1000.0, "vin": None},
        "gone": {"online": False, "power_w": 5000.0, "vin": None},
        "unknown": {"online": True, "power_w": None, "vin": None},
    }
    assert chargers_w(states) == 8000.0


async def test_teslamate_sim_alone_publishes_a_car(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    args = ["--url", mqtt_broker.url, "--teslamate-prefix", f"{prefix}/teslamate", "--car", VIN, "--state", "asleep"]
    sim = ServiceProcess(chargebus_command("sim", "teslamate", *args), {}).start(tmp_path / "teslamate.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/teslamate/#"]) as bus:
            state = await bus.wait_message(f"{prefix}/teslamate/cars/1/state", timeout=15)
            await bus.wait_message(f"{prefix}/teslamate/cars/1/healthy", lambda m: m.text == "true")  # heartbeat
    finally:
        sim.stop()
    assert state.text == "asleep"
    assert sim.wait() == 0
