"""Sample storage on SQLite or PostgreSQL in plain SQL (`database.py`): insert, read back by id and time, prune.

No decisions live here: which states become rows is `dedup.py`'s job, what rows mean is `reconstruct.py`'s. Rows
are made from and read back into records by the tables' field lists (`tables.py`, `records.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from chargebus.schema import car_evse_id

from chargebus_history.database import SQLITE_BUSY_TIMEOUT_MS, Connection, Database
from chargebus_history.migrations import current_version, migrate
from chargebus_history.records import EvseRecord, MeterRecord, Record, VehicleRecord
from chargebus_history.tables import EVSE, METER, VEHICLE, SampleTable, Table, energy_totals

SECONDS_PER_DAY = 86400.0
PRUNE_BATCH = 5000


def to_ms(ts: float) -> int:
    return round(ts * 1000)


def from_ms(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def retention_cutoff(now: float, retention_days: float) -> float:
    return now - retention_days * SECONDS_PER_DAY


def _row(sample: SampleTable, record: Record) -> tuple[Any, ...]:
    """The record as the values of its table's columns after `id`, in column order."""
    values: list[Any] = [getattr(record, sample.key), to_ms(record.ts)]
    if sample.timed:
        source_ts = getattr(record, "source_ts", None)
        values.append(None if source_ts is None else to_ms(source_ts))
    values += [getattr(record, field.name) for field in sample.fields]
    raw = record.raw if isinstance(record, MeterRecord) else dict(record.raw)
    values.append(json.dumps(raw))
    return tuple(values)


def _raw(value: Any) -> Any:
    # SQLite gives a JSON column NUMERIC affinity: a raw payload that is a bare number comes back as that number.
    return value if isinstance(value, int | float) else json.loads(value)


def _fields(sample: SampleTable, row: Sequence[Any]) -> dict[str, Any]:
    """A row (all columns, in order) as the record's constructor arguments."""
    values = dict(zip(sample.table.column_names, row, strict=True))
    fields: dict[str, Any] = {sample.key: values[sample.key], "ts": values["ts_ms"] / 1000, "raw": _raw(values["raw"])}
    if sample.timed:
        fields["source_ts"] = from_ms(values["source_ts_ms"])
    for field in sample.fields:
        value = values[field.name]
        # SQLite has no boolean type: a flag comes back as 0 or 1
        fields[field.name] = bool(value) if field.kind == "flag" and value is not None else value
    return fields


def _evse_record(row: Sequence[Any]) -> EvseRecord:
    return EvseRecord(**_fields(EVSE, row))


def _vehicle_record(row: Sequence[Any]) -> VehicleRecord:
    return VehicleRecord(**_fields(VEHICLE, row))


def _meter_record(row: Sequence[Any]) -> MeterRecord:
    return MeterRecord(**_fields(METER, row))


def _insert_sql(table: Table) -> str:
    names = table.column_names[1:]  # the id is the database's
    places = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({places})"


def _select(table: Table) -> str:
    return f"SELECT {', '.join(table.column_names)} FROM {table.name}"


@dataclass(frozen=True, slots=True)
class StoredTotal:
    """A subject's running energy: `total_wh` settled up to `settled_until`; `published_wh` last shown."""

    subject: str
    total_wh: float
    settled_until: float
    published_wh: float | None = None


class HistoryStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @classmethod
    async def open(
        cls, database: str, *, schema: str | None = None, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    ) -> Self:
        """Connect to the configured URL and bring its schema up to date."""
        opened = Database(database, schema=schema, busy_timeout_ms=busy_timeout_ms)
        try:
            await migrate(opened)
        except BaseException:
            await opened.dispose()
            raise
        return cls(opened)

    async def close(self) -> None:
        await self.database.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self.database.begin() as connection:
            return await current_version(connection)

    async def insert(self, records: Iterable[Record]) -> int:
        """Store records in one transaction: when this returns, they are committed."""
        rows: dict[SampleTable, list[tuple[Any, ...]]] = {EVSE: [], VEHICLE: [], METER: []}
        for record in records:
            sample = EVSE if isinstance(record, EvseRecord) else VEHICLE if isinstance(record, VehicleRecord) else METER
            rows[sample].append(_row(sample, record))
        async with self.database.begin() as connection:
            for sample, batch in rows.items():
                if batch:
                    await connection.executemany(_insert_sql(sample.table), batch)
        return sum(len(batch) for batch in rows.values())

    async def _range(self, sample: SampleTable, key: str, start: float, end: float) -> list[tuple[Any, ...]]:
        """Rows in [start, end] plus the last row before and the first after: the state held at the edges."""
        select, where = _select(sample.table), f"WHERE {sample.key} = $1 AND"
        async with self.database.connect() as connection:
            head = await connection.fetch(
                f"{select} {where} ts_ms < $2 ORDER BY ts_ms DESC, id DESC LIMIT 1", key, to_ms(start)
            )
            body = await connection.fetch(
                f"{select} {where} ts_ms >= $2 AND ts_ms <= $3 ORDER BY ts_ms, id", key, to_ms(start), to_ms(end)
            )
            tail = await connection.fetch(f"{select} {where} ts_ms > $2 ORDER BY ts_ms, id LIMIT 1", key, to_ms(end))
        return [*head, *body, *tail]

    async def evse_records(self, evse_id: str, start: float, end: float) -> list[EvseRecord]:
        return [_evse_record(row) for row in await self._range(EVSE, evse_id, start, end)]

    async def vehicle_records(self, vin: str, start: float, end: float) -> list[VehicleRecord]:
        return [_vehicle_record(row) for row in await self._range(VEHICLE, vin, start, end)]

    async def meter_records(self, meter: str, start: float, end: float) -> list[MeterRecord]:
        return [_meter_record(row) for row in await self._range(METER, meter, start, end)]

    async def evse_ids_with_vin(self, vin: str, start: float, end: float) -> list[str]:
        """EVSEs that reported this VIN in [start, end]."""
        query = (
            "SELECT DISTINCT evse_id FROM evse_samples WHERE vin = $1 AND ts_ms >= $2 AND ts_ms <= $3 ORDER BY evse_id"
        )
        async with self.database.connect() as connection:
            return [row[0] for row in await connection.fetch(query, vin, to_ms(start), to_ms(end))]

    async def latest_records(self) -> list[Record]:
        """The last row of every stream, to seed the change filter after a restart."""

        async def last_rows(connection: Connection, sample: SampleTable) -> list[tuple[Any, ...]]:
            name = sample.table.name
            last_ids = f"SELECT max(id) FROM {name} GROUP BY {sample.key}"
            return await connection.fetch(f"{_select(sample.table)} WHERE id IN ({last_ids})")

        async with self.database.connect() as connection:
            evse = [_evse_record(row) for row in await last_rows(connection, EVSE)]
            vehicle = [_vehicle_record(row) for row in await last_rows(connection, VEHICLE)]
            meter = [_meter_record(row) for row in await last_rows(connection, METER)]
        return [*evse, *vehicle, *meter]

    async def _exists(self, query: str, *args: Any) -> bool:
        async with self.database.connect() as connection:
            return bool(await connection.fetch(f"{query} LIMIT 1", *args))

    async def has_evse(self, evse_id: str) -> bool:
        """Whether any row of this EVSE is stored."""
        return await self._exists("SELECT id FROM evse_samples WHERE evse_id = $1", evse_id)

    async def has_vehicle(self, vin: str) -> bool:
        """Whether this VIN appears anywhere: its own states, its car EVSE, or a wall connector's report."""
        if await self._exists("SELECT id FROM vehicle_samples WHERE vin = $1", vin):
            return True
        return await self._exists("SELECT id FROM evse_samples WHERE vin = $1 OR evse_id = $2", vin, car_evse_id(vin))

    async def first_vehicle_ts(self, vin: str) -> float | None:
        """The earliest stored row that can contribute to this vehicle's series."""
        async with self.database.connect() as connection:
            found = [
                await connection.fetchval("SELECT min(ts_ms) FROM vehicle_samples WHERE vin = $1", vin),
                await connection.fetchval(
                    "SELECT min(ts_ms) FROM evse_samples WHERE vin = $1 OR evse_id = $2", vin, car_evse_id(vin)
                ),
            ]
        known = [int(ms) for ms in found if ms is not None]
        return min(known) / 1000 if known else None

    async def first_evse_ts(self, evse_id: str) -> float | None:
        async with self.database.connect() as connection:
            found = await connection.fetchval("SELECT min(ts_ms) FROM evse_samples WHERE evse_id = $1", evse_id)
        return None if found is None else int(found) / 1000

    async def subjects(self) -> tuple[list[str], list[str]]:
        """Every stored evse_id and every VIN (from vehicle states or reported by an EVSE), sorted."""
        vins = (
            "SELECT DISTINCT vin FROM vehicle_samples UNION SELECT DISTINCT vin FROM evse_samples WHERE vin IS NOT NULL"
        )
        async with self.database.connect() as connection:
            evse_ids = [row[0] for row in await connection.fetch("SELECT DISTINCT evse_id FROM evse_samples")]
            found_vins = [row[0] for row in await connection.fetch(vins)]
        return sorted(evse_ids), sorted(set(found_vins))

    async def load_totals(self) -> dict[str, StoredTotal]:
        async with self.database.connect() as connection:
            rows = await connection.fetch(_select(energy_totals))
        return {
            subject: StoredTotal(subject, total_wh, settled_ms / 1000, published_wh)
            for subject, total_wh, settled_ms, published_wh in rows
        }

    async def save_totals(self, totals: Iterable[StoredTotal]) -> None:
        """Insert or update each subject's total, all in one transaction."""
        async with self.database.begin() as connection:
            for total in totals:
                values = (total.subject, total.total_wh, to_ms(total.settled_until), total.published_wh)
                changed = await connection.execute(
                    "UPDATE energy_totals SET total_wh = $2, settled_ms = $3, published_wh = $4 WHERE subject = $1",
                    *values,
                )
                if changed == 0:
                    await connection.execute(
                        "INSERT INTO energy_totals (subject, total_wh, settled_ms, published_wh) "
                        "VALUES ($1, $2, $3, $4)",
                        *values,
                    )

    async def prune(self, before: float, batch_size: int = PRUNE_BATCH) -> int:
        """Delete rows older than `before`, in small transactions so the recorder is never held up for long."""
        removed = 0
        for sample in (EVSE, VEHICLE, METER):
            name = sample.table.name
            old = f"SELECT id FROM {name} WHERE ts_ms < $1 LIMIT $2"
            while True:
                async with self.database.begin() as connection:
                    count = await connection.execute(
                        f"DELETE FROM {name} WHERE id IN ({old})", to_ms(before), batch_size
                    )
                removed += count
                if count < batch_size:
                    break
        return removed


async def count_rows(store: HistoryStore, tables: Sequence[Table]) -> dict[str, int]:
    """Rows per table (for tests and a future status line)."""
    counts: dict[str, int] = {}
    async with store.database.connect() as connection:
        for table in tables:
            counts[table.name] = int(await connection.fetchval(f"SELECT count(*) FROM {table.name}"))
    return counts
