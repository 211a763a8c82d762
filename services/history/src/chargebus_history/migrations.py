"""Versioned schema migrations: an ordered list, each applied once; all pending ones in one transaction.

`schema_version` holds one row per applied migration. A database newer than this code is refused rather than
written to with a schema we do not know.

Migration 1 creates the tables from `tables.py`. When a table changes, add a migration that alters it and make
migration 1 create a frozen copy of the version-1 tables; `test_history_migrations.py` pins the version-1 columns
so that change cannot be forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chargebus_history import tables
from chargebus_history.database import Connection, Database


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], Awaitable[None]]


async def create_tables(connection: Connection, created: tuple[tables.Table, ...]) -> None:
    """Create each table (and its indexes) that does not exist yet."""
    for table in created:
        for statement in table.create(connection.dialect):
            await connection.execute(statement)


async def _create_sample_tables(connection: Connection) -> None:
    await create_tables(connection, tables.SAMPLE_TABLES)


async def _create_energy_totals(connection: Connection) -> None:
    await create_tables(connection, (tables.energy_totals,))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "evse, vehicle and meter sample tables", _create_sample_tables),
    Migration(2, "energy totals for Home Assistant", _create_energy_totals),
)
LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNewError(RuntimeError):
    pass


async def current_version(connection: Connection) -> int:
    await create_tables(connection, (tables.schema_version,))
    found = await connection.fetchval("SELECT max(version) FROM schema_version")
    return int(found or 0)


async def migrate(database: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply every pending migration atomically; returns the resulting version."""
    async with database.begin() as connection:
        version = await current_version(connection)
        latest = migrations[-1].version
        if version > latest:
            raise SchemaTooNewError(f"database schema version {version} is newer than this program's {latest}")
        for migration in migrations:
            if migration.version <= version:
                continue
            await migration.apply(connection)
            await connection.execute(
                "INSERT INTO schema_version (version, description, applied_at_ms) VALUES ($1, $2, $3)",
                migration.version,
                migration.description,
                round(time.time() * 1000),  # bookkeeping only; no decision reads it
            )
            version = migration.version
        return version
