from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from chargebus.config import (
    AllocatorServiceConfig,
    ConfigError,
    FullConfig,
    HistoryServiceConfig,
    OcppBridgeConfig,
    OcppChargePointConfig,
    TeslaBridgeConfig,
    TwcBridgeConfig,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chargebus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(
    cls: type[TwcBridgeConfig | FullConfig | AllocatorServiceConfig | OcppBridgeConfig], path: Path
) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(cls, path)
    return caught.value.problems


def test_example_file_documents_a_valid_config() -> None:
    config = load_config(FullConfig, ROOT / "chargebus.example.toml")
    assert config.twc.wiring_max_amps == 32
    assert config.allocator.circuits[1].parent == "main"
    assert config.tesla.vehicles[0].home is not None
    assert {m.name for m in config.meters} == {"grid", "mains"}


def test_example_file_mentions_every_key() -> None:
    text = (ROOT / "chargebus.example.toml").read_text(encoding="utf-8")
    sections: dict[str, Any] = {
        "mqtt": FullConfig.model_fields["mqtt"].annotation,
        "twc": FullConfig.model_fields["twc"].annotation,
        "tesla": FullConfig.model_fields["tesla"].annotation,
        "allocator": FullConfig.model_fields["allocator"].annotation,
        "history": FullConfig.model_fields["history"].annotation,
        "ocpp": FullConfig.model_fields["ocpp"].annotation,
        "ocpp.charge_points": OcppChargePointConfig,
    }
    for name, model in sections.items():
        assert model is not None
        for key in model.model_fields:
            pattern = rf"(^|[\s.\[]){key}(\s*=|\]|\.)"
            assert re.search(pattern, text, re.MULTILINE), f"{name}.{key} is not documented"


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARGEBUS_CONFIG", raising=False)
    config = load_config(TwcBridgeConfig)
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.twc.failsafe_amps == 6


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[twc]\nport = "/dev/ttyUSB0"\nwiring_max_amps = 32\n[mqtt]\nprefix = "a"\n')
    monkeypatch.setenv("CHARGEBUS_TWC__PORT", "socket://127.0.0.1:9000")
    monkeypatch.setenv("CHARGEBUS_MQTT_URL", "mqtts://u:p@broker:8883")
    monkeypatch.setenv("CHARGEBUS_TOPIC_PREFIX", "home/ev")
    monkeypatch.setenv("CHARGEBUS_STATE_DIR", str(tmp_path / "state"))
    config = load_config(TwcBridgeConfig, path)
    assert config.twc.port == "socket://127.0.0.1:9000"
    assert config.twc.wiring_max_amps == 32
    assert config.mqtt.prefix == "home/ev"
    assert config.mqtt.tls
    assert config.mqtt.credentials() == ("u", "p")
    assert config.mqtt.redacted_url == "mqtts://u:***@broker:8883"
    assert config.state_dir == tmp_path / "state"


def test_misspelt_environment_key_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARGEBUS_TWC__PROT", "x")
    assert problems(TwcBridgeConfig, write(tmp_path, "")) == ["config: twc.prot = 'x': unknown key (misspelt?)"]


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARGEBUS_CONFIG", str(write(tmp_path, "[twc]\nwiring_max_amps = 16\n")))
    assert load_config(TwcBridgeConfig).twc.wiring_max_amps == 16


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[twc]\nwiring_max_amps = 100\n",
            "config: twc.wiring_max_amps = 100: above 80 A, the largest Gen2 TWC rating",
        ),
        ("[twc]\nmin_amps = 4\n", "config: twc.min_amps = 4: below 5 A"),
        ("[twc]\nfailsafe_amps = 3\n", "failsafe_amps 3 is between 0 and min_amps 6"),
        ("[twc]\nphases = 2\n", "config: twc.phases = 2"),
        ("[twc]\nmaster_id = 'xyz'\n", "config: twc.master_id = 'xyz'"),
        ("[twc]\nvin_hints = {'4a1b' = 'not-a-vin'}\n", "config: twc.vin_hints.4a1b"),
    ],
)
def test_twc_safety_limits_are_errors_not_clamps(tmp_path: Path, toml: str, expected: str) -> None:
    found = problems(TwcBridgeConfig, write(tmp_path, toml))
    assert len(found) == 1
    assert found[0].startswith(expected) or expected in found[0]


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    found = problems(TwcBridgeConfig, write(tmp_path, "[twc]\nwiring_max_amps = 100\nmin_amps = 4\nbogus = 1\n"))
    assert len(found) == 3


def test_services_ignore_other_services_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "[tesla]\nmax_wakes_per_day = -1\n[twc]\nwiring_max_amps = 40\n")
    assert load_config(TwcBridgeConfig, path).twc.wiring_max_amps == 40
    assert any("tesla.max_wakes_per_day" in p for p in problems(FullConfig, path))


def test_unknown_section_is_reported_to_every_service(tmp_path: Path) -> None:
    found = problems(TwcBridgeConfig, write(tmp_path, "[allocater]\nmode = 'now'\n"))
    assert found[0].startswith("config: allocater: unknown section")


