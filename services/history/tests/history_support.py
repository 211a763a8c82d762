"""Helpers for the history runtime tests: a runtime in this process on a real broker, payloads, an MQTT 5 client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from chargebus.clock import iso_utc
from chargebus.config import HistoryConfig, HistoryServiceConfig, MeterConfig, MqttConfig
from chargebus.mqtt import Service
from chargebus_history.runtime import HistoryRuntime, RuntimeOptions, build
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

VIN = "5YJ3E1EA8KF000001"
FAST = RuntimeOptions(busy_timeout_ms=300, energy_interval_s=0.3, query_timeout_s=30)


@dataclass
class Running:
    service: Service
    runtime: HistoryRuntime
    config: HistoryServiceConfig


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def history_config(
    broker_url: str,
    prefix: str,
    database: str,
    *,
    meters: Sequence[MeterConfig] = (),
    gap_limit_s: float = 1800,
    ha_prefix: str | None = None,
) -> HistoryServiceConfig:
    mqtt = MqttConfig(url=broker_url, prefix=prefix, ha_prefix=ha_prefix or f"{prefix}-ha")
    return HistoryServiceConfig(
        mqtt=mqtt, history=HistoryConfig(database=database, gap_limit_s=gap_limit_s), meters=list(meters)
    )


@asynccontextmanager
async def running_history(config: HistoryServiceConfig, options: RuntimeOptions = FAST) -> AsyncIterator[Running]:
    service = Service("history", config.mqtt)
    runtime = await build(service, config, options)
    runner = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield Running(service, runtime, config)
    finally:
        service.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def now_iso(offset_s: float = 0.0) -> str:
    return iso_utc(datetime.now(tz=UTC).timestamp() + offset_s)


def evse_state(evse_id: str = "twc-4a1b", **overrides: Any) -> dict[str, Any]:
    """A complete EvseState payload (docs/contract.md §6) as a bridge publishes it."""
    payload: dict[str, Any] = {
        "v": 1,
        "evse_id": evse_id,
        "kind": "vehicle" if evse_id.startswith("car-") else "twc2",
        "name": f"Charger {evse_id}",
        "controllable": True,
        "controls": ["current"],
        "online": True,
        "vin": None,
        "plugged_in": False,
        "plugged_in_at": None,
        "charging": False,
        "phases": 1,
        "voltage_v": 230.0,
        "phase_voltages_v": [230.0],
        "current_a": 0.0,
        "offered_a": 0.0,
        "power_w": 0.0,
        "min_power_w": 1380.0,
        "max_power_w": 7360.0,
        "step_w": 230.0,
        "session_energy_wh": None,
        "lifetime_energy_wh": None,
        "state_code": "0x00",
        "status_text": "ready",
        "source": "teslamate" if evse_id.startswith("car-") else "rs485",
        "updated_at": now_iso(),
        "stale": False,
    }
    payload.update(overrides)
    return payload


def charging(evse_id: str = "twc-4a1b", power_w: float = 7360.0, **overrides: Any) -> dict[str, Any]:
    return evse_state(evse_id, vin=VIN, plugged_in=True, charging=True, power_w=power_w, **overrides)


def vehicle_state(vin: str = VIN, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "v": 1,
        "vin": vin,
        "name": "Model 3",
        "online_state": "online",
        "at_home": True,
        "plugged_in": True,
        "charging_state": "Charging",
        "soc_pct": 50.0,
        "charge_limit_pct": 80.0,
        "charger_phases": 1,
        "charger_voltage_v": 230.0,
        "charger_actual_current_a": 16.0,
        "charge_current_request_a": 16.0,
        "charge_current_request_max_a": 32.0,
        "charger_power_w": 3680.0,
        "charge_energy_added_wh": None,
        "time_to_full_s": None,
        "source": "teslamate",
        "updated_at": now_iso(),
        "data_age_s": 1.0,
    }
    payload.update(overrides)
    return payload


def dumps(payload: Any) -> str:
    return json.dumps(payload)


def request(op: str = "power", *, span_s: float = 60.0, **fields: Any) -> dict[str, Any]:
    """A HistoryRequest for the last `span_s` seconds up to five seconds after now.

    Both ends come from one reading of the clock: two readings a millisecond apart can make the span 15.001 s
    after the timestamps are cut to milliseconds, and that is one more one-second point than the test expects.
    The reading is rounded to whole milliseconds first so that both cuts drop nothing.
    """
    now = round(datetime.now(tz=UTC).timestamp(), 3)
    body: dict[str, Any] = {"v": 1, "op": op, "from": iso_utc(now - span_s), "to": iso_utc(now + 5), "step_s": 1}
    if "vin" not in fields:
        body["evse_id"] = "twc-4a1b"
    body.update(fields)
    return body


@asynccontextmanager
async def mqtt5_client(url: str) -> AsyncIterator[aiomqtt.Client]:
    parts = urlsplit(url)
    async with aiomqtt.Client(
        parts.hostname or "127.0.0.1", parts.port or 1883, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


def v5_request_properties(response_topic: str, correlation: bytes) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = response_topic
    properties.CorrelationData = correlation
    return properties
