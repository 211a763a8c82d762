"""MQTT over TLS with a username and password (issue 9.4), against the test broker's TLS + password listener.

A real service (the allocator) started from a config file with `mqtts://`, `ca_file` and `password_file` reaches
`online`; a wrong password or an untrusted certificate gives a clear log line, retries with backoff, never crashes
and never logs the password.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess, wait_until


@pytest.fixture
def tls_broker(mqtt_broker: BrokerUnderTest) -> BrokerUnderTest:
    if mqtt_broker.tls_url is None or mqtt_broker.password is None or mqtt_broker.ca_file is None:
        pytest.skip(f"the {mqtt_broker.kind} test broker has no TLS + password listener")
    return mqtt_broker


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def allocator_over_tls(
    broker: BrokerUnderTest, prefix: str, tmp_path: Path, password: str, ca_file: Path | None
) -> ServiceProcess:
    password_file = secret_file(tmp_path / "mqtt-password", password)
    config = tmp_path / "chargebus.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[mqtt]\nurl = "{broker.tls_url}"\nusername = "{broker.username}"\n'
        f'password_file = "{password_file}"\n'
        + (f'ca_file = "{ca_file}"\n' if ca_file else "")
        + f'prefix = "{prefix}"\nha_discovery = false\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    argv = [sys.executable, "-m", "chargebus_allocator", "--config", str(config)]
    return ServiceProcess(argv, {"CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": ""}).start(tmp_path / "allocator.log")


@pytest.fixture
def stopped_at_end() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


def disconnect_lines(process: ServiceProcess) -> list[str]:
    return [line for line in process.log().splitlines() if "event=disconnected" in line]


async def test_a_service_connects_with_mqtts_ca_file_and_password_file(
    tls_broker: BrokerUnderTest, prefix: str, tmp_path: Path, stopped_at_end: list[ServiceProcess]
) -> None:
    assert tls_broker.password is not None
    async with Recorder(tls_broker.url, [f"{prefix}/allocator/status", f"{prefix}/allocator/state"]) as bus:
        process = allocator_over_tls(tls_broker, prefix, tmp_path, tls_broker.password, tls_broker.ca_file)
        stopped_at_end.append(process)
        # The plain and TLS listeners share one broker: the anonymous watcher sees what the TLS client publishes.
        await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=20)
        await bus.wait_message(f"{prefix}/allocator/state", timeout=20)
    process.stop()
    log = process.log()
    assert re.search(r"event=connected broker=mqtts://127\.0\.0\.1:\d+ ", log), log
    assert tls_broker.password not in log
    assert "Traceback" not in log


async def test_a_wrong_password_is_a_clear_log_line_and_retried_without_crashing(
    tls_broker: BrokerUnderTest, prefix: str, tmp_path: Path, stopped_at_end: list[ServiceProcess]
) -> None:
    wrong = "wrong-Pa55word-for-chargebus"
    async with Recorder(tls_broker.url, [f"{prefix}/allocator/status"]) as bus:
        process = allocator_over_tls(tls_broker, prefix, tmp_path, wrong, tls_broker.ca_file)
        stopped_at_end.append(process)
        assert wait_until(lambda: len(disconnect_lines(process)) >= 3, timeout=20), process.log()
        await asyncio.sleep(0.2)
        assert process.alive()
        assert bus.on(f"{prefix}/allocator/status") == []  # never got in
    process.stop()
    assert process.wait() == 0
    lines = disconnect_lines(process)
    assert all(re.search(r"not authori[sz]ed|bad user ?name or password", line, re.IGNORECASE) for line in lines), lines
    assert all("retry_in_s=" in line for line in lines)
    assert wrong not in process.log()
    assert "Traceback" not in process.log()


async def test_an_untrusted_broker_certificate_is_a_clear_log_line_and_retried(
    tls_broker: BrokerUnderTest, prefix: str, tmp_path: Path, stopped_at_end: list[ServiceProcess]
) -> None:
    assert tls_broker.password is not None
    process = allocator_over_tls(tls_broker, prefix, tmp_path, tls_broker.password, ca_file=None)  # system CAs
    stopped_at_end.append(process)
    assert wait_until(lambda: len(disconnect_lines(process)) >= 2, timeout=30), process.log()
    assert process.alive()
    process.stop()
    lines = disconnect_lines(process)
    assert all("certificate verify failed" in line for line in lines), lines
    assert tls_broker.password not in process.log()
    assert "Traceback" not in process.log()
