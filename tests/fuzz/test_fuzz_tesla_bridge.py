"""Fuzzing the tesla-bridge's inputs (issue 9.3): charge_limit, refresh, max_current and setpoints of a car.

The bridge runs as its own process against the fake Fleet API, with one car known through TeslaMate (fresh, so the
bridge has no reason to call Tesla). Every payload sent is invalid by the contract; each must get exactly one
ErrorEvent on `<p>/tesla-bridge/error` and change nothing: **no request at all reaches the fake Fleet API** (no
`set_charging_amps`, no `set_charge_limit`, no data call, no wake), the car's retained states stay the same and
no override is stored. Real time (no acceleration), so TeslaMate stays fresh for the whole run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.teslamate import TeslaMateSim
from hypothesis import strategies as st

from tests.fuzz import fuzz_payloads as fp
from tests.fuzz.fuzz_harness import Case, Plan, blast, fuzz_seed, judge, record
from tests.fuzz.fuzz_services import VIN
from tests.fuzz.fuzz_services import tesla_bridge as start_tesla_bridge
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

OTHER_VIN = "5YJ3E1EA7KF000002"
VOLATILE = ("updated_at", "data_age_s")


def foreign_vins() -> st.SearchStrategy[str]:
    return st.one_of(st.just(OTHER_VIN), st.from_regex(r"\A[A-HJ-NPR-Z0-9]{17}\Z"), fp.topic_ids).filter(
        lambda vin: vin != VIN
    )


def plan(prefix: str, seed: int) -> Plan:
    p = f"{prefix}/"
    result = Plan(seed)

    def invalid(kind: str) -> Callable[[str, bytes], bool]:
        return lambda _topic, payload: not fp.command_might_be_valid(kind, payload)

    def always(_topic: str, _payload: bytes) -> bool:
        return True

    def cycle(pattern: str, ids: list[str]) -> Callable[[int], str]:
        return lambda index: p + pattern.format(ids[index % len(ids)])

    vins = fp.generate(foreign_vins(), 200, seed + 1)
    car_ids = fp.generate(foreign_vins().map(lambda vin: f"car-{vin}"), 200, seed + 2)
    anything = fp.command_payloads(st.sampled_from([80, 16, "default", 1]))

    result.add(
        p + f"vehicle/{VIN}/charge_limit/set",
        fp.command_payloads(fp.bad_charge_limits),
        800,
        invalid("charge_limit"),
        retained_share=0.08,
    )
    result.add(cycle("vehicle/{}/charge_limit/set", vins), anything, 150, always)
    # refresh/set takes any payload for a known car (one billed call): only retained ones are invalid there.
    result.add(p + f"vehicle/{VIN}/refresh/set", anything, 150, invalid("any"), retained_share=1.0)
    result.add(cycle("vehicle/{}/refresh/set", vins), anything, 150, always)
    result.add(
        p + f"evse/car-{VIN}/max_current/set",
        fp.command_payloads(fp.bad_amps(48)),
        700,
        invalid("max_current_car"),
        retained_share=0.08,
    )
    result.add(cycle("evse/{}/max_current/set", car_ids), anything, 150, always)
    result.add(
        p + f"evse/car-{VIN}/setpoint",
        fp.setpoints(f"car-{VIN}", [f"car-{OTHER_VIN}", "twc-4a1b", "twc3-garage"]),
        700,
        lambda _topic, payload: not fp.setpoint_might_be_valid(f"car-{VIN}", payload),
    )
    result.add(
        cycle("evse/{}/setpoint", car_ids),
        fp.setpoints(f"car-{OTHER_VIN}", [f"car-{VIN}"]),
        150,
        lambda _topic, payload: bool(payload),  # an empty one withdraws a setpoint: no error
    )
    huge = b"x" * 300_000
    result.add_cases(
        Case(p + topic, huge)
        for topic in (
            f"vehicle/{VIN}/charge_limit/set",
            f"vehicle/{VIN}/refresh/set",
            f"evse/car-{VIN}/max_current/set",
            f"evse/car-{VIN}/setpoint",
        )
    )
    return result


def steady(payload: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(payload)
    return {key: value for key, value in data.items() if key not in VOLATILE}


async def test_thousands_of_invalid_payloads_reach_no_tesla_api(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    seed = fuzz_seed()
    cases = plan(prefix, seed)
    evse_topic, vehicle_topic = f"{prefix}/evse/car-{VIN}/state", f"{prefix}/vehicle/{VIN}/state"
    watched = [f"{prefix}/tesla-bridge/error", f"{prefix}/tesla-bridge/status", evse_topic, vehicle_topic]
    async with FakeFleetApi(clock=SystemClock().time, token_tag="-fuzz") as api:
        api.add_car(VIN, state="online", charging_state="Stopped", charge_amps=16)
        async with (
            Recorder(mqtt_broker.url, watched) as bus,
            TeslaMateSim(mqtt_broker.url, f"{prefix}/teslamate") as tm,
        ):
            process = start_tesla_bridge(mqtt_broker.url, prefix, tmp_path, api)
            try:
                await bus.wait_message(f"{prefix}/tesla-bridge/status", lambda m: m.text == "online", timeout=20)
                await tm.summary(
                    1,
                    state="online",
                    plugged_in=True,
                    charging_state="Stopped",
                    charge_current_request=16,
                    charge_current_request_max=32,
                    battery_level=50,
                    charge_limit_soc=80,
                    geofence="Home",
                    location={"latitude": 52.52, "longitude": 13.40},
                )
                await bus.wait_message(vehicle_topic, lambda m: m.json()["plugged_in"] is True, timeout=15)
                await asyncio.sleep(1.0)
                mark = len(bus.messages)
                before = {topic: steady(bus.last(topic).payload) for topic in (evse_topic, vehicle_topic)}  # type: ignore[union-attr]
                ordered = cases.shuffled()
                error_topic = f"{prefix}/tesla-bridge/error"
                outcome = await blast(bus, mqtt_broker.url, error_topic, ordered, alive=process.alive)
                record("tesla-bridge", outcome, seed, cases.drawn, ordered)
                assert process.alive(), process.log()[-3000:]
                fuzzed = {case.topic for case in ordered}
                # Known: refresh/set of an unknown car loses the transaction of a malformed envelope
                # (test_fuzz_known_bugs.py), so transactions are not judged there.
                problems = judge(ordered, outcome, lambda topic: topic in fuzzed, lambda t: t.endswith("/refresh/set"))
                assert not problems, "\n".join(problems)
                assert api.calls == [], [(c.method, c.path, c.body) for c in api.calls[:10]]
                for message in bus.messages[mark:]:
                    if message.topic in before:
                        assert steady(message.payload) == before[message.topic], message.topic
                assert not (tmp_path / "state" / "tesla-bridge-overrides.json").exists(), "an override was stored"
                for topic in {case.topic for case in ordered if case.retain}:
                    await bus.publish(topic, b"", retain=True)
            finally:
                process.stop()
    assert process.wait() == 0
