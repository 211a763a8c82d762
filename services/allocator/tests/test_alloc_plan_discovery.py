"""Home Assistant entities of a departure plan: topics, commands, and their templates rendered on real states."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from chargebus.topics import Topics
from chargebus_allocator.discovery import plan_entities
from chargebus_allocator.model import ChargePoint

VIN = "5YJ3E1EA8KF000001"
TOPICS = Topics("p")


def render(template: str, state: dict[str, Any]) -> str:
    """As HA would, with stand-ins for the two HA filters the templates use (UTC for the local zone)."""
    environment = jinja2.Environment(autoescape=False)
    environment.filters.update(
        as_timestamp=lambda text: datetime.fromisoformat(text).timestamp(),
        timestamp_custom=lambda ts, fmt: datetime.fromtimestamp(ts, UTC).strftime(fmt),
        tojson=json.dumps,
    )
    environment.globals["as_timestamp"] = environment.filters["as_timestamp"]
    return environment.from_string(template).render(value_json=state).strip()


def state_with(plan: dict[str, Any] | None) -> dict[str, Any]:
    return {"groups": [{"vin": VIN, "primary_evse_id": "twc-4a1b", "plan": plan}]}


PLAN = {
    "target": {"soc_pct": 80.0, "energy_wh": None},
    "by": "2027-01-15T06:00:00.000Z",
    "strategy": "cheapest",
    "needed_wh": 20000.0,
    "solar_expected_wh": 0.0,
    "grid_wh": 20000.0,
    "cost": 2.4,
    "currency": "EUR",
    "slots": [{"start": "2027-01-15T01:00:00.000Z", "end": "2027-01-15T03:45:00.000Z", "power_w": 7680.0}],
    "status": "on_track",
    "reason": "",
}


def test_a_cars_plan_entities_send_one_field_each_to_its_plan_topic() -> None:
    point = ChargePoint(id="twc-4a1b", min_power_w=1440, max_power_w=7680, step_w=240, vin=VIN)
    entities = {item.unique_id.removeprefix(f"allocator_{VIN}_"): item.config for item in plan_entities(TOPICS, point)}
    assert set(entities) == {"plan_soc", "plan_departure", "plan_strategy", "plan_status", "plan_start", "plan_cost"}
    for name in ("plan_soc", "plan_departure", "plan_strategy"):
        assert entities[name]["command_topic"] == f"p/vehicle/{VIN}/plan/set"
    assert json.loads(jinja2.Template(entities["plan_soc"]["command_template"]).render(value=80)) == {"soc_pct": 80}
    assert json.loads(jinja2.Template(entities["plan_departure"]["command_template"]).render(value="07:00")) == {
        "by": "07:00"
    }
    assert "pattern" not in entities["plan_departure"]  # HA would check the (empty) state against it too

    with_plan, without = state_with(PLAN), state_with(None)
    assert render(entities["plan_soc"]["value_template"], with_plan) == "80.0"
    assert render(entities["plan_soc"]["value_template"], without) == "None"
    assert render(entities["plan_departure"]["value_template"], with_plan) == "06:00"
    assert render(entities["plan_departure"]["value_template"], without) == ""
    assert render(entities["plan_strategy"]["value_template"], with_plan) == "cheapest"
    assert render(entities["plan_status"]["value_template"], with_plan) == "on_track"
    assert render(entities["plan_status"]["value_template"], without) == "none"
    assert render(entities["plan_start"]["value_template"], with_plan) == "2027-01-15T01:00:00.000Z"
    assert render(entities["plan_start"]["value_template"], without) == "None"
    assert render(entities["plan_cost"]["value_template"], with_plan) == "2.4"
    attributes = json.loads(render(entities["plan_status"]["json_attributes_template"], with_plan))
    assert attributes["needed_wh"] == 20000.0


def test_an_evse_without_a_car_gets_an_energy_target_in_kwh() -> None:
    point = ChargePoint(id="twc-4a1b", min_power_w=1440, max_power_w=7680, step_w=240)
    (target,) = [item.config for item in plan_entities(TOPICS, point) if item.unique_id.endswith("_plan_energy")]
    assert target["command_topic"] == "p/evse/twc-4a1b/plan/set"
    assert target["unit_of_measurement"] == "kWh"
    assert json.loads(jinja2.Template(target["command_template"]).render(value="12.5")) == {"energy_wh": 12500}
    state = {"groups": [{"vin": None, "primary_evse_id": "twc-4a1b", "plan": {**PLAN, "target": {"energy_wh": 12500}}}]}
    assert render(target["value_template"], state) == "12.5"
