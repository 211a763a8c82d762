"""Versioned migrations: pinned version-1 schema, ordered and atomic application, refusal of newer schemas."""

from __future__ import annotations

from typing import Protocol

import pytest
from chargebus_history.database import create_engine
from chargebus_history.migrations import MIGRATIONS, Migration, SchemaTooNewError, migrate
from chargebus_history.store import HistoryStore
from chargebus_history.tables import schema_version
from sqlalchemy import Column, Integer, MetaData, Table, insert, inspect
from sqlalchemy.engine import Connection


class Backend(Protocol):
    """The `backend` fixture of this folder's conftest (test modules cannot import conftest by name)."""

    @property
    def url(self) -> str: ...
    @property
    def schema(self) -> str | None: ...


# Frozen on purpose: if tables.py changes, migration 1 must keep creating exactly this (see migrations.py).
VERSION_1_COLUMNS = {
    "schema_version": ["version", "description", "applied_at_ms"],
    "evse_samples": [
        "id", "evse_id", "ts_ms", "source_ts_ms", "vin", "online", "stale", "plugged_in", "charging", "power_w",
        "current_a", "offered_a", "voltage_v", "phases", "session_energy_wh", "lifetime_energy_wh", "raw",
    ],
    "vehicle_samples": [
        "id", "vin", "ts_ms", "source_ts_ms", "online_state", "at_home", "plugged_in", "charging_state", "soc_pct",
        "charger_power_w", "charger_actual_current_a", "charger_voltage_v", "charger_phases",
        "charge_energy_added_wh", "raw",
    ],
    "meter_samples": ["id", "meter", "ts_ms", "power_w", "energy_wh", "raw"],
}  # fmt: skip


def _columns(connection: Connection, schema: str | None) -> dict[str, list[str]]:
    inspector = inspect(connection)
    return {
        name: [c["name"] for c in inspector.get_columns(name, schema=schema)]
        for name in inspector.get_table_names(schema=schema)
    }


async def test_version_1_creates_the_pinned_tables_in_the_asked_schema(backend: Backend) -> None:
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        assert await migrate(engine, MIGRATIONS[:1]) == 1
        async with engine.connect() as connection:
            found = await connection.run_sync(_columns, backend.schema)
    finally:
        await engine.dispose()
    assert found == VERSION_1_COLUMNS


async def test_reopening_applies_nothing_twice_and_keeps_rows(backend: Backend) -> None:
    for _ in range(2):
        async with await HistoryStore.open(backend.url, schema=backend.schema) as store:
            assert await store.schema_version() == MIGRATIONS[-1].version
    store = await HistoryStore.open(backend.url, schema=backend.schema)
    async with store, store.engine.connect() as connection:
        versions = (await connection.execute(schema_version.select())).all()
    assert [row.version for row in versions] == [m.version for m in MIGRATIONS]


def _add_notes_table(connection: Connection) -> None:
    Table("notes", MetaData(), Column("id", Integer, primary_key=True)).create(connection)


def _add_table_then_fail(connection: Connection) -> None:
    _add_notes_table(connection)
    raise RuntimeError("migration 2 broke half-way")


async def test_pending_migrations_apply_in_order_and_a_failure_leaves_no_trace(backend: Backend) -> None:
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        await migrate(engine, MIGRATIONS)
        broken = (*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "notes", _add_table_then_fail))
        with pytest.raises(RuntimeError, match="half-way"):
            await migrate(engine, broken)
        async with engine.connect() as connection:
            assert "notes" not in await connection.run_sync(_columns, backend.schema)
        working = (*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "notes", _add_notes_table))
        assert await migrate(engine, working) == MIGRATIONS[-1].version + 1
        async with engine.connect() as connection:
            assert "notes" in await connection.run_sync(_columns, backend.schema)
    finally:
        await engine.dispose()


async def test_a_database_from_a_newer_program_is_refused(backend: Backend) -> None:
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        await migrate(engine)
        async with engine.begin() as connection:
            await connection.execute(insert(schema_version).values(version=99, description="future", applied_at_ms=0))
    finally:
        await engine.dispose()
    with pytest.raises(SchemaTooNewError, match="99"):
        await HistoryStore.open(backend.url, schema=backend.schema)


def test_a_schema_is_for_postgresql_only() -> None:
    with pytest.raises(ValueError, match="PostgreSQL only"):
        create_engine("sqlite:////tmp/x.sqlite", schema="s")
