"""The history runtime in this process against a real mosquitto: states in, answers out, errors, HA sensors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from itertools import pairwise
from pathlib import Path
from typing import Any

from chargebus.config import MeterConfig
from chargebus_history.store import HistoryStore, count_rows
from chargebus_history.tables import SAMPLE_TABLES

from services.history.tests.history_support import (
    VIN,
    charging,
    dumps,
    history_config,
    mqtt5_client,
    request,
    running_history,
    sqlite_url,
    v5_request_properties,
    vehicle_state,
)
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder


async def rows(database: str) -> dict[str, int]:
    async with await HistoryStore.open(database) as store:
        return await count_rows(store, SAMPLE_TABLES)


def answer_on(bus: Recorder, topic: str, transaction: str) -> Any:
    found = [m.json() for m in bus.on(topic) if m.json().get("transaction") == transaction]
    return found[-1] if found else None


async def ask(bus: Recorder, prefix: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    topic = body["response_topic"]
    await bus.publish(f"{prefix}/history/request", dumps(body))
    answer: dict[str, Any] = await bus.wait_for(
        lambda: answer_on(bus, topic, body["transaction"]), timeout, f"answer {body['transaction']}"
    )
    return answer


async def test_power_series_from_evse_states_published_over_mqtt(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = history_config(mqtt_broker.url, prefix, sqlite_url(tmp_path / "h.sqlite"))
    reply = f"{prefix}/reply/power"
    async with running_history(config), Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        state_topic = f"{prefix}/evse/twc-4a1b/state"
        await bus.publish(state_topic, dumps(charging(power_w=7360.0)), retain=True)
        await asyncio.sleep(2.2)  # each value holds for a whole one-second step at least
        await bus.publish(state_topic, dumps(charging(power_w=3680.0)), retain=True)
        await asyncio.sleep(2.2)
        answer = await ask(bus, prefix, request(span_s=10, response_topic=reply, transaction="p1"))
        errors = bus.on(f"{prefix}/history/error")
        assert not bus.last(reply) or not bus.last(reply).retain  # type: ignore[union-attr]
    assert answer["status"] == "ok", answer
    assert answer["v"] == 1
    assert answer["error"] is None
    values = [p["power_w"] for p in answer["data"]]
    assert len(values) == 15  # 10 s back + 5 s ahead, one point per second
    assert values[0] is None  # before the first state: nothing known
    assert values[-1] is None  # after now: not known yet
    assert 7360.0 in values
    assert 3680.0 in values
    assert values.index(7360.0) < values.index(3680.0)
    assert errors == []


async def test_mqtt5_response_topic_and_correlation_data_are_honoured(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = history_config(mqtt_broker.url, prefix, sqlite_url(tmp_path / "h.sqlite"))
    reply = f"{prefix}/reply/v5"
    async with running_history(config), Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()), retain=True)
        async with mqtt5_client(mqtt_broker.url) as client:
            await client.subscribe(reply, qos=1)
            body = request("energy", span_s=3600, transaction="e1")
            properties = v5_request_properties(reply, b"\x00corr-42")
            await client.publish(f"{prefix}/history/request", dumps(body), qos=1, properties=properties)
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
    payload = json.loads(message.payload if isinstance(message.payload, bytes) else b"")
    assert message.topic.value == reply
    assert not message.retain
    assert message.properties is not None
    assert getattr(message.properties, "CorrelationData", None) == b"\x00corr-42"
    assert payload["transaction"] == "e1"
    assert payload["status"] == "ok"
    assert set(payload["data"]) == {"energy_wh", "days"}


async def test_bad_requests_get_an_error_answer_where_possible_and_one_error_event_each(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = history_config(mqtt_broker.url, prefix, sqlite_url(tmp_path / "h.sqlite"))
    reply = f"{prefix}/reply/bad"
    request_topic = f"{prefix}/history/request"

    def bad(transaction: str, op: str = "power", **fields: Any) -> tuple[str, bytes]:
        return transaction, dumps(request(op, response_topic=reply, transaction=transaction, **fields)).encode()

    answered: list[tuple[str, bytes]] = [
        ("malformed", dumps({**request(response_topic=reply, transaction="malformed"), "bogus": 1}).encode()),
        bad("bad-op", "average"),
        bad("both-ids", vin=VIN, evse_id="twc-4a1b"),
        bad("backwards", to="2020-01-01T00:00:00Z"),
        bad("range", span_s=2 * 86400),
        bad("energy-range", "energy", span_s=500 * 86400),
        bad("unknown-evse", evse_id="twc-ffff"),
        bad("unknown-vin", vin="5YJ3E1EA8KF999999"),
        ("oversize", dumps({**request(response_topic=reply, transaction="oversize"), "pad": "x" * 70_000}).encode()),
    ]
    unanswerable: list[bytes] = [
        b"{",
        b"\xff\xfe",
        b"",
        b"null",
        dumps(request(transaction="no-reply")).encode(),  # valid, but nowhere to answer
        dumps(request(response_topic=f"{prefix}/reply/+", transaction="wild")).encode(),
        dumps(request(response_topic=request_topic, transaction="loop")).encode(),
        b"x" * 300_000,  # above the runtime's own cap
    ]
    async with running_history(config), Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()), retain=True)
        for _, payload in answered:
            await bus.publish(request_topic, payload)
        for payload in unanswerable:
            await bus.publish(request_topic, payload)
        await bus.publish(request_topic, dumps(request(response_topic=reply)), retain=True)  # retained: refused
        expected = len(answered) + len(unanswerable) + 1
        errors = f"{prefix}/history/error"
        await bus.wait_for(lambda: len(bus.on(errors)) >= expected, 15, "one error event per bad request")
        await bus.wait_for(lambda: len(bus.on(reply)) >= len(answered), 10, "an error answer per answerable one")
        await asyncio.sleep(0.3)
        events = [m.json() for m in bus.on(errors)]
        await bus.publish(request_topic, b"", retain=True)  # clearing it is a retained message too (one more error)
        ok = await ask(bus, prefix, request(response_topic=reply, transaction="fine"))
        answers = {m.json()["transaction"]: m.json() for m in bus.on(reply)}
    assert ok["status"] == "ok"
    assert len(events) == expected, "\n".join(f"{e['transaction']} {e['error']}" for e in events)
    for event in events:
        assert set(event) == {"v", "topic", "payload", "error", "transaction"}
        assert event["topic"] == request_topic
        assert event["payload"] is None or len(event["payload"]) <= 200
    for transaction, _ in answered:
        assert answers[transaction]["status"] == "error", transaction
        assert answers[transaction]["data"] is None
        assert answers[transaction]["error"]
    assert "range too big" in answers["range"]["error"]
    assert "range too big" in answers["energy-range"]["error"]
    assert "unknown evse_id" in answers["unknown-evse"]["error"]
    assert "unknown vin" in answers["unknown-vin"]["error"]
    assert "too large" in answers["oversize"]["error"]
    by_transaction = {e["transaction"]: e for e in events}
    assert "response topic" in by_transaction["no-reply"]["error"]
    assert "wildcard" in by_transaction["wild"]["error"]
    assert "own topics" in by_transaction["loop"]["error"]
    assert set(answers) == {t for t, _ in answered} | {"fine"}


async def test_malformed_states_and_meter_readings_are_reported_and_not_stored(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    database = sqlite_url(tmp_path / "h.sqlite")
    meter = MeterConfig(name="grid", topic=f"{prefix}-dev/em3", json_path="total_power", scale=1000.0, invert=True)
    config = history_config(mqtt_broker.url, prefix, database, meters=[meter])
    bad: list[tuple[str, str | bytes]] = [
        (f"{prefix}/evse/twc-4a1b/state", "{"),
        (f"{prefix}/evse/twc-4a1b/state", dumps({**charging(), "powr_w": 1})),
        (f"{prefix}/evse/twc-4a1b/state", dumps(charging("twc-0002"))),  # id differs from the topic's
        (f"{prefix}/vehicle/{VIN}/state", dumps(vehicle_state(soc_pct=140.0))),
        (f"{prefix}/power/house", "abc"),
        (f"{prefix}/power/house", "true"),
        (f"{prefix}/power/{'x' * 65}", "100"),  # a name no [[meters]] entry could have
        (f"{prefix}-dev/em3", dumps({"other": 1})),
        (f"{prefix}-dev/em3", dumps({"total_power": "x"})),
    ]
    async with running_history(config), Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        for topic, payload in bad:
            await bus.publish(topic, payload)
        await bus.wait_for(lambda: len(bus.on(f"{prefix}/history/error")) >= len(bad), 10, "an error per input")
        await bus.publish(f"{prefix}-dev/em3", dumps({"total_power": 1.5}))  # kW, export positive
        await bus.publish(f"{prefix}/power/house", "800")
        await bus.publish(f"{prefix}/power/grid", "123")  # grid has an entry: read from its own topic only
        ok = await ask(bus, prefix, request(response_topic=f"{prefix}/r", transaction="t", evse_id="twc-ffff"))
        events = [m.json() for m in bus.on(f"{prefix}/history/error")]
    assert "unknown" in ok["error"]  # nothing of twc-4a1b was stored
    assert [e["topic"] for e in events[: len(bad)]] == [t for t, _ in bad]
    async with await HistoryStore.open(database) as store:
        grid = await store.meter_records("grid", 0, 4e9)
        house = await store.meter_records("house", 0, 4e9)
        assert await count_rows(store, SAMPLE_TABLES) == {"evse_samples": 0, "vehicle_samples": 0, "meter_samples": 2}
    assert [r.power_w for r in grid] == [-1500.0]
    assert [r.power_w for r in house] == [800.0]


async def test_a_retained_replay_after_a_restart_adds_no_row(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    database = sqlite_url(tmp_path / "h.sqlite")
    config = history_config(mqtt_broker.url, prefix, database)
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()), retain=True)
        await bus.publish(f"{prefix}/vehicle/{VIN}/state", dumps(vehicle_state()), retain=True)
        await bus.publish(f"{prefix}/power/grid", "1200", retain=True)
        async with running_history(config):
            reply = f"{prefix}/r"
            await ask(bus, prefix, request(response_topic=reply, transaction="a"))
            # the same states again (a bridge re-publishing unchanged): no rows
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()), retain=True)
            await ask(bus, prefix, request(response_topic=reply, transaction="b"))
        first = await rows(database)
        async with running_history(config):  # the broker replays every retained state at subscribe time
            await ask(bus, prefix, request(response_topic=reply, transaction="c"))
        second = await rows(database)
    assert first == {"evse_samples": 1, "vehicle_samples": 1, "meter_samples": 1}
    assert second == first


async def test_a_locked_database_is_reported_buffered_and_written_later(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "h.sqlite"
    database = sqlite_url(path)
    config = history_config(mqtt_broker.url, prefix, f"sqlite:///{path}")
    async with running_history(config) as running, Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await ask(bus, prefix, request(response_topic=f"{prefix}/r", transaction="warm", evse_id="twc-ffff"))
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
            mark = len(bus.messages)
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging(power_w=7360.0)))
            event = (
                await bus.wait_message(
                    f"{prefix}/history/error", lambda m: m.json()["topic"] == database, timeout=10, after=mark
                )
            ).json()
            await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging(power_w=3680.0)))
            buffer = running.runtime.recorder.buffer
            await bus.wait_for(lambda: len(buffer) >= 2, 10, "both states kept in memory meanwhile")
            assert len(buffer) == 2
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await bus.wait_for(lambda: len(running.runtime.recorder.buffer) == 0, 15, "the buffer written after the lock")
        errors = [m.json() for m in bus.on(f"{prefix}/history/error") if m.json()["topic"] == database]
    assert event["topic"] == database
    assert event["payload"] is None
    assert "locked" in event["error"]
    assert len(errors) == 1  # once per outage, not once per retry
    async with await HistoryStore.open(database) as store:
        stored = await store.evse_records("twc-4a1b", 0, 4e9)
    assert [r.power_w for r in stored] == [7360.0, 3680.0]


def energy_values(bus: Recorder, topic: str) -> list[float]:
    return [float(m.text) for m in bus.on(topic) if m.payload]


async def test_energy_sensors_for_evses_and_vehicles_with_ha_discovery(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    ha = f"{prefix}-ha"
    config = history_config(mqtt_broker.url, prefix, sqlite_url(tmp_path / "h.sqlite"), ha_prefix=ha)
    evse_topic = f"{prefix}/history/energy/twc-4a1b"
    vin_topic = f"{prefix}/history/energy/{VIN}"
    async with running_history(config), Recorder(mqtt_broker.url, [f"{prefix}/#", f"{ha}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging(power_w=7360.0)), retain=True)
        await bus.publish(f"{prefix}/vehicle/{VIN}/state", dumps(vehicle_state()), retain=True)

        def rising() -> bool:
            values = energy_values(bus, evse_topic)
            return len(values) >= 3 and values[-1] > values[0] > 0

        await bus.wait_for(rising, 10, "a rising energy figure")
        await bus.wait_for(lambda: energy_values(bus, vin_topic), 10, "the vehicle's energy")
        evse_config = (await bus.wait_message(f"{ha}/sensor/chargebus/history_energy_twc_4a1b/config")).json()
        vin_config = (await bus.wait_message(f"{ha}/sensor/chargebus/history_energy_{VIN.lower()}/config")).json()
        retained = [m.retain for m in bus.on(evse_topic)]
        values = energy_values(bus, evse_topic)
    assert values == sorted(values)  # total_increasing: never down
    assert all(retained) or not any(retained)  # live deliveries carry no retain flag; the state itself is retained
    for found, topic in ((evse_config, evse_topic), (vin_config, vin_topic)):
        assert found["device_class"] == "energy"
        assert found["state_class"] == "total_increasing"
        assert found["unit_of_measurement"] == "Wh"
        assert found["state_topic"] == topic
        assert found["availability"][0]["topic"] == f"{prefix}/history/status"
    assert evse_config["device"] == {"identifiers": ["chargebus_twc_4a1b"]}  # the twc-bridge describes it
    assert vin_config["device"] == {"identifiers": [f"chargebus_tesla_{VIN.lower()}"]}  # the tesla-bridge's car
    async with Recorder(mqtt_broker.url, [evse_topic]) as late:
        seen: Received = await late.wait_message(evse_topic)
    assert seen.retain
    assert float(seen.text) > 0


async def test_a_slow_query_does_not_hold_up_recording(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    database = sqlite_url(tmp_path / "h.sqlite")
    config = history_config(mqtt_broker.url, prefix, database)
    async with running_history(config) as running, Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()))
        await ask(bus, prefix, request(response_topic=f"{prefix}/r", transaction="warm"))
        release = asyncio.Event()
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def slow(store: HistoryStore) -> None:
            del store
            loop.call_soon_threadsafe(started.set)
            while not release.is_set():  # the worker's own loop waits; the service's loop must not
                await asyncio.sleep(0.02)

        blocker = asyncio.create_task(running.runtime.worker.submit(slow))
        await asyncio.wait_for(started.wait(), 5)
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging(power_w=1000.0)))
        async with await HistoryStore.open(database) as store:
            async with asyncio.timeout(5):  # recorded while the worker is still busy
                while len(await store.evse_records("twc-4a1b", 0, 4e9)) < 2:
                    await asyncio.sleep(0.05)
            assert not blocker.done()
            release.set()
            await blocker
            assert [r.power_w for r in await store.evse_records("twc-4a1b", 0, 4e9)] == [7360.0, 1000.0]


async def test_a_quiet_state_gets_keepalive_rows_until_its_bridge_goes_offline(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    database = sqlite_url(tmp_path / "h.sqlite")
    # gap limit 4 s: re-offer every 1 s, keepalive row once the last row is 2 s old
    config = history_config(mqtt_broker.url, prefix, database, gap_limit_s=4.0)
    async with running_history(config) as running, Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        recorder = running.runtime.recorder
        await bus.publish(f"{prefix}/twc-bridge/status", "online", retain=True)
        await bus.publish(f"{prefix}/evse/twc-4a1b/state", dumps(charging()), retain=True)  # once, never again
        async with await HistoryStore.open(database) as store:
            async with asyncio.timeout(10):
                while len(await store.evse_records("twc-4a1b", 0, 4e9)) < 3:
                    await asyncio.sleep(0.1)
            await bus.publish(f"{prefix}/twc-bridge/status", "offline", retain=True)  # its last will
            # `before` once the offline status is taken in (nothing is re-offered) and a keepalive row that came
            # just before it is committed: a fixed pause would race with both on a loaded machine
            await bus.wait_for(
                lambda: not recorder.held.reoffers(0.0) and not len(recorder.buffer), 10, "the bridge taken offline"
            )
            before = await store.evse_records("twc-4a1b", 0, 4e9)
            await asyncio.sleep(3.5)
            after = await store.evse_records("twc-4a1b", 0, 4e9)
        await bus.publish(f"{prefix}/twc-bridge/status", b"", retain=True)
    gaps = [b.ts - a.ts for a, b in pairwise(before)]
    # never beyond the gap limit (4 s) while listening: keepalive_s + reoffer_s = 3 s, plus however late the
    # 1 s re-offer timer wakes on a loaded machine
    assert all(1.9 <= gap <= 3.5 for gap in gaps), gaps
    assert all(r.raw == before[0].raw for r in before)  # the same payload, updated_at included
    assert after == before  # nothing held for a bridge that is gone
