"""A slave as EvseState: every contract field, limits at the slave's voltage × phases, publish cadence."""

from __future__ import annotations

from dataclasses import replace

from chargebus.schema import EvseState
from chargebus.topics import Topics
from chargebus_twc.discovery import slave_entities
from chargebus_twc.evse import (
    KEEPALIVE_S,
    Settings,
    Situation,
    build_state,
    needs_publish,
    offline_state,
    slave_id_of,
)
from chargebus_twc.offer import BusLimits
from chargebus_twc.slaves import Slave

NOW = 1_800_000_000.0
SETTINGS = Settings(
    limits=BusLimits(wiring_max_amps=32, bus_max_amps=40, min_amps=6, failsafe_amps=6),
    voltage_v=230.0,
    phases=1,
    controllable=True,
    start_stop=False,
    vin_hints={"4a1b": "5YJ3E1EA1KF000002"},
)
ONLINE = Situation(online=True, now=NOW, now_monotonic=100.0, offered_a=16.0)


def slave(**fields: object) -> Slave:
    base = Slave(
        slave_id=0x4A1B,
        protocol=2,
        linked_at=90.0,
        last_seen=99.5,
        advertised_max_centiamps=3200,
        state_code=0x01,
        reported_limit_centiamps=1600,
        measured_centiamps=1590,
        plugged_in=True,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_charging_slave() -> None:
    state = build_state(slave(), SETTINGS, ONLINE)
    assert (state.evse_id, state.kind, state.source, state.name) == ("twc-4a1b", "twc2", "rs485", "TWC 4a1b")
    assert (state.online, state.stale, state.charging, state.plugged_in) == (True, False, True, True)
    assert (state.current_a, state.offered_a, state.power_w) == (15.9, 16.0, round(15.9 * 230, 1))
    assert (state.min_power_w, state.max_power_w, state.step_w) == (6 * 230, 32 * 230, 230)
    assert state.state_code == "0x01"
    assert state.status_text == "charging"
    assert state.vin == "5YJ3E1EA1KF000002"  # the hint, while a car is plugged in and none was read
    assert state.controls == ["current"]


def test_measured_voltages_win_over_the_nominal_one() -> None:
    state = build_state(slave(phase_voltages=(238, 0, 0), lifetime_kwh=924), SETTINGS, ONLINE)
    assert (state.voltage_v, state.phase_voltages_v, state.lifetime_energy_wh) == (238.0, [238.0], 924_000.0)
    assert state.max_power_w == 32 * 238


def test_the_idle_offset_is_no_draw() -> None:
    state = build_state(slave(state_code=0x00, measured_centiamps=25, plugged_in=False), SETTINGS, ONLINE)
    assert (state.current_a, state.power_w, state.charging, state.vin) == (0.0, 0.0, False, None)


def test_override_rating_and_failsafe_show_in_limits_and_text() -> None:
    situation = replace(ONLINE, override_amps=10, failsafe=True, rating_note="unit rated 16 A, below the wiring limit")
    state = build_state(slave(advertised_max_centiamps=1600), SETTINGS, situation)
    assert state.max_power_w == 10 * 230
    assert state.status_text == (
        "charging; failsafe (no live setpoint); max_current override 10 A; unit rated 16 A, below the wiring limit"
    )


def test_listen_mode_is_read_only_and_reports_the_real_masters_offer() -> None:
    settings = replace(SETTINGS, controllable=False)
    state = build_state(slave(), settings, replace(ONLINE, offered_a=None))
    assert (state.controllable, state.controls, state.offered_a) == (False, [], 16.0)
    assert state.status_text == "charging; read-only (listen mode)"


def test_offline_and_stale() -> None:
    stale = build_state(slave(last_seen=90.0), SETTINGS, ONLINE)
    assert stale.stale
    offline = build_state(slave(), SETTINGS, replace(ONLINE, online=False))
    assert (offline.online, offline.stale, offline.current_a, offline.vin, offline.state_code) == (
        False,
        True,
        None,
        None,
        None,
    )
    gone = offline_state(build_state(slave(), SETTINGS, ONLINE), NOW + 30, "no answer for 26 s")
    assert (gone.online, gone.power_w, gone.offered_a, gone.status_text) == (
        False,
        None,
        None,
        "offline: no answer for 26 s",
    )
    assert gone.max_power_w == 32 * 230
    EvseState.model_validate_json(gone.model_dump_json(), strict=True)


def test_publish_on_change_and_keepalive() -> None:
    first = build_state(slave(), SETTINGS, ONLINE)
    later = build_state(slave(), SETTINGS, replace(ONLINE, now=NOW + 1))
    assert needs_publish(None, first, 0.0, 100.0)
    assert not needs_publish(first, later, 100.0, 101.0)  # only updated_at moved
    assert needs_publish(first, later, 100.0, 100.0 + KEEPALIVE_S)
    changed = build_state(slave(measured_centiamps=1000), SETTINGS, ONLINE)
    assert needs_publish(first, changed, 100.0, 100.5)


def test_evse_ids() -> None:
    assert slave_id_of("twc-4a1b") == 0x4A1B
    for other in ("twc-4A1B", "twc-xyz1", "twc3-garage", "car-5YJ3E1EA8KF000001", "twc-12345"):
        assert slave_id_of(other) is None


def test_discovery_entities() -> None:
    topics = Topics("cb")
    entities = slave_entities(topics, "twc-4a1b", controllable=True, wiring_max_amps=32)
    assert [e.component for e in entities] == ["sensor"] * 5 + ["number"]
    assert {e.config["state_topic"] for e in entities} == {"cb/evse/twc-4a1b/state"}
    assert entities[-1].config["command_topic"] == "cb/evse/twc-4a1b/max_current/set"
    read_only = slave_entities(topics, "twc-4a1b", controllable=False, wiring_max_amps=32)
    assert [e.component for e in read_only] == ["sensor"] * 5
