"""The pure parts of the demo and the stack runner: time split, the live view's folding, start order, environment."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from chargebus_sim.demo import MAX_SERVICE_SCALE, BusView, split_scale
from chargebus_sim.world_config import CarEntry, StackAddresses, stack_toml, toml_value
from chargebus_sim.world_stack import child_environment, ordered_services, runnable_module
from rich.console import Console

VIN = "5YJ3E1EA8KF000001"


def test_the_sun_takes_what_the_bus_cannot() -> None:
    assert split_scale(10) == (10, 1)
    assert split_scale(600) == (MAX_SERVICE_SCALE, 600 / MAX_SERVICE_SCALE)
    with pytest.raises(ValueError, match="positive"):
        split_scale(0)


def test_the_view_folds_what_it_receives_and_renders_it() -> None:
    view = BusView("p")
    twc = {"evse_id": "twc-4a1b", "kind": "twc2", "vin": VIN, "online": True, "stale": False, "power_w": 2300}
    view.fold("p/evse/twc-4a1b/state", json.dumps(twc).encode())
    view.fold("p/evse/car-X/state", json.dumps({"kind": "vehicle", "vin": None}).encode())
    view.fold("p/evse/car-X/state", b"")  # withdrawn
    view.fold("p/power/grid", b'{"v": 1, "power_w": -120.5, "ts": "2026-01-01T00:00:00.000Z"}')
    view.fold("p/power/pv", b"4000")
    view.fold("p/allocator/status", b"online")
    group = {"evse_ids": ["twc-4a1b", f"car-{VIN}"], "state": "charging", "allocated_w": 2300, "allocated_a": 10}
    view.fold("p/allocator/state", json.dumps({"mode": "solar", "available_w": 2400, "groups": [group]}).encode())
    view.fold("p/allocator/error", b'{"error": "unknown mode"}')
    view.fold("p/power/house", b"not a number")
    assert view.power == {"grid": -120.5, "pv": 4000.0}
    assert view.charge_points() == [f"twc-4a1b (twc-bridge, VIN {VIN})"]
    assert view.errors == ["allocator: unknown mode", "unreadable message on p/power/house"]
    console = Console(width=200, record=True)
    console.print(view.render(13.5))
    text = console.export_text()
    for shown in ("13:30", "twc-4a1b + car-", "2,300 W / 10 A", "allocator online", "unknown mode", "budget 2,400 W"):
        assert shown in text


def test_services_start_allocator_first_and_run_as_packages() -> None:
    available = {"twc-bridge": "chargebus_twc.service", "x": "x.y", "allocator": "chargebus_allocator.service"}
    assert [name for name, _ in ordered_services(available)] == ["allocator", "twc-bridge", "x"]
    assert runnable_module("chargebus_twc.service") == "chargebus_twc"
    assert runnable_module("chargebus_sim.world") == "chargebus_sim.world"  # no __main__: the module itself
    assert runnable_module("no_such_package.service") == "no_such_package.service"


def test_the_children_see_only_the_worlds_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHARGEBUS_MQTT_URL", "mqtt://real-broker:1883")
    monkeypatch.setenv("CHARGEBUS_TWC__PORT", "/dev/ttyUSB0")
    env = child_environment(tmp_path / "chargebus.toml", 20)
    assert env["CHARGEBUS_CONFIG"] == str(tmp_path / "chargebus.toml")
    assert env["CHARGEBUS_TIME_SCALE"] == "20.0"
    assert float(env["CHARGEBUS_TIME_ORIGIN"]) > 0  # every child agrees on the accelerated time
    assert "CHARGEBUS_MQTT_URL" not in env
    assert "CHARGEBUS_TWC__PORT" not in env


def test_the_config_text_is_toml_with_every_section(tmp_path: Path) -> None:
    where = StackAddresses(
        mqtt_url="mqtt://127.0.0.1:1883",
        prefix="p",
        state_dir=tmp_path,
        twc_port="/dev/pts/9",
        api_base="http://127.0.0.1:1",
        command_base="http://127.0.0.1:2",
        token_url="http://127.0.0.1:1/oauth2/v3/token",
        client_id="c",
        token_file=tmp_path / 'tok "en".json',
        teslamate_prefix="teslamate",
        history_db=tmp_path / "h.sqlite",
    )
    text = stack_toml(where, cars=[CarEntry(VIN, "M3", 1, priority=5, circuit="garage")], twc_ids=["4a1b"])
    data = tomllib.loads(text)
    assert set(data) == {"state_dir", "mqtt", "twc", "tesla", "allocator", "meters", "history", "ocpp"}
    assert data["ocpp"] == {"listen": "127.0.0.1:9000"}  # loopback: a world never listens on the LAN
    assert data["tesla"]["token_file"] == str(tmp_path / 'tok "en".json')
    assert data["allocator"]["evses"][f"car-{VIN}"] == {"circuit": "garage", "phase": "L1"}
    assert data["allocator"]["vehicles"][VIN] == {"priority": 5}
    assert data["meters"] == [{"name": "grid", "topic": "p/power/grid", "stale_after_s": 60.0}]
    assert toml_value({"a": 1, "b": "x"}) == '{ a = 1, b = "x" }'
    assert toml_value([1, 2.5, True]) == "[1, 2.5, true]"
