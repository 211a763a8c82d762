from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from chargebus.schema import (
    PAYLOAD_MODELS,
    AllocatorState,
    ErrorEvent,
    EvseState,
    HistoryRequest,
    PayloadError,
    Setpoint,
    SiteState,
    json_schemas,
    parse_command,
    parse_payload,
    parse_power,
    to_json,
    vin_check_digit_ok,
)

EVSE = {
    "v": 1,
    "evse_id": "twc-4a1b",
    "kind": "twc2",
    "name": "Garage",
    "controllable": True,
    "controls": ["current"],
    "online": True,
    "vin": "5YJ3E1EA8KF000001",
    "plugged_in": True,
    "plugged_in_at": "2026-11-24T10:00:00.000Z",
    "charging": True,
    "phases": 1,
    "voltage_v": 240,
    "phase_voltages_v": [241.5],
    "current_a": 16.2,
    "offered_a": 16,
    "power_w": 3912.3,
    "min_power_w": 1440,
    "max_power_w": 7680,
    "step_w": 240,
    "session_energy_wh": 1200,
    "lifetime_energy_wh": 1_000_000,
    "state_code": "0x01",
    "status_text": "charging",
    "source": "rs485",
    "updated_at": "2026-11-24T12:00:00.123Z",
    "stale": False,
    "current_commanded": None,
}


def test_evse_state_round_trips_with_every_field() -> None:
    state = parse_payload(EvseState, json.dumps(EVSE).encode())
    out = json.loads(to_json(state))
    assert set(out) == set(EVSE)
    assert out["updated_at"] == "2026-11-24T12:00:00.123Z"
    assert parse_payload(EvseState, to_json(state)) == state


def test_nullable_fields_may_be_omitted_but_are_always_published() -> None:
    minimal = {k: v for k, v in EVSE.items() if k not in {"vin", "plugged_in_at", "power_w", "state_code"}}
    state = parse_payload(EvseState, json.dumps(minimal).encode())
    out = json.loads(to_json(state))
    assert out["vin"] is None
    assert out["power_w"] is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"powr_w": 1}, "powr_w"),
        ({"v": 2}, "v"),
        ({"power_w": "100"}, "power_w"),
        ({"evse_id": "TWC-4A1B"}, "evse_id"),
        ({"vin": "5YJ3E1EA8KF00000I"}, "vin"),
        ({"phases": 4}, "phases"),
        ({"updated_at": "2026-11-24T12:00:00"}, "updated_at"),
        ({"charging": 1}, "charging"),
        ({"kind": "twc4"}, "kind"),
    ],
)
def test_strict_input(change: dict[str, object], needle: str) -> None:
    with pytest.raises(PayloadError, match=needle):
        parse_payload(EvseState, json.dumps({**EVSE, **change}).encode())


def test_setpoint_expiry_is_the_earlier_of_both() -> None:
    setpoint = parse_payload(
        Setpoint,
        b'{"v":1,"evse_id":"twc-4a1b","power_w":4600,"charge":null,"phases":1,"voltage_v":230,"seq":1,'
        b'"expires_at":"2026-11-24T12:02:00.000Z","ttl_s":120,"reason":"solar"}',
    )
    arrival = datetime(2026, 11, 24, 12, 1, tzinfo=UTC).timestamp()
    assert setpoint.expires_at_epoch(arrival) == datetime(2026, 11, 24, 12, 2, tzinfo=UTC).timestamp()
    assert setpoint.expires_at_epoch(arrival - 600) == arrival - 600 + 120


@pytest.mark.parametrize(
    ("payload", "value", "transaction"),
    [
        (b"solar", "solar", None),
        (b" 10 ", 10, None),
        (b"true", True, None),
        (b"default", "default", None),
        (b'{"value": 10, "transaction": "abc"}', 10, "abc"),
        (b'{"value": {"seconds": 3600, "evse_id": "twc-4a1b"}}', {"seconds": 3600, "evse_id": "twc-4a1b"}, None),
        (b"[1, 2]", [1, 2], None),
    ],
)
def test_command_forms(payload: bytes, value: object, transaction: str | None) -> None:
    command = parse_command(payload)
    assert (command.value, command.transaction) == (value, transaction)


