"""Payloads -> records -> samples, and which records the change filter stores."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from chargebus_history import tables
from chargebus_history.dedup import ChangeFilter
from chargebus_history.records import (
    EVSE_FIELDS,
    METER_FIELDS,
    VEHICLE_FIELDS,
    EvseRecord,
    Field,
    MeterRecord,
    VehicleRecord,
)

T0 = 1_800_000_000.0
VIN = "5YJ3E1EA8KF000001"


def test_evse_record_keeps_the_numbers_and_the_raw_payload(evse_payload: Callable[..., dict[str, Any]]) -> None:
    payload = evse_payload(vin=VIN, plugged_in=True, charging=True, power_w=7360.0, lifetime_energy_wh=924000.0)
    record = EvseRecord.from_payload(T0, payload)
    assert (record.evse_id, record.vin, record.power_w, record.phases) == ("twc-4a1b", VIN, 7360.0, 1)
    assert record.source_ts == T0
    assert record.raw == payload
    sample = record.to_sample()
    assert (sample.source, sample.power_w, sample.counter_wh, sample.online) == ("twc-4a1b", 7360.0, 924000.0, True)


def test_a_car_evse_reconciles_with_its_session_counter_and_stale_reads_offline(
    evse_payload: Callable[..., dict[str, Any]],
) -> None:
    payload = evse_payload(f"car-{VIN}", session_energy_wh=5060.0, lifetime_energy_wh=None, stale=True)
    sample = EvseRecord.from_payload(T0, payload).to_sample()
    assert (sample.counter_wh, sample.online) == (5060.0, False)


def test_odd_values_read_as_unknown(evse_payload: Callable[..., dict[str, Any]]) -> None:
    record = EvseRecord.from_payload(T0, evse_payload(power_w=True, voltage_v="230", updated_at="yesterday"))
    assert (record.power_w, record.voltage_v, record.source_ts) == (None, None, None)
    with pytest.raises(ValueError, match="evse_id"):
        EvseRecord.from_payload(T0, {"v": 1})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"online_state": "asleep"}, {"asleep": True, "online": False}),
        ({"online_state": "offline"}, {"asleep": False, "online": False}),
        ({"online_state": "unknown"}, {"asleep": False, "online": None}),
        ({"charging_state": "Charging", "plugged_in": True}, {"charging": True, "plugged_in": True}),
        ({"charging_state": "Complete", "plugged_in": True}, {"charging": False}),
        ({"charging_state": None}, {"charging": None}),
        ({"at_home": False}, {"away": True}),
    ],
)
def test_vehicle_state_to_sample(
    vehicle_payload: Callable[..., dict[str, Any]], overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    sample = VehicleRecord.from_payload(T0, vehicle_payload(**overrides)).to_sample()
    assert sample.source == f"car-{VIN}"
    for field, value in expected.items():
        assert getattr(sample, field) == value


def test_unchanged_republish_adds_no_row_but_a_new_power_does(evse_payload: Callable[..., dict[str, Any]]) -> None:
    changes = ChangeFilter(keepalive_s=600)
    first = EvseRecord.from_payload(T0, evse_payload(power_w=7360.0))
    assert changes.admit(first)
    changes.remember(first)
    replay = EvseRecord.from_payload(T0 + 1, evse_payload(power_w=7360.0, updated_at="2027-01-15T08:00:01.000Z"))
    assert not changes.admit(replay)
    assert changes.admit(EvseRecord.from_payload(T0 + 1, evse_payload(power_w=7383.0)))
    assert changes.admit(EvseRecord.from_payload(T0 + 1, evse_payload(power_w=7360.0, status_text="charging")))
    assert changes.admit(EvseRecord.from_payload(T0 + 600, evse_payload(power_w=7360.0)))  # keepalive


def test_vehicle_data_age_is_not_a_change(vehicle_payload: Callable[..., dict[str, Any]]) -> None:
    changes = ChangeFilter()
    changes.seed([VehicleRecord.from_payload(T0, vehicle_payload())])
    assert not changes.admit(VehicleRecord.from_payload(T0 + 30, vehicle_payload(data_age_s=33.0)))
    assert changes.admit(VehicleRecord.from_payload(T0 + 30, vehicle_payload(soc_pct=51.0)))


def test_meters_store_at_most_one_change_per_interval() -> None:
    changes = ChangeFilter(keepalive_s=600, meter_min_interval_s=10)
    changes.remember(MeterRecord(T0, "grid", 1000.0, raw=1000.0))
    assert not changes.admit(MeterRecord(T0 + 5, "grid", 1200.0, raw=1200.0))
    assert changes.admit(MeterRecord(T0 + 10, "grid", 1200.0, raw=1200.0))
    assert not changes.admit(MeterRecord(T0 + 300, "grid", 1000.0, raw=1000.0))
    assert changes.admit(MeterRecord(T0 + 5, "house", 1.0, raw=1.0))  # another stream


@pytest.mark.parametrize(
    ("record", "fields", "table"),
    [
        (EvseRecord, EVSE_FIELDS, tables.evse_samples),
        (VehicleRecord, VEHICLE_FIELDS, tables.vehicle_samples),
        (MeterRecord, METER_FIELDS, tables.meter_samples),
    ],
)
def test_each_field_list_is_the_records_attributes_and_the_tables_columns(
    record: type[Any], fields: tuple[Field, ...], table: tables.Table
) -> None:
    names = [field.name for field in fields]
    attributes = [f.name for f in dataclasses.fields(record) if f.name not in {"ts", "raw", "source_ts"}]
    assert attributes[1:] == names  # after the stream's id, in the list's order
    columns = list(table.column_names)
    assert columns[columns.index("ts_ms") + 1 :] == [
        *(["source_ts_ms"] if "source_ts_ms" in columns else []),
        *names,
        "raw",
    ]
