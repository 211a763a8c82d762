"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (there is none on CI machines)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def test_broker_has_config_persistence_and_healthcheck() -> None:
    broker = compose()["services"]["mosquitto"]
    assert broker["image"].startswith("eclipse-mosquitto:2")
    assert any("mosquitto.conf" in volume for volume in broker["volumes"])
    assert any(volume.startswith("mosquitto-data:") for volume in broker["volumes"])
    assert "healthcheck" in broker
    assert (ROOT / "docker" / "mosquitto.conf").exists()


def test_every_service_has_a_dockerfile_from_the_one_pattern() -> None:
    pattern = (ROOT / "docker" / "Dockerfile.service").read_text(encoding="utf-8")
    assert "USER chargebus" in pattern
    assert "HEALTHCHECK" in pattern
    assert "uv sync --frozen" in pattern
    for name in SERVICES:
        service = compose()["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile.service"
        assert service["build"]["args"]["SERVICE"] == name
        assert service["restart"] == "unless-stopped"
        assert any(volume.endswith(":/config/chargebus.toml:ro") for volume in service["volumes"])
        assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"
        assert "healthcheck" not in service or service["healthcheck"]["test"]
        assert (ROOT / "services" / name / "Dockerfile").exists()


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
        if not volume.startswith((".", "/"))
    }
    assert used <= set(data["volumes"])


def test_docker_compose_config_where_an_engine_answers() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client")
    if subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=10).returncode != 0:
        pytest.skip("no Docker engine answers here; the YAML is checked by the other tests")
    result = subprocess.run(
        ["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
