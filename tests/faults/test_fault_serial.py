"""The RS-485 adapter unplugged and plugged in again under a running twc-bridge process (issue 9.2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

from chargebus.schema import EvseState
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_sim.twc_tcp import TwcTcpServer
from chargebus_sim.twc_wire import MasterHeartbeat

from tests.faults.fault_support import (
    TWC_A,
    TWC_B,
    assert_bus_cap,
    assert_clean_log,
    service_process,
    wait_offers,
    write_config,
)
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder

WIRING_A, BUS_A, FAILSAFE_A = 20, 32, 6
SETPOINT_A = 13


def specs() -> list[SlaveSpec]:
    return [SlaveSpec(s, plugged_in=True, lag_s=0.2, voltages=(240, 0, 0)) for s in (TWC_A, TWC_B)]


def point(link: Path, target: str) -> None:
    """Atomically (re)point the device path, as udev does when the adapter appears."""
    temporary = link.with_suffix(".new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(link)


def bridge_config(tmp_path: Path, port: str) -> Path:
    twc = {
        "port": port,
        "voltage_v": 240,
        "wiring_max_amps": WIRING_A,
        "bus_max_amps": BUS_A,
        "failsafe_amps": FAILSAFE_A,
    }
    return write_config(
        tmp_path / "chargebus.toml",
        {"state_dir": tmp_path / "state", "mqtt": {"ha_discovery": False}, "twc": twc},
    )


def state_of(message: Received) -> EvseState | None:
    return EvseState.model_validate_json(message.payload) if message.payload else None


def online(bus: Recorder, prefix: str, slave: str) -> bool | None:
    last = bus.last(f"{prefix}/evse/twc-{slave}/state")
    state = state_of(last) if last is not None else None
    return None if state is None else state.online


def errors(bus: Recorder, prefix: str) -> list[dict[str, Any]]:
    return [m.json() for m in bus.on(f"{prefix}/twc-bridge/error")]


async def publish_setpoints(bus: Recorder, prefix: str) -> None:
    for slave in ("4a1b", "5c2d"):
        setpoint = {
            "v": 1,
            "evse_id": f"twc-{slave}",
            "power_w": SETPOINT_A * 240.0,
            "phases": 1,
            "voltage_v": 240.0,
            "expires_at": "2100-01-01T00:00:00.000Z",
        }
        await bus.publish(f"{prefix}/evse/twc-{slave}/setpoint", json.dumps(setpoint), retain=True)


async def test_device_path_unplugged_and_replugged_marks_slaves_offline_then_drives_them_again(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves twc-bridge's README failure behaviour with a real process on a device path (a symlink re-pointed the
    way udev does): when the adapter vanishes (its pty closes, the path disappears) both slaves are published
    `online: false` and exactly one ErrorEvent names the port; the process keeps retrying quietly; when an adapter
    appears again at the same path both slaves come back online and are driven at their setpoint again — never
    above the wiring limit or the bus cap, never a dangerous frame."""
    link = tmp_path / "ttyTWC"
    config = bridge_config(tmp_path, str(link))
    process = service_process("twc-bridge", config, mqtt_broker.url, prefix)
    wanted = dict.fromkeys((TWC_A, TWC_B), float(SETPOINT_A))
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            await publish_setpoints(bus, prefix)
            async with TwcSlaveSim(specs()) as first:
                point(link, first.port)
                process.start(tmp_path / "twc-bridge.log")
                await wait_offers(first, wanted, timeout=20, what="the setpoints before the unplug")
                await bus.wait_for(lambda: online(bus, prefix, "4a1b") and online(bus, prefix, "5c2d"))
            link.unlink()  # unplugged: the pty is gone and so is the device path
            await bus.wait_for(
                lambda: online(bus, prefix, "4a1b") is False and online(bus, prefix, "5c2d") is False,
                timeout=10,
                what="both slaves offline",
            )
            await bus.wait_for(lambda: errors(bus, prefix), what="the outage reported")
            await asyncio.sleep(3.0)  # several quiet retries (backoff 0.5 s doubling)
            (outage,) = errors(bus, prefix)
            assert (outage["topic"], outage["payload"]) == (str(link), None)
            assert "lost" in outage["error"]
            assert process.alive()

            async with TwcSlaveSim(specs()) as second:
                mark = len(bus.messages)
                point(link, second.port)
                await bus.wait_for(
                    lambda: all(
                        any(
                            (state := state_of(m)) is not None and state.online
                            for m in bus.messages[mark:]
                            if m.topic == f"{prefix}/evse/twc-{slave}/state"
                        )
                        for slave in ("4a1b", "5c2d")
                    ),
                    timeout=20,
                    what="both slaves online again",
                )
                await wait_offers(second, wanted, timeout=15, what="the setpoints after the replug")
                await asyncio.sleep(1.0)
                assert errors(bus, prefix) == [outage]  # the replug itself is no new error
                assert process.alive()
                assert_bus_cap(second, BUS_A, WIRING_A)
            for slave in ("4a1b", "5c2d"):
                await bus.publish(f"{prefix}/evse/twc-{slave}/setpoint", b"", retain=True)
        assert_bus_cap(first, BUS_A, WIRING_A)
    finally:
        await asyncio.to_thread(process.stop)
    assert process.wait() == 0
    assert_clean_log(process)


