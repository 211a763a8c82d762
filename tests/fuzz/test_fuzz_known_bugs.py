"""What the fuzzing found: each test states the contract's promise that a fuzzed payload once broke.

Each was found by the generators in fuzz_payloads.py and is now fixed; these keep it fixed with one exact input.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi

from tests.fuzz.fuzz_services import allocator, history, tesla_bridge
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder


def errors(bus: Recorder, topic: str) -> list[Received]:
    return bus.on(topic)


async def test_a_lone_surrogate_escape_in_a_transaction_is_refused_and_the_service_keeps_listening(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    payload = b'{"value": "turbo", "transaction": "\\udc00"}'
    error_topic = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [error_topic, f"{prefix}/allocator/status"]) as bus:
        process = allocator(mqtt_broker.url, prefix, tmp_path)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=20)
            await bus.publish(f"{prefix}/allocator/mode/set", payload)
            await bus.publish(f"{prefix}/allocator/mode/set", b"turbo")  # proves the service still listens
            await bus.wait_for(lambda: len(errors(bus, error_topic)) >= 2, timeout=5, what="an error for each")
            assert process.alive()
        finally:
            process.stop()


async def test_a_response_topic_the_broker_refuses_is_refused_without_losing_the_connection(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    error_topic, status_topic = f"{prefix}/history/error", f"{prefix}/history/status"
    async with Recorder(mqtt_broker.url, [error_topic, status_topic]) as bus:
        process = history(mqtt_broker.url, prefix, tmp_path, tmp_path / "history.sqlite")
        try:
            await bus.wait_message(status_topic, lambda m: m.text == "online", timeout=20)
            request = {"v": 1, "op": "energy", "evse_id": "twc-4a1b", "from": "2027-01-01T00:00:00Z"}
            request |= {"to": "2027-01-02T00:00:00Z", "response_topic": f"{prefix}/answers/\u0001"}
            await bus.publish(f"{prefix}/history/request", json.dumps(request))
            await bus.publish(f"{prefix}/history/request", b"{")
            await bus.wait_for(lambda: len(errors(bus, error_topic)) >= 2, timeout=5, what="an error for each")
            await asyncio.sleep(0.5)
            assert [m.text for m in bus.on(status_topic)] == ["online"], "the connection was lost"
        finally:
            process.stop()


async def test_deeply_nested_json_is_invalid_json_without_a_traceback(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    error_topic = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [error_topic, f"{prefix}/allocator/status"]) as bus:
        process = allocator(mqtt_broker.url, prefix, tmp_path)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=20)
            await bus.publish(f"{prefix}/allocator/mode/set", b"[" * 50_000 + b"]" * 50_000)
            event = (await bus.wait_message(error_topic, timeout=5)).json()
            assert "internal error" not in event["error"]
            assert "Traceback" not in process.log()
        finally:
            process.stop()


async def test_a_retained_command_error_echoes_its_transaction(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    error_topic, topic = f"{prefix}/allocator/error", f"{prefix}/allocator/mode/set"
    async with Recorder(mqtt_broker.url, [error_topic, f"{prefix}/allocator/status"]) as bus:
        process = allocator(mqtt_broker.url, prefix, tmp_path)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=20)
            await bus.publish(topic, b'{"value": "now", "transaction": "r1"}', retain=True)
            event = (await bus.wait_message(error_topic, timeout=5)).json()
            await bus.publish(topic, b"", retain=True)
            assert event["transaction"] == "r1"
        finally:
            process.stop()


async def test_a_refused_refresh_echoes_the_transaction_of_any_json_object(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    error_topic = f"{prefix}/tesla-bridge/error"
    async with (
        FakeFleetApi(clock=SystemClock().time) as api,
        Recorder(mqtt_broker.url, [error_topic, f"{prefix}/tesla-bridge/status"]) as bus,
    ):
        process = tesla_bridge(mqtt_broker.url, prefix, tmp_path, api)
        try:
            await bus.wait_message(f"{prefix}/tesla-bridge/status", lambda m: m.text == "online", timeout=20)
            await bus.publish(f"{prefix}/vehicle/5YJ3E1EA7KF000002/refresh/set", b'{"transaction": "r2"}')
            event = (await bus.wait_message(error_topic, timeout=5)).json()
            assert event["transaction"] == "r2"
        finally:
            process.stop()
