"""The ocpp-bridge in-process on a free 127.0.0.1 port with a real mosquitto, and simulated wallboxes over real
WebSockets: what the service tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chargebus.broker import free_port
from chargebus.clock import Clock, SystemClock
from chargebus.config import MqttConfig, OcppBridgeConfig, OcppChargePointConfig, OcppConfig
from chargebus.mqtt import Service
from chargebus.schema import EvseState
from chargebus_ocpp.service import NAME, OcppBridge, build
from chargebus_sim.ocpp_cp import ChargerSpec, OcppChargerSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder


def point(ocpp_id: str = "WB-1", name: str = "garage", **options: Any) -> OcppChargePointConfig:
    return OcppChargePointConfig(ocpp_id=ocpp_id, name=name, **options)


@contextlib.asynccontextmanager
async def running_bridge(
    broker: BrokerUnderTest,
    prefix: str,
    state_dir: Path,
    points: list[OcppChargePointConfig],
    *,
    clock: Clock | None = None,
    **ocpp: Any,
) -> AsyncIterator[OcppBridge]:
    ocpp.setdefault("meter_interval_s", 1)
    ocpp.setdefault("heartbeat_s", 30)
    ocpp.setdefault("listen", f"127.0.0.1:{free_port()}")
    config = OcppBridgeConfig(
        state_dir=state_dir,
        mqtt=MqttConfig(url=broker.url, prefix=prefix, ha_prefix=f"{prefix}-ha"),
        ocpp=OcppConfig(charge_points=points, **ocpp),
    )
    service = Service(NAME, config.mqtt, clock=clock or SystemClock())
    bridge = build(service, config)
    runner = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        await asyncio.wait_for(bridge.listening.wait(), 10)
        yield bridge
    finally:
        service.request_stop()
        await asyncio.wait_for(runner, 10)


def url_of(bridge: OcppBridge) -> str:
    return f"{bridge.scheme}://{bridge.ocpp.listen}"


@contextlib.asynccontextmanager
async def charger(bridge: OcppBridge, spec: ChargerSpec, **options: Any) -> AsyncIterator[OcppChargerSim]:
    sim = OcppChargerSim(spec, url_of(bridge), **options)
    sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def setpoint(evse_id: str, power_w: float | None, *, ttl_s: float = 60, **extra: Any) -> str:
    return json.dumps(
        {
            "v": 1,
            "evse_id": evse_id,
            "power_w": power_w,
            "charge": extra.pop("charge", None),
            "phases": extra.pop("phases", 3),
            "voltage_v": extra.pop("voltage_v", 230),
            "seq": 1,
            "expires_at": (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat(),
            "ttl_s": ttl_s,
            "reason": "test",
            **extra,
        }
    )


def latest_state(bus: Recorder, prefix: str, evse_id: str) -> EvseState | None:
    last = bus.last(f"{prefix}/evse/{evse_id}/state")
    if last is None or not last.payload:
        return None
    return EvseState.model_validate_json(last.payload, strict=True)


async def wait_state(
    bus: Recorder, prefix: str, evse_id: str, predicate: Callable[[EvseState], bool], timeout: float = 10.0
) -> EvseState:
    def check() -> EvseState | None:
        state = latest_state(bus, prefix, evse_id)
        return state if state is not None and predicate(state) else None

    found: EvseState = await bus.wait_for(check, timeout, f"a state of {evse_id}")
    return found


def last_limit(sim: OcppChargerSim, purpose: str | None = None) -> tuple[float, str] | None:
    """(limit, unit) of the last profile the simulated wallbox received (of `purpose`, if given)."""
    for _at, _connector, profile in reversed(sim.profiles_received):
        if purpose is not None and profile["charging_profile_purpose"] != purpose:
            continue
        schedule = profile["charging_schedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        return float(schedule["charging_schedule_period"][0]["limit"]), str(schedule["charging_rate_unit"])
    return None


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def errors(bus: Recorder, prefix: str) -> list[dict[str, Any]]:
    return [m.json() for m in bus.on(f"{prefix}/ocpp-bridge/error")]
