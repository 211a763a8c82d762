#!/usr/bin/env python3
"""Check a Node-RED flow export against the chargebus MQTT contract (stdlib only).

    python3 examples/node-red/check_flows.py [flows.json] [--prefix chargebus]

Checks:
  - the file is a JSON array of node objects, each with a unique string `id` and a `type`;
  - every node's `z` names a tab in the file, and every wire target exists, is a flow node and is on the same tab;
  - function and switch nodes have as many wire outputs as they declare;
  - every referenced config node exists and has the right type: `broker` of mqtt in/out, `group` of every
    dashboard widget, `tab` of every ui_group (Dashboard 1), `page` of every ui-group and `ui` and `theme` of
    every ui-page (Dashboard 2);
  - every input widget (dropdown, number, slider, switch, text input) is fed from something (chargebus' state)
    and does not pass what it is fed on: a value shown is never sent as a command;
  - every `mqtt out` has a fixed topic that is a contract command topic (ends in /set or /request) with valid
    ids, and is not retained;
  - every `mqtt in` topic is a topic that chargebus publishes (state, status, error, usage, power); `+` may stand
    for an id level, `#` is not allowed.

The topic table mirrors docs/contract.md §5 (`chargebus topics` prints it). Exit code 0 when every check passes, else 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history", "ocpp-bridge", "forecast")

# (pattern below the prefix, direction, command?) — docs/contract.md §5.
TOPICS: tuple[tuple[str, str, bool], ...] = (
    ("evse/{evse_id}/state", "out", False),
    ("evse/{evse_id}/setpoint", "in", False),  # allocator → bridges: neither a user command nor a state topic
    ("vehicle/{vin}/state", "out", False),
    ("power/{meter}", "in/out", False),
    ("allocator/state", "out", False),
    ("allocator/mode/set", "in", True),
    ("allocator/schedules/set", "in", True),
    ("allocator/schedules_enabled/set", "in", True),
    ("allocator/vins/set", "in", True),
    ("allocator/charge_now/set", "in", True),
    ("allocator/grid_limit/set", "in", True),
    ("allocator/battery_hold", "out", False),
    ("tariff/grid", "in/out", False),
    ("tariff/feedin", "in/out", False),
    ("forecast/solar", "in/out", False),
    ("forecast/co2", "in/out", False),
    ("forecast/state", "out", False),
    ("vehicle/{vin}/plan/set", "in", True),
    ("evse/{evse_id}/plan/set", "in", True),
    ("evse/{evse_id}/mode/set", "in", True),
    ("evse/{evse_id}/priority/set", "in", True),
    ("evse/{evse_id}/max_current/set", "in", True),
    ("vehicle/{vin}/priority/set", "in", True),
    ("vehicle/{vin}/charge_limit/set", "in", True),
    ("vehicle/{vin}/refresh/set", "in", True),
    ("tesla-bridge/usage", "out", False),
    ("history/request", "in", True),
    ("history/energy/{subject_id}", "out", False),
    ("{service}/status", "out", False),
    ("{service}/error", "out", False),
)

# Identities — docs/contract.md §4; meter names as in chargebus.toml [[meters]] name.
ID_PATTERNS = {
    "evse_id": re.compile(r"^(twc-[0-9a-f]{4}|car-[A-HJ-NPR-Z0-9]{17}|twc3-[a-z0-9-]{1,32}|ocpp-[a-z0-9-]{1,32})$"),
    "vin": re.compile(r"^[A-HJ-NPR-Z0-9]{17}$"),
    # history/energy/<subject_id>: an EVSE's id or a car's VIN
    "subject_id": re.compile(
        r"^(twc-[0-9a-f]{4}|car-[A-HJ-NPR-Z0-9]{17}|twc3-[a-z0-9-]{1,32}|ocpp-[a-z0-9-]{1,32}|[A-HJ-NPR-Z0-9]{17})$"
    ),
    "meter": re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
    "service": re.compile("^(" + "|".join(re.escape(s) for s in SERVICES) + ")$"),
}

# Dashboard nodes that are config nodes themselves, not widgets placed in a group: Dashboard 1
# (node-red-dashboard, `ui_*`) and Dashboard 2 (@flowfuse/node-red-dashboard, `ui-*`).
UI_CONFIG_TYPES = {"ui_base", "ui_tab", "ui_group", "ui_link", "ui-base", "ui-page", "ui-group", "ui-theme", "ui-link"}
CONFIG_TYPES = {"mqtt-broker", *UI_CONFIG_TYPES}
# Widgets that send what the user sets and also show a value they are fed.
INPUT_WIDGETS = {
    "ui_dropdown", "ui_numeric", "ui_slider", "ui_switch", "ui_text_input",
    "ui-dropdown", "ui-number-input", "ui-slider", "ui-switch", "ui-text-input", "ui-radio-group",
}  # fmt: skip


Node = dict[str, Any]
Entry = tuple[str, str, bool]
TAB_TYPES = ("tab", "subflow")


def _placeholder_problem(name: str, got: str, *, allow_plus: bool) -> str | None:
    """Why one topic level cannot stand for the id `name`; None when it can."""
    if got == "+":
        return None if allow_plus else f"'+' in place of {name} (a command goes to one id)"
    if not ID_PATTERNS[name].match(got):
        return f"{got!r} is not a valid {name}"
    return None


def _fixed_levels_match(pattern: list[str], levels: list[str]) -> bool:
    """Same number of levels, and every level that is not an id placeholder is equal."""
    return len(pattern) == len(levels) and all(
        want.startswith("{") or got == want for want, got in zip(pattern, levels, strict=True)
    )


def _id_problem(pattern: list[str], levels: list[str], *, allow_plus: bool) -> str | None:
    """The problem with an id level of a topic whose fixed levels match; None when every id is fine."""
    problem = None
    for want, got in zip(pattern, levels, strict=True):
        if want.startswith("{"):
            problem = _placeholder_problem(want[1:-1], got, allow_plus=allow_plus) or problem
    return problem


def match_topic(topic: str, prefix: str, *, allow_plus: bool) -> Entry | str | None:
    """The contract entry a topic (or subscription filter) belongs to; an error text when it cannot be one."""
    head = prefix + "/"
    if not topic.startswith(head):
        return f"does not start with the prefix {head!r}"
    if "#" in topic:
        return "'#' would subscribe to commands and foreign topics too"
    levels = topic[len(head) :].split("/")
    for entry in TOPICS:
        pattern = entry[0].split("/")
        if _fixed_levels_match(pattern, levels):
            return _id_problem(pattern, levels, allow_plus=allow_plus) or entry
    return None


def label(node: Node) -> str:
    name = node.get("name") or node.get("label") or node.get("topic") or ""
    return f"{node['type']} {node['id']}" + (f" ({name})" if name else "")


@dataclass
class Report:
    """The nodes by id and what the checks found."""

    by_id: dict[str, Node] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def index_nodes(nodes: list[Any], report: Report) -> None:
    """Every well-formed node by id; malformed items and duplicate ids are errors."""
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not isinstance(node.get("type"), str):
            report.errors.append(f"item {index}: not a node object with string 'id' and 'type'")
            continue
        if node["id"] in report.by_id:
            report.errors.append(f"id {node['id']} is used more than once")
        report.by_id[node["id"]] = node


def check_wire_target(node: Node, target_id: Any, report: Report) -> None:
    target = report.by_id.get(target_id)
    if target is None:
        report.errors.append(f"{label(node)}: wire to {target_id!r}, which does not exist")
    elif target["type"] in CONFIG_TYPES or target["type"] in TAB_TYPES:
        report.errors.append(f"{label(node)}: wire to config node {label(target)}")
    elif target.get("z") != node.get("z"):
        report.errors.append(f"{label(node)}: wire to {label(target)} on another tab")


def node_wires(node: Node, report: Report) -> list[list[Any]]:
    """The node's wire lists; an error (and no wires) when they are not a list of lists."""
    wires = node.get("wires", [])
    if not isinstance(wires, list) or not all(isinstance(out, list) for out in wires):
        report.errors.append(f"{label(node)}: wires must be a list of lists of ids")
        return []
    return wires


