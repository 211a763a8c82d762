"""Home Assistant entities of the tesla-bridge: per car SoC, charger power, charge limit, API calls and cost today
(and, for a car on a BLE proxy, its free BLE calls today).

All entities read the retained chargebus topics (VehicleState, Usage) with templates, so nothing is published
twice. The charge limit is a `number` whose command topic is the contract's `charge_limit/set`, and a `button`
sends `refresh/set`: both are billed Tesla calls, exactly as when sent with mosquitto_pub.
"""

from __future__ import annotations

from typing import Any

from chargebus.config import TeslaVehicleConfig
from chargebus.ha import Entity, availability, device, entity, vehicle_device_id
from chargebus.topics import Topics

SERVICE = "tesla-bridge"


def car_entities(topics: Topics, vehicle: TeslaVehicleConfig) -> list[Entity]:
    vin = vehicle.vin
    name = vehicle.name or vin
    block = device(vehicle_device_id(vin), name, "Tesla vehicle")
    block["serial_number"] = vin
    online = availability(topics, SERVICE)
    state = topics.vehicle_state(vin)
    usage = topics.build("tesla_usage")
    mine = f"(value_json.cars | selectattr('vin', 'equalto', '{vin}') | list)"
    common: dict[str, Any] = {"device_block": block, "availability_list": online}
    entities: list[Entity] = [
        entity(
            "sensor",
            f"tesla_{vin}_soc",
            "State of charge",
            state_topic=state,
            value_template="{{ value_json.soc_pct }}",
            device_class="battery",
            unit_of_measurement="%",
            state_class="measurement",
            **common,
        ),
        entity(
            "sensor",
            f"tesla_{vin}_charger_power",
            "Charger power",
            state_topic=state,
            value_template="{{ value_json.charger_power_w }}",
            device_class="power",
            unit_of_measurement="W",
            state_class="measurement",
            **common,
        ),
        entity(
            "number",
            f"tesla_{vin}_charge_limit",
            "Charge limit",
            state_topic=state,
            value_template="{{ value_json.charge_limit_pct }}",
            command_topic=topics.build("vehicle_charge_limit_set", vin=vin),
            min=50,
            max=100,
            step=1,
            mode="slider",
            unit_of_measurement="%",
            **common,
        ),
        entity(
            "button",
            f"tesla_{vin}_refresh",
            "Refresh (billed)",
            command_topic=topics.build("vehicle_refresh_set", vin=vin),
            payload_press="refresh",
            entity_category="diagnostic",
            **common,
        ),
        entity(
            "sensor",
            f"tesla_{vin}_api_calls_today",
            "Tesla API calls today",
            state_topic=usage,
            value_template=(
                "{% set c = " + mine + " | first %}{{ c.data + c.command + c.wake if c is defined else 0 }}"
            ),
            state_class="total_increasing",  # falls to 0 at UTC midnight: HA reads that as a new cycle
            entity_category="diagnostic",
            **common,
        ),
        entity(
            "sensor",
            f"tesla_{vin}_api_cost_today",
            "Tesla API cost today",
            state_topic=usage,
            value_template="{% set c = " + mine + " | first %}{{ c.billed_usd if c is defined else 0 }}",
            device_class="monetary",
            unit_of_measurement="USD",
            state_class="total",  # monetary allows only `total`; the reset comes from the usage's UTC day
            last_reset_value_template="{{ value_json.date }}T00:00:00+00:00",
            entity_category="diagnostic",
            **common,
        ),
    ]
    if vehicle.transport == "ble_proxy":
        entities.append(
            entity(
                "sensor",
                f"tesla_{vin}_ble_calls_today",
                "BLE proxy calls today",
                state_topic=usage,
                value_template="{% set c = " + mine + " | first %}{{ c.ble if c is defined else 0 }}",
                state_class="total_increasing",
                entity_category="diagnostic",
                **common,
            )
        )
    return entities
