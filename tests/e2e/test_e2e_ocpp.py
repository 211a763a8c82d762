"""A Gen2 TWC and an OCPP wallbox on one circuit share the solar surplus: the allocator as its own process, both
bridges, the TWC simulator on a pty, the OCPP simulator over a real WebSocket, and a site meter that sees the cars.

The allocator knows nothing of OCPP: the wallbox is one more EVSE on MQTT, and both get a fair share of the
surplus, each turned into whole amps by its own bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chargebus.config import MqttConfig, TwcBridgeConfig, TwcConfig
from chargebus.mqtt import Service
from chargebus_sim.ocpp_cp import Car, ChargerSpec
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_twc.service import NAME as TWC_NAME
from chargebus_twc.service import build as build_twc

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess
from tests.support.ocpp_harness import charger, point, running_bridge

TWC = "twc-4a1b"
OCPP = "ocpp-garage"
PV_W = 7_400.0
HOUSE_W = 500.0


def allocator_config(path: Path) -> Path:
    path.write_text(
        f"""state_dir = "{path.parent / "allocator-state"}"
[mqtt]
ha_discovery = false
[allocator]
mode = "solar"
grid_meter = "grid"
reserve_w = 0
enable_delay_s = 0
disable_delay_s = 0
min_on_s = 0
min_off_s = 0
setpoint_ttl_s = 30
share = "fair"
[[allocator.circuits]]
id = "garage"
max_current_a = 32
phases = 1
phase = "L1"
[allocator.evses."{TWC}"]
circuit = "garage"
phase = "L1"
[allocator.evses."{OCPP}"]
circuit = "garage"
phase = "L1"
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def twc_bridge(broker: BrokerUnderTest, prefix: str, state_dir: Path, port: str) -> AsyncIterator[None]:
    config = TwcBridgeConfig(
        state_dir=state_dir,
        mqtt=MqttConfig(url=broker.url, prefix=prefix, ha_discovery=False),
        twc=TwcConfig(port=port, voltage_v=230, phases=1, wiring_max_amps=32, bus_max_amps=32, failsafe_amps=0),
    )
    service = Service(TWC_NAME, config.mqtt)
    build_twc(service, config)
    runner = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield
    finally:
        service.request_stop()
        await asyncio.wait_for(runner, 10)


def power_of(bus: Recorder, prefix: str, evse_id: str) -> float:
    last = bus.last(f"{prefix}/evse/{evse_id}/state")
    return float(last.json().get("power_w") or 0.0) if last is not None and last.payload else 0.0


async def site_meter(bus: Recorder, prefix: str) -> None:
    """The grid meter: house plus both chargers' measured draw minus the PV, twice a second."""
    while True:
        grid = HOUSE_W + power_of(bus, prefix, TWC) + power_of(bus, prefix, OCPP) - PV_W
        await bus.publish(f"{prefix}/power/grid", json.dumps(round(grid, 1)), retain=True)
        await asyncio.sleep(0.5)


def group(state: dict[str, Any], evse_id: str) -> dict[str, Any] | None:
    return next((g for g in state.get("groups", []) if evse_id in g["evse_ids"]), None)


@pytest.mark.slow
async def test_e2e_a_twc_and_an_ocpp_wallbox_share_the_surplus_fairly(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = allocator_config(tmp_path / "allocator.toml")
    environment = {"CHARGEBUS_MQTT_URL": mqtt_broker.url, "CHARGEBUS_TOPIC_PREFIX": prefix}
    argv = [sys.executable, "-m", "chargebus_allocator", "--config", str(config)]
    ocpp_point = point(phases=1, voltage_v=230, max_current_a=32, failsafe_current_a=0)
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        TwcSlaveSim([SlaveSpec(0x4A1B, plugged_in=True, lag_s=0.5, voltages=(230, 0, 0))]) as twc_sim,
        twc_bridge(mqtt_broker, prefix, tmp_path / "twc-state", twc_sim.port),
        running_bridge(mqtt_broker, prefix, tmp_path / "ocpp-state", [ocpp_point]) as bridge,
        charger(bridge, ChargerSpec("WB-1", phases=1)) as wallbox,
    ):
        meter = asyncio.create_task(site_meter(bus, prefix))
        allocator = ServiceProcess(argv, environment).start(tmp_path / "allocator.log")
        try:
            await wallbox.plug(1, Car(max_a=32, phases=1, ramp_a_per_s=8))

            def shared() -> dict[str, Any] | None:
                failed = [m.text for m in bus.on(f"{prefix}/allocator/error") if "task failed" in m.text]
                if failed:
                    raise AssertionError(f"the allocator stopped allocating: {failed[0][:300]}")
                last = bus.last(f"{prefix}/allocator/state")
                if last is None or not last.payload:
                    return None
                state = last.json()
                twc, ocpp = group(state, TWC), group(state, OCPP)
                if twc is None or ocpp is None or twc["state"] != "charging" or ocpp["state"] != "charging":
                    return None
                return state if abs(twc["allocated_a"] - ocpp["allocated_a"]) <= 1 else None

            state = await bus.wait_for(shared, timeout=60, what="both charging with a fair share")
            twc, ocpp = group(state, TWC), group(state, OCPP)
            assert twc is not None
            assert ocpp is not None
            # the surplus (PV minus the house) is shared: each about half, the sum within the budget
            total = twc["allocated_w"] + ocpp["allocated_w"]
            assert total <= PV_W - HOUSE_W + 1
            assert total >= PV_W - HOUSE_W - 2 * 230
            # the OCPP bridge turned its share into whole amps on the wire, and the car follows
            amps = int(ocpp["allocated_w"] // 230)

            def profile_reached() -> bool:
                return wallbox.box.effective_limit_a(1) == amps

            await bus.wait_for(profile_reached, timeout=10, what=f"the wallbox limited to {amps} A")
            assert amps >= 6
        finally:
            meter.cancel()
            allocator.stop()
