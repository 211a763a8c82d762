"""`chargebus run a b …`: several services in one process, each its own MQTT client, a crash restarting only it."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess


def one_process(url: str, prefix: str, config: Path, *services: str) -> ServiceProcess:
    environment = {"CHARGEBUS_MQTT_URL": url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    return ServiceProcess([sys.executable, "-m", "chargebus", "run", *services, "--config", str(config)], environment)


def health(url: str, prefix: str, *services: str) -> int:
    environment = {**os.environ, "CHARGEBUS_MQTT_URL": url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    command = [sys.executable, "-m", "chargebus", "health", *services, "--config", os.devnull]
    return subprocess.run(command, env=environment, capture_output=True, timeout=30, check=False).returncode


def write_newer_database(path: Path) -> None:
    """A history database as a newer chargebus would leave it: a schema version this one does not know."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR(200) NOT NULL, "
            "applied_at_ms BIGINT NOT NULL)"
        )
        db.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    db.close()


@pytest.mark.slow
async def test_two_services_in_one_process_and_a_crash_restarts_only_the_one_that_crashed(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    database_dir = tmp_path / "db"  # not there yet: history starts, reports it and retries opening it
    database = database_dir / "history.sqlite"
    config = tmp_path / "chargebus.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[history]\ndatabase = "sqlite:///{database}"\n', encoding="utf-8"
    )
    (tmp_path / "state").mkdir()
    allocator, history = f"{prefix}/allocator/status", f"{prefix}/history/status"
    async with Recorder(mqtt_broker.url, [f"{prefix}/+/status", f"{prefix}/+/error"]) as bus:
        process = one_process(mqtt_broker.url, prefix, config, "allocator", "history").start(tmp_path / "run.log")
        try:
            await bus.wait_message(allocator, lambda m: m.text == "online", timeout=20)
            await bus.wait_message(history, lambda m: m.text == "online", timeout=20)
            await bus.wait_message(f"{prefix}/history/error", lambda m: "database open failed" in m.text, timeout=10)
            # the container healthcheck: healthy while every named service is online
            assert await asyncio.to_thread(health, mqtt_broker.url, prefix, "allocator", "history") == 0

            # The fault, from outside: the database appears, written by a newer program. History refuses it and
            # stops; the supervisor marks it offline, says why on its error topic and starts it again, which fails
            # at once (the database is still too new), with a longer delay each time.
            database_dir.mkdir()
            write_newer_database(database)
            crashed = f"{prefix}/history/error"
            first = await bus.wait_message(
                crashed, lambda m: m.json()["error"].startswith("service crashed (stopped by itself)"), timeout=15
            )
            assert first.json()["topic"] == history
            await bus.wait_message(history, lambda m: m.text == "offline", timeout=5)
            second = await bus.wait_message(
                crashed, lambda m: m.json()["error"].startswith("service crashed (exited with code"), timeout=15
            )
            delays = [float(m.json()["error"].split("restarting in ")[1].split(" s")[0]) for m in (first, second)]
            assert 0.8 <= delays[0] <= 1.0  # 1 s with up to 20 % jitter, then doubling
            assert 1.6 <= delays[1] <= 2.0

            # fixed: the next start opens a fresh database and history is back
            since = len(bus.messages)
            database.unlink()
            await bus.wait_message(history, lambda m: m.text == "online", timeout=20, after=since)

            # the allocator, in the same process, never noticed: online once, never offline, no error
            assert [m.text for m in bus.on(allocator)] == ["online"]
            assert bus.on(f"{prefix}/allocator/error") == []
            assert process.alive()
            log = process.log()
            assert "service=history event=service_crashed reason='stopped by itself'" in log
            assert "service=history event=service_restarting" in log
            assert "service=allocator event=service_crashed" not in log
        finally:
            since = len(bus.messages)
            process.kill(signal.SIGTERM)
            code = process.wait(15)
        assert code == 0, process.log()[-3000:]
        for status in (allocator, history):
            await bus.wait_message(status, lambda m: m.text == "offline", timeout=5, after=since)
        assert await asyncio.to_thread(health, mqtt_broker.url, prefix, "allocator", "history") == 1
    assert "Traceback" not in process.log(), process.log()[-4000:]


