"""The store on real SQLite and, when a server answers, PostgreSQL: round trip, ranges, latest rows, pruning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chargebus_history.database import describe_error, parse_url, shown_url
from chargebus_history.migrations import LATEST_VERSION
from chargebus_history.records import EvseRecord, MeterRecord, VehicleRecord
from chargebus_history.store import HistoryStore, count_rows, retention_cutoff
from chargebus_history.tables import SAMPLE_TABLES

T0 = 1_800_000_000.0
VIN = "5YJ3E1EA8KF000001"


async def test_a_new_database_is_at_the_latest_schema(store: HistoryStore) -> None:
    assert await store.schema_version() == LATEST_VERSION


async def test_records_round_trip(
    store: HistoryStore,
    evse_payload: Callable[..., dict[str, Any]],
    vehicle_payload: Callable[..., dict[str, Any]],
) -> None:
    evse = EvseRecord.from_payload(T0 + 0.123, evse_payload(vin=VIN, power_w=7360.5, phases=3))
    vehicle = VehicleRecord.from_payload(T0, vehicle_payload(charge_energy_added_wh=5060.0, charger_phases=1))
    meter = MeterRecord(T0, "grid", -1500.0, raw={"v": 1, "power_w": -1500.0, "ts": "x"}, energy_wh=42.0)
    assert await store.insert([evse, vehicle, meter]) == 3
    assert await store.evse_records("twc-4a1b", T0 - 1, T0 + 1) == [evse]
    assert await store.vehicle_records(VIN, T0 - 1, T0 + 1) == [vehicle]
    assert await store.meter_records("grid", T0 - 1, T0 + 1) == [meter]


async def test_a_range_brings_the_rows_that_hold_at_its_edges(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    records = [EvseRecord.from_payload(T0 + t, evse_payload(power_w=float(t))) for t in (0, 10, 20, 30, 40, 50)]
    records.append(EvseRecord.from_payload(T0 + 25, evse_payload("twc-0001", power_w=1.0)))
    await store.insert(records)
    found = await store.evse_records("twc-4a1b", T0 + 15, T0 + 35)
    assert [r.ts - T0 for r in found] == [10, 20, 30, 40]
    assert [r.ts - T0 for r in await store.evse_records("twc-4a1b", T0 + 100, T0 + 200)] == [50]
    assert await store.evse_records("twc-ffff", T0, T0 + 100) == []


async def test_evse_ids_with_a_vin(store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]) -> None:
    await store.insert(
        [
            EvseRecord.from_payload(T0, evse_payload("twc-4a1b", vin=VIN)),
            EvseRecord.from_payload(T0, evse_payload(f"car-{VIN}", vin=VIN)),
            EvseRecord.from_payload(T0, evse_payload("twc-0001", vin=None)),
            EvseRecord.from_payload(T0 + 1000, evse_payload("twc-0002", vin=VIN)),
        ]
    )
    assert await store.evse_ids_with_vin(VIN, T0, T0 + 10) == [f"car-{VIN}", "twc-4a1b"]


async def test_latest_records_give_the_last_row_of_each_stream(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    await store.insert([EvseRecord.from_payload(T0 + t, evse_payload(power_w=float(t))) for t in range(3)])
    await store.insert([MeterRecord(T0, "grid", 5.0, raw=5.0), MeterRecord(T0 + 1, "grid", 6.0, raw=6.0)])
    latest = await store.latest_records()
    assert sorted((type(r).__name__, r.ts - T0) for r in latest) == [("EvseRecord", 2), ("MeterRecord", 1)]


async def test_prune_removes_only_old_rows_in_batches(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    await store.insert([EvseRecord.from_payload(T0 + t, evse_payload(power_w=float(t))) for t in range(25)])
    await store.insert([MeterRecord(T0 + t, "grid", 1.0, raw=1.0) for t in range(5)])
    assert await store.prune(T0 + 20, batch_size=7) == 25
    counts = await count_rows(store, SAMPLE_TABLES)
    assert counts == {"evse_samples": 5, "vehicle_samples": 0, "meter_samples": 0}
    assert retention_cutoff(T0, 730) == T0 - 730 * 86400


def test_urls_name_the_driver_and_never_show_the_password() -> None:
    sqlite = parse_url("sqlite:////data/history.sqlite")
    assert (sqlite.dialect, sqlite.target) == ("sqlite", "/data/history.sqlite")
    assert sqlite.shown == "sqlite:////data/history.sqlite"
    secret = parse_url("postgresql://u:secret@db:5433/h")
    assert (secret.dialect, secret.target) == ("postgresql", "postgresql://u:secret@db:5433/h")
    assert secret.shown == "postgresql://u:***@db:5433/h"
    assert parse_url("postgres://db/h").target == "postgresql://db/h"
    assert parse_url("postgresql+asyncpg://db/h").target == "postgresql://db/h"
    assert parse_url("postgresql://db/h?ssl=require").target == "postgresql://db/h?sslmode=require"  # asyncpg's name
    assert parse_url("postgresql://db/h?sslmode=verify-full").target == "postgresql://db/h?sslmode=verify-full"
    with pytest.raises(ValueError, match="absolute path"):
        parse_url("sqlite:///relative.sqlite")
    with pytest.raises(ValueError, match=r"only sqlite:// and postgresql://") as raised:
        parse_url("mysql://u:secret@db/h")
    assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match="not a database URL"):
        parse_url("no url")
    assert shown_url("postgresql://u:secret@db/h") == "postgresql://u:***@db/h"
    assert (
        describe_error(OSError("auth failed for secret"), "postgresql://u:secret@db/h")
        == "OSError: auth failed for ***"
    )


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'h.sqlite'}")
    async with store, store.database.connect() as connection:
        modes = [
            await connection.fetchval(f"PRAGMA {name}") for name in ("journal_mode", "synchronous", "busy_timeout")
        ]
    assert modes == ["wal", 1, 5000]  # synchronous 1 = NORMAL


async def test_subjects_and_whether_an_id_was_ever_seen(
    store: HistoryStore,
    evse_payload: Callable[..., dict[str, Any]],
    vehicle_payload: Callable[..., dict[str, Any]],
) -> None:
    other = "5YJ3E1EA8KF000002"
    await store.insert(
        [
            EvseRecord.from_payload(T0 + 5, evse_payload("twc-4a1b", vin=VIN)),
            EvseRecord.from_payload(T0 + 9, evse_payload(f"car-{other}")),
            VehicleRecord.from_payload(T0 + 7, vehicle_payload(VIN)),
        ]
    )
    assert await store.subjects() == (["car-" + other, "twc-4a1b"], [VIN])
    assert await store.has_evse("twc-4a1b")
    assert not await store.has_evse("twc-ffff")
    assert await store.has_vehicle(VIN)
    assert await store.has_vehicle(other)  # only its car EVSE reported so far
    assert not await store.has_vehicle("5YJ3E1EA8KF000003")
    assert await store.first_vehicle_ts(VIN) == T0 + 5  # the TWC saw it first
    assert await store.first_evse_ts("twc-ffff") is None
