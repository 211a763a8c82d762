"""Bounded inputs: ten thousand distinct, well-formed ids that the allocator has neither configured nor seen.

A looping Node-RED flow or a script with a typo can name a new EVSE id or VIN on every message. Each must be
refused with one ErrorEvent (`not configured and not seen`, docs/contract.md §3.3) and store nothing: the retained
`allocator/state` keeps its size and content, no state file appears, and the process lives. The one EVSE the
allocator has seen (`twc-0001`) still takes a command afterwards.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.fuzz.fuzz_services import allocator as start_allocator
from tests.fuzz.test_fuzz_allocator import EVSE, VOLATILE, evse_state, steady
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

COUNT = 10_000


def unknown_commands(prefix: str) -> list[tuple[str, bytes]]:
    """`COUNT` commands, each naming an id of its own, spread over the allocator's four per-id command forms."""
    commands: list[tuple[str, bytes]] = []
    for n in range(COUNT):
        evse_id = f"twc-{n + 0x1000:04x}"  # never twc-0001
        vin = f"5YJ3E1EA8KF{n:06d}"
        form = n % 4
        if form == 0:
            commands.append((f"{prefix}/evse/{evse_id}/mode/set", b"now"))
        elif form == 1:
            commands.append((f"{prefix}/evse/car-{vin}/priority/set", b"7"))
        elif form == 2:
            commands.append((f"{prefix}/vehicle/{vin}/priority/set", b"3"))
        else:
            value = {"value": {"seconds": 600, "evse_id": evse_id}}
            commands.append((f"{prefix}/allocator/charge_now/set", json.dumps(value).encode()))
    return commands


async def test_ten_thousand_unknown_ids_are_refused_and_grow_nothing(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    state_topic, errors = f"{prefix}/allocator/state", f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [state_topic, errors]) as bus:
        await bus.publish(f"{prefix}/evse/{EVSE}/state", evse_state(), retain=True)
        process = start_allocator(mqtt_broker.url, prefix, tmp_path)
        try:
            await bus.wait_for(lambda: bus.last(state_topic) is not None, timeout=20, what="the allocator's state")
            await asyncio.sleep(0.5)
            before = bus.last(state_topic)
            assert before is not None
            commands = unknown_commands(prefix)
            for topic, payload in commands:
                await bus.publish(topic, payload)
            sent = {topic for topic, _ in commands}

            def answers() -> list[dict[str, Any]]:
                # only the answers to these commands: on a slow machine the test outlasts the grid meter's
                # stale_after_s, and the allocator rightly reports that meter going stale on the same topic
                return [event for m in bus.on(errors) if (event := m.json())["topic"] in sent]

            await bus.wait_for(lambda: len(answers()) >= COUNT, timeout=120, what=f"{COUNT} errors")
            await asyncio.sleep(1.0)  # nothing more comes
            events = answers()
            keys = [(e["topic"], e["payload"]) for e in events]
            twice = sorted({key for key in keys if keys.count(key) > 1}) if len(keys) != COUNT else []
            assert len(events) == COUNT, f"{len(events)} answers; more than one for {twice[:5]}"
            assert all("not configured and not seen" in e["error"] for e in events), events[:3]
            after = bus.last(state_topic)
            assert after is not None
            assert steady(after.payload, VOLATILE) == steady(before.payload, VOLATILE)
            assert abs(len(after.payload) - len(before.payload)) < 16  # only the volatile stamps may differ
            assert not (tmp_path / "state" / "allocator.json").exists(), "an override was stored"
            assert process.alive(), process.log()[-3000:]
            # The EVSE it has seen still takes a command.
            await bus.publish(f"{prefix}/evse/{EVSE}/priority/set", b"5")
            await bus.wait_for(
                lambda: (s := bus.last(state_topic)) is not None and len(s.json()["overrides"]) == 1,
                timeout=15,
                what="the known EVSE's override",
            )
        finally:
            process.stop()
    assert process.wait() == 0