def test_a_config_problem_of_any_service_stops_the_start_with_each_problem_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[mqtt]\nurl = "ftp://nowhere"\n[twc]\nwiring_max_amps = 81\n', encoding="utf-8")
    process = one_process("", "p", config, "--all")
    process.env = {"CHARGEBUS_CONFIG": ""}
    process.start(tmp_path / "run.log")
    assert process.wait(30) == 2
    lines = process.log().splitlines()
    assert "config: twc.wiring_max_amps = 81: above 80 A, the largest Gen2 TWC rating" in lines
    mqtt_problems = [line for line in lines if line.startswith("config: mqtt.url")]
    assert len(mqtt_problems) == 1, lines
    assert "Traceback" not in process.log(), process.log()[-4000:]


def test_run_needs_services_or_all(tmp_path: Path) -> None:
    process = ServiceProcess([sys.executable, "-m", "chargebus", "run"], {}).start(tmp_path / "run.log")
    assert process.wait(30) == 2
    assert "name the services to run, or --all" in process.log()


async def test_a_service_whose_connection_loop_breaks_ends_and_says_offline(
    mqtt_broker: BrokerUnderTest, prefix: str
) -> None:
    """What ends the MQTT loop other than the broker ends `run()` with it: never a live process that hears nothing
    while its status says online. The supervisor then restarts the service; alone, its process exits."""
    from chargebus.config import MqttConfig  # noqa: PLC0415
    from chargebus.mqtt import Service  # noqa: PLC0415

    service = Service("probe", MqttConfig(url=mqtt_broker.url, prefix=prefix))

    async def broken(_message: object) -> None:
        raise RuntimeError("a bug in the message loop")

    async def ignore(_message: object) -> None:
        return None

    service.on_message(f"{prefix}/probe/poke", ignore)
    service._dispatch = broken  # type: ignore[method-assign,assignment]
    status = f"{prefix}/probe/status"
    async with Recorder(mqtt_broker.url, [status]) as bus:
        running = asyncio.create_task(service.run(handle_signals=False))
        await bus.wait_message(status, lambda m: m.text == "online", timeout=10)
        await service.connected.wait()
        await bus.publish(f"{prefix}/probe/poke", "x")
        with pytest.raises(RuntimeError, match="a bug in the message loop"):
            await asyncio.wait_for(running, 10)
        await bus.wait_message(status, lambda m: m.text == "offline", timeout=5)


class FlakyEntry:
    """A ServiceEntry whose setup fails the first `failures` times (in process: no entry point needed)."""

    @staticmethod
    def make(name: str, failures: int, attempts: list[float]) -> Any:
        from chargebus.config import AllocatorServiceConfig  # noqa: PLC0415
        from chargebus.runner import ServiceEntry  # noqa: PLC0415

        async def setup(_service: Any, _config: Any) -> None:
            attempts.append(asyncio.get_running_loop().time())
            if len(attempts) <= failures:
                raise SystemExit(3)

        return ServiceEntry(name, AllocatorServiceConfig, setup)


async def supervise_until(supervisor: Any, done: Callable[[], bool], timeout: float = 10.0) -> None:
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, 15)


async def test_restart_delays_double_and_start_over_after_a_healthy_run(
    mqtt_broker: BrokerUnderTest, prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from chargebus import supervisor as module  # noqa: PLC0415
    from chargebus.clock import SystemClock  # noqa: PLC0415
    from chargebus.config import AllocatorServiceConfig, MqttConfig  # noqa: PLC0415

    monkeypatch.setattr(module, "RESTART_INITIAL_S", 0.1)
    config = AllocatorServiceConfig(mqtt=MqttConfig(url=mqtt_broker.url, prefix=prefix), state_dir=tmp_path)

    attempts: list[float] = []
    flaky = module.Supervisor([(FlakyEntry.make("flaky", 3, attempts), config)], config_path=None, clock=SystemClock())
    await supervise_until(flaky, lambda: len(attempts) == 4)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # 0.1, 0.2, 0.4 s less up to 20 % jitter, plus the few ms of each announcement
    assert all(0.75 <= gap / (0.1 * 2**n) <= 1.5 for n, gap in enumerate(gaps)), gaps
    assert flaky.supervised[0].crashes == 3

    monkeypatch.setattr(module, "HEALTHY_AFTER_S", 0.0)  # every run counts as healthy: the delay starts over
    attempts.clear()
    steady_entry = FlakyEntry.make("steady", 3, attempts)
    steady = module.Supervisor([(steady_entry, config)], config_path=None, clock=SystemClock())
    await supervise_until(steady, lambda: len(attempts) == 4)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert all(0.075 <= gap <= 0.15 for gap in gaps), gaps
