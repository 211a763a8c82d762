"""Fuzzing the allocator's inputs (issue 9.3): thousands of invalid payloads on every topic it reads.

The allocator runs as its own process on a real mosquitto with one charge point (`twc-0001`, mode `now`, so its
setpoint is steady). Every payload sent is invalid by the contract; each must get exactly one ErrorEvent on
`<p>/allocator/error` and change nothing: the retained `allocator/state` and the setpoint stay as they were, no
override reaches the state file, the process lives.

Topics: `allocator/mode/set`, `allocator/charge_now/set`, `allocator/schedules/set`,
`allocator/schedules_enabled/set`, `allocator/vins/set` (bare lists and envelope), `evse/<id>/mode/set`,
`evse/<id>/priority/set`, `vehicle/<vin>/priority/set` (valid and malformed ids), `evse/<id>/state` and
`vehicle/<vin>/state`. Payloads above the allocator's 64 KiB and the runtime's 256 KiB go to `allocator/mode/set`,
`evse/<id>/priority/set`, `schedules/set`, `schedules_enabled/set` and `vins/set`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargebus.schema import EvseState, to_json
from hypothesis import strategies as st

from tests.fuzz import fuzz_payloads as fp
from tests.fuzz.fuzz_harness import Case, Plan, blast, fuzz_seed, judge, record
from tests.fuzz.fuzz_services import allocator as start_allocator
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

EVSE = "twc-0001"
VIN = "5YJ3E1EA8KF000001"
VOLATILE = ("computed_at", "compute_ms")
SETPOINT_FIELDS = ("power_w", "charge", "phases", "voltage_v")


def evse_state() -> bytes:
    state = EvseState(
        evse_id=EVSE,
        kind="twc2",
        name="fuzz",
        controllable=True,
        controls=["current"],
        online=True,
        plugged_in=True,
        charging=False,
        phases=1,
        voltage_v=240,
        power_w=0,
        min_power_w=6 * 240,
        max_power_w=32 * 240,
        step_w=240,
        source="rs485",
        updated_at=datetime.now(tz=UTC),
        stale=False,
    )
    return to_json(state)


def bad_ids(valid: str) -> st.SearchStrategy[str]:
    return fp.topic_ids.filter(lambda i: not fp.EVSE_ID.match(i) and not fp.VIN.match(i) and i != valid)


def topics_of(pattern: str, ids: list[str]) -> Callable[[int], str]:
    return lambda index: pattern.format(ids[index % len(ids)])


def plan(prefix: str, seed: int) -> Plan:
    p = f"{prefix}/"
    result = Plan(seed)

    def command(kind: str) -> Any:
        return lambda _topic, payload: not fp.command_might_be_valid(kind, payload)

    retained = 0.08
    for topic, strategy, count, kind in (
        ("allocator/mode/set", fp.command_payloads(fp.bad_modes), 380, "mode"),
        ("allocator/charge_now/set", fp.command_payloads(fp.bad_charge_now), 380, "charge_now"),
        ("allocator/schedules/set", fp.command_payloads(fp.bad_schedules), 320, "schedules"),
        ("allocator/schedules_enabled/set", fp.command_payloads(fp.bad_switches), 120, "schedules_enabled"),
        ("allocator/vins/set", fp.vins_payloads(fp.bad_vin_lists), 240, "vins"),
        (f"evse/{EVSE}/mode/set", fp.command_payloads(fp.bad_modes), 220, "mode"),
        (f"evse/{EVSE}/priority/set", fp.command_payloads(fp.bad_priorities), 240, "priority"),
        (f"vehicle/{VIN}/priority/set", fp.command_payloads(fp.bad_priorities), 220, "priority"),
    ):
        result.add(p + topic, strategy, count, command(kind), retained_share=retained)
    # Malformed ids: every payload is refused ("unknown id"), valid values included.
    for pattern, count in (("evse/{}/mode/set", 90), ("evse/{}/priority/set", 90), ("vehicle/{}/priority/set", 90)):
        ids = fp.generate(bad_ids(EVSE), count, seed + len(pattern))
        result.add(
            topics_of(p + pattern, ids),
            fp.command_payloads(st.sampled_from(["now", "default", 10, 0])),
            count,
            lambda _topic, _payload: True,
        )
    state_topic = p + f"evse/{EVSE}/state"
    result.add(
        state_topic,
        fp.states(fp.EVSE_STATE_FIELDS, "evse_id", EVSE),
        170,
        lambda _topic, payload: not fp.state_might_be_valid(fp.EVSE_STATE_FIELDS, "evse_id", EVSE, payload),
    )
    vehicle_topic = p + f"vehicle/{VIN}/state"
    result.add(
        vehicle_topic,
        fp.states(fp.VEHICLE_STATE_FIELDS, "vin", VIN),
        120,
        lambda _topic, payload: not fp.state_might_be_valid(fp.VEHICLE_STATE_FIELDS, "vin", VIN, payload),
    )
    big = b'{"value": "' + b"n" * 70_000 + b'", "transaction": "big"}'  # above the allocator's 64 KiB
    huge = b"x" * 300_000  # above the runtime's 256 KiB
    result.add_cases(Case(p + "allocator/mode/set", payload) for payload in (big, huge, b"now" + b" " * 70_000))
    result.add_cases(Case(p + f"evse/{EVSE}/priority/set", payload) for payload in (big, huge))
    # Valid values made too large by padding: refused for their size alone.
    padding = b" " * (fp.ALLOCATOR_MAX_COMMAND_BYTES + 1)
    window = json.dumps([{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400}]).encode()
    lists = json.dumps({"allow": [VIN], "deny": []}).encode()
    oversize = {
        "allocator/schedules/set": [
            window + padding,
            b'{"value": ' + window + b', "transaction": "big"' + padding + b"}",
        ],
        "allocator/schedules_enabled/set": [
            b"false" + padding,
            b'{"value": true, "transaction": "big"' + padding + b"}",
        ],
        "allocator/vins/set": [lists + padding, lists[:-1] + b', "transaction": "big"' + padding + b"}"],
    }
    for topic, payloads in oversize.items():
        result.add_cases(Case(p + topic, payload) for payload in [*payloads, huge])
    return result


def steady(message: bytes, drop: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message)
    return {key: value for key, value in data.items() if key not in drop}


async def test_thousands_of_invalid_payloads_each_get_one_error_and_change_nothing(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    seed = fuzz_seed()
    cases = plan(prefix, seed)
    state_topic, setpoint_topic = f"{prefix}/allocator/state", f"{prefix}/evse/{EVSE}/setpoint"
    watched = [f"{prefix}/allocator/error", f"{prefix}/allocator/status", state_topic, setpoint_topic]
    async with Recorder(mqtt_broker.url, watched) as bus:
        await bus.publish(f"{prefix}/evse/{EVSE}/state", evse_state(), retain=True)
        process = start_allocator(mqtt_broker.url, prefix, tmp_path)
        try:
            await bus.wait_for(
                lambda: (s := bus.last(setpoint_topic)) is not None and s.json()["power_w"] == 32 * 240,
                timeout=20,
                what="the charge point's setpoint at its maximum",
            )
            await asyncio.sleep(0.5)
            mark = len(bus.messages)
            state_before = steady(bus.last(state_topic).payload, VOLATILE)  # type: ignore[union-attr]
            setpoint_before = steady(bus.last(setpoint_topic).payload, ())  # type: ignore[union-attr]
            ordered = cases.shuffled()
            outcome = await blast(bus, mqtt_broker.url, f"{prefix}/allocator/error", ordered, alive=process.alive)
            record("allocator", outcome, seed, cases.drawn, ordered)
            assert process.alive(), process.log()[-3000:]
            fuzzed = {case.topic for case in ordered}
            problems = judge(ordered, outcome, lambda topic: topic in fuzzed)
            assert not problems, "\n".join(problems)
            for message in bus.messages[mark:]:
                if message.topic == state_topic:
                    assert steady(message.payload, VOLATILE) == state_before
                if message.topic == setpoint_topic:
                    now = steady(message.payload, ())
                    assert [now[k] for k in SETPOINT_FIELDS] == [setpoint_before[k] for k in SETPOINT_FIELDS]
            assert not (tmp_path / "state" / "allocator.json").exists(), "an override was stored"
            for topic in {case.topic for case in ordered if case.retain}:
                await bus.publish(topic, b"", retain=True)
        finally:
            process.stop()
    assert process.wait() == 0