async def test_socket_line_cut_and_restored_keeps_the_slaves_and_their_offers(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves the same for a network RS-485 bridge (`socket://`): the TCP line is cut (the bridge's connection reset,
    connections refused) for a few seconds, the slaves go `online: false`, one ErrorEvent names the URL, and when
    the line listens again on the same port the process reconnects by itself and drives both slaves at their
    setpoint again, without ever exceeding a limit."""
    async with TwcSlaveSim(specs()) as sim:
        line = TwcTcpServer(sim)
        await line.start()
        url = line.url
        process = service_process("twc-bridge", bridge_config(tmp_path, url), mqtt_broker.url, prefix)
        wanted = dict.fromkeys((TWC_A, TWC_B), float(SETPOINT_A))
        try:
            async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
                await publish_setpoints(bus, prefix)
                process.start(tmp_path / "twc-bridge.log")
                await wait_offers(sim, wanted, timeout=20, what="the setpoints before the cut")
                await line.stop()
                await bus.wait_for(
                    lambda: online(bus, prefix, "4a1b") is False and online(bus, prefix, "5c2d") is False,
                    timeout=10,
                    what="both slaves offline",
                )
                with socket.socket() as probe:  # nothing listens: the line is really down
                    assert probe.connect_ex(("127.0.0.1", line.port)) != 0
                await asyncio.sleep(2.0)
                (outage,) = errors(bus, prefix)
                assert (outage["topic"], outage["payload"]) == (url, None)
                cut_at = sim.received[-1].at
                await line.start()
                await bus.wait_for(
                    lambda: online(bus, prefix, "4a1b") and online(bus, prefix, "5c2d"),
                    timeout=20,
                    what="both slaves online again",
                )
                await wait_offers(sim, wanted, timeout=15, what="the setpoints after the line is back")
                # Driven again: heartbeats to both slaves (a slave that kept its 13 A gets "no change" ones).
                await bus.wait_for(
                    lambda: (
                        {
                            f.message.slave_id
                            for f in sim.received
                            if f.at > cut_at and isinstance(f.message, MasterHeartbeat)
                        }
                        >= {TWC_A, TWC_B}
                    ),
                    what="heartbeats to both slaves",
                )
                assert [sim.slave(s).limit_centiamps for s in (TWC_A, TWC_B)] == [SETPOINT_A * 100] * 2
                assert errors(bus, prefix) == [outage]
                assert process.alive()
                for slave in ("4a1b", "5c2d"):
                    await bus.publish(f"{prefix}/evse/twc-{slave}/setpoint", b"", retain=True)
        finally:
            await asyncio.to_thread(process.stop)
            await line.stop()
    assert_bus_cap(sim, BUS_A, WIRING_A)
    assert_clean_log(process)
