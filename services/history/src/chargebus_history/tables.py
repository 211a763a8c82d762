"""The current table definitions, for queries. `migrations.py` brings a database to this shape.

The sample tables' own columns are the records' field lists (`records.EVSE_FIELDS`, …), between the stream's id
and time columns and the raw payload. The DDL is what SQLAlchemy Core created for these tables before history
wrote its SQL itself, so databases created by either are the same.

Times are integer epoch milliseconds (`ts_ms`): exact at the contract's resolution, comparable without timezone
rules on every backend, and indexable. The row id is an `INTEGER PRIMARY KEY` on SQLite, the only type SQLite
makes an auto-incrementing rowid alias, and a `BIGSERIAL` on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebus_history.database import Dialect
from chargebus_history.records import EVSE_FIELDS, METER_FIELDS, VEHICLE_FIELDS, Field

#: Portable column types -> each database's own spelling (where it differs).
_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"ROWID": "INTEGER"},
    "postgresql": {"ROWID": "BIGSERIAL", "DOUBLE": "DOUBLE PRECISION"},
}
_FIELD_TYPES = {"flag": "BOOLEAN", "number": "DOUBLE", "integer": "SMALLINT"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # ROWID, VARCHAR(n), INTEGER, SMALLINT, BIGINT, BOOLEAN, DOUBLE, JSON
    nullable: bool = True
    primary_key: bool = False

    def ddl(self, dialect: Dialect) -> str:
        spelled = _TYPES[dialect].get(self.type, self.type)
        return f"{self.name} {spelled}" + ("" if self.nullable and not self.primary_key else " NOT NULL")


def field_column(field: Field) -> Column:
    kind = f"VARCHAR({field.length})" if field.kind == "text" else _FIELD_TYPES[field.kind]
    return Column(field.name, kind, nullable=field.nullable)


Indexes = tuple[tuple[str, tuple[str, ...]], ...]  # (name, columns)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    indexes: Indexes = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def create(self, dialect: Dialect) -> list[str]:
        """The statements that create this table and its indexes where they do not exist yet."""
        keys = [column.name for column in self.columns if column.primary_key]
        lines = [column.ddl(dialect) for column in self.columns] + [f"PRIMARY KEY ({', '.join(keys)})"]
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} (\n\t" + ", \n\t".join(lines) + "\n)"]
        statements += [
            f"CREATE INDEX IF NOT EXISTS {index} ON {self.name} ({', '.join(columns)})"
            for index, columns in self.indexes
        ]
        return statements


@dataclass(frozen=True, slots=True)
class SampleTable:
    """A table of one record kind: `id`, the stream's `key`, `ts_ms`, `source_ts_ms` when `timed`, the fields,
    `raw`."""

    table: Table
    key: str
    fields: tuple[Field, ...]
    timed: bool


def _sample_table(name: str, key: Column, fields: tuple[Field, ...], *, timed: bool, indexes: Indexes) -> SampleTable:
    columns = (
        Column("id", "ROWID", primary_key=True),
        key,
        Column("ts_ms", "BIGINT", nullable=False),
        *([Column("source_ts_ms", "BIGINT")] if timed else []),
        *(field_column(field) for field in fields),
        Column("raw", "JSON", nullable=False),
    )
    return SampleTable(Table(name, columns, indexes), key.name, fields, timed)


schema_version = Table(
    "schema_version",
    (
        Column("version", "INTEGER", primary_key=True),
        Column("description", "VARCHAR(200)", nullable=False),
        Column("applied_at_ms", "BIGINT", nullable=False),
    ),
)

EVSE = _sample_table(
    "evse_samples",
    Column("evse_id", "VARCHAR(64)", nullable=False),
    EVSE_FIELDS,
    timed=True,
    indexes=(
        ("ix_evse_samples_evse_ts", ("evse_id", "ts_ms")),
        ("ix_evse_samples_vin_ts", ("vin", "ts_ms")),
        ("ix_evse_samples_ts", ("ts_ms",)),
    ),
)
VEHICLE = _sample_table(
    "vehicle_samples",
    Column("vin", "VARCHAR(17)", nullable=False),
    VEHICLE_FIELDS,
    timed=True,
    indexes=(("ix_vehicle_samples_vin_ts", ("vin", "ts_ms")), ("ix_vehicle_samples_ts", ("ts_ms",))),
)
METER = _sample_table(
    "meter_samples",
    Column("meter", "VARCHAR(64)", nullable=False),
    METER_FIELDS,
    timed=False,
    indexes=(("ix_meter_samples_meter_ts", ("meter", "ts_ms")), ("ix_meter_samples_ts", ("ts_ms",))),
)
evse_samples, vehicle_samples, meter_samples = EVSE.table, VEHICLE.table, METER.table

SAMPLE_TABLES = (evse_samples, vehicle_samples, meter_samples)

# Running "all time" energy per EVSE / vehicle for Home Assistant's energy sensors (migration 2). Kept here, not
# recomputed from the samples, because retention prunes old samples while the total must never go down.
energy_totals = Table(
    "energy_totals",
    (
        Column("subject", "VARCHAR(80)", primary_key=True),  # "evse:<evse_id>" or "vehicle:<vin>"
        Column("total_wh", "DOUBLE", nullable=False),  # settled energy up to settled_ms
        Column("settled_ms", "BIGINT", nullable=False),
        Column("published_wh", "DOUBLE"),  # the last figure published (settled + provisional), never undercut
    ),
)
