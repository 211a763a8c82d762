"""The Gen3 simulator the bridge is tested against: real HTTP, realistic answers, switches and a request log."""

from __future__ import annotations

import httpx
import pytest
from chargebus.clock import FakeClock
from chargebus_sim.gen3 import Gen3Sim
from chargebus_tesla.gen3 import parse_lifetime, parse_version, parse_vitals

VITALS_FIELDS = {
    "contactor_closed",
    "vehicle_connected",
    "session_s",
    "grid_v",
    "grid_hz",
    "vehicle_current_a",
    "currentA_a",
    "currentB_a",
    "currentC_a",
    "currentN_a",
    "voltageA_v",
    "voltageB_v",
    "voltageC_v",
    "relay_coil_v",
    "pcba_temp_c",
    "handle_temp_c",
    "mcu_temp_c",
    "uptime_s",
    "input_thermopile_uv",
    "prox_v",
    "pilot_high_v",
    "pilot_low_v",
    "session_energy_wh",
    "config_status",
    "evse_state",
    "current_alerts",
    "evse_not_ready_reasons",
}


async def test_endpoints_answer_over_http_and_are_logged() -> None:
    async with Gen3Sim.us_split_phase() as sim, httpx.AsyncClient(base_url=sim.url, timeout=2) as client:
        sim.plug_in()
        sim.charge(40)
        vitals = (await client.get("/api/1/vitals")).json()
        assert set(vitals) == VITALS_FIELDS
        assert (vitals["currentB_a"], vitals["voltageB_v"], vitals["grid_v"]) == (40, 240.0, 240.0)
        assert vitals["contactor_closed"] is True
        assert parse_vitals(vitals).evse_state == 10
        assert parse_lifetime((await client.get("/api/1/lifetime")).json()).energy_wh is not None
        assert parse_version((await client.get("/api/1/version")).json()).part_number == "1457768-02-G"
        assert (await client.get("/api/1/wifi_status")).json()["wifi_connected"] is True
        assert (await client.get("/api/1/nothing")).status_code == 404
        assert [(r.path, r.status) for r in sim.requests] == [
            ("/api/1/vitals", 200),
            ("/api/1/lifetime", 200),
            ("/api/1/version", 200),
            ("/api/1/wifi_status", 200),
            ("/api/1/nothing", 404),
        ]


async def test_unreachable_drops_connections_and_recovers() -> None:
    async with Gen3Sim() as sim, httpx.AsyncClient(base_url=sim.url, timeout=2) as client:
        assert (await client.get("/api/1/vitals")).status_code == 200
        sim.unreachable = True
        with pytest.raises(httpx.HTTPError):
            await client.get("/api/1/vitals")
        sim.unreachable = False
        assert (await client.get("/api/1/vitals")).status_code == 200
        assert [r.status for r in sim.requests_to("/api/1/vitals")] == [200, None, 200]


def test_energy_integrates_power_over_the_clock() -> None:
    clock = FakeClock()
    sim = Gen3Sim.three_phase(clock=clock.time)
    lifetime_before = sim.lifetime()["energy_wh"]
    sim.plug_in()
    sim.charge(16)  # 3 x 16 A x 230 V = 11 040 W
    clock.advance(1800)
    vitals = sim.vitals()
    assert vitals["session_energy_wh"] == pytest.approx(5520)
    assert vitals["session_s"] == 1800
    assert vitals["evse_state"] == 11
    assert sim.lifetime()["energy_wh"] == lifetime_before + 5520
    sim.unplug()
    clock.advance(600)
    idle = sim.vitals()
    assert idle["contactor_closed"] is False
    assert idle["evse_state"] == 1
    assert idle["session_energy_wh"] == pytest.approx(5520)  # the unit keeps showing the last session
    sim.plug_in()
    assert sim.vitals()["session_energy_wh"] == 0


def test_state_is_settable() -> None:
    sim = Gen3Sim.three_phase()
    sim.plug_in()
    assert sim.vitals()["evse_state"] == 4  # connected, not drawing
    sim.set_currents(10.0, 0.0, 0.0)
    sim.unit.grid_v = 235.0
    vitals = sim.vitals()
    assert (vitals["currentA_a"], vitals["voltageA_v"], vitals["voltageB_v"]) == (10.0, 235.0, 0.0)
    assert vitals["evse_state"] == 10
    sim.unit.current_alerts = [27]
    assert sim.vitals()["current_alerts"] == [27]
