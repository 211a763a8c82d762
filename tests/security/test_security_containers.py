"""Containers run as non-root and get no more than they need (issue 9.4), checked from the files (no Docker engine
on CI). `tests/test_compose.py` checks that the pattern mentions `USER chargebus`; here the final image stage is
parsed: which user the process really runs as, and that nothing switches back to root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history", "ocpp-bridge", "forecast")
DOCKERFILES = [ROOT / "docker" / "Dockerfile.service", *(ROOT / "services" / name / "Dockerfile" for name in SERVICES)]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_image_runs_as_an_unprivileged_user(path: Path) -> None:
    stage = final_stage(path)
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, f"{path}: the final stage never sets USER, so the service runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"{path}: runs as {user}"
    # The user is created in this stage with a fixed, non-zero uid (volumes' ownership must not depend on luck).
    created = [rest for keyword, rest in stage if keyword == "RUN" and "useradd" in rest]
    assert created, f"{path}: the user {user} is not created in the final stage"
    uid = re.search(r"--uid\s+(\d+)", created[0])
    assert uid is not None, f"{path}: useradd without --uid"
    assert int(uid.group(1)) >= 1000
    assert re.search(rf"\b{re.escape(user)}\s*$", created[0]), f"{path}: the user created is not {user}"
    # Nothing after USER runs as root again, and the entrypoint comes after it.
    after = stage[[keyword for keyword, _ in stage].index("USER") :]
    assert all(keyword != "USER" or rest.split(":")[0] not in {"root", "0"} for keyword, rest in after)
    assert any(keyword == "ENTRYPOINT" for keyword, _ in after)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_is_baked_into_the_image(path: Path) -> None:
    for keyword, rest in instructions(path):
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(password|secret|token)\w*\s*=", rest, re.IGNORECASE), f"{path}: {keyword} {rest}"
    # The build context is the whole repository (a local chargebus.toml, .demo/ with tokens): the final image may
    # copy only from the build stage, never from the context.
    copies = [rest for keyword, rest in final_stage(path) if keyword in {"COPY", "ADD"}]
    assert copies, f"{path}: the final stage copies nothing?"
    assert all(rest.startswith("--from=") for rest in copies), f"{path}: the final stage copies from the context"


def compose_services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services: dict[str, Any] = data["services"]
    return services


@pytest.mark.parametrize("name", SERVICES)
def test_compose_gives_the_services_no_extra_privilege(name: str) -> None:
    service = compose_services()[name]
    assert str(service.get("user", "")).split(":")[0] not in {"root", "0"}
    assert not service.get("privileged", False)
    assert not service.get("cap_add")
    assert service.get("network_mode") != "host"
    assert service.get("pid") != "host"
    volumes = [str(volume) for volume in service.get("volumes", [])]
    assert not any("docker.sock" in volume for volume in volumes)
    assert all(volume.endswith(":ro") for volume in volumes if volume.startswith(("./", "/")))


def test_the_stack_broker_is_not_open_to_anonymous_clients_on_the_network() -> None:
    broker = compose_services()["mosquitto"]
    published = [str(port) for port in broker.get("ports", [])]
    local_only = all(port.startswith(("127.0.0.1:", "localhost:", "[::1]:")) for port in published)
    conf = (ROOT / "docker" / "mosquitto.conf").read_text(encoding="utf-8")
    anonymous = re.search(r"^\s*allow_anonymous\s+true", conf, re.MULTILINE) is not None
    assert local_only or not anonymous, f"anonymous broker published on {published}"
