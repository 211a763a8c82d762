"""Home Assistant discovery for the allocator: what the entities are (pure builders) and keeping them in sync.

A `select` for the global mode, a `switch` for `schedules_enabled`, sensors for the budget (`available_w`, `grid_w`,
`surplus_w`), a `number` for the runtime grid import limit; with a home battery, sensors for its SoC and power as
the allocator sees them and a `binary_sensor` for `battery_hold`; with an import average, a sensor for the running
window's average; per charge point
sensors for its allocation and state, its departure plan's entities (a target number — SoC for a car, kWh for an EVSE
without one —, a departure `text`, a strategy `select`, sensors for the plan's status, planned start and expected
cost), and per controllable EVSE a `number` for its priority. They all read
`allocator/state`; the charge point ones find their group in it by VIN (else by primary EVSE id). Entities of a
charge point or EVSE that disappears are removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chargebus.ha import Discovery, Entity, availability, device, entity
from chargebus.schema import MODES, PlanStrategy
from chargebus.topics import Topics

from chargebus_allocator.model import Allocation, ChargePoint

SERVICE = "allocator"
PRIORITY_RANGE = (-1000, 1000)
#: The grid limit number's range and step (W); `default` (clearing it) is a command, not a number.
GRID_LIMIT_RANGE = (100, 100_000)
GRID_LIMIT_STEP = 100


@dataclass(frozen=True, slots=True)
class Features:
    """What is configured, so only entities that can show something are announced."""

    battery: bool = False
    import_average: bool = False


def _site_field(field: str) -> str:
    return f"{{{{ value_json.site.{field} if value_json.site is defined and value_json.site else none }}}}"


#: The switch's state from `allocator/state`: off only while a `schedules_enabled` override says false.
SCHEDULES_ENABLED_TEMPLATE = (
    "{% set v = value_json.overrides | selectattr('key', 'equalto', 'schedules_enabled') "
    "| map(attribute='value') | list %}{{ 'false' if v and v[0] == false else 'true' }}"
)


def _common(topics: Topics) -> dict[str, Any]:
    return {
        "device_block": device(SERVICE, "chargebus allocator", "allocator"),
        "availability_list": availability(topics, SERVICE),
    }


def site_entities(topics: Topics, features: Features) -> list[Entity]:
    """The site limits and the home battery: what the allocator sees and the grid limit a user may set."""
    state_topic = topics.build("allocator_state")
    low, high = GRID_LIMIT_RANGE
    entities = [
        entity(
            "number",
            "allocator_grid_limit",
            "Grid import limit",
            state_topic=state_topic,
            value_template=_site_field("max_import_w"),
            command_topic=topics.build("allocator_grid_limit_set"),
            min=low,
            max=high,
            step=GRID_LIMIT_STEP,
            mode="box",
            unit_of_measurement="W",
            device_class="power",
            **_common(topics),
        )
    ]
    sensors: list[tuple[str, str, str, str]] = []
    if features.battery:
        sensors += [
            ("battery_soc_pct", "Home battery SoC", "%", "battery"),
            ("battery_w", "Home battery power", "W", "power"),
        ]
    if features.import_average:
        sensors.append(("average_w", "Import average this window", "W", "power"))
    for field, name, unit, device_class in sensors:
        entities.append(
            entity(
                "sensor",
                f"allocator_{field}",
                name,
                state_topic=state_topic,
                value_template=_site_field(field),
                unit_of_measurement=unit,
                device_class=device_class,
                state_class="measurement",
                **_common(topics),
            )
        )
    if features.battery:
        entities.append(
            entity(
                "binary_sensor",
                "allocator_battery_hold",
                "Home battery hold",
                state_topic=topics.build("allocator_battery_hold"),
                payload_on="true",
                payload_off="false",
                **_common(topics),
            )
        )
    return entities


def static_entities(topics: Topics, features: Features = Features()) -> list[Entity]:
    state_topic = topics.build("allocator_state")
    entities = [
        entity(
            "select",
            "allocator_mode",
            "Charging mode",
            state_topic=state_topic,
            value_template="{{ value_json.mode }}",
            command_topic=topics.build("allocator_mode_set"),
            options=list(MODES),
            **_common(topics),
        ),
        entity(
            "switch",
            "allocator_schedules_enabled",
            "Charging schedules",
            state_topic=state_topic,
            value_template=SCHEDULES_ENABLED_TEMPLATE,
            command_topic=topics.build("allocator_schedules_enabled_set"),
            payload_on="true",
            payload_off="false",
            state_on="true",
            state_off="false",
            **_common(topics),
        ),
    ]
    for field, name in (("available_w", "Available power"), ("grid_w", "Grid power"), ("surplus_w", "Solar surplus")):
        entities.append(
            entity(
                "sensor",
                f"allocator_{field}",
                name,
                state_topic=state_topic,
                value_template=f"{{{{ value_json.{field} }}}}",
                unit_of_measurement="W",
                device_class="power",
                state_class="measurement",
                **_common(topics),
            )
        )
    return entities + site_entities(topics, features)


def _group_filter(point: ChargePoint) -> str:
    if point.vin is not None:
        return f"g.vin == '{point.vin}'"
    return f"g.primary_evse_id == '{point.id}'"


def point_entities(topics: Topics, point: ChargePoint) -> list[Entity]:
    """A charge point's allocation and state sensors, named by its car when known, else its primary EVSE."""
    state_topic = topics.build("allocator_state")
    label = point.vin or point.id
    pick = f"{{% for g in value_json.groups if {_group_filter(point)} %}}"
    return [
        entity(
            "sensor",
            f"allocator_{label}_allocated_w",
            f"{label} allocated power",
            state_topic=state_topic,
            value_template=pick + "{{ g.allocated_w }}{% endfor %}",
            unit_of_measurement="W",
            device_class="power",
            state_class="measurement",
            **_common(topics),
        ),
        entity(
            "sensor",
            f"allocator_{label}_state",
            f"{label} state",
            state_topic=state_topic,
            value_template=pick + "{{ g.state }}{% endfor %}",
            json_attributes_topic=state_topic,
            json_attributes_template=pick + "{{ {'reason': g.reason, 'evse_ids': g.evse_ids} | tojson }}{% endfor %}",
            **_common(topics),
        ),
    ]


