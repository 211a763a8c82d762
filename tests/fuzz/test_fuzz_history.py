"""Fuzzing `<p>/history/request` (issue 9.3): thousands of malformed, out-of-range and unanswerable queries.

The history service runs as its own process with an empty SQLite database, so every request is refused: malformed ones
(docs/contract.md §6), over-limit ones, retained ones, and well-formed ones about a subject with no rows ("unknown").
Each must give exactly one ErrorEvent on `<p>/history/error` (plus a `status: "error"` answer where a usable response
topic was given), write no row, publish no energy figure, and leave the process alive.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.fuzz import fuzz_payloads as fp
from tests.fuzz.fuzz_harness import Case, Plan, blast, fuzz_seed, judge, record
from tests.fuzz.fuzz_services import history as start_history
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

TABLES = ("evse_samples", "vehicle_samples", "meter_samples")


def plan(prefix: str, seed: int) -> Plan:
    topic = f"{prefix}/history/request"
    bits = fp.HistoryBits(
        answers_topic=f"{prefix}/answers",
        own_topics=(topic, f"{prefix}/history/status", f"{prefix}/history/error", f"{prefix}/history/energy/x"),
    )
    result = Plan(seed)
    result.add(topic, fp.history_requests(bits), 2600, lambda _topic, payload: bool(payload), retained_share=0.05)
    result.add_cases(
        [
            Case(topic, b"x" * 300_000),
            Case(topic, json.dumps({"v": 1, "op": "power", "transaction": "big", "pad": "p" * 70_000}).encode()),
            Case(topic, b" " * 70_000),
        ]
    )
    return result


def rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


async def test_thousands_of_unanswerable_requests_each_get_one_error(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    seed = fuzz_seed()
    cases = plan(prefix, seed)
    database = tmp_path / "history.sqlite"
    error_topic = f"{prefix}/history/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/history/#", f"{prefix}/answers/#"]) as bus:
        process = start_history(mqtt_broker.url, prefix, tmp_path, database)
        try:
            await bus.wait_message(f"{prefix}/history/status", lambda m: m.text == "online", timeout=20)
            ordered = cases.shuffled()
            outcome = await blast(bus, mqtt_broker.url, error_topic, ordered, alive=process.alive)
            record("history", outcome, seed, cases.drawn, ordered)
            assert process.alive(), process.log()[-3000:]
            problems = judge(ordered, outcome, lambda topic: topic == f"{prefix}/history/request")
            assert not problems, "\n".join(problems)
            answers = [m for m in bus.messages if m.topic.startswith(f"{prefix}/answers")]
            assert all(m.json()["status"] == "error" for m in answers)
            assert not [m.topic for m in bus.messages if m.topic.startswith(f"{prefix}/history/energy/")]
            assert rows(database) == dict.fromkeys(TABLES, 0)
            await bus.publish(f"{prefix}/history/request", b"", retain=True)
        finally:
            process.stop()
    assert process.wait() == 0
