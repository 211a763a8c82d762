"""Fuzzing the twc-bridge's inputs (issue 9.3): `evse/twc-…/max_current/set` and malformed setpoints.

The bridge runs as its own process, driving a simulated Gen2 TWC on a pseudo-terminal, with a valid setpoint of
10 A in force. Every payload sent is invalid by the contract; each must get exactly one ErrorEvent on
`<p>/twc-bridge/error`, and the TWC must be offered 10 A throughout (docs/contract.md §9: a malformed setpoint is
ignored and the last valid one kept), with no override stored and no dangerous frame on the bus.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from hypothesis import strategies as st

from tests.fuzz import fuzz_payloads as fp
from tests.fuzz.fuzz_harness import Case, Plan, blast, fuzz_seed, judge, record
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

SLAVE = 0x4A1B
EVSE = "twc-4a1b"
OFFER_A = 10.0
STEADY_FIELDS = ("online", "controllable", "offered_a", "min_power_w", "max_power_w", "status_text")


def unknown_twc_ids() -> st.SearchStrategy[str]:
    """`twc-…` ids the bridge owns by form but has never heard on its bus, or malformed ones."""
    return st.one_of(
        st.from_regex(r"\Atwc-[0-9a-f]{4}\Z").filter(lambda i: i != EVSE),
        fp.topic_ids.map(lambda i: f"twc-{i}").filter(lambda i: i.lower() != EVSE and "4a1b" not in i.lower()),
    )


def plan(prefix: str, seed: int) -> Plan:
    p = f"{prefix}/"
    result = Plan(seed)
    result.add(
        p + f"evse/{EVSE}/max_current/set",
        fp.command_payloads(fp.bad_amps(32)),
        1100,
        lambda _topic, payload: not fp.command_might_be_valid("max_current_twc", payload),
        retained_share=0.08,
    )
    ids = fp.generate(unknown_twc_ids(), 300, seed + 1)
    result.add(
        lambda index: p + f"evse/{ids[index % len(ids)]}/max_current/set",
        fp.command_payloads(st.sampled_from([16, 0, "default"])),
        300,
        lambda _topic, _payload: True,
    )
    result.add(
        p + f"evse/{EVSE}/setpoint",
        fp.setpoints(EVSE, ["twc-4a1c", "twc-ffff", "car-5YJ3E1EA8KF000001", "twc3-garage"]),
        1300,
        lambda _topic, payload: not fp.setpoint_might_be_valid(EVSE, payload),
    )
    huge = b"x" * 300_000
    junk_setpoint = json.dumps({"v": 1, "evse_id": EVSE, "reason": "r" * 100_000}).encode()  # expires_at missing
    result.add_cases(
        [
            Case(p + f"evse/{EVSE}/max_current/set", huge),
            Case(p + f"evse/{EVSE}/max_current/set", b"1" * 100_000),
            Case(p + f"evse/{EVSE}/setpoint", huge),
            Case(p + f"evse/{EVSE}/setpoint", junk_setpoint),
        ]
    )
    return result


def steady(payload: bytes) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(payload)
    return {key: state[key] for key in STEADY_FIELDS}


async def test_thousands_of_invalid_commands_and_setpoints_change_no_offer(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    seed = fuzz_seed()
    cases = plan(prefix, seed)
    state_topic = f"{prefix}/evse/{EVSE}/state"
    watched = [f"{prefix}/twc-bridge/error", f"{prefix}/twc-bridge/status", state_topic]
    spec = SlaveSpec(SLAVE, plugged_in=True, voltages=(240, 0, 0), lag_s=0.2)
    async with TwcSlaveSim([spec]) as sim, Recorder(mqtt_broker.url, watched) as bus:
        state_dir = tmp_path / "state"
        config = tmp_path / "chargebus.toml"
        config.write_text(
            f'state_dir = "{state_dir}"\n[mqtt]\nurl = "{mqtt_broker.url}"\nprefix = "{prefix}"\n'
            f'ha_discovery = false\n[twc]\nport = "{sim.port}"\nvoltage_v = 240\nwiring_max_amps = 32\n'
            "bus_max_amps = 32\nmin_amps = 6\n",
            encoding="utf-8",
        )
        expires = (datetime.now(tz=UTC) + timedelta(days=1)).isoformat()
        setpoint = {"v": 1, "evse_id": EVSE, "power_w": OFFER_A * 240, "phases": 1, "voltage_v": 240}
        await bus.publish(
            f"{prefix}/evse/{EVSE}/setpoint", json.dumps({**setpoint, "expires_at": expires}), retain=True
        )
        process = ServiceProcess([sys.executable, "-m", "chargebus_twc", "--config", str(config)], {})
        process.start(tmp_path / "twc-bridge.log")
        try:
            await bus.wait_for(
                lambda: (
                    (s := bus.last(state_topic)) is not None
                    and json.loads(s.payload)["offered_a"] == OFFER_A
                    and json.loads(s.payload)["charging"] is True
                ),
                timeout=30,
                what=f"{EVSE} offered {OFFER_A} A and charging",
            )
            await asyncio.sleep(1.0)
            offers_before, frames_before = len(sim.offered_amps(SLAVE)), len(sim.received)
            mark = len(bus.messages)
            state_before = steady(bus.last(state_topic).payload)  # type: ignore[union-attr]
            ordered = cases.shuffled()
            outcome = await blast(bus, mqtt_broker.url, f"{prefix}/twc-bridge/error", ordered, alive=process.alive)
            record("twc-bridge", outcome, seed, cases.drawn, ordered)
            assert process.alive(), process.log()[-3000:]
            fuzzed = {case.topic for case in ordered}
            problems = judge(ordered, outcome, lambda topic: topic in fuzzed)
            assert not problems, "\n".join(problems)
            offers = sim.offered_amps(SLAVE)[offers_before:]
            assert set(offers) <= {OFFER_A}, f"offers changed during the fuzzing: {sorted(set(offers))}"
            assert sim.slave(SLAVE).limit_centiamps == OFFER_A * 100
            assert len(sim.received) > frames_before, "the bridge stopped driving the TWC"
            states = [steady(m.payload) for m in bus.messages[mark:] if m.topic == state_topic]
            changed = [state for state in states if state != state_before]
            assert not changed, f"state changed: before {state_before}, then {changed[:3]}"
            assert sim.dangerous_frames() == []
            assert not (state_dir / "twc-bridge.json").exists(), "an override was stored"
            for topic in {case.topic for case in ordered if case.retain}:
                await bus.publish(topic, b"", retain=True)
        finally:
            process.stop()
    assert process.wait() == 0
