"""The examples and docs a user copies: the Node-RED flow, the Home Assistant dashboard, config snippets, topics."""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pytest
import yaml
from chargebus.schema import EVSE_ID_PATTERN, VIN_PATTERN, SolarForecast, Tariff, parse_payload
from chargebus.topics import SERVICES, TOPICS, Topics

ROOT = Path(__file__).resolve().parents[1]
NODE_RED = ROOT / "examples" / "node-red"
HOME_ASSISTANT = ROOT / "examples" / "home-assistant"
CHECKER = NODE_RED / "check_flows.py"
FLOWS = NODE_RED / "flows.json"
FLOWS_DASHBOARD2 = NODE_RED / "flows-dashboard2.json"

Node = dict[str, Any]


# --- Node-RED flow checker -------------------------------------------------------------------------------------------


def run_checker(flows: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(flows)], capture_output=True, text=True, timeout=60, check=False
    )


def load_checker() -> ModuleType:
    name = "chargebus_example_check_flows"
    spec = importlib.util.spec_from_file_location(name, CHECKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclass looks its module up while it is being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def committed_flow(path: Path = FLOWS) -> list[Node]:
    nodes: list[Node] = json.loads(path.read_text(encoding="utf-8"))
    return nodes


def first(nodes: list[Node], predicate: Callable[[Node], bool]) -> Node:
    return next(node for node in nodes if predicate(node))


def first_mqtt_out(nodes: list[Node]) -> Node:
    return first(nodes, lambda node: node["type"] == "mqtt out")


# Each breaks the flow in one place and returns (the id of the node to blame, what the error must say).
def duplicate_id(nodes: list[Node]) -> tuple[str, str]:
    node = first(nodes, lambda node: node["type"] == "debug")
    nodes.append(copy.deepcopy(node))
    return node["id"], "is used more than once"


def dangling_wire(nodes: list[Node]) -> tuple[str, str]:
    node = first(nodes, lambda node: bool(node.get("wires")))
    node["wires"][0].append("0000000000000000")
    return node["id"], "wire to '0000000000000000', which does not exist"


def publish_to_state_topic(nodes: list[Node]) -> tuple[str, str]:
    node = first_mqtt_out(nodes)
    node["topic"] = "chargebus/allocator/state"
    return node["id"], "topic 'chargebus/allocator/state' is a state topic; only commands may be published"


def retained_command(nodes: list[Node]) -> tuple[str, str]:
    node = first_mqtt_out(nodes)
    node["retain"] = "true"
    return node["id"], "commands are never retained"


def input_widget_passes_on(nodes: list[Node]) -> tuple[str, str]:
    node = first(nodes, lambda node: node["type"] in ("ui_numeric", "ui-number-input"))
    node["passthru"] = True
    return node["id"], "passthru would send every value it is shown as a command"


def input_widget_not_fed(nodes: list[Node]) -> tuple[str, str]:
    widget = first(nodes, lambda node: node["type"] in ("ui_numeric", "ui-number-input"))
    feed = first(nodes, lambda node: widget["id"] in [target for out in node.get("wires", []) for target in out])
    feed["wires"] = [[target for target in out if target != widget["id"]] for out in feed["wires"]]
    return widget["id"], "an input widget must be fed the current value"


def dashboard2_group_on_a_tab(nodes: list[Node]) -> tuple[str, str]:
    group = first(nodes, lambda node: node["type"] == "ui-group")
    group["page"] = first(nodes, lambda node: node["type"] == "tab")["id"]
    return group["id"], "is a tab, not a ui-page"


BOTH = [pytest.param(FLOWS, id="dashboard1"), pytest.param(FLOWS_DASHBOARD2, id="dashboard2")]


@pytest.mark.parametrize("flows", BOTH)
def test_committed_flow_passes_the_checker(flows: Path) -> None:
    result = run_checker(flows)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith(f"{len(committed_flow(flows))} nodes, 0 problems — OK")
    assert "ERROR" not in result.stdout


def test_both_flows_have_the_same_controls_and_topics() -> None:
    def controls(nodes: list[Node]) -> list[tuple[str, str]]:
        kinds = {"ui_dropdown": "dropdown", "ui-dropdown": "dropdown", "ui_button": "button", "ui-button": "button",
                 "ui_numeric": "number", "ui-number-input": "number", "ui_text": "text", "ui-text": "text"}  # fmt: skip
        return sorted((kinds[node["type"]], node["label"]) for node in nodes if node["type"] in kinds)

    def topics(nodes: list[Node]) -> list[tuple[str, str]]:
        return sorted((node["type"], node["topic"]) for node in nodes if node["type"] in ("mqtt in", "mqtt out"))

    one, two = committed_flow(FLOWS), committed_flow(FLOWS_DASHBOARD2)
    assert controls(one) == controls(two)
    assert len(controls(one)) == 11
    assert topics(one) == topics(two)
    assert not {node["id"] for node in one} & {node["id"] for node in two}  # both can be imported side by side


@pytest.mark.parametrize("flows", BOTH)
@pytest.mark.parametrize(
    "breaks",
    [
        duplicate_id,
        dangling_wire,
        publish_to_state_topic,
        retained_command,
        input_widget_passes_on,
        input_widget_not_fed,
    ],
    ids=lambda f: f.__name__,
)
def test_checker_names_the_problem(
    tmp_path: Path, flows: Path, breaks: Callable[[list[Node]], tuple[str, str]]
) -> None:
    check_breakage(tmp_path, committed_flow(flows), breaks)


def test_checker_names_a_dashboard2_config_problem(tmp_path: Path) -> None:
    check_breakage(tmp_path, committed_flow(FLOWS_DASHBOARD2), dashboard2_group_on_a_tab)


def check_breakage(tmp_path: Path, nodes: list[Node], breaks: Callable[[list[Node]], tuple[str, str]]) -> None:
    node_id, expected = breaks(nodes)
    broken = tmp_path / "flows.json"
    broken.write_text(json.dumps(nodes, indent=2), encoding="utf-8")
    result = run_checker(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1, result.stdout
    assert node_id in errors[0]
    assert expected in errors[0]
    assert result.stdout.rstrip().endswith("1 problems")


def test_checker_refuses_a_file_that_is_not_a_flow(tmp_path: Path) -> None:
    broken = tmp_path / "flows.json"
    broken.write_text('{"id": "x"}', encoding="utf-8")
    result = run_checker(broken)
    assert result.returncode == 1
    assert "ERROR the file is not a JSON array of nodes" in result.stdout
    assert run_checker(tmp_path / "missing.json").returncode == 1


def test_checker_topic_table_mirrors_the_contract() -> None:
    # the checker is stdlib only, so it keeps its own copy of docs/contract.md §5 and §4; it must not drift
    checker = load_checker()
    assert tuple((spec.pattern, spec.direction, spec.is_command) for spec in TOPICS) == checker.TOPICS
    assert checker.SERVICES == SERVICES
    assert checker.ID_PATTERNS["vin"].pattern == VIN_PATTERN
    assert checker.ID_PATTERNS["evse_id"].pattern == EVSE_ID_PATTERN


# --- Home Assistant dashboard ----------------------------------------------------------------------------------------


def test_dashboard_is_yaml_with_views_and_cards() -> None:
    dashboard = yaml.safe_load((HOME_ASSISTANT / "dashboard.yaml").read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    views = dashboard.get("views")
    assert isinstance(views, list)
    assert views
    for view in views:
        assert isinstance(view, dict)
        cards = view.get("cards")
        assert isinstance(cards, list), view.get("title")
        assert cards, view.get("title")
        assert all(isinstance(card, dict) and "type" in card for card in cards), view.get("title")


# --- chargebus.toml in the docs --------------------------------------------------------------------------------------

CONFIG_DOCS = (ROOT / "docs" / "migrating-from-twcmanager.md", HOME_ASSISTANT / "README.md")
FENCE = re.compile(r"^([ \t]*)```(\w*)[ \t]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def fenced_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown text (dedented, as in a list item), optionally of one language only."""
    return [
        textwrap.dedent(match.group(3))
        for match in FENCE.finditer(text)
        if language is None or match.group(2) == language
    ]


def complete_configs() -> list[pytest.ParameterSet]:
    """Every ```toml block that is a whole chargebus.toml (it has [mqtt]); fragments are not checked alone."""
    params = []
    for doc in CONFIG_DOCS:
        blocks = fenced_blocks(doc.read_text(encoding="utf-8"), "toml")
        params += [
            pytest.param(block, id=f"{doc.name}-{index}")
            for index, block in enumerate(blocks)
            if re.search(r"^\[mqtt\]", block, re.MULTILINE)
        ]
    return params


def test_docs_contain_a_complete_config() -> None:
    found = {str(param.id).rsplit("-", 1)[0] for param in complete_configs()}
    assert found == {doc.name for doc in CONFIG_DOCS}


@pytest.mark.parametrize("config", complete_configs())
def test_config_in_the_docs_passes_config_check(tmp_path: Path, config: str) -> None:
    path = tmp_path / "chargebus.toml"
    path.write_text(config, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "chargebus", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- topics in the docs ----------------------------------------------------------------------------------------------

TOPIC_DOCS = (NODE_RED / "README.md", HOME_ASSISTANT / "README.md")
CONTRACT = Topics("chargebus")
PATTERNS = {f"{CONTRACT.prefix}/{spec.pattern}" for spec in TOPICS}  # chargebus/evse/{evse_id}/state
FILTERS = {CONTRACT.filter(spec.key) for spec in TOPICS}  # chargebus/evse/+/state
PLACEHOLDER = re.compile(r"<(\w+)>")
SAMPLE_IDS = {"evse_id": "twc-4a1b", "vin": "5YJ3E1EA8KF000001", "service": "allocator", "meter": "grid"}
ID_PATTERNS = {"evse_id": EVSE_ID_PATTERN, "vin": VIN_PATTERN}
# a topic starts a word (not `homeassistant/…/chargebus/…`, not a path) and ends at a space, quote or bracket
TOPIC = re.compile(r"(?<![\w/.-])chargebus/[^\s`'\",()\[\]]*")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def documented_topics(text: str) -> set[str]:
    """`chargebus/…` topics in the text's code: inline `…` spans and fenced blocks. The bare prefix is no topic."""
    code = fenced_blocks(text)
    code += INLINE_CODE.findall(FENCE.sub("", text))
    return {topic for span in code for topic in TOPIC.findall(span) if topic != f"{CONTRACT.prefix}/"}


def contract_problem(topic: str) -> str | None:
    """Why a documented topic is not one of the contract; None when it is.

    Three forms: a pattern with `<id>` levels (`chargebus/evse/<evse_id>/state`), a subscription filter with `+`
    for the ids (`chargebus/+/status`), a concrete topic with valid ids (`chargebus/evse/car-<VIN>/state` has a
    sample VIN put in).
    """
    if PLACEHOLDER.sub(lambda match: "{" + match.group(1).lower() + "}", topic) in PATTERNS:
        return None
    if "+" in topic or "#" in topic:
        return None if topic in FILTERS else "not a subscription filter of the contract"
    names = {match.lower() for match in PLACEHOLDER.findall(topic)}
    if not names <= set(SAMPLE_IDS):
        return f"unknown placeholder in {sorted(names - set(SAMPLE_IDS))}"
    parsed = CONTRACT.parse(PLACEHOLDER.sub(lambda match: SAMPLE_IDS[match.group(1).lower()], topic))
    if parsed is None:
        return "no topic of the contract"
    bad = [name for name, value in parsed.ids.items() if name in ID_PATTERNS and not re.match(ID_PATTERNS[name], value)]
    return f"invalid {', '.join(bad)}" if bad else None


@pytest.mark.parametrize("doc", TOPIC_DOCS, ids=lambda doc: doc.parent.name)
def test_topics_in_the_docs_are_contract_topics(doc: Path) -> None:
    topics = documented_topics(doc.read_text(encoding="utf-8"))
    assert len(topics) >= 5, topics  # the extraction finds them at all
    problems = {topic: problem for topic in sorted(topics) if (problem := contract_problem(topic)) is not None}
    assert not problems


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("chargebus/evse/<evse_id>/state", True),
        ("chargebus/vehicle/<VIN>/priority/set", True),
        ("chargebus/<service>/error", True),
        ("chargebus/+/status", True),
        ("chargebus/evse/car-<VIN>/state", True),
        ("chargebus/evse/twc-4a1b/priority/set", True),
        ("chargebus/tesla-bridge/usage", True),
        ("chargebus/evse/<vin>/state", False),  # wrong kind of id
        ("chargebus/evse/+/status", False),
        ("chargebus/#", False),
        ("chargebus/evse/TWC-4A1B/state", False),  # ids are lower case
        ("chargebus/allocator/modes/set", False),
        ("chargebus/sim/status", False),  # not a service
    ],
)
def test_contract_problem(topic: str, ok: bool) -> None:
    assert (contract_problem(topic) is None) == ok


def test_battery_hold_examples_follow_the_topic() -> None:
    automations = yaml.safe_load((HOME_ASSISTANT / "battery_hold.yaml").read_text(encoding="utf-8"))
    (automation,) = automations
    assert automation["trigger"][0]["topic"] == CONTRACT.build("allocator_battery_hold")
    assert "trigger.payload == 'true'" in automation["action"][0]["choose"][0]["conditions"][0]["value_template"]
    flow = json.loads((NODE_RED / "battery_hold.json").read_text(encoding="utf-8"))
    (listener,) = [node for node in flow if node["type"] == "mqtt in"]
    assert listener["topic"] == CONTRACT.build("allocator_battery_hold")
    result = run_checker(NODE_RED / "battery_hold.json")
    assert result.returncode == 0, result.stdout


# --- Home Assistant: republishing HA's own Nord Pool and Forecast.Solar data (docs/contract.md §10.3) ----------------

REPUBLISH = HOME_ASSISTANT / "forecast_republish.yaml"
RECORDED_NORDPOOL = ROOT / "services" / "forecast" / "tests" / "recorded"


def ha_templates(now: datetime, states: dict[str, str]) -> jinja2.Environment:
    """The few Home Assistant template functions the examples use, as HA defines them."""
    environment = jinja2.Environment(undefined=jinja2.Undefined, autoescape=False)
    environment.globals.update(
        now=lambda: now,
        timedelta=timedelta,
        as_datetime=datetime.fromisoformat,
        states=lambda entity_id: states.get(entity_id, "unknown"),
    )
    environment.filters.update(to_json=json.dumps, float=float, is_number=_is_number)
    return environment


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def ha_render(environment: jinja2.Environment, template: str, variables: dict[str, Any]) -> Any:
    """Render like HA renders a variable: the text, read as JSON when it is JSON (HA's native types)."""
    text = environment.from_string(template).render(**variables).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)  # True, False: what HA's native rendering makes of them
    except (ValueError, SyntaxError):
        return text


def nord_pool_answer(day: str, area: str) -> dict[str, Any]:
    """What HA's nordpool.get_prices_for_date answers: per area, start/end/price (per MWh) of every period."""
    recorded = json.loads((RECORDED_NORDPOOL / f"nordpool_{day}.json").read_text(encoding="utf-8"))
    return {
        area: [
            {
                "start": datetime.fromisoformat(entry["deliveryStart"]).isoformat(),
                "end": datetime.fromisoformat(entry["deliveryEnd"]).isoformat(),
                "price": entry["entryPerArea"][area],
            }
            for entry in recorded["multiAreaEntries"]
        ]
    }


def republish_automations() -> dict[str, dict[str, Any]]:
    automations = yaml.safe_load(REPUBLISH.read_text(encoding="utf-8"))
    return {automation["id"]: automation for automation in automations}


@pytest.mark.parametrize("tomorrow_published", [True, False])
def test_nord_pool_republication_is_a_valid_tariff_with_fees(tomorrow_published: bool) -> None:
    automation = republish_automations()["chargebus_tariff_grid_from_nord_pool"]
    now = datetime(2026, 6, 15, 16, 7, tzinfo=ZoneInfo("Europe/Stockholm"))
    environment = ha_templates(now, {})
    variables: dict[str, Any] = dict(automation["variables"])
    today, tomorrow, compute, condition, publish = automation["action"]
    assert today["service"] == tomorrow["service"] == "nordpool.get_prices_for_date"
    assert tomorrow.get("continue_on_error") is True  # tomorrow's prices are not out before ~13:00 CET
    variables["today"] = nord_pool_answer("2026-06-15", variables["area"])
    if tomorrow_published:
        variables["tomorrow"] = nord_pool_answer("2026-06-16", variables["area"])
    variables["slots"] = ha_render(environment, compute["variables"]["slots"], variables)
    assert ha_render(environment, condition["value_template"], variables) is True
    assert publish["service"] == "mqtt.publish"
    assert publish["data"]["topic"] == CONTRACT.build("tariff_grid")
    assert publish["data"]["retain"] is True
    tariff = parse_payload(Tariff, json.dumps(ha_render(environment, publish["data"]["payload"], variables)).encode())
    assert tariff.currency == "EUR"
    assert tariff.slots[0].start <= now < tariff.slots[0].end
    first = next(e for e in variables["today"]["SE3"] if datetime.fromisoformat(e["start"]) == tariff.slots[0].start)
    assert tariff.slots[0].price == pytest.approx((first["price"] / 1000 + 0.12) * 1.25, abs=1e-5)
    assert tariff.slots[-1].end == datetime(2026, 6, 16 if tomorrow_published else 15, 22, tzinfo=UTC)


def test_forecast_solar_republication_is_a_valid_two_hour_forecast() -> None:
    automation = republish_automations()["chargebus_forecast_solar_from_forecast_solar"]
    now = datetime(2026, 6, 15, 11, 40, tzinfo=ZoneInfo("Europe/Berlin"))
    environment = ha_templates(now, {"sensor.energy_current_hour": "3.42", "sensor.energy_next_hour": "2.9"})
    variables = {key: ha_render(environment, value, {}) for key, value in automation["variables"].items()}
    assert ha_render(environment, automation["condition"][0]["value_template"], variables) is True
    (publish,) = automation["action"]
    assert publish["data"]["topic"] == CONTRACT.build("forecast_solar")
    assert publish["data"]["retain"] is True
    forecast = parse_payload(
        SolarForecast, json.dumps(ha_render(environment, publish["data"]["payload"], variables)).encode()
    )
    assert [slot.power_w for slot in forecast.slots] == [3420, 2900]
    assert forecast.slots[0].start == datetime(2026, 6, 15, 9, tzinfo=UTC)
    assert forecast.slots[-1].end == datetime(2026, 6, 15, 11, tzinfo=UTC)
    # a sensor that is not a number yet (unavailable at start) publishes nothing
    environment = ha_templates(now, {"sensor.energy_current_hour": "unavailable"})
    variables = {key: ha_render(environment, value, {}) for key, value in automation["variables"].items()}
    assert ha_render(environment, automation["condition"][0]["value_template"], variables) is False
