"""Pure parts of the bridge: admission, meter values, the connector's EvseState, discovery entities, overrides."""

from __future__ import annotations

import base64
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from chargebus.config import OcppChargePointConfig
from chargebus.schema import EvseState, to_json
from chargebus.topics import Topics
from chargebus_ocpp.admission import ReportBudget, admit, basic_credentials, choose_subprotocol, ocpp_id_of
from chargebus_ocpp.discovery import connector_entities
from chargebus_ocpp.evse import Connector, View, build_state, evse_id_for, parse_sampled_values, unknown_name
from chargebus_ocpp.overrides import OverrideStore, parse_max_current
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CP = OcppChargePointConfig(ocpp_id="WB-1", name="garage", id_tags={"TAG": "5YJ3E1EA8KF000001"})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_id_is_the_last_path_segment() -> None:
    assert ocpp_id_of("/WB-1") == "WB-1"
    assert ocpp_id_of("/ocpp/WB-1/") == "WB-1"
    assert ocpp_id_of("/ocpp/WB%2D1?x=1") == "WB-1"
    assert ocpp_id_of("/") is None
    assert ocpp_id_of("/" + "x" * 49) is None
    assert ocpp_id_of("/a%20b") is None


def test_admission() -> None:
    ok = {"configured": True, "password": "pw", "allow_unknown": False}
    assert admit("WB-1", basic("WB-1", "pw"), ["ocpp1.6"], **ok) is None  # type: ignore[arg-type]
    assert admit("WB-1", basic("WB-1", "nope"), [], **ok).status == HTTPStatus.UNAUTHORIZED  # type: ignore[arg-type, union-attr]
    assert admit("WB-1", basic("WB-2", "pw"), [], **ok).status == HTTPStatus.UNAUTHORIZED  # type: ignore[arg-type, union-attr]
    assert admit("WB-1", None, [], **ok).status == HTTPStatus.UNAUTHORIZED  # type: ignore[arg-type, union-attr]
    assert admit("WB-1", basic("WB-1", "pw"), ["ocpp2.1"], **ok).status == HTTPStatus.BAD_REQUEST  # type: ignore[arg-type, union-attr]
    unknown = admit("WB-9", None, [], configured=False, password=None, allow_unknown=False)
    assert unknown is not None
    assert unknown.status == HTTPStatus.NOT_FOUND
    assert admit("WB-9", None, [], configured=False, password=None, allow_unknown=True) is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Bearer abc") is None
    assert choose_subprotocol(["ocpp1.6", "ocpp2.0.1"]) == "ocpp2.0.1"