def test_invalid_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in problems(TwcBridgeConfig, write(tmp_path, "[twc\n"))[0]


def test_allocator_meter_forms(tmp_path: Path) -> None:
    config = load_config(AllocatorServiceConfig, write(tmp_path, "[allocator]\ngeneration_meter = 'pv'\n"))
    assert config.allocator.grid_meter is None
    both = "[allocator]\ngrid_meter = 'grid'\ngeneration_meter = 'pv'\n"
    assert "not both" in problems(AllocatorServiceConfig, write(tmp_path, both))[0]


def test_circuit_tree_is_checked(tmp_path: Path) -> None:
    loop = (
        "[[allocator.circuits]]\nid = 'a'\nparent = 'b'\nmax_current_a = 16\n"
        "[[allocator.circuits]]\nid = 'b'\nparent = 'a'\nmax_current_a = 16\n"
    )
    assert "loop" in problems(AllocatorServiceConfig, write(tmp_path, loop))[0]
    orphan = "[allocator.evses.'twc-4a1b']\ncircuit = 'nowhere'\n"
    assert "nowhere" in problems(AllocatorServiceConfig, write(tmp_path, orphan))[0]
    bigger_child = (
        "[[allocator.circuits]]\nid = 'main'\nmax_current_a = 16\n"
        "[[allocator.circuits]]\nid = 'sub'\nparent = 'main'\nmax_current_a = 32\n"
    )
    config = load_config(AllocatorServiceConfig, write(tmp_path, bigger_child))
    assert "above its parent" in config.allocator.warnings()[0]


def test_tesla_references(tmp_path: Path) -> None:
    text = (
        "[tesla]\nclient_id = 'x'\ntoken_file = '/tmp/t.json'\n"
        "[[tesla.vehicles]]\nvin = '5YJ3E1EA8KF000001'\nwall_connector = 'shed'\n"
    )
    assert "shed" in problems(TeslaBridgeConfig, write(tmp_path, text))[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("name = 'garage'\nhost = 'http://10.0.0.5/'", 'must be "host" or "host:port"'),
        ("name = 'garage'\nhost = '10.0.0.5:99999'", 'must be "host" or "host:port"'),
        ("name = 'garage'\nhost = 'wc.local'\nmax_current_a = 81", "max_current_a"),
        ("name = 'garage'\nhost = 'a'\n[[tesla.wall_connectors]]\nname = 'garage'\nhost = 'b'", "more than once"),
    ],
)
def test_wall_connectors_are_checked_at_load(tmp_path: Path, entries: str, expected: str) -> None:
    text = f"[tesla]\n[[tesla.wall_connectors]]\n{entries}\n"
    assert expected in "\n".join(problems(TeslaBridgeConfig, write(tmp_path, text)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("vehicle", "expected"),
    [
        ("transport = 'ble_proxy'\nble_proxy_url = '127.0.0.1:8080'", "http:// or https://"),
        ("transport = 'ble_proxy'", "needs ble_proxy_url"),
        ("transport = 'ble_proxy'\nble_proxy_url = 'http://127.0.0.1:8080'\nble_fallback = 'fleet'", "token_file"),
    ],
)
def test_ble_proxy_cars_are_checked_at_load(tmp_path: Path, vehicle: str, expected: str) -> None:
    text = f"[tesla]\n[[tesla.vehicles]]\nvin = '5YJ3E1EA8KF000001'\n{vehicle}\n"
    assert expected in "\n".join(problems(TeslaBridgeConfig, write(tmp_path, text)))  # type: ignore[arg-type]


def test_a_ble_car_without_fallback_needs_no_fleet_credentials(tmp_path: Path) -> None:
    text = "[tesla]\n[[tesla.vehicles]]\nvin = '5YJ3E1EA8KF000001'\ntransport = 'ble_proxy'\n"
    text += "ble_proxy_url = 'http://127.0.0.1:8080'\n"
    assert load_config(TeslaBridgeConfig, write(tmp_path, text)).tesla.vehicles[0].uses_fleet_api is False


def test_wall_connector_host_may_carry_a_port(tmp_path: Path) -> None:
    text = "[tesla]\n[[tesla.wall_connectors]]\nname = 'garage'\nhost = '192.168.1.50:8080'\nmax_current_a = 32\n"
    unit = load_config(TeslaBridgeConfig, write(tmp_path, text)).tesla.wall_connectors[0]
    assert (unit.host, unit.max_current_a) == ("192.168.1.50:8080", 32)


def test_history_defaults_to_sqlite_in_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBUS_STATE_DIR", str(tmp_path))
    config = load_config(HistoryServiceConfig, write(tmp_path, "[history]\ntimezone = 'Europe/Berlin'\n"))
    assert config.database_url == f"sqlite:///{tmp_path}/history.sqlite"
    assert "unknown IANA" in problems(FullConfig, write(tmp_path, "[history]\ntimezone = 'Mars/Base'\n"))[0]


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    found = problems(TwcBridgeConfig, write(tmp_path, "[mqtt]\nurl = 'http://me:s3cret@x'\npassword = 5\n"))
    assert not any("s3cret" in line for line in found)


def test_battery_and_site_limits_are_read(tmp_path: Path) -> None:
    text = (
        "[allocator]\nbattery_meter = 'battery'\nbattery_soc_meter = 'battery_soc'\nbattery_priority_soc = 40\n"
        "max_import_w = 11000\nimport_average = { limit_w = 2500, window_s = 900 }\n"
    )
    allocator = load_config(AllocatorServiceConfig, write(tmp_path, text)).allocator
    assert (allocator.battery_meter, allocator.battery_soc_meter) == ("battery", "battery_soc")
    assert (allocator.battery_priority_soc, allocator.battery_buffer_soc, allocator.battery_buffer_start_soc) == (
        40,
        90,
        95,
    )
    assert (allocator.max_import_w, allocator.import_average.limit_w, allocator.import_average.window_s) == (
        11000,
        2500,
        900,
    )
    assert allocator.site_limited
    defaults = load_config(AllocatorServiceConfig, write(tmp_path, "[allocator]\nbattery_meter = ''\n")).allocator
    assert defaults.battery_meter is None
    assert not defaults.site_limited


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("battery_soc_meter = 'soc'", "needs battery_meter"),
        ("battery_meter = 'grid'", "also a grid"),
        ("battery_meter = 'b'\nbattery_soc_meter = 'b'", "must differ"),
        ("battery_priority_soc = 95\nbattery_buffer_soc = 90", "must rise"),
        ("battery_buffer_soc = 96", "must rise"),
        ("battery_priority_soc = 101", "battery_priority_soc"),
        ("max_import_w = -1", "max_import_w"),
        ("import_average = { limit_w = 2500, window_s = 700 }", "divide a day"),
        ("import_average = { limit_w = 2500, window_s = 30 }", "window_s"),
        ("import_average = { limit_w = 2500, window = 900 }", "window"),
    ],
)
def test_battery_and_site_limit_mistakes_are_errors(tmp_path: Path, toml: str, expected: str) -> None:
    found = problems(AllocatorServiceConfig, write(tmp_path, f"[allocator]\n{toml}\n"))
    assert any(expected in problem for problem in found), found


