"""The allocator as users meet it: its own process against a real mosquitto, watched over MQTT."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from chargebus.schema import to_json

from services.allocator.tests.alloc_builders import VIN_A, evse_state, vehicle_state
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

TWC = "twc-4a1b"
CAR = f"car-{VIN_A}"
FAST = {"enable_delay_s": 0, "disable_delay_s": 0, "min_on_s": 0, "min_off_s": 0, "reserve_w": 0}


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and booleans are written the same in TOML


def write_config(
    path: Path, prefix: str, *, allocator: dict[str, Any], meters: list[dict[str, Any]] | None = None
) -> Path:
    lines = [f"state_dir = {toml_value(str(path.parent / 'state'))}", "[mqtt]", f'ha_prefix = "{prefix}/ha"']
    lines += ["[allocator]", *(f"{key} = {toml_value(value)}" for key, value in allocator.items())]
    for meter in meters or []:
        lines += ["[[meters]]", *(f"{key} = {toml_value(value)}" for key, value in meter.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def allocator(broker: BrokerUnderTest, prefix: str, config: Path, **env: str) -> ServiceProcess:
    environment = {"CHARGEBUS_MQTT_URL": broker.url, "CHARGEBUS_TOPIC_PREFIX": prefix, **env}
    argv = [sys.executable, "-m", "chargebus_allocator", "--config", str(config)]
    return ServiceProcess(argv, environment).start(config.with_suffix(".log"))


def last_json(bus: Recorder, topic: str) -> Any:
    message = bus.last(topic)
    return message.json() if message is not None and message.payload else None


def cleared(bus: Recorder, topic: str) -> bool:
    """The retained message on `topic` was removed (an empty retained message)."""
    message = bus.last(topic)
    return message is not None and not message.payload


def state_where(bus: Recorder, prefix: str, check: Callable[[Any], bool]) -> Callable[[], Any]:
    def probe() -> Any:
        state = last_json(bus, f"{prefix}/allocator/state")
        return state if state is not None and check(state) else None

    return probe


def setpoint_where(bus: Recorder, prefix: str, evse_id: str, check: Callable[[Any], bool]) -> Callable[[], Any]:
    def probe() -> Any:
        setpoint = last_json(bus, f"{prefix}/evse/{evse_id}/setpoint")
        return setpoint if setpoint is not None and check(setpoint) else None

    return probe


async def publish_merged_car(bus: Recorder, prefix: str) -> None:
    await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC, vin=VIN_A)), retain=True)
    car = evse_state(CAR)
    await bus.publish(f"{prefix}/evse/{CAR}/state", to_json(car), retain=True)
    await bus.publish(f"{prefix}/vehicle/{VIN_A}/state", to_json(vehicle_state(VIN_A)), retain=True)


async def test_a_twc_and_its_car_are_one_charge_point_and_mode_changes_show(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "solar", **FAST})
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await publish_merged_car(bus, prefix)
        await bus.publish(f"{prefix}/power/grid", "-5000", retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: len(s["groups"]) == 1 and s["groups"][0]["state"] == "charging"),
                timeout=15,
                what="one charging charge point",
            )
            (group,) = state["groups"]
            assert (group["evse_ids"], group["vin"], group["primary_evse_id"]) == ([TWC, CAR], VIN_A, TWC)
            twc = last_json(bus, f"{prefix}/evse/{TWC}/setpoint")
            car = last_json(bus, f"{prefix}/evse/{CAR}/setpoint")
            assert (twc["power_w"], twc["charge"], twc["phases"], twc["voltage_v"]) == (4800, None, 1, 240)
            assert (car["power_w"], car["charge"]) == (None, True)
            assert twc["ttl_s"] == 120

            await bus.publish(f"{prefix}/allocator/mode/set", "off")
            await bus.wait_for(state_where(bus, prefix, lambda s: s["mode"] == "off"), what="mode off")
            await bus.wait_for(setpoint_where(bus, prefix, CAR, lambda s: s["charge"] is False), what="car stop")
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 0), what="twc 0 W")

            await bus.publish(f"{prefix}/allocator/mode/set", json.dumps({"value": "now", "transaction": "t1"}))
            now = await bus.wait_for(state_where(bus, prefix, lambda s: s["mode"] == "now"), what="mode now")
            assert [(o["key"], o["value"]) for o in now["overrides"]] == [("mode", "now")]
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 32 * 240), what="max")

            # Home Assistant: the mode select, the budget sensors, the charge point's sensors, a priority number.
            ha = [m.topic for m in bus.messages if m.topic.startswith(f"{prefix}/ha/") and m.payload]
            assert f"{prefix}/ha/select/chargebus/allocator_mode/config" in ha
            assert f"{prefix}/ha/sensor/chargebus/allocator_surplus_w/config" in ha
            assert f"{prefix}/ha/number/chargebus/allocator_twc_4a1b_priority/config" in ha
            allocated = f"{prefix}/ha/sensor/chargebus/allocator_{VIN_A.lower()}_allocated_w/config"
            assert allocated in ha
            select = last_json(bus, f"{prefix}/ha/select/chargebus/allocator_mode/config")
            assert select["command_topic"] == f"{prefix}/allocator/mode/set"

            # Both EVSEs are removed: the charge point's entities go, the retained setpoints are cleared.
            await bus.publish(f"{prefix}/evse/{TWC}/state", b"", retain=True)
            await bus.publish(f"{prefix}/evse/{CAR}/state", b"", retain=True)
            await bus.wait_for(lambda: cleared(bus, allocated), what="entity gone")
            await bus.wait_for(lambda: cleared(bus, f"{prefix}/evse/{TWC}/setpoint"), what="setpoint cleared")
            assert service.alive()
        finally:
            service.stop()
    assert "Traceback" not in service.log()


GOOD_EVSE = "twc-0001"
BAD_VALUES: dict[str, list[bytes]] = {
    "allocator/mode/set": [b"turbo", b"{", b'{"value": "now", "extra": 1}', b"7", b'{"value": null}'],
    "allocator/charge_now/set": [b"-5", b"999999999", b"soon", b'{"value": {"seconds": 60, "evse_id": "x"}}'],
    f"evse/{GOOD_EVSE}/mode/set": [b"fast", b"[1", b'{"value": 1}'],
    f"evse/{GOOD_EVSE}/priority/set": [b"1001", b"-1001", b"2.5", b'"10"', b"true", b"high"],
    f"vehicle/{VIN_A}/priority/set": [b"5000", b'{"value": [1]}'],
    "evse/TWC-XYZ/mode/set": [b"now"],  # unknown id: not an id of the contract's patterns
    "evse/garage/priority/set": [b"5"],
    "vehicle/5yj3e1ea8kf000001/priority/set": [b"5"],  # lower case VIN
    "vehicle/NOTAVIN/priority/set": [b"5"],
    "allocator/schedules/set": [
        b"[{",  # malformed JSON
        b"5",  # not a list
        b"tonight",
        b'{"value": {"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400}}',  # an object, not a list
        b'[{"days": ["mon"], "start": "25:00", "end": "06:00", "power_w": 7400}]',  # bad HH:MM
        b'[{"days": ["mon"], "start": "7pm", "end": "06:00", "power_w": 7400}]',
        b'[{"days": ["funday"], "start": "23:00", "end": "06:00", "power_w": 7400}]',  # unknown day
        b'[{"days": [], "start": "23:00", "end": "06:00", "power_w": 7400}]',
        b'[{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400, "current_a": 32}]',  # both
        b'[{"days": ["mon"], "start": "23:00", "end": "06:00"}]',  # neither
        b'[{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": "lots"}]',  # wrong type
        b'[{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400, "vin": "5yj3e1ea8kf000001"}]',
        b'[{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400, "colour": "red"}]',
    ],
    "allocator/schedules_enabled/set": [b"maybe", b"1", b'{"value": "yes"}', b"[true", b'{"value": null}'],
    "allocator/vins/set": [
        b"{",
        b"nobody",
        b"[1, 2]",
        b'{"allow": ["BADVIN"]}',
        b'{"allow": ["5yj3e1ea8kf000001"]}',  # lower case
        b'{"allow": "5YJ3E1EA8KF000001"}',  # not a list
        b'{"allow": ["5YJ3E1EA8KF000001"], "deny": ["5YJ3E1EA8KF000001"]}',  # in both
        b'{"allow": [], "colour": 1}',
        b'{"value": {"deny": [17]}}',
        b'{"value": {"allow": []}, "extra": 1}',
    ],
    f"vehicle/{VIN_A}/plan/set": [b'{"energy_wh": 9000, "by": "07:00"}', b"[1"],  # not seen: refused either way
    f"evse/{GOOD_EVSE}/plan/set": [
        b"{",
        b"tomorrow",
        b'{"energy_wh": 9000, "by": "7am"}',  # not HH:MM
        b'{"energy_wh": -5, "by": "07:00"}',
        b'{"soc_pct": 80, "by": "07:00"}',  # an EVSE's plan is in energy
        b'{"energy_wh": 9000, "by": "2027-01-15T07:00:00"}',  # no time zone
        b'{"energy_wh": 9000, "by": "07:00", "strategy": "fastest"}',
        b'{"energy_wh": 9000, "by": "07:00", "repeat": ["someday"]}',
        b'{"strategy": "cheapest"}',  # no plan yet, and no target to start one
        b'{"energy_wh": 9000, "colour": "red"}',
    ],
}
OVERSIZE_TOPICS = (
    "allocator/mode/set",
    "allocator/charge_now/set",
    f"evse/{GOOD_EVSE}/priority/set",
    "allocator/schedules/set",
    "allocator/schedules_enabled/set",
    "allocator/vins/set",
    f"evse/{GOOD_EVSE}/plan/set",
)
OVERSIZE = b'"' + b"a" * 100_000 + b'"'  # above the allocator's 64 KiB, below the runtime's limit
HUGE = b"x" * 300_000  # above the runtime's limit


async def test_bad_input_on_every_command_topic_gets_one_error_and_changes_nothing(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "solar", **FAST})
    errors = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{GOOD_EVSE}/state", to_json(evse_state(GOOD_EVSE)), retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_for(state_where(bus, prefix, lambda s: len(s["groups"]) == 1), timeout=15, what="state")
            sent = [(f"{prefix}/{suffix}", payload) for suffix, payloads in BAD_VALUES.items() for payload in payloads]
            for suffix in OVERSIZE_TOPICS:
                sent += [(f"{prefix}/{suffix}", OVERSIZE), (f"{prefix}/{suffix}", HUGE)]
            for topic, payload in sent:
                await bus.publish(topic, payload)
            retained = {
                f"{prefix}/allocator/mode/set": "now",
                f"{prefix}/evse/{GOOD_EVSE}/priority/set": "5",
                f"{prefix}/allocator/schedules/set": "[]",
                f"{prefix}/allocator/schedules_enabled/set": "false",
                f"{prefix}/allocator/vins/set": '{"allow": [], "deny": []}',
            }
            retained_topics = list(retained)
            for topic, word in retained.items():
                await bus.publish(topic, word, retain=True)
            expected = len(sent) + len(retained_topics)
            await bus.wait_for(lambda: len(bus.on(errors)) >= expected, timeout=30, what=f"{expected} errors")
            await asyncio.sleep(1.0)  # no second error for any of them
            events = [m.json() for m in bus.on(errors)]
            assert len(events) == expected
            assert [e["topic"] for e in events[: len(sent)]] == [topic for topic, _ in sent]
            assert all(set(e) == {"v", "topic", "payload", "error", "transaction"} for e in events)
            assert all(e["payload"] is None or len(e["payload"]) <= 200 for e in events)
            assert sum("retained" in e["error"] for e in events) == len(retained_topics)
            assert sum("too large" in e["error"] for e in events) == 2 * len(OVERSIZE_TOPICS)
            assert any("unknown evse id" in e["error"] for e in events)
            assert any("invalid VIN" in e["error"] for e in events)
            by_payload = {e["payload"]: e["error"] for e in events}
            assert "HH:MM" in by_payload['[{"days": ["mon"], "start": "25:00", "end": "06:00", "power_w": 7400}]']
            assert (
                "exactly one of power_w and current_a"
                in by_payload['[{"days": ["mon"], "start": "23:00", "end": "06:00", "power_w": 7400, "current_a": 32}]']
            )
            assert (
                "in both allow and deny"
                in by_payload['{"allow": ["5YJ3E1EA8KF000001"], "deny": ["5YJ3E1EA8KF000001"]}']
            )
            state = last_json(bus, f"{prefix}/allocator/state")
            assert (state["overrides"], state["mode"]) == ([], "solar")
            assert not (tmp_path / "state" / "allocator.json").exists()
            for topic in retained_topics:
                await bus.publish(topic, b"", retain=True)

            # Still alive and listening; a transaction is echoed on errors.
            await bus.publish(f"{prefix}/allocator/mode/set", json.dumps({"value": "x", "transaction": "abc"}))
            echo = await bus.wait_message(errors, lambda m: m.json()["transaction"] == "abc", timeout=15)
            assert "unknown mode" in echo.json()["error"]
            await bus.publish(f"{prefix}/allocator/vins/set", json.dumps({"allow": ["X"], "transaction": "v1"}))
            echo = await bus.wait_message(errors, lambda m: m.json()["transaction"] == "v1", timeout=15)
            assert "vins.allow[0]: invalid VIN" in echo.json()["error"]
            # Well-formed ids that are neither configured nor seen are refused, and nothing is stored for them.
            unknown = [
                (f"{prefix}/evse/twc-9999/priority/set", "12", "t1"),
                (f"{prefix}/evse/twc-9999/mode/set", "now", "t2"),
                (f"{prefix}/vehicle/5YJ3E1EA8KF000009/priority/set", "3", "t3"),
                (f"{prefix}/allocator/charge_now/set", {"seconds": 600, "evse_id": "twc-9999"}, "t4"),
            ]
            for topic, value, transaction in unknown:
                await bus.publish(topic, json.dumps({"value": value, "transaction": transaction}))
            await bus.wait_for(
                lambda: {m.json()["transaction"] for m in bus.on(errors)} >= {"t1", "t2", "t3", "t4"},
                timeout=15,
                what="the unknown ids refused",
            )
            refused = [m.json() for m in bus.on(errors) if m.json()["transaction"] in {"t1", "t2", "t3", "t4"}]
            assert len(refused) == len(unknown)
            assert all("not configured and not seen" in e["error"] for e in refused), refused
            # The EVSE seen in a state may be set.
            await bus.publish(f"{prefix}/evse/{GOOD_EVSE}/priority/set", "12")
            await bus.publish(
                f"{prefix}/allocator/charge_now/set", json.dumps({"value": {"seconds": 600, "evse_id": GOOD_EVSE}})
            )
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: len(s["overrides"]) == 2), what="two overrides"
            )
            assert [o["key"] for o in state["overrides"]] == [
                f"evse/{GOOD_EVSE}/charge_now",
                f"evse/{GOOD_EVSE}/priority",
            ]
            assert state["groups"][0]["mode"] == "now"  # charge-now shows as `now`
            assert service.alive()
        finally:
            service.stop()
    assert "Traceback" not in service.log()


async def test_bad_state_and_meter_payloads_are_reported_and_meters_not_flooding(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "solar", **FAST})
    errors = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=15)
            await bus.publish(f"{prefix}/evse/{TWC}/state", b'{"evse_id": "twc-4a1b"}')
            await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state("twc-0002")))  # wrong topic
            await bus.publish(f"{prefix}/vehicle/{VIN_A}/state", b"not json")
            for _ in range(5):
                await bus.publish(f"{prefix}/power/grid", b"lots")
            await bus.wait_for(lambda: len(bus.on(errors)) >= 4, what="4 errors")
            await asyncio.sleep(0.5)
            events = [m.json() for m in bus.on(errors)]
            assert [e["topic"] for e in events] == [
                f"{prefix}/evse/{TWC}/state",
                f"{prefix}/evse/{TWC}/state",
                f"{prefix}/vehicle/{VIN_A}/state",
                f"{prefix}/power/grid",
            ]
            assert events[3]["payload"] == "lots"
            assert service.alive()
        finally:
            service.stop()


async def test_overrides_survive_a_restart(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "solar", **FAST})
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await publish_merged_car(bus, prefix)
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=15)
            await bus.publish(f"{prefix}/allocator/mode/set", "minsolar")
            await bus.publish(f"{prefix}/evse/{TWC}/priority/set", "42")
            await bus.publish(f"{prefix}/vehicle/{VIN_A}/priority/set", '{"value": -7, "transaction": 9}')
            await bus.publish(f"{prefix}/evse/{TWC}/mode/set", "now")
            await bus.wait_for(state_where(bus, prefix, lambda s: len(s["overrides"]) == 4), what="4 overrides")
            await bus.publish(f"{prefix}/evse/{TWC}/mode/set", "default")
            before = await bus.wait_for(
                state_where(bus, prefix, lambda s: len(s["overrides"]) == 3), what="3 overrides"
            )
        finally:
            service.stop()
        assert service.wait() == 0
        mark = len(bus.messages)
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", after=mark, timeout=15)
            after = await bus.wait_message(f"{prefix}/allocator/state", after=mark, timeout=10)
        finally:
            service.stop()
    assert after.json()["overrides"] == before["overrides"]
    assert after.json()["mode"] == "minsolar"
    assert after.json()["groups"][0]["priority"] == -7  # the vehicle's priority beats its EVSE's
    saved = json.loads((tmp_path / "state" / "allocator.json").read_text(encoding="utf-8"))
    assert [o["key"] for o in saved["overrides"]] == ["evse/twc-4a1b/priority", "mode", f"vehicle/{VIN_A}/priority"]


async def test_a_stale_grid_meter_stops_solar_charging_until_data_returns(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    meter_topic = f"{prefix}/shelly/em"
    meters = [
        {
            "name": "grid",
            "topic": meter_topic,
            "json_path": "em.0.kw",
            "scale": 1000,
            "invert": True,
            "stale_after_s": 2,
        }
    ]
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "solar", **FAST}, meters=meters)
    errors = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC)), retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_message(f"{prefix}/allocator/status", lambda m: m.text == "online", timeout=15)
            await asyncio.sleep(0.6)
            mark = len(bus.messages)  # before the reading: it goes stale 2 s after it, however long 12 A took to show
            await bus.publish(meter_topic, '{"em": [{"kw": 3.0}]}')  # exporting 3 kW, reported as positive
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 2880), what="12 A")
            stale = await bus.wait_message(errors, lambda m: m.json()["topic"] == meter_topic, after=mark, timeout=5)
            assert stale.json()["payload"] is None
            assert "stale" in stale.json()["error"]
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 0), what="stopped")
            state = last_json(bus, f"{prefix}/allocator/state")
            assert (state["grid_w"], state["available_w"]) == (None, 0)
            assert "stale" in state["groups"][0]["reason"]
            await bus.publish(meter_topic, '{"em": [{"kw": 2.0}]}')
            await bus.wait_for(setpoint_where(bus, prefix, TWC, lambda s: s["power_w"] == 1920), what="8 A")
            assert len([m for m in bus.on(errors) if m.json()["topic"] == meter_topic]) == 1
        finally:
            service.stop()


async def test_setpoints_are_republished_before_they_expire(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", prefix, allocator={"mode": "now", "setpoint_ttl_s": 10})
    topic = f"{prefix}/evse/{TWC}/setpoint"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC)), retain=True)
        service = allocator(mqtt_broker, prefix, config, CHARGEBUS_TIME_SCALE="5")  # ttl 10 s = 2 s real
        try:
            await bus.wait_for(lambda: len(bus.on(topic)) >= 4, timeout=20, what="4 setpoints")
        finally:
            service.stop()
    setpoints = [m.json() for m in bus.on(topic) if m.payload][:4]
    assert len({(s["power_w"], s["charge"]) for s in setpoints}) == 1
    for previous, following in itertools.pairwise(setpoints):
        sent_at = following["seq"] / 1000
        expires = datetime.fromisoformat(previous["expires_at"]).timestamp()
        assert sent_at < expires - 2  # well before the previous one expires
        assert 4 <= sent_at - previous["seq"] / 1000 <= 8  # every ttl / 2, in simulated seconds
