"""Versioned schema migrations: an ordered list, each applied once; all pending ones in one transaction.

`schema_version` holds one row per applied migration. A database newer than this code is refused rather than
written to with a schema we do not know.

Migration 1 creates the tables from `tables.py`. When a table changes, add a migration that alters it and make
migration 1 create a frozen copy of the version-1 tables; `test_history_migrations.py` pins the version-1 columns
so that change cannot be forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from chargebus_history import tables
from chargebus_history.engine import AsyncEngine


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_sample_tables(connection: Connection) -> None:
    tables.metadata.create_all(connection, tables=list(tables.SAMPLE_TABLES))


def _create_energy_totals(connection: Connection) -> None:
    tables.metadata.create_all(connection, tables=[tables.energy_totals])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "evse, vehicle and meter sample tables", _create_sample_tables),
    Migration(2, "energy totals for Home Assistant", _create_energy_totals),
)
LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNewError(RuntimeError):
    pass


def current_version(connection: Connection) -> int:
    tables.metadata.create_all(connection, tables=[tables.schema_version])
    found = connection.execute(select(func.max(tables.schema_version.c.version))).scalar_one_or_none()
    return int(found or 0)


def _migrate(connection: Connection, migrations: tuple[Migration, ...]) -> int:
    version = current_version(connection)
    latest = migrations[-1].version
    if version > latest:
        raise SchemaTooNewError(f"database schema version {version} is newer than this program's {latest}")
    for migration in migrations:
        if migration.version <= version:
            continue
        migration.apply(connection)
        connection.execute(
            insert(tables.schema_version).values(
                version=migration.version,
                description=migration.description,
                applied_at_ms=round(time.time() * 1000),  # bookkeeping only; no decision reads it
            )
        )
        version = migration.version
    return version


async def migrate(engine: AsyncEngine, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply every pending migration atomically; returns the resulting version."""
    async with engine.begin() as connection:
        return await connection.run_sync(_migrate, migrations)
