"""Schedules, VIN lists, the generation meter form and bridge presence, in the allocator's own process over MQTT."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chargebus.schema import to_json

from services.allocator.tests.alloc_builders import VIN_A, evse_state
from services.allocator.tests.test_alloc_service import (
    FAST,
    TWC,
    allocator,
    last_json,
    setpoint_where,
    state_where,
    write_config,
)
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

BAD_CHECK_DIGIT = "5YJ3E1EA0KF000001"
#: Together these two windows cover every minute of every day (UTC), so the test does not depend on the hour.
ALL_DAY = [
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": start, "end": end, "power_w": 3000}
    for start, end in (("00:00", "23:59"), ("23:59", "00:00"))
]
CAPPED_W = 12 * 240
SLOW = 30.0  # the machine may be busy: generous timeouts for every wait on another process


def overrides_of(state: dict[str, Any]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in state["overrides"]}


def group_is(bus: Recorder, prefix: str, wanted: str) -> Callable[[], Any]:
    """The allocator/state whose only charge point is in state `wanted`."""
    return state_where(bus, prefix, lambda s: bool(s["groups"]) and s["groups"][0]["state"] == wanted)


async def test_schedules_and_vin_lists_over_mqtt_survive_a_restart(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    settings = {"mode": "off", "timezone": "UTC", "authorization": "allow_list", **FAST}
    config = write_config(tmp_path / "c.toml", prefix, allocator=settings)
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC, vin=VIN_A)), retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            refused = await bus.wait_for(group_is(bus, prefix, "refused"), timeout=SLOW, what="refused")
            assert refused["groups"][0]["reason"] == f"refused: VIN {VIN_A} is not authorised to charge here."

            # The lists as the whole payload (docs/contract.md §5); a wrong check digit is accepted with a warning.
            await bus.publish(f"{prefix}/allocator/vins/set", json.dumps({"allow": [VIN_A], "deny": [BAD_CHECK_DIGIT]}))
            waiting = await bus.wait_for(group_is(bus, prefix, "waiting"), timeout=SLOW, what="allowed, mode off")
            assert overrides_of(waiting)["vins"] == {"allow": [VIN_A], "deny": [BAD_CHECK_DIGIT]}

            await bus.publish(f"{prefix}/allocator/schedules/set", json.dumps({"value": ALL_DAY, "transaction": 1}))
            await bus.wait_for(
                setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == CAPPED_W), timeout=SLOW, what="window"
            )
            await bus.publish(f"{prefix}/allocator/schedules_enabled/set", "false")
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 0), timeout=SLOW, what="0")
            before = await bus.wait_for(
                state_where(bus, prefix, lambda s: len(s["overrides"]) == 3), timeout=SLOW, what="3 overrides"
            )
            assert overrides_of(before)["schedules_enabled"] is False
            assert [w["start"] for w in overrides_of(before)["schedules"]] == ["00:00", "23:59"]
            switch = last_json(bus, f"{prefix}/ha/switch/chargebus/allocator_schedules_enabled/config")
            assert switch["command_topic"] == f"{prefix}/allocator/schedules_enabled/set"
            assert switch["state_topic"] == f"{prefix}/allocator/state"
        finally:
            service.stop()
        assert service.wait() == 0
        assert "event=vin_check_digit" in service.log()

        mark = len(bus.messages)
        service = allocator(mqtt_broker, prefix, config)
        try:
            after = await bus.wait_message(f"{prefix}/allocator/state", after=mark, timeout=SLOW)
            assert after.json()["overrides"] == before["overrides"]
            await bus.publish(f"{prefix}/allocator/schedules_enabled/set", "default")
            await bus.wait_for(
                setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == CAPPED_W), timeout=SLOW, what="again"
            )
            await bus.publish(f"{prefix}/allocator/vins/set", "default")
            await bus.wait_for(group_is(bus, prefix, "refused"), timeout=SLOW, what="refused again")
            await bus.publish(f"{prefix}/allocator/schedules/set", '{"value": "default", "transaction": "d"}')
            cleared = await bus.wait_for(
                state_where(bus, prefix, lambda s: s["overrides"] == []), timeout=SLOW, what="no overrides"
            )
            assert cleared["groups"][0]["allocated_w"] == 0
        finally:
            service.stop()
    assert "Traceback" not in service.log()
    saved = json.loads((tmp_path / "state" / "allocator.json").read_text(encoding="utf-8"))
    assert saved["overrides"] == []


async def test_the_generation_meter_form_alone_drives_solar_charging(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    settings = {"mode": "solar", "generation_meter": "pv", "consumption_meter": "house", **FAST}
    config = write_config(tmp_path / "c.toml", prefix, allocator=settings)
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC)), retain=True)
        await bus.publish(f"{prefix}/power/pv", "5000", retain=True)
        await bus.publish(f"{prefix}/power/house", "200", retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: s["groups"] and s["groups"][0]["state"] == "charging"),
                timeout=SLOW,
                what="charging from the PV meter",
            )
            assert (state["grid_w"], state["surplus_w"]) == (-4800, 4800)
            assert last_json(bus, f"{prefix}/evse/{TWC}/setpoint")["power_w"] == 4800
            await bus.publish(f"{prefix}/power/pv", "-30")  # an inverter's night draw: counted as 0, reported once
            await bus.publish(f"{prefix}/power/pv", "-40")
            notice = await bus.wait_message(f"{prefix}/allocator/error", timeout=SLOW)
            assert (notice.json()["topic"], notice.json()["payload"]) == (f"{prefix}/power/pv", None)
            assert "reads below 0 W" in notice.json()["error"]
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 0), timeout=SLOW, what="0")
            assert len(bus.on(f"{prefix}/allocator/error")) == 1
        finally:
            service.stop()
    assert "not supported" not in service.log()
    assert "Traceback" not in service.log()


FAKE_BRIDGE = """
import asyncio, sys
import aiomqtt

