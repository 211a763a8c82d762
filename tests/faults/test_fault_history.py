"""The history service killed with SIGKILL while samples keep arriving (issue 9.2)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargebus.clock import iso_utc
from chargebus_history.store import HistoryStore

from tests.faults.fault_support import assert_clean_log, service_process, write_config
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

EVSES = ("twc-4a1b", "twc-5c2d", "twc-6e3f")
ROUNDS = 40  # distinct states per EVSE before the barrier request


def evse_state(evse_id: str, power_w: float, updated_at: float) -> dict[str, Any]:
    """A complete EvseState (docs/contract.md §6), charging at `power_w`."""
    return {
        "v": 1,
        "evse_id": evse_id,
        "kind": "twc2",
        "name": evse_id,
        "controllable": True,
        "controls": ["current"],
        "online": True,
        "vin": None,
        "plugged_in": True,
        "plugged_in_at": iso_utc(updated_at - 3600),
        "charging": power_w > 0,
        "phases": 1,
        "voltage_v": 240.0,
        "phase_voltages_v": [240.0],
        "current_a": power_w / 240,
        "offered_a": 32.0,
        "power_w": power_w,
        "min_power_w": 1440.0,
        "max_power_w": 7680.0,
        "step_w": 240.0,
        "session_energy_wh": None,
        "lifetime_energy_wh": 100_000.0,
        "state_code": "0x01",
        "status_text": "charging",
        "source": "rs485",
        "updated_at": iso_utc(updated_at),
        "stale": False,
    }


async def request(bus: Recorder, prefix: str, body: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    answers = f"{prefix}/answers"
    mark = len(bus.messages)
    await bus.publish(f"{prefix}/history/request", json.dumps({"v": 1, "response_topic": answers, **body}))
    answer = await bus.wait_message(
        answers, lambda m: m.json()["transaction"] == body["transaction"], timeout=timeout, after=mark
    )
    result: dict[str, Any] = answer.json()
    return result


async def test_history_sigkill_loses_no_committed_sample_and_a_restart_answers_from_the_same_rows(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves the durability promise of services/history/README.md ("a committed sample survives kill -9") with a
    writer under load: 3 EVSEs publish 40 distinct states each, a request is answered (the answer waits until every
    sample received before it is committed), then history is SIGKILLed while a second burst is still arriving.
    Every one of the 120 acknowledged samples is in the database afterwards, the file opens cleanly, and a restarted
    service answers over MQTT from the same rows without duplicating any from the broker's retained replay."""
    database = tmp_path / "history.sqlite"
    config = write_config(
        tmp_path / "chargebus.toml",
        {
            "state_dir": tmp_path / "state",
            "mqtt": {"ha_discovery": False},
            "history": {"database": f"sqlite:///{database}", "timezone": "UTC"},
        },
    )
    first = service_process("history", config, mqtt_broker.url, prefix).start(tmp_path / "history-1.log")
    start = datetime.now(tz=UTC).timestamp()
    expected: dict[str, list[float]] = {evse_id: [] for evse_id in EVSES}
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "online", timeout=20)
            for i in range(ROUNDS):
                for evse_id in EVSES:
                    power = 1440.0 + 10 * i
                    expected[evse_id].append(power)
                    payload = json.dumps(evse_state(evse_id, power, start + i * 0.01))
                    await bus.publish(f"{prefix}/evse/{evse_id}/state", payload, retain=True)
            span = {"from": iso_utc(start - 60), "to": iso_utc(start + 60)}
            barrier = await request(
                bus, prefix, {"op": "power", "evse_id": EVSES[0], "step_s": 60, **span, "transaction": "barrier"}
            )
            assert barrier["status"] == "ok", barrier

            async def second_burst() -> None:
                for i in range(ROUNDS, 10 * ROUNDS):
                    for evse_id in EVSES:
                        payload = json.dumps(evse_state(evse_id, 1440.0 + 10 * i, start + i * 0.01))
                        await bus.publish(f"{prefix}/evse/{evse_id}/state", payload, retain=True)

            burst = asyncio.create_task(second_burst())
            await asyncio.sleep(0.05)  # the kill lands while the recorder is busy writing
            first.kill(signal.SIGKILL)
            assert first.wait() == -signal.SIGKILL
            killed_at = time.monotonic()
            await burst
            await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "offline", timeout=10)
            assert time.monotonic() - killed_at < 10

        async with await HistoryStore.open(f"sqlite:///{database}") as store:
            stored = {evse_id: await store.evse_records(evse_id, 0, 4e9) for evse_id in EVSES}
        for evse_id in EVSES:
            powers = [record.power_w for record in stored[evse_id]]
            assert powers[:ROUNDS] == expected[evse_id], evse_id  # every acknowledged sample, in order
        rows_before = {evse_id: len(records) for evse_id, records in stored.items()}

        second = service_process("history", config, mqtt_broker.url, prefix).start(tmp_path / "history-2.log")
        try:
            async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
                await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "online", timeout=20)
                span = {"from": iso_utc(start - 60), "to": iso_utc(start + 60)}
                sessions = await request(
                    bus, prefix, {"op": "sessions", "evse_id": EVSES[1], **span, "transaction": "after"}
                )
                assert sessions["status"] == "ok", sessions
                assert [s["evse_ids"] for s in sessions["data"]] == [[EVSES[1]]]
                assert sessions["data"][0]["peak_power_w"] >= max(expected[EVSES[1]])
                for evse_id in EVSES:  # clear our retained test states
                    await bus.publish(f"{prefix}/evse/{evse_id}/state", b"", retain=True)
            assert second.alive()
        finally:
            second.stop()
        assert_clean_log(second)
        async with await HistoryStore.open(f"sqlite:///{database}") as store:
            after = {evse_id: await store.evse_records(evse_id, 0, 4e9) for evse_id in EVSES}
        for evse_id, records in after.items():
            # The broker's retained replay at subscribe time adds a row only when the last state had not been
            # committed before the kill; it never duplicates a stored one.
            assert len(records) - rows_before[evse_id] in (0, 1)
            replayed = [record.power_w for record in records]
            assert None not in replayed
            assert replayed == sorted({p for p in replayed if p is not None}), evse_id
    finally:
        first.stop()
    assert_clean_log(first)
