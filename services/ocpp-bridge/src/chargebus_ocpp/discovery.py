"""Home Assistant discovery entities of one OCPP connector (published with `chargebus.ha.Discovery`).

Each connector is a device with sensors for power, current, the limit it was given, session and lifetime energy,
its OCPP status and the VIN of a tagged session, plus a `number` for the `max_current` override of a configured
one. The entities are available while the ocpp-bridge is online and the connector's state says `online: true`.
"""

from __future__ import annotations

from chargebus.ha import Entity, availability, device, entity, evse_device_id, max_current_number
from chargebus.topics import Topics

SERVICE = "ocpp-bridge"


def connector_entities(
    topics: Topics, evse_id: str, name: str, *, controllable: bool, max_current_a: int
) -> list[Entity]:
    state_topic = topics.evse_state(evse_id)
    model = "OCPP charge point" if controllable else "OCPP charge point (read-only)"
    block = device(evse_device_id(evse_id), f"Wallbox {name}", model)
    available = [
        *availability(topics, SERVICE),
        {
            "topic": state_topic,
            "value_template": "{{ 'online' if value_json.online else 'offline' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
    ]

    def sensor(key: str, label: str, template: str, **options: str) -> Entity:
        return entity(
            "sensor",
            f"{evse_id}_{key}",
            label,
            device_block=block,
            availability_list=available,
            state_topic=state_topic,
            value_template=template,
            **options,
        )

    power = {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement"}
    current = {"unit_of_measurement": "A", "device_class": "current", "state_class": "measurement"}
    energy = {"unit_of_measurement": "Wh", "device_class": "energy"}
    items = [
        sensor("power", "Power", "{{ value_json.power_w }}", **power),
        sensor("current", "Current", "{{ value_json.current_a }}", **current),
        sensor("offered", "Limit", "{{ value_json.offered_a }}", **current),
        sensor("session_energy", "Session energy", "{{ value_json.session_energy_wh }}", **energy, state_class="total"),
        sensor(
            "lifetime_energy",
            "Lifetime energy",
            "{{ value_json.lifetime_energy_wh }}",
            **energy,
            state_class="total_increasing",
        ),
        sensor("status", "Status", "{{ value_json.status_text }}"),
        sensor("vin", "Vehicle", "{{ value_json.vin }}"),
    ]
    if controllable:
        items.append(
            max_current_number(topics, evse_id, max_current_a, device_block=block, availability_list=available)
        )
    return items
