"""The ocpp-bridge as the CSMS of simulated OCPP 2.0.1 charging stations (and version negotiation), over real
WebSockets on 127.0.0.1 and a real mosquitto."""

from __future__ import annotations

from pathlib import Path

from chargebus_sim.ocpp_cp import Car, ChargerSpec
from websockets.asyncio.client import connect

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

VIN = "5YJ3E1EA8KF000001"


async def test_a_201_station_is_configured_and_obeys_setpoints(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    cp = point(max_current_a=16, failsafe_current_a=6, id_tags={"04A1B2C3": VIN})
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [cp]) as bridge,
        charger(bridge, ChargerSpec("WB-1", version="2.0.1")) as sim,
    ):
        wanted = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"
        await wait_until(lambda: sim.box.config["MeterValuesSampledData"] == wanted, what="measurands set")
        assert sim.box.config["MeterValueSampleInterval"] == "1"
        await wait_until(lambda: last_limit(sim, "TxDefaultProfile") == (6.0, "A"), what="the failsafe at boot")
        assert sim.profiles_received[-1][1] == 0  # one EVSE: the station-wide default
        await sim.plug(1, Car(id_tag="04A1B2C3", max_a=32, ramp_a_per_s=100))
        state = await wait_state(bus, prefix, "ocpp-garage", lambda s: s.vin == VIN and s.charging is True)
        assert (state.kind, state.source, state.state_code) == ("ocpp", "ocpp", "Charging")
        topic = f"{prefix}/evse/ocpp-garage/setpoint"
        for power_w, amps in ((4140, 6.0), (1000, 0.0), (100_000, 16.0)):
            await bus.publish(topic, setpoint("ocpp-garage", power_w, ttl_s=3), retain=True)
            await wait_until(lambda a=amps: last_limit(sim, "TxProfile") == (a, "A"), what=f"{amps} A")  # type: ignore[misc]
            tx_profiles = [p for _, _, p in sim.profiles_received if p["charging_profile_purpose"] == "TxProfile"]
            assert tx_profiles[-1]["transaction_id"] == sim.box.sockets[1].transaction_id
        await wait_state(
            bus, prefix, "ocpp-garage", lambda s: (s.current_a or 0) == 16 and (s.session_energy_wh or 0) > 0
        )
        # no fresh setpoint: back to the failsafe, as a TxProfile while the transaction runs
        await wait_until(lambda: last_limit(sim, "TxProfile") == (6.0, "A"), timeout=6, what="failsafe TxProfile")
        await sim.unplug(1)
        await wait_state(bus, prefix, "ocpp-garage", lambda s: s.plugged_in is False and s.vin is None)
        assert errors(bus, prefix) == []


async def test_two_evses_are_two_charge_points_with_their_own_limits(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with (
        Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        running_bridge(mqtt_broker, prefix, tmp_path, [point(max_current_a=16)]) as bridge,
        charger(bridge, ChargerSpec("WB-1", version="2.0.1", connectors=2)) as sim,
    ):
        await sim.plug(1, Car(max_a=32, ramp_a_per_s=100))
        await sim.plug(2, Car(max_a=32, phases=1, ramp_a_per_s=100))
        second = await wait_state(bus, prefix, "ocpp-garage-2", lambda s: s.charging is True and (s.current_a or 0) > 5)
        assert second.name == "garage 2"
        assert second.phases == 1  # a 1-phase car on the 3-phase station draws on one phase
        await bus.publish(f"{prefix}/evse/ocpp-garage/setpoint", setpoint("ocpp-garage", 11_040))
        await bus.publish(f"{prefix}/evse/ocpp-garage-2/setpoint", setpoint("ocpp-garage-2", 1840, phases=1))
        await wait_until(
            lambda: sim.box.effective_limit_a(1) == 16 and sim.box.effective_limit_a(2) == 8, what="limits"
        )
        defaults = {c for _, c, p in sim.profiles_received if p["charging_profile_purpose"] == "TxDefaultProfile"}
        assert {1, 2} <= defaults  # with two EVSEs each gets its own default, not one for the station


async def test_20_is_preferred_and_16_still_spoken(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    async with running_bridge(mqtt_broker, prefix, tmp_path, [point()]) as bridge:
        url = f"{url_of(bridge)}/WB-1"
        both = ["ocpp1.6", "ocpp2.0.1"]
        async with connect(url, subprotocols=both, proxy=None) as connection:  # type: ignore[arg-type]
            assert connection.subprotocol == "ocpp2.0.1"
        async with connect(url, subprotocols=["ocpp1.6"], proxy=None) as connection:  # type: ignore[list-item]
            assert connection.subprotocol == "ocpp1.6"
