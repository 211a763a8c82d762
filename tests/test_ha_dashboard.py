"""The Home Assistant dashboard example, checked without Home Assistant against what chargebus really publishes.

The stack (the four services and the simulated world of `chargebus demo`, `tests.e2e.e2e_stack`) runs with
discovery on. Home Assistant's side is what it reads on the discovery prefix: each config's `default_entity_id` is
the entity id it gives a new entity. Checked:

- `dashboard.yaml` parses and every entity id it names is the `default_entity_id` of a published config (for the
  demo's twc-4a1b and the car at it), of the domain the id says;
- every `mqtt.publish` button sends a command the allocator carries out (the topic, with the test's prefix in
  place of `chargebus`, and the payload exactly as in the file), with no error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chargebus_sim.house import House

from tests.e2e.e2e_stack import Stack, running_stack
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[1] / "examples" / "home-assistant" / "dashboard.yaml"
#: chargebus' default discovery prefix, which the simulated world's config keeps.
HA_PREFIX = "homeassistant"
DISCOVERY_WAIT_S = 30.0
EFFECT_WAIT_S = 15.0


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a parsed YAML document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def entity_ids(document: Any) -> set[str]:
    """Entity ids of a Lovelace config: `entity:` of a card or row, and bare strings in `entities:` lists."""
    found: set[str] = set()
    for mapping in walk(document):
        if isinstance(mapping.get("entity"), str):
            found.add(mapping["entity"])
        for item in mapping.get("entities") or []:
            if isinstance(item, str):
                found.add(item)
    return found


def mqtt_publishes(document: Any) -> list[dict[str, Any]]:
    """The `data` of every `mqtt.publish` action."""
    return [
        dict(mapping["data"])
        for mapping in walk(document)
        if mapping.get("perform_action") == "mqtt.publish" or mapping.get("action") == "mqtt.publish"
    ]


def load_dashboard() -> Any:
    return yaml.safe_load(DASHBOARD.read_text(encoding="utf-8"))


def test_the_dashboard_names_entities_and_commands() -> None:
    document = load_dashboard()
    ids = entity_ids(document)
    assert len(ids) >= 15, ids  # the extraction finds them at all
    assert all(entity.split(".", 1)[1].startswith("chargebus_") for entity in ids), ids
    publishes = mqtt_publishes(document)
    assert len(publishes) == 6, publishes
    assert all(not data.get("retain", False) for data in publishes)


def published_entities(ha: Recorder, prefix: str) -> dict[str, dict[str, Any]]:
    """default_entity_id → config of every live discovery config of this test's services, with the component of
    its topic (`<ha prefix>/<component>/chargebus/<object id>/config`) under `"component"`."""
    latest: dict[str, bytes] = {}
    for message in ha.messages:
        latest[message.topic] = message.payload
    found: dict[str, dict[str, Any]] = {}
    for topic, payload in latest.items():
        config = json.loads(payload) if payload else None
        if config is not None and any(a["topic"].startswith(f"{prefix}/") for a in config.get("availability", [])):
            found[str(config["default_entity_id"])] = config | {"component": topic.split("/")[1]}
    return found


async def command_carried_out(stack: Stack, data: dict[str, Any]) -> None:
    topic = str(data["topic"])
    payload = str(data["payload"])
    assert topic.startswith("chargebus/"), topic
    rest = topic.removeprefix("chargebus/")
    mark = len(stack.bus.messages)
    await stack.bus.publish(stack.topic(rest), payload)

    def effect(state: dict[str, Any]) -> bool:
        if rest == "allocator/mode/set":
            return bool(state["mode"] == payload)
        assert rest == "allocator/charge_now/set", rest
        return (state["charge_now_until"] is not None) == (float(payload) > 0)

    state_topic = stack.topic("allocator/state")
    await stack.bus.wait_for(
        lambda: any(m.topic == state_topic and effect(m.json()) for m in stack.bus.messages[mark:]),
        timeout=EFFECT_WAIT_S,
        what=f"the allocator carrying out {topic} {payload!r}",
    )
    errors = [m.text for m in stack.bus.messages[mark:] if m.topic.endswith("/error")]
    assert errors == [], errors


async def test_dashboard_entities_are_discovered_and_its_buttons_work(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    document = load_dashboard()
    wanted = entity_ids(document)
    house = House(cloudy_from_h=24.0)
    async with (
        running_stack(mqtt_broker, prefix, tmp_path, house=house, start_hour=12.0, ha_discovery=True) as stack,
        Recorder(mqtt_broker.url, [f"{HA_PREFIX}/+/chargebus/+/config"]) as ha,
    ):

        def missing() -> set[str]:
            return wanted - set(published_entities(ha, prefix))

        try:
            await ha.wait_for(lambda: not missing(), timeout=DISCOVERY_WAIT_S, what="every dashboard entity")
        except AssertionError:
            names = sorted(published_entities(ha, prefix))
            pytest.fail(f"not published by the discovery: {sorted(missing())}\npublished: {names}")
        published = published_entities(ha, prefix)
        wrong = {entity for entity in wanted if published[entity]["component"] != entity.split(".")[0]}
        assert not wrong, f"published for another component than their domain: {wrong}"

        for data in mqtt_publishes(document):
            await command_carried_out(stack, data)
        stack.assert_alive()