def check_outputs(node: Node, wires: list[list[Any]], report: Report) -> None:
    """Function and switch nodes have one wire list per declared output (and a switch one per rule)."""
    kind = node["type"]
    if kind in ("function", "switch") and int(node.get("outputs", 1)) != len(wires):
        report.errors.append(f"{label(node)}: declares {node.get('outputs')} outputs but has {len(wires)} wire lists")
    if kind == "switch" and len(node.get("rules", [])) != len(wires):
        report.errors.append(f"{label(node)}: {len(node.get('rules', []))} rules but {len(wires)} wire lists")


def check_flow_node(node: Node, tabs: set[str], report: Report) -> None:
    """A node on a tab: its tab exists, its wires go to flow nodes on the same tab, its outputs add up."""
    if ("wires" not in node and "z" not in node) or node["type"] in CONFIG_TYPES:
        return
    if node.get("z") not in tabs:
        report.errors.append(f"{label(node)}: z {node.get('z')!r} is not a tab in this file")
    wires = node_wires(node, report)
    for out in wires:
        for target_id in out:
            check_wire_target(node, target_id, report)
    check_outputs(node, wires, report)


def check_ref(node: Node, key: str, want_type: str, report: Report) -> None:
    target = report.by_id.get(node.get(key, ""))
    if target is None:
        report.errors.append(f"{label(node)}: {key} {node.get(key)!r} does not exist")
    elif target["type"] != want_type:
        report.errors.append(f"{label(node)}: {key} {node.get(key)!r} is a {target['type']}, not a {want_type}")


