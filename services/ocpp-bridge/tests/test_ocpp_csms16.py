"""The ocpp-bridge as the CSMS of simulated OCPP 1.6J wallboxes: real WebSockets on 127.0.0.1, a real mosquitto.

Each test watches MQTT as a user would and the wire as the simulated wallbox saw it (`sim.profiles_received`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chargebus.schema import EvseState
from chargebus_sim.ocpp_cp import Car, ChargerSpec, OcppChargerSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder
from tests.support.ocpp_harness import (
    charger,
    errors,
    last_limit,
    point,
    running_bridge,
    setpoint,
    wait_state,
    wait_until,
)


def limit_is(sim: OcppChargerSim, purpose: str, amps: float) -> Callable[[], bool]:
    return lambda: last_limit(sim, purpose) == (amps, "A")


def offered_live(amps: float) -> Callable[[EvseState], bool]:
    return lambda s: s.offered_a == amps and "failsafe" not in (s.status_text or "")


async def test_boot_configures_the_charger_and_publishes_its_connector(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16)]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        wanted = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"
        await wait_until(lambda: sim.box.config["MeterValuesSampledData"] == wanted, what="the measurands set")
        assert sim.box.config["MeterValueSampleInterval"] == "1"
        # before any setpoint the charger is held at the failsafe
        await wait_until(lambda: last_limit(sim, "TxDefaultProfile") == (6.0, "A"), what="the failsafe profile")
        state = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online and s.plugged_in is False)
        assert (state.kind, state.source, state.controllable, state.controls) == ("ocpp", "ocpp", True, ["current"])
        assert (state.phases, state.voltage_v, state.min_power_w, state.max_power_w) == (3, 230, 4140, 11040)
        assert state.state_code == "Available"
        await sim.plug(1, Car(id_tag="04A1B2C3", max_a=16, ramp_a_per_s=100))
        charging = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.charging is True and (s.current_a or 0) > 5)
        assert charging.plugged_in
        assert charging.plugged_in_at is not None
        assert charging.offered_a == 6
        assert errors(bus, prefix) == []


async def test_setpoints_become_whole_amp_profiles_within_the_limits(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16)]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        await wait_until(lambda: last_limit(sim, "TxDefaultProfile") is not None, what="the first profile")
        await sim.plug(1, Car(id_tag="04A1B2C3", max_a=32, ramp_a_per_s=100))
        topic = f"{prefix}/evse/ocpp-garage/setpoint"
        for power_w, amps in ((4140, 6.0), (1000, 0.0), (100_000, 16.0), (7000, 10.0)):
            await bus.publish(topic, setpoint("ocpp-garage", power_w), retain=True)
            await wait_until(limit_is(sim, "TxProfile", amps), what=f"TxProfile {amps} A")
            await wait_until(limit_is(sim, "TxDefaultProfile", amps), what=f"TxDefaultProfile {amps} A")
            assert sim.box.effective_limit_a(1) == amps
            await wait_state(bus, prefix, "ocpp-garage", offered_live(amps))
        # the car follows the limit with its ramp, and the state shows the draw
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.current_a == 10 and s.power_w == 6900, timeout=5)
        # every profile went out in whole amps, and none above the installer's limit
        limits = [p["charging_schedule"]["charging_schedule_period"][0]["limit"] for _, _, p in sim.profiles_received]
        assert all(limit == int(limit) and limit <= 16 for limit in limits)
        assert errors(bus, prefix) == []


async def test_expiry_falls_back_to_the_failsafe_as_a_tx_profile(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16, failsafe_current_a=8)]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        await wait_until(lambda: last_limit(sim, "TxDefaultProfile") == (8.0, "A"), what="failsafe at boot")
        await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 11_040, ttl_s=2))
        await wait_until(lambda: sim.box.effective_limit_a(1) == 16, what="the setpoint's 16 A")
        # no fresh setpoint: the running transaction's TxProfile itself drops to the failsafe
        await wait_until(lambda: last_limit(sim, "TxProfile") == (8.0, "A"), timeout=5, what="failsafe TxProfile")
        assert sim.box.effective_limit_a(1) == 8
        state = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.offered_a == 8)
        assert state.status_text is not None
        assert "failsafe" in state.status_text


async def test_max_current_override_caps_the_limit_and_survives_a_restart(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    topic = f"{prefix}/evse/ocpp-garage/max_current/set"
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16)]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 11_040), retain=True)
        await wait_until(limit_is(sim, "TxDefaultProfile", 16.0), what="16 A")
        await bus.publish(topic, '{"value": 10, "transaction": "t1"}')
        await wait_until(limit_is(sim, "TxDefaultProfile", 10.0), what="capped at 10 A")
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.max_power_w == 6900)
        for bad in ("3", "17", "12.5", "lots"):
            await bus.publish(topic, bad)
        await bus.publish(f"{prefix}/evse/ocpp-nowhere/max_current/set", "10")
        await bus.wait_for(lambda: len(errors(bus, prefix)) >= 5, what="five refusals")
        assert any("unknown EVSE id 'ocpp-nowhere'" in e["error"] for e in errors(bus, prefix))
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16)]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        # the retained setpoint still asks for 16 A: the stored override caps it from the start
        await wait_until(limit_is(sim, "TxDefaultProfile", 10.0), what="still capped at 10 A after the restart")
        assert all(
            p[2]["charging_schedule"]["charging_schedule_period"][0]["limit"] <= 10 for p in sim.profiles_received
        )
        await bus.publish(topic, "default")
        await wait_until(limit_is(sim, "TxDefaultProfile", 16.0), what="16 A again")