async def main() -> None:
    host, port, prefix, state = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    status = f"{prefix}/twc-bridge/status"
    will = aiomqtt.Will(status, b"offline", qos=1, retain=True)
    async with aiomqtt.Client(host, port, will=will, keepalive=60) as client:
        await client.publish(status, b"online", qos=1, retain=True)
        await client.publish(f"{prefix}/evse/twc-4a1b/state", state.encode(), qos=1, retain=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_bridge_takes_its_evses_offline_until_it_is_back(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "now", **FAST})
    status = f"{prefix}/twc-bridge/status"
    parts = urlsplit(mqtt_broker.url)
    argv = [sys.executable, "-c", FAKE_BRIDGE, parts.hostname or "127.0.0.1", str(parts.port or 1883), prefix]
    bridge = ServiceProcess([*argv, to_json(evse_state(TWC)).decode()], {})
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        bridge.start(tmp_path / "bridge.log")
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_message(status, lambda m: m.text == "online", timeout=SLOW)
            await bus.wait_for(group_is(bus, prefix, "charging"), timeout=SLOW, what="charging")
            await bus.wait_for(
                setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 32 * 240), timeout=SLOW, what="32 A"
            )
            bridge.kill()  # SIGKILL: the broker publishes its will
            bridge.wait()
            await bus.wait_message(status, lambda m: m.text == "offline", timeout=SLOW)
            offline = await bus.wait_for(group_is(bus, prefix, "offline"), timeout=SLOW, what="offline")
            assert offline["groups"][0]["allocated_w"] == 0
            await bus.wait_for(
                setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] is None and s["charge"] is None),
                timeout=SLOW,
                what="do not touch",
            )
            await bus.publish(status, "online", retain=True)  # the bridge is back (its EvseState stayed retained)
            await bus.wait_for(group_is(bus, prefix, "charging"), timeout=SLOW, what="charging again")
            assert service.alive()
        finally:
            service.stop()
            if bridge.alive():
                bridge.kill()
    assert "event=bridge_offline bridge=twc-bridge" in service.log()
    assert "event=bridge_online bridge=twc-bridge" in service.log()
