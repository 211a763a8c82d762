"""The umbrella command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def chargebus(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargebus", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def test_schema_prints_every_payload() -> None:
    result = chargebus("schema")
    assert result.returncode == 0
    schemas = json.loads(result.stdout)
    assert {"EvseState", "Setpoint", "VehicleState", "PowerReading", "AllocatorState", "ErrorEvent"} <= set(schemas)
    one = json.loads(chargebus("schema", "Setpoint").stdout)
    assert list(one) == ["Setpoint"]
    assert chargebus("schema", "Nope").returncode == 2


def test_topics_table_uses_the_prefix() -> None:
    result = chargebus("topics", "--prefix", "home/ev")
    assert result.returncode == 0
    assert "home/ev/evse/{evse_id}/setpoint" in result.stdout


def test_config_check(tmp_path: Path) -> None:
    assert chargebus("config", "check", "--config", str(ROOT / "chargebus.example.toml")).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[twc]\nwiring_max_amps = 81\n", encoding="utf-8")
    result = chargebus("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == "config: twc.wiring_max_amps = 81: above 80 A, the largest Gen2 TWC rating"
    assert "Traceback" not in result.stderr


def test_packages_add_subcommands_that_get_their_own_arguments() -> None:
    # `chargebus sim` comes from chargebus-sim's entry point; its --help is its own, not the umbrella's
    result = chargebus("sim", "--help")
    assert result.returncode == 0
    assert "chargebus sim <twc" in result.stdout
    twc = chargebus("sim", "twc", "--help")
    assert twc.returncode == 0
    assert "--max-amps" in twc.stdout
    assert chargebus("sim", "flux-capacitor").returncode == 2


def test_run_refuses_unknown_services() -> None:
    result = chargebus("run", "flux-capacitor")
    assert result.returncode == 2
    assert "unknown service flux-capacitor" in result.stderr


def test_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    result = chargebus("demo", "--duration", "12", "--time-scale", "600", "--prefix", "demo-test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "broker mqtt://127.0.0.1:" in result.stdout
    assert "mosquitto_sub" in result.stdout
    assert "demo stopped" in result.stdout
    # after a short run the view shows charge points from both bridges: the TWCs and the cars
    seen = " ".join(result.stdout.split("charge points seen:", 1)[-1].split())
    assert "twc-4a1b (twc-bridge, VIN 5YJ3E1EA8KF000001)" in seen, result.stdout[-3000:]
    assert "car-5YJYGDEE0MF000002 (tesla-bridge" in seen, result.stdout[-3000:]
    # no broker, service or simulator left behind by this demo, and each service stopped on its own
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / ".demo") not in leftovers
    assert (tmp_path / ".demo" / "chargebus.toml").exists()
    for name in ("allocator", "history", "twc-bridge", "tesla-bridge"):
        log = (tmp_path / ".demo" / "logs" / f"{name}.log").read_text(errors="replace")
        assert "event=stopped" in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]


def test_demo_comes_from_the_simulator_package_with_a_hint_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chargebus import cli  # noqa: PLC0415 - in-process, with the installed commands replaced

    assert cli.installed_commands()["demo"] == "chargebus_sim.demo:main"
    assert "demo" not in cli.BUILT_IN_COMMANDS
    monkeypatch.setattr(cli, "installed_commands", dict)
    assert cli.main(["demo", "--duration", "1"]) == 2
    assert "needs the chargebus-sim package" in capsys.readouterr().err
