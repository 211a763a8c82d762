"""Home Assistant MQTT discovery: builders for device, origin and availability, and a publisher.

Discovery configs are retained, registered with the Service so they come back after a broker restart, and
re-published whenever Home Assistant announces `online` on `<ha_prefix>/status` (it forgets entities otherwise).
An entity that disappears (an EVSE gone) is removed with an empty retained config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from chargebus.mqtt import Incoming, Service
from chargebus.schema import vin_of_car_evse
from chargebus.topics import Topics

Component = Literal["sensor", "binary_sensor", "select", "number", "switch", "button", "text"]


def software_version() -> str:
    try:
        return version("chargebus")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0+unknown"


def origin() -> dict[str, str]:
    return {"name": "chargebus", "sw": software_version()}


def device(identifier: str, name: str, model: str, *, via_device: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "identifiers": [f"chargebus_{identifier}"],
        "name": name,
        "manufacturer": "chargebus",
        "model": model,
        "sw_version": software_version(),
    }
    if via_device is not None:
        block["via_device"] = f"chargebus_{via_device}"
    return block


def vehicle_device_id(vin: str) -> str:
    """The one device of a car in HA: its `car-<VIN>` EVSE, its vehicle sensors and its energy share it."""
    return f"tesla_{vin.lower()}"


def evse_device_id(evse_id: str) -> str:
    """The device an EVSE's entities belong to, whichever service publishes them (bridges, allocator, history)."""
    vin = vin_of_car_evse(evse_id)
    if vin is not None:
        return vehicle_device_id(vin)
    return _object_id(evse_id)


def device_ref(identifier: str) -> dict[str, Any]:
    """Attach an entity to a device another service describes (name and model are the owner's to give)."""
    return {"identifiers": [f"chargebus_{identifier}"]}


def availability(topics: Topics, *services: str) -> list[dict[str, str]]:
    """Available only while every named service is online (HA's `availability_mode: all`)."""
    return [
        {"topic": topics.status(service), "payload_available": "online", "payload_not_available": "offline"}
        for service in services
    ]


def _object_id(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


@dataclass(frozen=True)
class Entity:
    component: Component
    unique_id: str
    config: dict[str, Any] = field(hash=False)

    def config_topic(self, ha_prefix: str) -> str:
        return f"{ha_prefix}/{self.component}/chargebus/{_object_id(self.unique_id)}/config"


def entity(
    component: Component,
    unique_id: str,
    name: str,
    *,
    device_block: dict[str, Any],
    availability_list: list[dict[str, str]],
    **options: Any,
) -> Entity:
    """One discovery config; `options` are HA keys (state_topic, value_template, unit_of_measurement, …)."""
    config: dict[str, Any] = {
        "name": name,
        "unique_id": f"chargebus_{_object_id(unique_id)}",
        # HA 2025.10 replaced `object_id` with this: the entity id it suggests for a new entity
        "default_entity_id": f"{component}.chargebus_{_object_id(unique_id)}",
        "device": device_block,
        "origin": origin(),
        "availability": availability_list,
        "availability_mode": "all",
    }
    config.update({key: value for key, value in options.items() if value is not None})
    return Entity(component, unique_id, config)


def max_current_number(
    topics: Topics,
    evse_id: str,
    max_amps: int,
    *,
    device_block: dict[str, Any],
    availability_list: list[dict[str, str]],
) -> Entity:
    """The `Max current` number of an EVSE whose bridge takes `max_current/set` in whole amps (0 stops it); its
    state is the offer ceiling the bridge reports, in amps."""
    return entity(
        "number",
        f"{evse_id}_max_current",
        "Max current",
        device_block=device_block,
        availability_list=availability_list,
        state_topic=topics.evse_state(evse_id),
        value_template="{{ (value_json.max_power_w / value_json.step_w) | round(0) | int }}",
        command_topic=topics.build("evse_max_current_set", evse_id=evse_id),
        min=0,
        max=max_amps,
        step=1,
        mode="box",
        unit_of_measurement="A",
        device_class="current",
    )


class Discovery:
    """Publishes discovery configs for one service and keeps them published."""

    def __init__(self, service: Service, *, enabled: bool, ha_prefix: str) -> None:
        self.service = service
        self.enabled = enabled
        self.ha_prefix = ha_prefix
        self._entities: dict[str, Entity] = {}
        if enabled:
            service.on_message(f"{ha_prefix}/status", self._on_ha_status)

    @property
    def entities(self) -> dict[str, Entity]:
        return dict(self._entities)

    async def publish(self, item: Entity) -> None:
        if not self.enabled:
            return
        topic = item.config_topic(self.ha_prefix)
        self._entities[topic] = item
        await self.service.publish_retained(topic, json.dumps(item.config, separators=(",", ":")))

    async def remove(self, item: Entity) -> None:
        if not self.enabled:
            return
        topic = item.config_topic(self.ha_prefix)
        self._entities.pop(topic, None)
        await self.service.clear_retained(topic)

    async def _on_ha_status(self, message: Incoming) -> None:
        if message.payload.strip() == b"online":
            for topic, item in list(self._entities.items()):
                await self.service.publish_retained(topic, json.dumps(item.config, separators=(",", ":")))
