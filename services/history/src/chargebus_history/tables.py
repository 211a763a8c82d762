"""The current table definitions, for queries. `migrations.py` brings a database to this shape.

Times are integer epoch milliseconds (`ts_ms`): exact at the contract's resolution, comparable without timezone
rules on every backend, and indexable. A `BigInteger` key is an `INTEGER` on SQLite, the only type SQLite makes
an auto-incrementing rowid alias.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
)

metadata = MetaData()

_RowId = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at_ms", BigInteger, nullable=False),
)

evse_samples = Table(
    "evse_samples",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("evse_id", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("source_ts_ms", BigInteger),
    Column("vin", String(17)),
    Column("online", Boolean),
    Column("stale", Boolean),
    Column("plugged_in", Boolean),
    Column("charging", Boolean),
    Column("power_w", Double),
    Column("current_a", Double),
    Column("offered_a", Double),
    Column("voltage_v", Double),
    Column("phases", SmallInteger),
    Column("session_energy_wh", Double),
    Column("lifetime_energy_wh", Double),
    Column("raw", JSON, nullable=False),
    Index("ix_evse_samples_evse_ts", "evse_id", "ts_ms"),
    Index("ix_evse_samples_vin_ts", "vin", "ts_ms"),
    Index("ix_evse_samples_ts", "ts_ms"),
)

vehicle_samples = Table(
    "vehicle_samples",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("vin", String(17), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("source_ts_ms", BigInteger),
    Column("online_state", String(16)),
    Column("at_home", Boolean),
    Column("plugged_in", Boolean),
    Column("charging_state", String(16)),
    Column("soc_pct", Double),
    Column("charger_power_w", Double),
    Column("charger_actual_current_a", Double),
    Column("charger_voltage_v", Double),
    Column("charger_phases", SmallInteger),
    Column("charge_energy_added_wh", Double),
    Column("raw", JSON, nullable=False),
    Index("ix_vehicle_samples_vin_ts", "vin", "ts_ms"),
    Index("ix_vehicle_samples_ts", "ts_ms"),
)

meter_samples = Table(
    "meter_samples",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("meter", String(64), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("power_w", Double, nullable=False),
    Column("energy_wh", Double),
    Column("raw", JSON, nullable=False),
    Index("ix_meter_samples_meter_ts", "meter", "ts_ms"),
    Index("ix_meter_samples_ts", "ts_ms"),
)

SAMPLE_TABLES = (evse_samples, vehicle_samples, meter_samples)

# Running "all time" energy per EVSE / vehicle for Home Assistant's energy sensors (migration 2). Kept here, not
# recomputed from the samples, because retention prunes old samples while the total must never go down.
energy_totals = Table(
    "energy_totals",
    metadata,
    Column("subject", String(80), primary_key=True),  # "evse:<evse_id>" or "vehicle:<vin>"
    Column("total_wh", Double, nullable=False),  # settled energy up to settled_ms
    Column("settled_ms", BigInteger, nullable=False),
    Column("published_wh", Double),  # the last figure published (settled + provisional), never undercut
)