@pytest.mark.parametrize("payload", [b"", b"{bad", b'{"seconds": 1}', b"\xff", b"NaN", b'{"value": 1, "x": 2}'])
def test_bad_commands(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_command(payload)


def test_power_payload_forms() -> None:
    assert parse_power(b"-3000").power_w == -3000
    assert parse_power(b'{"v":1,"power_w":1500,"phase_current_a":[1,2,3]}').phase_current_a == [1, 2, 3]
    for bad in (b"true", b'"12"', b"[1]", b'{"power":1}', b"Infinity"):
        with pytest.raises(PayloadError):
            parse_power(bad)


def test_history_request_uses_from_on_the_wire() -> None:
    request = parse_payload(
        HistoryRequest,
        b'{"v":1,"op":"energy","vin":"5YJ3E1EA8KF000001","from":"2026-11-01T00:00:00Z",'
        b'"to":"2026-11-02T00:00:00Z","response_topic":"me/answer","transaction":"t1"}',
    )
    assert json.loads(to_json(request))["from"] == "2026-11-01T00:00:00.000Z"
    with pytest.raises(PayloadError, match="exactly one"):
        parse_payload(HistoryRequest, b'{"op":"power","from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z"}')


def test_error_event_payload_is_capped() -> None:
    with pytest.raises(ValueError, match="200"):
        ErrorEvent(topic="t", payload="x" * 201, error="e")


def test_every_model_has_a_json_schema() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(PAYLOAD_MODELS)
    assert schemas["EvseState"]["additionalProperties"] is False
    assert "from" in schemas["HistoryRequest"]["properties"]


def test_vin_check_digit() -> None:
    assert vin_check_digit_ok("1M8GDM9AXKP042788")
    assert not vin_check_digit_ok("1M8GDM9A1KP042788")


def test_power_reading_may_carry_a_battery_soc() -> None:
    reading = parse_power(b'{"v":1,"power_w":-1500,"soc_pct":62.5}')
    assert (reading.power_w, reading.soc_pct) == (-1500, 62.5)
    assert parse_power(b"250").soc_pct is None
    with pytest.raises(PayloadError, match="soc_pct"):
        parse_power(b'{"v":1,"power_w":0,"soc_pct":120}')


def test_allocator_state_site_block() -> None:
    site = {
        "v": 1,
        "import_w": 3200.0,
        "max_import_w": 11000.0,
        "average_w": 2100.0,
        "average_limit_w": 2500.0,
        "window_ends_at": "2026-12-07T02:15:00.000Z",
        "battery_soc_pct": 55.0,
        "battery_w": -800.0,
    }
    state = {
        "v": 1,
        "mode": "solar",
        "overrides": [],
        "groups": [],
        "circuits": [],
        "site": site,
        "computed_at": "2026-12-07T02:03:00.000Z",
        "compute_ms": 0.4,
    }
    parsed = parse_payload(AllocatorState, json.dumps(state).encode())
    assert parsed.site is not None
    assert json.loads(to_json(parsed))["site"] == site
    empty = parse_payload(SiteState, b'{"v":1}')
    assert json.loads(to_json(empty)) == dict.fromkeys(site) | {"v": 1}
    with pytest.raises(PayloadError, match="average_w"):
        parse_payload(SiteState, b'{"v":1,"average_w":-5}')


@pytest.mark.parametrize("evse_id", ["ocpp-garage", "ocpp-garage-2", "ocpp-wb-0042", "ocpp-" + "a" * 32])
def test_ocpp_connectors_are_evses_of_their_own_kind(evse_id: str) -> None:
    state = parse_payload(
        EvseState, json.dumps({**EVSE, "evse_id": evse_id, "kind": "ocpp", "source": "ocpp"}).encode()
    )
    assert (state.evse_id, state.kind, state.source) == (evse_id, "ocpp", "ocpp")


@pytest.mark.parametrize("evse_id", ["ocpp-", "ocpp-Garage", "ocpp-wb_1", "ocpp-" + "a" * 33])
def test_malformed_ocpp_ids_are_refused(evse_id: str) -> None:
    with pytest.raises(PayloadError, match="evse_id"):
        parse_payload(EvseState, json.dumps({**EVSE, "evse_id": evse_id, "kind": "ocpp", "source": "ocpp"}).encode())
