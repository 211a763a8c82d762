"""The test broker (README.md, Development): $CHARGEBUS_TEST_BROKER, else a fresh local mosquitto on a free port (with a
TLS + password listener too), else testcontainers' eclipse-mosquitto when a Docker engine answers, else the embedded
broker with a warning. Every test gets its own topic prefix, so retained messages never leak between tests.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chargebus.broker import BrokerProcess, embedded_broker, free_port, mosquitto_binary, mosquitto_broker

from tests.support.tls import write_test_pki

TEST_BROKER_ENV = "CHARGEBUS_TEST_BROKER"
TLS_USER = "chargebus-test"
TLS_PASSWORD = secrets.token_urlsafe(12)


@dataclass
class BrokerUnderTest:
    """Where the tests' broker listens. `tls_url` is None where no TLS listener could be set up."""

    url: str
    kind: str
    process: BrokerProcess | None = None
    tls_url: str | None = None
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _mosquitto_with_tls(workdir: Path) -> BrokerUnderTest:
    ca_file, cert_file, key_file = write_test_pki(workdir)
    password_file = workdir / "passwords"
    password_file.write_text("", encoding="utf-8")
    subprocess.run(["mosquitto_passwd", "-b", str(password_file), TLS_USER, TLS_PASSWORD], check=True)
    password_file.chmod(0o600)
    tls_port = free_port()
    extra = (
        f"listener {tls_port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {password_file}\n"
        f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n"
    )
    process = mosquitto_broker(workdir, extra_config=extra, extra_ports={"tls": tls_port}).start()
    return BrokerUnderTest(
        process.url, "mosquitto", process, f"mqtts://127.0.0.1:{tls_port}", ca_file, TLS_USER, TLS_PASSWORD
    )


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    """The session's broker, chosen in the order the module docstring gives."""
    if url := os.environ.get(TEST_BROKER_ENV):
        yield BrokerUnderTest(url, "external")
        return
    workdir = tmp_path_factory.mktemp("broker")
    if mosquitto_binary() is not None and shutil.which("mosquitto_passwd") is not None:
        broker = _mosquitto_with_tls(workdir)
        yield broker
        assert broker.process is not None
        broker.process.stop()
        return
    if _docker_answers():
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - only with a Docker engine

        container = DockerContainer("eclipse-mosquitto:2").with_exposed_ports(1883)
        container.with_command("mosquitto -c /mosquitto-no-auth.conf")
        with container:
            host = container.get_container_host_ip()
            yield BrokerUnderTest(f"mqtt://{host}:{container.get_exposed_port(1883)}", "container")
        return
    warnings.warn("mosquitto is not installed and no Docker engine answers: using the embedded broker", stacklevel=1)
    process = embedded_broker(workdir).start()
    yield BrokerUnderTest(process.url, "embedded", process)
    process.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of this test's own, which it may stop and restart (same port)."""
    process = mosquitto_broker(tmp_path) if mosquitto_binary() else embedded_broker(tmp_path)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to this test: its name plus a random token."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"t-{name}-{secrets.token_hex(4)}"