def test_example_file_has_an_ocpp_charge_point() -> None:
    config = load_config(FullConfig, ROOT / "chargebus.example.toml")
    (point,) = config.ocpp.charge_points
    assert (point.ocpp_id, point.name, point.max_current_a, point.rate_unit) == ("WB-0042", "garage", 16, "A")
    assert (config.ocpp.host, config.ocpp.port, config.ocpp.tls) == ("0.0.0.0", 9000, False)


OCPP_POINT = '[[ocpp.charge_points]]\nocpp_id = "WB-1"\nname = "garage"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (OCPP_POINT + "max_current_a = 100\n", "ocpp.charge_points.0.max_current_a = 100"),
        (OCPP_POINT + "min_current_a = 5\n", "ocpp.charge_points.0.min_current_a = 5"),
        (OCPP_POINT + "max_current_a = 10\nmin_current_a = 12\n", "min_current_a 12 is above max_current_a 10"),
        (OCPP_POINT + "failsafe_current_a = 3\n", "failsafe_current_a 3 is between 0 and min_current_a 6"),
        (OCPP_POINT + "failsafe_current_a = 20\n", "failsafe_current_a 20 is above max_current_a 16"),
        (OCPP_POINT + 'rate_unit = "kW"\n', "rate_unit"),
        (OCPP_POINT + "phases = 2\n", "phases"),
        (OCPP_POINT.replace("garage", "Garage"), "becomes the id ocpp-<name>"),
        (OCPP_POINT.replace("WB-1", "WB/1"), "must not contain '/'"),
        (OCPP_POINT + OCPP_POINT, "ocpp_id WB-1 more than once"),
        (OCPP_POINT + OCPP_POINT.replace("WB-1", "WB-2").replace("garage", "garage-2"), "is also the id of connector"),
        ('[ocpp]\nlisten = "9000"\n', "ocpp.listen"),
        ('[ocpp]\ncert_file = "/c.pem"\n', "give both cert_file and key_file"),
        (OCPP_POINT + 'id_tags = { "04A1" = "not-a-vin" }\n', "id_tags"),
    ],
)
def test_ocpp_limits_are_errors_not_clamps(tmp_path: Path, toml: str, expected: str) -> None:
    found = problems(OcppBridgeConfig, write(tmp_path, toml))
    assert any(expected in line for line in found), found


def test_ocpp_password_file_drops_only_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(" s3cret \n", encoding="utf-8")
    secret.chmod(0o600)
    config = load_config(OcppBridgeConfig, write(tmp_path, OCPP_POINT + f'password_file = "{secret}"\n'))
    assert config.ocpp.charge_points[0].password() == " s3cret "
    assert load_config(OcppBridgeConfig, write(tmp_path, OCPP_POINT)).ocpp.charge_points[0].password() is None


def test_ocpp_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARGEBUS_OCPP__LISTEN", "127.0.0.1:9100")
    config = load_config(OcppBridgeConfig, write(tmp_path, OCPP_POINT))
    assert (config.ocpp.host, config.ocpp.port) == ("127.0.0.1", 9100)
