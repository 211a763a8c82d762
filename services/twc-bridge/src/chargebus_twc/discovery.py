"""Home Assistant discovery entities of one TWC (built here, published with `chargebus.ha.Discovery`).

Each slave is a device with sensors for power, current, offered current, lifetime energy and its status text,
plus — when the bridge drives the bus — a `number` for its max_current override. The entities are available while
the twc-bridge is online and the slave's state says `online: true`.
"""

from __future__ import annotations

from chargebus.ha import Entity, availability, device, entity, evse_device_id, max_current_number
from chargebus.schema import evse_id_name
from chargebus.topics import Topics

SERVICE = "twc-bridge"


def slave_entities(topics: Topics, evse_id: str, *, controllable: bool, wiring_max_amps: int) -> list[Entity]:
    state_topic = topics.evse_state(evse_id)
    block = device(evse_device_id(evse_id), f"TWC {evse_id_name(evse_id)}", "Gen2 Tesla Wall Connector")
    available = [
        *availability(topics, SERVICE),
        {
            "topic": state_topic,
            "value_template": "{{ 'online' if value_json.online else 'offline' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
    ]

    def sensor(key: str, name: str, template: str, **options: str) -> Entity:
        return entity(
            "sensor",
            f"{evse_id}_{key}",
            name,
            device_block=block,
            availability_list=available,
            state_topic=state_topic,
            value_template=template,
            **options,
        )

    items = [
        sensor(
            "power",
            "Power",
            "{{ value_json.power_w }}",
            unit_of_measurement="W",
            device_class="power",
            state_class="measurement",
        ),
        sensor(
            "current",
            "Current",
            "{{ value_json.current_a }}",
            unit_of_measurement="A",
            device_class="current",
            state_class="measurement",
        ),
        sensor(
            "offered",
            "Offered current",
            "{{ value_json.offered_a }}",
            unit_of_measurement="A",
            device_class="current",
            state_class="measurement",
        ),
        sensor(
            "lifetime_energy",
            "Lifetime energy",
            "{{ value_json.lifetime_energy_wh }}",
            unit_of_measurement="Wh",
            device_class="energy",
            state_class="total_increasing",
        ),
        sensor("status", "Status", "{{ value_json.status_text }}"),
    ]
    if controllable:
        items.append(
            max_current_number(topics, evse_id, wiring_max_amps, device_block=block, availability_list=available)
        )
    return items
