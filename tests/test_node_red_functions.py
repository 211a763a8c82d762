"""The example flows' gates and feeds, run in node as Node-RED runs a function node, step by step.

The browser test (`test_node_red_browser.py`) shows the whole path works; this one pins down each rule of the
nodes that keep the widgets honest, in both flows: nothing is sent before chargebus' state has arrived, a value that
is only shown is never sent, the user's change is sent (also back to the value shown before the state confirms), and
the priority number is fed only when chargebus' value changes. The mode's feed is a change node; its rules are
turned into the same steps. Skipped, with the reason, where `node` is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "node-red"
FLOWS = [
    pytest.param(EXAMPLES / "flows.json", id="dashboard1"),
    pytest.param(EXAMPLES / "flows-dashboard2.json", id="dashboard2"),
]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="the flows' function nodes run in node, which is not installed")
EVSE = "twc-4a1b"

#: Runs steps of function bodies against one flow context, as Node-RED's memory context: set(undefined) deletes.
HARNESS = """
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const store = new Map();
const flow = { get: k => store.get(k), set: (k, v) => (v === undefined ? store.delete(k) : store.set(k, v)) };
const context = { get: () => undefined, set: () => undefined };
const results = input.steps.map(step => {
    const warnings = [];
    const node = { warn: w => warnings.push(String(w)) };
    const run = new Function("msg", "node", "flow", "context", input.functions[step.fn]);
    const out = run(JSON.parse(JSON.stringify(step.msg)), node, flow, context);
    return { out: out === undefined ? null : out, warnings };
});
process.stdout.write(JSON.stringify(results));
"""


def by_name(nodes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(node for node in nodes if node.get("name") == name)


def change_node_as_js(node: dict[str, Any]) -> str:
    """The rules of a change node that sets msg/flow properties from msg ones or deletes flow ones, as a body."""
    lines = []
    for rule in node["rules"]:
        if rule["t"] == "set" and rule["tot"] == "msg":
            value = f"msg.{rule['to']}"
            lines.append(f"msg.{rule['p']} = {value};" if rule["pt"] == "msg" else f'flow.set("{rule["p"]}", {value});')
        elif rule["t"] == "delete" and rule["pt"] == "flow":
            lines.append(f'flow.set("{rule["p"]}", undefined);')
        else:
            raise AssertionError(f"rule not understood: {rule}")
    return "\n".join([*lines, "return msg;"])


def run(functions: dict[str, str], steps: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    assert NODE is not None
    payload = {"functions": functions, "steps": [{"fn": fn, "msg": msg} for fn, msg in steps]}
    result = subprocess.run(
        [NODE, "-e", HARNESS], input=json.dumps(payload), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    results: list[dict[str, Any]] = json.loads(result.stdout)
    return results


def state(priority: int | None = 10, override: int | None = None, mode: str = "solar") -> dict[str, Any]:
    groups = [] if priority is None else [{"evse_ids": [EVSE, "car-5YJ3E1EA8KF000001"], "priority": priority}]
    overrides = [] if override is None else [{"key": f"evse/{EVSE}/priority", "value": override}]
    return {"payload": {"v": 1, "mode": mode, "groups": groups, "overrides": overrides}}


def payloads(results: list[dict[str, Any]]) -> list[Any]:
    return [None if r["out"] is None else r["out"]["payload"] for r in results]


@pytest.mark.parametrize("flows", FLOWS)
def test_priority_is_fed_from_the_state_and_only_changes_are_sent(flows: Path) -> None:
    nodes = json.loads(flows.read_text(encoding="utf-8"))
    functions = {
        "feed": by_name(nodes, f"priority of {EVSE}")["func"],
        "gate": by_name(nodes, "send only a change of priority")["func"],
        "json": by_name(nodes, "JSON form with transaction")["func"],
    }
    results = run(
        functions,
        [
            ("gate", {"payload": -999}),  # ↑ on a widget that knows nothing yet: its minimum + 1
            ("feed", state(priority=None)),  # a state without this EVSE shows nothing
            ("gate", {"payload": -999}),
            ("feed", state(priority=10)),  # the charge point's priority
            ("feed", state(priority=10)),  # the same again is not fed again
            ("gate", {"payload": 10}),  # the widget echoing what it shows
            ("gate", {"payload": 11}),  # ↑
            ("gate", {"payload": 11}),  # the same again
            ("gate", {"payload": 10}),  # ↓ before the state confirms 11
            ("feed", state(priority=10, override=11)),  # the EVSE's own override wins over the charge point's
            ("gate", {"payload": 11}),  # an echo of the new value
            ("feed", state(priority=10)),  # override cleared ("config value")
            ("json", {"payload": 11}),
            ("json", {"payload": 1001}),
        ],
    )
    assert payloads(results[:12]) == [None, None, None, 10, None, None, 11, None, 10, 11, None, 10]
    assert "not sent" in results[0]["warnings"][0]
    assert "not sent" in results[2]["warnings"][0]
    assert all(not r["warnings"] for r in results[3:12])
    sent = json.loads(results[12]["out"]["payload"])
    assert sent["value"] == 11
    assert sent["transaction"].startswith("node-red-")
    assert results[13]["warnings"]  # out of range: refused in the flow, with a warning


@pytest.mark.parametrize("flows", FLOWS)
def test_mode_is_fed_from_the_state_and_only_changes_are_sent(flows: Path) -> None:
    nodes = json.loads(flows.read_text(encoding="utf-8"))
    functions = {
        "feed": change_node_as_js(by_name(nodes, "show current mode")),
        "gate": by_name(nodes, "send only a change of mode")["func"],
    }
    results = run(
        functions,
        [
            ("gate", {"payload": "now"}),  # chosen before the state arrived
            ("feed", state(mode="solar")),
            ("gate", {"payload": "solar"}),  # the dropdown echoing what it shows
            ("gate", {"payload": "now"}),
            ("gate", {"payload": "now"}),
            ("feed", state(mode="now")),
            ("gate", {"payload": "now"}),
            ("gate", {"payload": "solar"}),
        ],
    )
    assert payloads(results) == [None, "solar", None, "now", None, "now", None, "solar"]
    assert "not sent" in results[0]["warnings"][0]
