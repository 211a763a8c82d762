"""HA discovery over a real broker: configs retained, re-published on HA's birth message, removed when empty."""

from __future__ import annotations

import asyncio
import contextlib
import json

from chargebus.config import MqttConfig
from chargebus.ha import Discovery, availability, device, device_ref, entity, evse_device_id, vehicle_device_id
from chargebus.mqtt import Service

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder


async def test_discovery_publish_rebirth_and_removal(mqtt_broker: BrokerUnderTest, prefix: str) -> None:
    ha_prefix = f"{prefix}-ha"
    service = Service("allocator", MqttConfig(url=mqtt_broker.url, prefix=prefix, ha_prefix=ha_prefix))
    discovery = Discovery(service, enabled=True, ha_prefix=ha_prefix)
    item = entity(
        "sensor",
        "allocator_budget",
        "Charging budget",
        device_block=device("allocator", "chargebus allocator", "allocator"),
        availability_list=availability(service.topics, "allocator"),
        state_topic=f"{prefix}/allocator/state",
        value_template="{{ value_json.available_w }}",
        unit_of_measurement="W",
        device_class="power",
    )
    config_topic = item.config_topic(ha_prefix)
    runner = asyncio.create_task(service.run())
    try:
        async with Recorder(mqtt_broker.url, [f"{ha_prefix}/#"]) as bus:
            await asyncio.wait_for(service.connected.wait(), 10)
            await discovery.publish(item)
            first = (await bus.wait_message(config_topic)).json()
            assert first["unique_id"] == "chargebus_allocator_budget"
            assert first["availability"][0] == {
                "topic": f"{prefix}/allocator/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
            assert first["device"]["identifiers"] == ["chargebus_allocator"]
            assert first["origin"]["name"] == "chargebus"
            mark = len(bus.messages)
            await bus.publish(f"{ha_prefix}/status", "online")  # HA restarted: it wants every config again
            await bus.wait_message(config_topic, after=mark)
            mark = len(bus.messages)
            await discovery.remove(item)
            removed = await bus.wait_message(config_topic, after=mark)
            assert removed.payload == b""
        async with Recorder(mqtt_broker.url, [f"{ha_prefix}/#"]) as late:
            await asyncio.sleep(0.3)
            assert late.on(config_topic) == []  # nothing retained any more
    finally:
        service.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def test_entity_config_is_plain_json() -> None:
    item = entity(
        "select",
        "mode",
        "Mode",
        device_block=device("allocator", "x", "y", via_device="bridge"),
        availability_list=[],
        options=["off", "now"],
        unit_of_measurement=None,
    )
    text = json.dumps(item.config)
    assert "unit_of_measurement" not in text
    assert item.config["device"]["via_device"] == "chargebus_bridge"
    assert item.config_topic("homeassistant") == "homeassistant/select/chargebus/mode/config"
    assert item.config["default_entity_id"] == "select.chargebus_mode"
    assert "object_id" not in item.config  # deprecated in HA 2025.10


def test_every_service_names_one_device_per_charger_and_per_car() -> None:
    """The twc-bridge, the tesla-bridge, the allocator and history attach to the same HA devices."""
    assert evse_device_id("twc-4a1b") == "twc_4a1b"
    assert evse_device_id("twc3-garage") == "twc3_garage"
    vin = "5YJ3E1EA8KF000001"
    assert evse_device_id(f"car-{vin}") == vehicle_device_id(vin) == "tesla_5yj3e1ea8kf000001"
    assert device_ref("twc_4a1b") == {"identifiers": ["chargebus_twc_4a1b"]}