STRATEGIES: tuple[PlanStrategy, ...] = ("cheapest", "continuous", "solar_only")


def plan_entities(topics: Topics, point: ChargePoint) -> list[Entity]:
    """A charge point's departure plan: each entity sends one field to `plan/set` (the rest of the plan stays).

    The departure text has no `pattern`: HA would check the state against it too, and without a plan the state is
    empty; the allocator checks what is typed and answers a bad time with an ErrorEvent."""
    state_topic = topics.build("allocator_state")
    label = point.vin or point.id
    pick = f"{{% for g in value_json.groups if {_group_filter(point)} %}}"
    plan = pick + "{% if g.plan %}{{ "
    end = " }}{% else %}None{% endif %}{% endfor %}"
    text_end = " }}{% endif %}{% endfor %}"  # a text entity's state is a string: empty without a plan
    if point.vin is not None:
        command_topic = topics.build("vehicle_plan_set", vin=point.vin)
        target = entity(
            "number", f"allocator_{label}_plan_soc", f"{label} plan target SoC",
            state_topic=state_topic, value_template=plan + "g.plan.target.soc_pct" + end,
            command_topic=command_topic, command_template='{"soc_pct": {{ value }}}',
            min=10, max=100, step=1, unit_of_measurement="%", mode="slider", **_common(topics),
        )  # fmt: skip
    else:
        command_topic = topics.build("evse_plan_set", evse_id=point.id)
        target = entity(
            "number", f"allocator_{label}_plan_energy", f"{label} plan energy",
            state_topic=state_topic, value_template=plan + "(g.plan.target.energy_wh / 1000) | round(1)" + end,
            command_topic=command_topic, command_template='{"energy_wh": {{ (value | float * 1000) | round }}}',
            min=1, max=150, step=0.5, unit_of_measurement="kWh", device_class="energy", mode="box", **_common(topics),
        )  # fmt: skip
    return [
        target,
        entity(
            "text", f"allocator_{label}_plan_departure", f"{label} departure",
            state_topic=state_topic,
            value_template=plan + "as_timestamp(g.plan.by) | timestamp_custom('%H:%M')" + text_end,
            command_topic=command_topic, command_template='{"by": "{{ value }}"}', max=5, **_common(topics),
        ),
        entity(
            "select", f"allocator_{label}_plan_strategy", f"{label} plan strategy",
            state_topic=state_topic, value_template=plan + "g.plan.strategy" + end,
            command_topic=command_topic, command_template='{"strategy": "{{ value }}"}',
            options=list(STRATEGIES), **_common(topics),
        ),
        entity(
            "sensor", f"allocator_{label}_plan_status", f"{label} plan status",
            state_topic=state_topic, value_template=pick + "{{ g.plan.status if g.plan else 'none' }}{% endfor %}",
            json_attributes_topic=state_topic,
            json_attributes_template=pick + "{{ ({'reason': g.plan.reason, 'needed_wh': g.plan.needed_wh, "
            "'solar_expected_wh': g.plan.solar_expected_wh, 'grid_wh': g.plan.grid_wh, 'slots': g.plan.slots} "
            "if g.plan else {}) | tojson }}{% endfor %}",
            **_common(topics),
        ),
        entity(
            "sensor", f"allocator_{label}_plan_start", f"{label} planned start",
            state_topic=state_topic,
            value_template=pick + "{{ g.plan.slots[0].start if g.plan and g.plan.slots else None }}{% endfor %}",
            device_class="timestamp", **_common(topics),
        ),
        entity(
            "sensor", f"allocator_{label}_plan_cost", f"{label} plan expected cost",
            state_topic=state_topic, value_template=plan + "g.plan.cost" + end,
            json_attributes_topic=state_topic,
            json_attributes_template=pick + "{{ {'currency': g.plan.currency if g.plan else None} | tojson }}"
            "{% endfor %}",
            state_class="measurement", **_common(topics),
        ),
    ]  # fmt: skip


