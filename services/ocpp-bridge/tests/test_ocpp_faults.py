"""What goes wrong with real wallboxes, over real WebSockets and a real mosquitto: lost connections, bad frames,
CALLERRORs, refused and ignored profiles, silent meters, wrong passwords, unknown ids, TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from chargebus.clock import SystemClock
from chargebus_sim.ocpp_cp import Car, ChargerSpec, OcppChargerSim, Quirks
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder
from tests.support.ocpp_harness import (
    charger,
    errors,
    last_limit,
    point,
    running_bridge,
    setpoint,
    url_of,
    wait_state,
    wait_until,
)
from tests.support.tls import write_test_pki

VIN = "5YJ3E1EA8KF000001"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_lost_connection_is_offline_at_once_and_back_after_the_reconnect(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, version: str
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(bridge, ChargerSpec("WB-1", version=version, reconnect_s=1.0)) as sim,
    ):
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online)
        await wait_until(lambda: last_limit(sim) is not None, what="the first profile")
        await sim.drop()
        offline = await wait_state(bus, prefix, "ocpp-garage", lambda s: not s.online, timeout=3)
        assert offline.stale
        assert offline.status_text == "offline"
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online, timeout=10)
        assert sim.sessions == 2
        # the rebooted charger got its profile again (it may have lost it)
        await wait_until(
            lambda: sum(p["charging_profile_purpose"] == "TxDefaultProfile" for _, _, p in sim.profiles_received) >= 2,
            what="the profile sent again",
        )


async def test_a_silent_charger_goes_offline_after_two_heartbeats(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    clock = SystemClock(scale=20)  # the bridge's 2 × 30 s heartbeat window passes in 3 s
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()], clock=clock, meter_interval_s=600) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online)
        assert sim.connected.is_set()
        await wait_state(bus, prefix, "ocpp-garage", lambda s: not s.online, timeout=8)
        assert sim.client is not None
        await sim.client.heartbeat()  # a frame: online again
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online, timeout=3)


async def test_bad_frames_and_call_errors_are_reported_and_the_session_goes_on(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online)
        await wait_until(lambda: last_limit(sim) is not None, what="configured")
        source = f"ws://{bridge.ocpp.listen}/WB-1"
        for frame in (
            "this is not json",
            '{"an": "object"}',
            "[7, 1]",
            '[2, "x1", "BootNotification", {"chargePointVendor": 5}]',  # fails the 1.6 schema
            '[2, "x2", "NoSuchAction", {}]',
            '[2, {"id": 1}, "Heartbeat", []]',
            "[]",
        ):
            await sim.send_raw(frame)
        await bus.wait_for(lambda: len(errors(bus, prefix)) >= 7, timeout=5, what="seven error events")
        found = errors(bus, prefix)
        assert {e["topic"] for e in found} == {source}
        assert all(e["payload"] is None for e in found)
        assert any("not valid JSON" in e["error"] for e in found)
        assert any("CALLERROR" in e["error"] for e in found)
        # the session survived: a real message is still answered and states still flow
        await sim.plug(1, Car(ramp_a_per_s=100))
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.charging is True)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_charger_that_refuses_current_profiles_gets_them_in_watts(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, version: str
) -> None:
    # A Wallbox Pulsar / ABB Terra AC style charger: says nothing useful, refuses A profiles.
    spec = ChargerSpec("WB-1", version=version, quirks=Quirks(reject_amps=True))
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(rate_unit="A")]) as bridge,
        charger(bridge, spec) as sim,
    ):
        # it even claims to take current: only the refusal tells
        sim.box.config["ChargingScheduleAllowedChargingRateUnit"] = "Current,Power"
        await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 7000), retain=True)
        await wait_until(lambda: last_limit(sim, "TxProfile") == (6900.0, "W"), what="10 A as 6 900 W")
        assert sim.box.effective_limit_a(1) == 10
        refused = [e for e in errors(bus, prefix) if "refused" in e["error"]]
        assert refused
        assert all(e["topic"] == f"{prefix}/evse/ocpp-garage/setpoint" for e in refused)
        # later profiles go out in W at once: no second refusal for the same unit
        count = len(refused)
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 4140), retain=True)
        await wait_until(lambda: last_limit(sim, "TxProfile") == (4140.0, "W"), what="6 A as 4 140 W")
        await asyncio.sleep(0.3)
        assert len([e for e in errors(bus, prefix) if "refused" in e["error"]]) == count


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_charger_that_ignores_its_limit_is_reported_once(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, version: str
) -> None:
    clock = SystemClock(scale=20)  # 30 s of overdraw pass in 1.5 s
    spec = ChargerSpec("WB-1", version=version, quirks=Quirks(ignore_limits=True))
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=32)], clock=clock) as bridge,
        charger(bridge, spec) as sim,
    ):
        await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 4140, ttl_s=3600))
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.offered_a == 6 and (s.current_a or 0) > 30)

        def ignored() -> list[dict[str, object]]:
            return [e for e in errors(bus, prefix) if "ignores charging profiles" in str(e["error"])]

        await bus.wait_for(ignored, timeout=8, what="the ignored-limit report")
        await asyncio.sleep(2)  # another 40 s of overdraw on the bridge's clock
        assert len(ignored()) == 1
        assert ignored()[0]["topic"] == f"{prefix}/evse/ocpp-garage/setpoint"
        assert ignored()[0]["payload"] is None


async def test_a_charger_silent_until_configured_meters_once_configured(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    spec = ChargerSpec(
        "WB-1",
        quirks=Quirks(meter_only_when_configured=True),
        measurands=("Energy.Active.Import.Register", "Current.Import"),
    )
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(bridge, spec) as sim,
    ):
        await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
        # it meters no power or voltage: the bridge probed, took what it offers, and derives the power
        state = await wait_state(
            bus, prefix, "ocpp-garage", lambda s: (s.current_a or 0) >= 6 and s.power_w is not None
        )
        assert state.power_w == pytest.approx(6 * 230 * 3)
        assert state.lifetime_energy_wh is not None
        assert sim.box.config["MeterValuesSampledData"] == "Energy.Active.Import.Register,Current.Import"
        assert any("does not meter Power.Active.Import, Voltage" in e["error"] for e in errors(bus, prefix))


async def test_a_tagged_session_carries_the_vin_and_its_energy(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(id_tags={"04A1B2C3": VIN})]) as bridge,
        charger(bridge, ChargerSpec("WB-1", quirks=Quirks(power_in_kw=True))) as sim,
    ):
        await sim.plug(1, Car(id_tag="04A1B2C3", max_a=16, ramp_a_per_s=100))
        state = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.vin == VIN and (s.session_energy_wh or 0) > 0)
        assert state.power_w == pytest.approx(6 * 230 * 3, rel=0.01)  # reported in kW, published in W
        await sim.unplug(1)
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.vin is None and s.plugged_in is False)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_start_stop_drives_remote_transactions(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, version: str
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(start_stop=True)]) as bridge,
        charger(bridge, ChargerSpec("WB-1", version=version, auto_start=False)) as sim,
    ):
        await sim.plug(1, Car(max_a=16, ramp_a_per_s=100))
        plugged = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.plugged_in is True)
        assert plugged.controls == ["current", "start_stop"]
        assert sim.box.sockets[1].transaction_id is None
        topic = f"{prefix}/evse/ocpp-garage/setpoint"
        await bus.publish(topic, setpoint("ocpp-garage", 11_040, charge=True), retain=True)
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.charging is True and (s.current_a or 0) > 15)
        await bus.publish(topic, setpoint("ocpp-garage", 0, charge=False), retain=True)
        await wait_until(lambda: sim.box.sockets[1].transaction_id is None, what="the remote stop")
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.charging is False)


async def test_a_malformed_setpoint_is_reported_and_the_last_valid_one_kept(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(bridge, ChargerSpec("WB-1")) as sim,
    ):
        topic = f"{prefix}/evse/ocpp-garage/setpoint"
        await bus.publish(topic, setpoint("ocpp-garage", 7000))
        await wait_until(lambda: last_limit(sim, "TxDefaultProfile") == (10.0, "A"), what="10 A")
        await bus.publish(topic, '{"v": 1, "evse_id": "ocpp-garage", "power_w": "lots"}')
        await bus.wait_for(lambda: any(e["topic"] == topic for e in errors(bus, prefix)), what="the error")
        await asyncio.sleep(0.3)
        assert last_limit(sim, "TxDefaultProfile") == (10.0, "A")


# -- security --------------------------------------------------------------------------------------------------------


async def handshake_status(url: str, **options: object) -> int | None:
    """The HTTP status a handshake is refused with, or None when it succeeds."""
    try:
        async with connect(url, subprotocols=["ocpp1.6"], proxy=None, open_timeout=5, **options):  # type: ignore[arg-type, list-item]
            return None
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_passwords_and_unknown_ids_are_refused_at_the_handshake(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    secret = tmp_path / "wb1.password"
    secret.write_text("correct horse\n", encoding="utf-8")
    secret.chmod(0o600)
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(password_file=secret)]) as bridge,
    ):
        base = url_of(bridge)
        assert await handshake_status(f"{base}/WB-1") == 401
        wrong = OcppChargerSim(ChargerSpec("WB-1", password="battery staple"), base)
        wrong.start()
        await wait_until(lambda: wrong.refusals, what="a refusal")
        await wrong.stop()
        assert wrong.refusals[0] == 401
        assert await handshake_status(f"{base}/wb-1") == 404  # ids are matched exactly
        assert await handshake_status(f"{base}/WB-404") == 404
        await bus.wait_for(lambda: len(errors(bus, prefix)) >= 4, what="four refusals reported")
        found = errors(bus, prefix)
        assert any("no Basic-auth credentials" in e["error"] for e in found)
        assert any("wrong Basic-auth" in e["error"] for e in found)
        assert any("unknown charge point id 'wb-1'" in e["error"] for e in found)
        assert any("unknown charge point id 'WB-404'" in e["error"] for e in found)
        assert not any("battery" in e["error"] or "horse" in e["error"] for e in found)  # no secret on MQTT
        async with charger(bridge, ChargerSpec("WB-1", password="correct horse")) as sim:
            await wait_until(sim.booted.is_set, what="the right password admitted")


async def test_an_unknown_charger_is_read_only_when_allowed(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()], allow_unknown=True) as bridge,
        charger(bridge, ChargerSpec("Visitor_07")) as sim,
    ):
        await sim.plug(1, Car(max_a=16, ramp_a_per_s=100))
        state = await wait_state(bus, prefix, "ocpp-visitor-07", lambda s: (s.current_a or 0) > 15)
        assert (state.controllable, state.controls) == (False, [])
        assert not list(sim.profiles_received)  # measured and counted, never controlled
        await bus.publish(f"{prefix}/evse/ocpp-visitor-07/setpoint", setpoint("ocpp-visitor-07", 4140))
        await bus.wait_for(lambda: any("read-only" in e["error"] for e in errors(bus, prefix)), what="refusal")


async def test_tls_only_when_a_certificate_is_set(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    ca_file, cert_file, key_file = write_test_pki(tmp_path)
    async with running_bridge(
        mqtt_broker, prefix, tmp_path, [point()], cert_file=cert_file, key_file=key_file
    ) as bridge:
        assert url_of(bridge).startswith("wss://")
        plain = url_of(bridge).replace("wss://", "ws://") + "/WB-1"
        with pytest.raises((OSError, EOFError, asyncio.TimeoutError, Exception)) as caught:
            await handshake_status(plain)
        assert not isinstance(caught.value, AssertionError)
        context = ssl.create_default_context(cafile=str(ca_file))
        async with charger(bridge, ChargerSpec("WB-1"), ssl_context=context) as sim:
            await wait_until(sim.booted.is_set, what="the wss:// session")


async def test_a_charger_that_keeps_dropping_its_connection_is_followed(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    spec = ChargerSpec("WB-1", quirks=Quirks(drop_after_s=1.0), reconnect_s=0.5)
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(bridge, spec) as sim,
    ):
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 7000), retain=True)
        await wait_until(lambda: sim.sessions >= 3, timeout=10, what="three sessions")
        states = [m.json()["online"] for m in bus.on(f"{prefix}/evse/ocpp-garage/state")]
        assert states.count(False) >= 2  # offline at every drop
        await wait_until(lambda: sim.booted.is_set() and sim.box.effective_limit_a(1) == 10, what="10 A again")
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online)


async def test_a_bridge_restart_mid_session_takes_the_session_over(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    # The wallbox reconnects without a BootNotification (it did not reboot) and its transaction goes on.
    spec = ChargerSpec("WB-1", boot_on_reconnect=False, reconnect_s=0.3)
    topic = f"{prefix}/evse/ocpp-garage/setpoint"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        async with running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge:
            sim = OcppChargerSim(spec, url_of(bridge))
            sim.start()
            await wait_until(sim.booted.is_set, what="booted")
            await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
            await bus.publish(topic, setpoint("ocpp-garage", 7000), retain=True)
            await wait_until(lambda: sim.box.effective_limit_a(1) == 10, what="10 A")
            listen = bridge.ocpp.listen
        try:
            async with running_bridge(mqtt_broker, prefix, tmp_path, [point()], listen=listen):
                await bus.publish(topic, setpoint("ocpp-garage", 11_040), retain=True)
                await wait_until(lambda: sim.sessions >= 2, what="the reconnect")
                await wait_until(lambda: sim.box.effective_limit_a(1) == 16, what="the new bridge's 16 A TxProfile")
                assert sim.boots == 1
                await wait_state(bus, prefix, "ocpp-garage", lambda s: s.online and s.charging is True)
        finally:
            await sim.stop()


async def test_current_in_milliamps_labelled_amps_is_read_as_milliamps_and_reported_once(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge,
        charger(
            bridge,
            ChargerSpec(
                "WB-1",
                quirks=Quirks(current_in_ma=True),
                measurands=("Energy.Active.Import.Register", "Current.Import"),
            ),
        ) as sim,
    ):
        await sim.plug(1, Car(max_a=16, ramp_a_per_s=100))
        state = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.current_a == 6)
        assert state.power_w == pytest.approx(6 * 230 * 3)
        await asyncio.sleep(2.5)  # more meter values, each with the same mislabelled unit
        notes = [e for e in errors(bus, prefix) if "read as mA" in e["error"]]
        assert len(notes) == 1
