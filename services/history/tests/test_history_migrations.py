"""Versioned migrations: pinned version-1 schema, ordered and atomic application, refusal of newer schemas."""

from __future__ import annotations

from typing import Protocol

import pytest
from chargebus_history.database import Connection, Database
from chargebus_history.migrations import MIGRATIONS, Migration, SchemaTooNewError, migrate
from chargebus_history.store import HistoryStore


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


async def _columns(connection: Connection) -> dict[str, list[str]]:
    """Every table (of the connection's schema) with its columns in order, as the database itself lists them."""
    if connection.dialect == "sqlite":
        names = [row[0] for row in await connection.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: [row[1] for row in await connection.fetch(f"PRAGMA table_info({name})")] for name in names}
    rows = await connection.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "ORDER BY table_name, ordinal_position"
    )
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


async def test_version_1_creates_the_pinned_tables_in_the_asked_schema(backend: Backend) -> None:
    database = Database(backend.url, schema=backend.schema)
    try:
        assert await migrate(database, MIGRATIONS[:1]) == 1
        async with database.connect() as connection:
            found = await _columns(connection)
    finally:
        await database.dispose()
    assert found == VERSION_1_COLUMNS


async def test_reopening_applies_nothing_twice_and_keeps_rows(backend: Backend) -> None:
    for _ in range(2):
        async with await HistoryStore.open(backend.url, schema=backend.schema) as store:
            assert await store.schema_version() == MIGRATIONS[-1].version
    store = await HistoryStore.open(backend.url, schema=backend.schema)
    async with store, store.database.connect() as connection:
        versions = await connection.fetch("SELECT version FROM schema_version ORDER BY version")
    assert [version for (version,) in versions] == [m.version for m in MIGRATIONS]


async def _add_notes_table(connection: Connection) -> None:
    await connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")


async def _add_table_then_fail(connection: Connection) -> None:
    await _add_notes_table(connection)
    raise RuntimeError("migration 2 broke half-way")


async def test_pending_migrations_apply_in_order_and_a_failure_leaves_no_trace(backend: Backend) -> None:
    database = Database(backend.url, schema=backend.schema)
    try:
        await migrate(database, MIGRATIONS)
        broken = (*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "notes", _add_table_then_fail))
        with pytest.raises(RuntimeError, match="half-way"):
            await migrate(database, broken)
        async with database.connect() as connection:
            assert "notes" not in await _columns(connection)
        working = (*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "notes", _add_notes_table))
        assert await migrate(database, working) == MIGRATIONS[-1].version + 1
        async with database.connect() as connection:
            assert "notes" in await _columns(connection)
    finally:
        await database.dispose()


async def test_a_database_from_a_newer_program_is_refused(backend: Backend) -> None:
    database = Database(backend.url, schema=backend.schema)
    try:
        await migrate(database)
        async with database.begin() as connection:
            await connection.execute(
                "INSERT INTO schema_version (version, description, applied_at_ms) VALUES ($1, $2, $3)", 99, "future", 0
            )
    finally:
        await database.dispose()
    with pytest.raises(SchemaTooNewError, match="99"):
        await HistoryStore.open(backend.url, schema=backend.schema)


def test_a_schema_is_for_postgresql_only() -> None:
    with pytest.raises(ValueError, match="PostgreSQL only"):
        Database("sqlite:////tmp/x.sqlite", schema="s")