def check_config_refs(node: Node, report: Report) -> None:
    """The config nodes a node refers to exist and have the right type."""
    kind = node["type"]
    if kind in ("mqtt in", "mqtt out"):
        check_ref(node, "broker", "mqtt-broker", report)
    if kind.startswith("ui_") and kind not in UI_CONFIG_TYPES:
        check_ref(node, "group", "ui_group", report)
    if kind == "ui_group":
        check_ref(node, "tab", "ui_tab", report)
    if kind.startswith("ui-") and kind not in UI_CONFIG_TYPES:
        check_ref(node, "group", "ui-group", report)
    if kind == "ui-group":
        check_ref(node, "page", "ui-page", report)
    if kind == "ui-page":
        check_ref(node, "ui", "ui-base", report)
        check_ref(node, "theme", "ui-theme", report)
    if kind == "mqtt-broker":
        report.notes.append(f"broker {node.get('broker')}:{node.get('port')}")


def check_mqtt_out(node: Node, prefix: str, report: Report) -> None:
    """An `mqtt out` publishes one fixed contract command topic, never retained."""
    topic = node.get("topic", "")
    found = match_topic(topic, prefix, allow_plus=False) if topic else "empty (set from msg.topic)"
    if isinstance(found, str) or found is None:
        report.errors.append(f"{label(node)}: topic {topic!r} is not a contract command topic: {found or 'no match'}")
    elif not found[2]:
        report.errors.append(f"{label(node)}: topic {topic!r} is a state topic; only commands may be published")
    else:
        report.notes.append(f"out  {topic}")
    if str(node.get("retain", "")).lower() == "true":
        report.errors.append(f"{label(node)}: commands are never retained (chargebus refuses a retained command)")


def check_mqtt_in(node: Node, prefix: str, report: Report) -> None:
    """An `mqtt in` subscribes to a topic chargebus publishes for users to read."""
    topic = node.get("topic", "")
    found = match_topic(topic, prefix, allow_plus=True) if topic else "empty"
    if isinstance(found, str) or found is None:
        report.errors.append(f"{label(node)}: topic {topic!r} is not a contract state topic: {found or 'no match'}")
    elif found[2] or found[1] == "in":
        report.errors.append(f"{label(node)}: topic {topic!r} is not published by chargebus for users to read")
    else:
        report.notes.append(f"in   {topic}")


def check_input_widget(node: Node, fed: set[str], report: Report) -> None:
    """An input widget shows chargebus' value before the user can change it, and never sends what it is shown."""
    if node["id"] not in fed:
        report.errors.append(f"{label(node)}: an input widget must be fed the current value (wire the state into it)")
    if str(node.get("passthru", "")).lower() == "true":
        report.errors.append(f"{label(node)}: passthru would send every value it is shown as a command")


def check(nodes: object, prefix: str) -> tuple[list[str], list[str]]:
    """(errors, notes) for a loaded flow export."""
    if not isinstance(nodes, list):
        return ["the file is not a JSON array of nodes"], []
    report = Report()
    index_nodes(nodes, report)
    tabs = {i for i, n in report.by_id.items() if n["type"] in TAB_TYPES}
    if not tabs:
        report.errors.append("no 'tab' node")
    fed = {target for node in report.by_id.values() for out in node_wires(node, Report()) for target in out}
    for node in report.by_id.values():
        check_flow_node(node, tabs, report)
        check_config_refs(node, report)
        if node["type"] in INPUT_WIDGETS:
            check_input_widget(node, fed, report)
        if node["type"] == "mqtt out":
            check_mqtt_out(node, prefix, report)
        if node["type"] == "mqtt in":
            check_mqtt_in(node, prefix, report)
    return report.errors, report.notes


def say(text: str) -> None:
    print(text)  # noqa: T201 -- a command-line tool reports on its terminal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flows", nargs="?", default=str(Path(__file__).with_name("flows.json")))
    parser.add_argument("--prefix", default="chargebus", help="topic prefix ([mqtt] prefix), default chargebus")
    args = parser.parse_args()
    try:
        nodes = json.loads(Path(args.flows).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        say(f"{args.flows}: cannot load: {exc}")
        return 1
    errors, notes = check(nodes, args.prefix)
    for line in notes:
        say(line)
    for line in errors:
        say(f"ERROR {line}")
    count = len(nodes) if isinstance(nodes, list) else 0
    say(f"{args.flows}: {count} nodes, {len(errors)} problems" + (" — OK" if not errors else ""))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
