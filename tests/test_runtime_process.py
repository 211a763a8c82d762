"""The shared service runtime, tested as users meet it: a real process against a real broker."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from chargebus.broker import BrokerProcess

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess, python_script

PROBE = "tests/support/probe_service.py"


def probe(url: str, prefix: str, tmp_path: Path, *extra: str, **env: str) -> ServiceProcess:
    environment = {"CHARGEBUS_MQTT_URL": url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": "", **env}
    return ServiceProcess(python_script(PROBE, "--config", str(tmp_path / "none.toml"), *extra), environment)


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "none.toml"
    path.write_text("# all defaults\n", encoding="utf-8")
    return path


@pytest.fixture
def running_probe(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, empty_config: Path
) -> Iterator[ServiceProcess]:
    del empty_config
    service = probe(mqtt_broker.url, prefix, tmp_path).start(tmp_path / "probe.log")
    yield service
    service.stop()


def state_value(recorder: Recorder, prefix: str) -> int | None:
    last = recorder.last(f"{prefix}/probe/state")
    return None if last is None else int(last.json()["value"])


async def test_sigkill_leaves_offline_status_by_lwt(
    mqtt_broker: BrokerUnderTest, prefix: str, running_probe: ServiceProcess
) -> None:
    status = f"{prefix}/probe/status"
    async with Recorder(mqtt_broker.url, [status]) as bus:
        await bus.wait_message(status, lambda m: m.text == "online", timeout=10)
        running_probe.kill(signal.SIGKILL)
        running_probe.wait()
        offline = await bus.wait_message(status, lambda m: m.text == "offline")
        assert offline.topic == status


async def test_sigterm_publishes_offline_and_exits_zero(
    mqtt_broker: BrokerUnderTest, prefix: str, running_probe: ServiceProcess
) -> None:
    status = f"{prefix}/probe/status"
    async with Recorder(mqtt_broker.url, [status]) as bus:
        await bus.wait_message(status, lambda m: m.text == "online", timeout=10)
        running_probe.kill(signal.SIGTERM)
        assert running_probe.wait() == 0
        await bus.wait_message(status, lambda m: m.text == "offline")
    assert "Traceback" not in running_probe.log()


async def test_broker_restart_reconnects_resubscribes_and_republishes_within_5s(
    own_broker: BrokerProcess, prefix: str, tmp_path: Path, empty_config: Path
) -> None:
    del empty_config
    service = probe(own_broker.url, prefix, tmp_path).start(tmp_path / "probe.log")
    try:
        async with Recorder(own_broker.url, [f"{prefix}/#"]) as bus:
            await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online", timeout=10)
            await bus.publish(f"{prefix}/probe/value/set", "42")
            await bus.wait_for(lambda: state_value(bus, prefix) == 42, what="state 42")
        own_broker.restart()  # no persistence: the broker forgets every retained message and subscription
        async with Recorder(own_broker.url, [f"{prefix}/#"]) as bus:
            state = await bus.wait_message(f"{prefix}/probe/state", timeout=5)
            assert state.json() == {"v": 1, "value": 42}
            await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online", timeout=5)
            mark = len(bus.messages)
            await bus.publish(f"{prefix}/probe/value/set", "43")  # proves the subscription is back
            await bus.wait_message(f"{prefix}/probe/state", lambda m: m.json()["value"] == 43, after=mark)
        assert service.alive()
    finally:
        service.stop()


MALFORMED: list[tuple[bytes, bool]] = [
    (b"", False),
    (b"abc", False),
    (b"{", False),
    (b'{"value": ', False),
    (b"[1, 2", False),
    (b'"unterminated', False),
    (b"101", False),
    (b"-1", False),
    (b"3.5", False),
    (b"true", False),
    (b"null", False),
    (b"[1]", False),
    (b'{"value": "10"}', False),
    (b'{"valeu": 10}', False),
    (b'{"value": 10, "extra": 1}', False),
    (b'{"v": 2, "value": 10}', False),
    (b"NaN", False),
    (b"Infinity", False),
    (b"1e999", False),
    (b"\xff\xfe\x00\x01binary", False),
    (b"\x00" * 64, False),
    (b"9" * 5000, False),
    (b'{"value": ' + b"[" * 300 + b"]" * 300 + b"}", False),
    (b"x" * 300_000, False),
    (b"50", True),  # a valid value, but published retained: commands must never be retained
]


async def test_malformed_commands_each_get_one_error_and_change_nothing(
    mqtt_broker: BrokerUnderTest, prefix: str, running_probe: ServiceProcess
) -> None:
    command = f"{prefix}/probe/value/set"
    errors = f"{prefix}/probe/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online", timeout=10)
        await bus.publish(command, '{"value": 7, "transaction": "set-7"}')
        await bus.wait_for(lambda: state_value(bus, prefix) == 7, what="state 7")
        states_before = len(bus.on(f"{prefix}/probe/state"))
        for payload, retain in MALFORMED:
            await bus.publish(command, payload, retain=retain)
        await bus.wait_for(lambda: len(bus.on(errors)) >= len(MALFORMED), timeout=10, what="one error per input")
        await bus.publish(command, b"", retain=True)  # clearing the retained command is the fix: no error for it
        # A valid command afterwards still works: the process is alive and nothing was lost.
        await bus.publish(command, '{"value": 8, "transaction": "t-8"}')
        await bus.wait_for(lambda: state_value(bus, prefix) == 8, what="state 8")
        events = [m.json() for m in bus.on(errors)]
        states = bus.on(f"{prefix}/probe/state")
    malformed_events = events[: len(MALFORMED)]
    assert len(events) == len(MALFORMED)
    for event in malformed_events:
        assert set(event) == {"v", "topic", "payload", "error", "transaction"}
        assert event["v"] == 1
        assert event["topic"] == command
        assert event["error"]
        assert event["payload"] is None or len(event["payload"]) <= 200
    assert any("retained" in e["error"] for e in malformed_events)
    # only the valid command after the storm changed the state
    assert [m.json()["value"] for m in states[states_before:]] == [8]
    assert running_probe.alive()


async def test_error_echoes_the_transaction(
    mqtt_broker: BrokerUnderTest, prefix: str, running_probe: ServiceProcess
) -> None:
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online", timeout=10)
        await bus.publish(f"{prefix}/probe/value/set", json.dumps({"value": 700, "transaction": "abc"}))
        event = (await bus.wait_message(f"{prefix}/probe/error")).json()
    assert event["transaction"] == "abc"
    assert "out of range" in event["error"]


async def test_retained_command_waiting_at_subscribe_time_is_refused(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, empty_config: Path
) -> None:
    del empty_config
    command = f"{prefix}/probe/value/set"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(command, "33", retain=True)
        service = probe(mqtt_broker.url, prefix, tmp_path).start(tmp_path / "probe.log")
        try:
            event = (await bus.wait_message(f"{prefix}/probe/error", timeout=10)).json()
            await bus.publish(command, b"", retain=True)
            await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online")
            assert state_value(bus, prefix) == 0
        finally:
            service.stop()
    assert event["topic"] == command
    assert event["payload"] == "33"
    assert "retained" in event["error"]


def test_config_errors_exit_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[mqtt]\nurl = "http://user:hunter2@example"\nprefix = "a/#"\nsurprise = 1\n[allocater]\nmode = "x"\n',
        encoding="utf-8",
    )
    service = ServiceProcess(python_script(PROBE, "--config", str(config)), {}).start(tmp_path / "log")
    assert service.wait() == 2
    lines = service.log().strip().splitlines()
    assert len(lines) == 4, lines
    assert any(line.startswith("config: allocater:") for line in lines)
    assert any(line.startswith("config: mqtt.url") and "mqtt://" in line for line in lines)
    assert any(line.startswith("config: mqtt.prefix") for line in lines)
    assert any(line.startswith("config: mqtt.surprise") for line in lines)
    assert "Traceback" not in service.log()
    assert "hunter2" not in service.log()


def test_missing_explicit_config_file_exits_2(tmp_path: Path) -> None:
    service = ServiceProcess(python_script(PROBE, "--config", str(tmp_path / "nope.toml")), {})
    assert service.start(tmp_path / "log").wait() == 2
    assert service.log().strip() == f"config: file {tmp_path / 'nope.toml'} does not exist"


async def test_tls_listener_with_password(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, empty_config: Path
) -> None:
    if mqtt_broker.tls_url is None or mqtt_broker.password is None:
        pytest.skip(f"the {mqtt_broker.kind} test broker has no TLS + password listener")
    del empty_config
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(mqtt_broker.password + "\n", encoding="utf-8")
    service = probe(
        mqtt_broker.tls_url,
        prefix,
        tmp_path,
        CHARGEBUS_MQTT__USERNAME=mqtt_broker.username or "",
        CHARGEBUS_MQTT__PASSWORD_FILE=str(password_file),
        CHARGEBUS_MQTT__CA_FILE=str(mqtt_broker.ca_file),
    ).start(tmp_path / "probe.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/probe/status"]) as bus:
            # plain and TLS listeners share one broker: the anonymous watcher sees the TLS client's status
            await bus.wait_message(f"{prefix}/probe/status", lambda m: m.text == "online", timeout=10)
    finally:
        service.stop()
    assert mqtt_broker.password not in service.log()