def test_meter_values_in_their_units() -> None:
    reading = parse_sampled_values(
        [
            {
                "sampled_value": [
                    {"value": "7.36", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                    {"value": "10.1", "measurand": "Current.Import", "phase": "L1"},
                    {"value": "9.9", "measurand": "Current.Import", "phase": "L2"},
                    {"value": "400", "measurand": "Voltage", "phase": "L1-L2"},
                    {"value": 231.0, "measurand": "Voltage", "phase": "L3-N", "unit_of_measure": {"unit": "V"}},
                    {"value": "NaN", "measurand": "Current.Import", "phase": "L3"},
                    {"value": "3", "measurand": "Power.Active.Import", "context": "Transaction.Begin"},
                ]
            }
        ]
    )
    assert reading.power_w == pytest.approx(7360)
    assert reading.energy_wh == pytest.approx(12_500)
    assert reading.currents_a == {"L1": 10.1, "L2": 9.9}
    assert reading.voltages_v["L1"] == pytest.approx(230.94, abs=0.01)
    assert reading.voltages_v["L3"] == 231.0
    assert len(reading.problems) == 1


def test_mislabelled_units_are_read_the_plausible_way() -> None:
    reading = parse_sampled_values(
        [
            {
                "sampled_value": [
                    {"value": "7360", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "16000", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                ]
            }
        ]
    )
    assert reading.power_w == 7360
    assert reading.currents_a == {"L1": 16.0}
    assert set(reading.corrections) == {"Power.Active.Import", "Current.Import"}
    assert parse_sampled_values([{"sampled_value": [{"value": "16", "measurand": "Current.Import"}]}]).corrections == {}


def test_a_connectors_state() -> None:
    connector = Connector(2)
    connector.set_status("Charging", "NoError", 100.0)
    connector.start(7, "TAG", 1000.0)
    connector.apply(
        parse_sampled_values(
            [
                {
                    "sampled_value": [
                        {"value": "1500", "measurand": "Energy.Active.Import.Register"},
                        {"value": "16", "measurand": "Current.Import", "phase": "L1"},
                        {"value": "0.2", "measurand": "Current.Import", "phase": "L2"},
                        {"value": "0", "measurand": "Current.Import", "phase": "L3"},
                    ]
                }
            ]
        ),
        101.0,
    )
    connector.offered_a = 16
    view = View(cp=CP, controllable=True, online=True, now=102.0, meter_interval_s=10, max_amps=16)
    state = build_state(connector, view)
    assert state.evse_id == "ocpp-garage-2"
    assert state.name == "garage 2"
    assert state.vin == "5YJ3E1EA8KF000001"
    assert state.phases == 1  # one phase draws: a 1-phase car
    assert state.power_w == pytest.approx(16 * 230 + 0.2 * 230)
    assert state.session_energy_wh == 500
    assert state.lifetime_energy_wh == 1500
    assert (state.min_power_w, state.max_power_w, state.step_w) == (6 * 230, 16 * 230, 230)
    assert not state.stale
    assert build_state(
        connector, View(cp=CP, controllable=True, online=True, now=200.0, meter_interval_s=10, max_amps=16)
    ).stale  # no meter values for 99 s while charging
    connector.stop(1600.0)
    assert build_state(connector, view).vin is None


def test_names() -> None:
    assert evse_id_for("garage", 1) == "ocpp-garage"
    assert evse_id_for("garage", 3) == "ocpp-garage-3"
    assert unknown_name("Visitor_07") == "visitor-07"
    assert unknown_name("x" * 31) is None


def test_discovery_entities() -> None:
    items = connector_entities(Topics("p"), "ocpp-garage", "garage", controllable=True, max_current_a=16)
    number = next(i for i in items if i.component == "number")
    assert number.config["command_topic"] == "p/evse/ocpp-garage/max_current/set"
    assert number.config["max"] == 16
    read_only = connector_entities(Topics("p"), "ocpp-v", "v", controllable=False, max_current_a=16)
    assert all(i.component == "sensor" for i in read_only)


def test_max_current_values_and_store(tmp_path: Path) -> None:
    limits = {"max_current_a": 16, "min_current_a": 6}
    assert parse_max_current(10, **limits) == 10
    assert parse_max_current(0, **limits) == 0
    assert parse_max_current("default", **limits) is None
    for bad in (3, 17, 12.5, -1, True, "ten", float("inf")):
        with pytest.raises(ValueError, match="max_current"):
            parse_max_current(bad, **limits)
    store = OverrideStore(tmp_path)
    assert store.load() == ({}, None)
    store.save({"ocpp-garage": 10})
    assert store.load() == ({"ocpp-garage": 10}, None)
    store.path.write_text('{"max_current_a": {"ocpp-garage": 10, "twc-4a1b": 5, "ocpp-x": 999}}', encoding="utf-8")
    found, problem = store.load()
    assert found == {"ocpp-garage": 10}
    assert problem is not None
    store.path.write_text("not json", encoding="utf-8")
    assert store.load()[0] == {}


samples = st.fixed_dictionaries(
    {
        "value": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(str),
            st.floats(-1e12, 1e12),
            st.just(1.7e308),  # finite, but 1 000 times that (kW → W) is not
            st.sampled_from(["", "x", "1e400", "-0", "NaN"]),
            st.sampled_from([10**20, -5, 0, 7]),
        ),
    },
    optional={
        "measurand": st.sampled_from(
            ["Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC", "Frequency"]
        ),
        "unit": st.sampled_from(["W", "kW", "Wh", "kWh", "A", "V", "Percent"]),
        "phase": st.sampled_from(["L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"]),
        "context": st.sampled_from(["Sample.Periodic", "Transaction.Begin", "Transaction.End", "Trigger"]),
    },
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"sampled_value": st.lists(samples, max_size=6)}), max_size=2))
def test_any_meter_values_give_a_publishable_state(meter_values: list[dict[str, Any]]) -> None:
    connector = Connector(1)
    connector.set_status("Charging", None, 0.0)
    connector.start(1, "TAG", 0.0)
    connector.apply(parse_sampled_values(meter_values), 1.0)
    state = build_state(
        connector, View(cp=CP, controllable=True, online=True, now=2.0, meter_interval_s=10, max_amps=16)
    )
    EvseState.model_validate_json(to_json(state), strict=True)  # every value finite, in range: it can be published


def test_error_reports_are_budgeted_per_source() -> None:
    budget = ReportBudget(per_window=3, window_s=60, max_sources=2)
    assert [budget.allow("a", 0.0) for _ in range(5)] == [True, True, True, None, False]
    assert budget.allow("b", 1.0) is True  # another source has its own budget
    assert budget.allow("a", 61.0) is True  # a new window
    for n in range(10):
        budget.allow(f"s{n}", 2.0)
    assert len(budget._spent) == 2
