"""The twc-bridge over a real pty (the TWC slave simulator) and a real mosquitto, run in-process.

Every test watches MQTT as a user would and the bus as the simulated TWCs saw it (`sim.received`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chargebus.clock import Clock, SystemClock
from chargebus.config import MqttConfig, TwcBridgeConfig, TwcConfig
from chargebus.mqtt import Service
from chargebus.schema import EvseState
from chargebus_sim.twc_slave import LIMIT_COMMANDS, SlaveSpec, TwcSlaveSim
from chargebus_sim.twc_wire import MasterHeartbeat, StartCharging, StopCharging
from chargebus_twc.service import NAME, TwcBridge, build

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

A, B, C, D = 0x4A1B, 0x5C2D, 0x6E3F, 0x7A4B
VIN = "5YJ3E1EA8KF000001"
HINT_VIN = "5YJ3E1EA1KF000002"
FAR = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def spec(slave_id: int, **options: Any) -> SlaveSpec:
    options.setdefault("lag_s", 0.2)
    options.setdefault("voltages", (240, 0, 0))
    return SlaveSpec(slave_id, **options)


@contextlib.asynccontextmanager
async def running_bridge(
    broker: BrokerUnderTest,
    prefix: str,
    state_dir: Path,
    *,
    port: str,
    clock: Clock | None = None,
    **twc: Any,
) -> AsyncIterator[TwcBridge]:
    twc.setdefault("voltage_v", 240)
    config = TwcBridgeConfig(
        state_dir=state_dir,
        mqtt=MqttConfig(url=broker.url, prefix=prefix, ha_prefix=f"{prefix}-ha"),
        twc=TwcConfig(port=port, **twc),
    )
    service = Service(NAME, config.mqtt, clock=clock or SystemClock())
    bridge = build(service, config)
    runner = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.connected.wait(), 10)
        yield bridge
    finally:
        service.request_stop()
        await asyncio.wait_for(runner, 10)


def state_topic(prefix: str, slave_id: int) -> str:
    return f"{prefix}/evse/twc-{slave_id:04x}/state"


def latest_state(bus: Recorder, prefix: str, slave_id: int) -> EvseState | None:
    last = bus.last(state_topic(prefix, slave_id))
    if last is None or not last.payload:
        return None
    return EvseState.model_validate_json(last.payload, strict=True)


async def wait_state(
    bus: Recorder, prefix: str, slave_id: int, predicate: Callable[[EvseState], bool], timeout: float = 10.0
) -> EvseState:
    def check() -> EvseState | None:
        state = latest_state(bus, prefix, slave_id)
        return state if state is not None and predicate(state) else None

    found: EvseState = await bus.wait_for(check, timeout, f"a state of twc-{slave_id:04x}")
    return found


def setpoint(slave_id: int, power_w: float | None, **extra: Any) -> str:
    body: dict[str, Any] = {"v": 1, "evse_id": f"twc-{slave_id:04x}", "power_w": power_w, "expires_at": FAR}
    body.update(extra)
    return json.dumps(body)


async def send_setpoint(bus: Recorder, prefix: str, slave_id: int, payload: str | bytes) -> None:
    await bus.publish(f"{prefix}/evse/twc-{slave_id:04x}/setpoint", payload, retain=True)


def limits_sent(sim: TwcSlaveSim, slave_id: int) -> list[float]:
    return sim.offered_amps(slave_id)


async def wait_offer(sim: TwcSlaveSim, slave_id: int, amps: float, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        sent = limits_sent(sim, slave_id)
        if sent and sent[-1] == amps:
            return
        if loop.time() > deadline:
            pytest.fail(f"twc-{slave_id:04x} was never offered {amps} A; sent {sent[-10:]}")
        await asyncio.sleep(0.05)


def errors(bus: Recorder, prefix: str) -> list[dict[str, Any]]:
    return [m.json() for m in bus.on(f"{prefix}/{NAME}/error")]


def assert_bus_safe(sim: TwcSlaveSim, limit_a: float) -> None:
    assert sim.dangerous_frames() == []
    assert sim.malformed == []  # every frame as the simulated slaves read the protocol
    for frame in sim.received:
        if isinstance(frame.message, MasterHeartbeat) and frame.message.command in LIMIT_COMMANDS:
            assert frame.message.limit_centiamps <= limit_a * 100


# ----- discovery and state ------------------------------------------------------------------------------------------


async def test_three_slaves_of_both_protocols_are_discovered_and_published(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    specs = [spec(A), spec(B, protocol=1, max_amps=80.0), spec(C)]
    async with (
        TwcSlaveSim(specs) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#", f"{prefix}-ha/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, min_amps=5, failsafe_amps=0),
    ):
        states = {
            slave_id: await wait_state(bus, prefix, slave_id, lambda s: s.online and s.state_code is not None)
            for slave_id in (A, B, C)
        }
        await bus.wait_for(lambda: len([m for m in bus.messages if m.topic.startswith(f"{prefix}-ha/")]) >= 18)
    for state in states.values():
        assert state.kind == "twc2"
        assert state.controllable
        assert state.controls == ["current"]
        assert state.source == "rs485"
        assert (state.phases, state.voltage_v, state.step_w) == (1, 240.0, 240.0)
        assert state.max_power_w == 32 * 240
        assert not state.stale
    assert states[A].min_power_w == 6 * 240  # protocol 2: 6 A
    assert states[B].min_power_w == 5 * 240  # protocol 1: 5 A
    assert states[A].name == "TWC 4a1b"
    raw = json.loads(bus.last(state_topic(prefix, A)).payload)  # type: ignore[union-attr]
    assert set(raw) == set(EvseState.model_fields)  # every field of docs/contract.md §6, nulls included
    assert raw["state_code"] == "0x00"
    configs = {m.topic: m.json() for m in bus.messages if m.topic.startswith(f"{prefix}-ha/")}
    energy = configs[f"{prefix}-ha/sensor/chargebus/twc_4a1b_lifetime_energy/config"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "Wh",
    )
    number = configs[f"{prefix}-ha/number/chargebus/twc_4a1b_max_current/config"]
    assert number["command_topic"] == f"{prefix}/evse/twc-4a1b/max_current/set"
    assert number["max"] == 32
    assert sim.dangerous_frames() == []
    assert sim.malformed == []  # every frame as the simulated slaves read the protocol


async def test_a_fourth_slave_is_reported_once_and_never_driven(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    specs = [spec(A), spec(B), spec(C), spec(D)]
    async with (
        TwcSlaveSim(specs, overfull=True, linkready_period_s=0.5) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, bus_max_amps=32),
    ):
        for slave_id in (A, B, C):
            await wait_state(bus, prefix, slave_id, lambda s: s.online)
        await bus.wait_for(lambda: errors(bus, prefix), what="an error")
        await asyncio.sleep(2.0)  # D keeps announcing itself twice a second
        refused = [e for e in errors(bus, prefix) if "4th" in e["error"]]
        assert len(refused) == 1
        assert refused[0]["topic"] == sim.port
        assert refused[0]["payload"] is None
        assert "twc-7a4b" in refused[0]["error"]
        assert bus.on(state_topic(prefix, D)) == []
        assert not [f for f in sim.received if isinstance(f.message, MasterHeartbeat) and f.message.slave_id == D]


# ----- setpoints ----------------------------------------------------------------------------------------------------


async def test_setpoint_watts_become_whole_amps_on_the_wire(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        TwcSlaveSim([spec(A, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, wiring_max_amps=32, bus_max_amps=40),
    ):
        await wait_state(bus, prefix, A, lambda s: s.online)
        await send_setpoint(bus, prefix, A, setpoint(A, 4800, voltage_v=240, phases=1))
        await wait_offer(sim, A, 20.0)
        state = await wait_state(bus, prefix, A, lambda s: s.offered_a == 20.0 and (s.current_a or 0) > 19)
        assert state.power_w == pytest.approx(20 * 240)
        assert state.charging
        assert state.status_text is not None
        assert "failsafe" not in state.status_text
        await send_setpoint(bus, prefix, A, setpoint(A, 1000, voltage_v=240, phases=1))
        await wait_offer(sim, A, 0.0)  # 4 A would be below the minimum: 0, never 1–4 A
        await send_setpoint(bus, prefix, A, setpoint(A, 100_000))  # no basis given: the bridge's own
        await wait_offer(sim, A, 32.0)
        await wait_state(bus, prefix, A, lambda s: s.offered_a == 32.0)
    sent = limits_sent(sim, A)
    assert not [amps for amps in sent if 0 < amps < 6]
    assert_bus_safe(sim, 32)


async def test_two_slaves_never_exceed_the_bus_cap_at_any_heartbeat(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        TwcSlaveSim([spec(A, plugged_in=True), spec(B, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, wiring_max_amps=32, bus_max_amps=40),
    ):
        for slave_id in (A, B):
            await wait_state(bus, prefix, slave_id, lambda s: s.online)
        for amps_a, amps_b in ((32, 32), (30, 10), (10, 30), (32, 6), (6, 32)):
            await send_setpoint(bus, prefix, A, setpoint(A, amps_a * 240.0))
            await send_setpoint(bus, prefix, B, setpoint(B, amps_b * 240.0))
            if amps_a + amps_b <= 40:
                await wait_offer(sim, A, amps_a)
                await wait_offer(sim, B, amps_b)
            else:
                await wait_offer(sim, A, 20.0)
                await wait_offer(sim, B, 20.0)
    applied: dict[int, float] = {}
    for frame in sim.received:
        message = frame.message
        if isinstance(message, MasterHeartbeat) and message.command in LIMIT_COMMANDS:
            applied[message.slave_id] = message.limit_centiamps / 100
            assert sum(applied.values()) <= 40, applied
    assert_bus_safe(sim, 32)


async def test_malformed_setpoints_are_reported_and_the_last_valid_one_holds_until_it_expires(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    bad = [
        b"not json",
        b'{"v": 1, "evse_id": "twc-4a1b", "power_w": 2400, "expires_at": "' + FAR.encode() + b'", "oops": 1}',
        setpoint(B, 2400).encode(),  # the wrong evse_id for this topic
        setpoint(A, -5).encode(),
        b'{"v": 1, "evse_id": "twc-4a1b", "power_w": 2400}',  # no expires_at
    ]
    async with (
        TwcSlaveSim([spec(A, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, failsafe_amps=6),
    ):
        await wait_state(bus, prefix, A, lambda s: s.online)
        await wait_offer(sim, A, 6.0)  # no setpoint yet: failsafe
        valid_at = asyncio.get_running_loop().time()
        await send_setpoint(bus, prefix, A, setpoint(A, 4800, ttl_s=4))
        await wait_offer(sim, A, 20.0)
        for payload in bad:
            await send_setpoint(bus, prefix, A, payload)
        await bus.wait_for(lambda: len(errors(bus, prefix)) >= len(bad), what="one error per bad setpoint")
        await asyncio.sleep(1.0)
        assert limits_sent(sim, A)[-1] == 20.0  # the last valid setpoint still holds
        reported = errors(bus, prefix)
        assert len(reported) == len(bad)
        assert {e["topic"] for e in reported} == {f"{prefix}/evse/twc-4a1b/setpoint"}
        await wait_offer(sim, A, 6.0)  # expired after its ttl_s: failsafe
        assert asyncio.get_running_loop().time() - valid_at >= 3.9
        state = await wait_state(bus, prefix, A, lambda s: s.offered_a == 6.0)
        assert state.status_text is not None
        assert "failsafe" in state.status_text
        # a setpoint for a TWC that is not on this bus is another instance's business: silently ignored
        await bus.publish(f"{prefix}/evse/twc-ffff/setpoint", b"garbage", retain=True)
        await asyncio.sleep(0.5)
        assert len(errors(bus, prefix)) == len(bad)


async def test_start_stop_is_sent_only_when_enabled_and_nothing_dangerous_ever_is(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        TwcSlaveSim([spec(A, plugged_in=True), spec(B, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, start_stop=True),
    ):
        state = await wait_state(bus, prefix, A, lambda s: s.online)
        assert state.controls == ["current", "start_stop"]
        await send_setpoint(bus, prefix, A, setpoint(A, 0, charge=False))
        await bus.wait_for(lambda: [f for f in sim.received if isinstance(f.message, StopCharging)], what="FC B2")
        await send_setpoint(bus, prefix, A, setpoint(A, 4800, charge=True))
        await bus.wait_for(lambda: [f for f in sim.received if isinstance(f.message, StartCharging)], what="FC B1")
        await wait_offer(sim, A, 20.0)
    assert_bus_safe(sim, 32)
    async with (
        TwcSlaveSim([spec(A, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, f"{prefix}-off", tmp_path, port=sim.port, start_stop=False),
    ):
        await send_setpoint(bus, f"{prefix}-off", A, setpoint(A, 0, charge=False))
        await wait_offer(sim, A, 0.0)
        await asyncio.sleep(1.5)
        assert not [f for f in sim.received if isinstance(f.message, StartCharging | StopCharging)]
    assert_bus_safe(sim, 32)


# ----- listen mode --------------------------------------------------------------------------------------------------


async def test_listen_mode_transmits_zero_bytes_and_publishes_read_only_evses(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    specs = [spec(A, plugged_in=True, protocol=1), spec(B)]
    async with (
        TwcSlaveSim(specs, real_master=(0x1234, 16.0), real_master_period_s=0.5) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#", f"{prefix}-ha/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, mode="listen"),
    ):
        await send_setpoint(bus, prefix, A, setpoint(A, 2400))  # not ours to obey
        state = await wait_state(bus, prefix, A, lambda s: (s.current_a or 0) > 15)
        other = await wait_state(bus, prefix, B, lambda s: s.online)
        await bus.publish(f"{prefix}/evse/twc-4a1b/max_current/set", "10")
        await bus.wait_for(lambda: errors(bus, prefix), what="a read-only error")
        await asyncio.sleep(1.0)
        assert sim.received_bytes == 0
        assert sim.received == []
    assert (state.controllable, state.controls, state.offered_a) == (False, [], 16.0)
    assert state.current_a == 16.0
    assert state.plugged_in
    assert state.status_text is not None
    assert "read-only" in state.status_text
    assert (other.controllable, other.plugged_in) == (False, False)
    assert "read-only" in errors(bus, prefix)[0]["error"]
    assert not [m for m in bus.messages if m.topic.startswith(f"{prefix}-ha/number/")]


# ----- VIN ----------------------------------------------------------------------------------------------------------


async def test_vin_read_from_the_bus_or_from_vin_hints_appears_in_the_state(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    specs = [spec(A, plugged_in=True, vin=VIN), spec(B, plugged_in=True, answers_vin=False), spec(C)]
    async with (
        TwcSlaveSim(specs) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, vin_hints={"5c2d": HINT_VIN, "6e3f": HINT_VIN}),
    ):
        read = await wait_state(bus, prefix, A, lambda s: s.vin is not None)
        hinted = await wait_state(bus, prefix, B, lambda s: s.online and s.plugged_in is True)
        unplugged = await wait_state(bus, prefix, C, lambda s: s.online and s.plugged_in is False)
        energy = await wait_state(bus, prefix, A, lambda s: s.lifetime_energy_wh is not None)
    assert read.vin == VIN
    assert hinted.vin == HINT_VIN
    assert unplugged.vin is None  # no car on the cable: the hint does not apply
    assert energy.lifetime_energy_wh == 100_000
    assert energy.phase_voltages_v == [240.0]


# ----- faults -------------------------------------------------------------------------------------------------------


async def test_a_silent_slave_times_out_offline_and_its_discovery_is_removed(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    clock = SystemClock(scale=10.0)  # 26 s of bus time in 2.6 s
    async with (
        TwcSlaveSim([spec(A), spec(B)], clock=clock) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#", f"{prefix}-ha/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, clock=clock),
    ):
        for slave_id in (A, B):
            await wait_state(bus, prefix, slave_id, lambda s: s.online)
        config_topic = f"{prefix}-ha/sensor/chargebus/twc_4a1b_power/config"
        await bus.wait_message(config_topic, lambda m: bool(m.payload))
        sim.set_silent(A)
        gone = await wait_state(bus, prefix, A, lambda s: not s.online, timeout=15)
        await bus.wait_message(config_topic, lambda m: not m.payload)
        assert latest_state(bus, prefix, B) is not None
        assert latest_state(bus, prefix, B).online  # type: ignore[union-attr]
        sim.set_silent(A, silent=False)
        back = await wait_state(bus, prefix, A, lambda s: s.online, timeout=15)
    assert gone.stale
    assert (gone.current_a, gone.power_w, gone.offered_a, gone.vin) == (None, None, None, None)
    assert gone.status_text is not None
    assert gone.status_text.startswith("offline")
    assert back.online


def _point(link: Path, target: str) -> None:
    temporary = link.with_suffix(".new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(link)


async def test_the_serial_port_vanishing_and_coming_back(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    port = tmp_path / "ttyTWC"
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=str(port)) as bridge,
    ):
        # missing at start: one clear error naming the port, then quiet retries
        first = await bus.wait_message(f"{prefix}/{NAME}/error")
        assert first.json()["topic"] == str(port)
        assert first.json()["payload"] is None
        assert "cannot open" in first.json()["error"]
        await asyncio.sleep(2.0)
        assert len(errors(bus, prefix)) == 1
        async with TwcSlaveSim([spec(A)]) as sim:
            _point(port, sim.port)
            await wait_state(bus, prefix, A, lambda s: s.online, timeout=20)
        # the adapter is unplugged: the slave goes offline, one error, nothing crashes
        down = await wait_state(bus, prefix, A, lambda s: not s.online)
        assert down.status_text == "offline"
        await bus.wait_for(lambda: len(errors(bus, prefix)) == 2, what="the lost-port error")
        assert "lost" in errors(bus, prefix)[1]["error"]
        await asyncio.sleep(1.0)
        async with TwcSlaveSim([spec(A)]) as sim:
            _point(port, sim.port)
            mark = len(bus.messages)
            await bus.wait_message(
                state_topic(prefix, A),
                lambda m: EvseState.model_validate_json(m.payload).online,
                after=mark,
                timeout=20,
            )
            await wait_offer(sim, A, 6.0)  # driven again
        await bus.wait_for(lambda: len(errors(bus, prefix)) == 3, what="lost again when this simulator stopped")
        assert bridge.service.connected.is_set()
        assert not bridge.service.stopping


# ----- max_current override -----------------------------------------------------------------------------------------


async def test_max_current_bad_inputs_each_get_one_error_and_change_nothing(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    command = f"{prefix}/evse/twc-4a1b/max_current/set"
    bad: list[tuple[str, bytes, bool]] = [
        (command, b"abc", False),
        (command, b'{"value": ', False),
        (command, b"50", False),  # above the wiring limit
        (command, b"-1", False),
        (command, b"3", False),  # 1–5 A would be offered as 0: refused rather than surprising
        (command, b"7.5", False),  # whole amps only
        (command, b"true", False),
        (command, b'{"value": "10"}', False),
        (command, b"x" * 300_000, False),  # oversize
        (command, b"10", True),  # retained
        (f"{prefix}/evse/twc-ffff/max_current/set", b"10", False),  # unknown id
        (f"{prefix}/evse/garage-door/max_current/set", b"10", False),  # no EVSE id at all: answered here
    ]
    async with (
        TwcSlaveSim([spec(A, plugged_in=True)]) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, wiring_max_amps=32, bus_max_amps=32) as bridge,
    ):
        before = await wait_state(bus, prefix, A, lambda s: s.online)
        await send_setpoint(bus, prefix, A, setpoint(A, 100_000))
        await wait_offer(sim, A, 32.0)
        for topic, payload, retain in bad:
            await bus.publish(topic, payload, retain=retain)
        await bus.wait_for(lambda: len(errors(bus, prefix)) >= len(bad), what="one error per bad input")
        await bus.publish(f"{prefix}/evse/car-5YJ3E1EA8KF000001/max_current/set", b"10")  # the tesla-bridge's
        await bus.publish(f"{prefix}/evse/twc3-garage/max_current/set", b"10", retain=True)  # also the tesla-bridge's
        await asyncio.sleep(1.0)
        reported = errors(bus, prefix)
        await bus.publish(command, b"", retain=True)  # clear the retained command (itself reported as retained)
        assert len(reported) == len(bad)
        assert [e["topic"] for e in reported] == [topic for topic, _, _ in bad]
        assert all(set(e) == {"v", "topic", "payload", "error", "transaction"} for e in reported)
        assert not bridge.store.path.exists()
        assert latest_state(bus, prefix, A).max_power_w == before.max_power_w  # type: ignore[union-attr]
        assert limits_sent(sim, A)[-1] == 32.0
        await bus.publish(command, '{"value": 16, "transaction": "t-16"}')
        lowered = await wait_state(bus, prefix, A, lambda s: s.max_power_w == 16 * 240)
        await wait_offer(sim, A, 16.0)
        assert json.loads(bridge.store.path.read_text()) == {"v": 1, "max_current_a": {"twc-4a1b": 16}}
        await bus.publish(command, "default")
        await wait_state(bus, prefix, A, lambda s: s.max_power_w == 32 * 240)
        await wait_offer(sim, A, 32.0)
        assert json.loads(bridge.store.path.read_text()) == {"v": 1, "max_current_a": {}}
    assert lowered.status_text is not None
    assert "max_current override 16 A" in lowered.status_text
    assert_bus_safe(sim, 32)


async def test_a_unit_rated_below_the_wiring_limit_is_driven_at_its_rating_and_reported_once(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        TwcSlaveSim([spec(A, max_amps=16.0, plugged_in=True)], linkready_period_s=0.5) as sim,
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, port=sim.port, wiring_max_amps=32),
    ):
        state = await wait_state(bus, prefix, A, lambda s: s.online)
        await send_setpoint(bus, prefix, A, setpoint(A, 100_000))
        await wait_offer(sim, A, 16.0)
        await asyncio.sleep(1.0)
    reported = errors(bus, prefix)
    assert len(reported) == 1
    assert reported[0]["topic"] == state_topic(prefix, A)
    assert "16 A" in reported[0]["error"]
    assert state.max_power_w == 16 * 240
    assert state.status_text is not None
    assert "rated 16 A" in state.status_text
    assert_bus_safe(sim, 16)