def priority_entity(topics: Topics, evse_id: str) -> Entity:
    low, high = PRIORITY_RANGE
    return entity(
        "number",
        f"allocator_{evse_id}_priority",
        f"{evse_id} priority",
        state_topic=topics.build("allocator_state"),
        value_template=(
            f"{{% for g in value_json.groups if '{evse_id}' in g.evse_ids %}}{{{{ g.priority }}}}{{% endfor %}}"
        ),
        command_topic=topics.build("evse_priority_set", evse_id=evse_id),
        min=low,
        max=high,
        step=1,
        mode="box",
        **_common(topics),
    )


def entities_for(topics: Topics, allocation: Allocation, features: Features = Features()) -> dict[str, Entity]:
    """Every entity the allocator should have now, by unique id."""
    found = {item.unique_id: item for item in static_entities(topics, features)}
    for result in allocation.points:
        point = result.charge_point
        found.update({item.unique_id: item for item in point_entities(topics, point)})
        if point.controllable:
            found.update({item.unique_id: item for item in plan_entities(topics, point)})
            for evse_id in point.members:
                item = priority_entity(topics, evse_id)
                found[item.unique_id] = item
    return found


class HaSync:
    """Publishes new entities and removes the ones whose charge point or EVSE has gone."""

    def __init__(self, discovery: Discovery, topics: Topics, features: Features = Features()) -> None:
        self.discovery = discovery
        self.topics = topics
        self.features = features
        self.current: dict[str, Entity] = {}
        self.signature: object = None

    async def sync(self, allocation: Allocation) -> None:
        if not self.discovery.enabled:
            return
        signature = [
            (p.charge_point.key, p.charge_point.members, p.charge_point.controllable) for p in allocation.points
        ]
        if signature == self.signature:
            return  # the same charge points and EVSEs: nothing to add or remove (and no need to rebuild)
        self.signature = signature
        wanted = entities_for(self.topics, allocation, self.features)
        for unique_id, item in self.current.items():
            if unique_id not in wanted:
                await self.discovery.remove(item)
        for unique_id, item in wanted.items():
            if unique_id not in self.current:
                await self.discovery.publish(item)
        self.current = wanted
