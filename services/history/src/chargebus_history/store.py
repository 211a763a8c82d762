"""Sample storage on SQLite or PostgreSQL through SQLAlchemy Core: insert, read back by id and time, prune.

No decisions live here: which states become rows is `dedup.py`'s job, what rows mean is `reconstruct.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Table, delete, func, insert, or_, select, union, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql.elements import ColumnElement

from chargebus_history.database import SQLITE_BUSY_TIMEOUT_MS, create_engine
from chargebus_history.engine import AsyncEngine
from chargebus_history.merge import car_evse_id
from chargebus_history.migrations import current_version, migrate
from chargebus_history.records import EvseRecord, MeterRecord, Record, VehicleRecord
from chargebus_history.tables import energy_totals, evse_samples, meter_samples, vehicle_samples

SECONDS_PER_DAY = 86400.0
PRUNE_BATCH = 5000


def to_ms(ts: float) -> int:
    return round(ts * 1000)


def from_ms(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def retention_cutoff(now: float, retention_days: float) -> float:
    return now - retention_days * SECONDS_PER_DAY


def _evse_row(record: EvseRecord) -> dict[str, Any]:
    return {
        "evse_id": record.evse_id,
        "ts_ms": to_ms(record.ts),
        "source_ts_ms": None if record.source_ts is None else to_ms(record.source_ts),
        "vin": record.vin,
        "online": record.online,
        "stale": record.stale,
        "plugged_in": record.plugged_in,
        "charging": record.charging,
        "power_w": record.power_w,
        "current_a": record.current_a,
        "offered_a": record.offered_a,
        "voltage_v": record.voltage_v,
        "phases": record.phases,
        "session_energy_wh": record.session_energy_wh,
        "lifetime_energy_wh": record.lifetime_energy_wh,
        "raw": dict(record.raw),
    }


def _vehicle_row(record: VehicleRecord) -> dict[str, Any]:
    return {
        "vin": record.vin,
        "ts_ms": to_ms(record.ts),
        "source_ts_ms": None if record.source_ts is None else to_ms(record.source_ts),
        "online_state": record.online_state,
        "at_home": record.at_home,
        "plugged_in": record.plugged_in,
        "charging_state": record.charging_state,
        "soc_pct": record.soc_pct,
        "charger_power_w": record.charger_power_w,
        "charger_actual_current_a": record.charger_actual_current_a,
        "charger_voltage_v": record.charger_voltage_v,
        "charger_phases": record.charger_phases,
        "charge_energy_added_wh": record.charge_energy_added_wh,
        "raw": dict(record.raw),
    }


def _meter_row(record: MeterRecord) -> dict[str, Any]:
    return {
        "meter": record.meter,
        "ts_ms": to_ms(record.ts),
        "power_w": record.power_w,
        "energy_wh": record.energy_wh,
        "raw": record.raw,
    }


def _stored(row: RowMapping, skip: frozenset[str]) -> dict[str, Any]:
    return {str(key): value for key, value in row.items() if key not in skip}


_NOT_FIELDS = frozenset({"id", "ts_ms", "source_ts_ms"})


def _evse_record(values: RowMapping) -> EvseRecord:
    fields = _stored(values, _NOT_FIELDS)
    return EvseRecord(ts=values["ts_ms"] / 1000, source_ts=from_ms(values["source_ts_ms"]), **fields)


def _vehicle_record(values: RowMapping) -> VehicleRecord:
    fields = _stored(values, _NOT_FIELDS)
    return VehicleRecord(ts=values["ts_ms"] / 1000, source_ts=from_ms(values["source_ts_ms"]), **fields)


def _meter_record(values: RowMapping) -> MeterRecord:
    fields = _stored(values, _NOT_FIELDS)
    return MeterRecord(ts=values["ts_ms"] / 1000, **fields)


@dataclass(frozen=True, slots=True)
class StoredTotal:
    """A subject's running energy: `total_wh` settled up to `settled_until`; `published_wh` last shown."""

    subject: str
    total_wh: float
    settled_until: float
    published_wh: float | None = None


class HistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(
        cls, database: str, *, schema: str | None = None, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    ) -> Self:
        """Connect to the configured URL and bring its schema up to date."""
        engine = create_engine(database, schema=schema, busy_timeout_ms=busy_timeout_ms)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

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
        async with self.engine.begin() as connection:
            return await connection.run_sync(current_version)

    async def insert(self, records: Iterable[Record]) -> int:
        """Store records in one transaction: when this returns, they are committed."""
        rows: dict[str, list[dict[str, Any]]] = {"evse": [], "vehicle": [], "meter": []}
        for record in records:
            if isinstance(record, EvseRecord):
                rows["evse"].append(_evse_row(record))
            elif isinstance(record, VehicleRecord):
                rows["vehicle"].append(_vehicle_row(record))
            else:
                rows["meter"].append(_meter_row(record))
        by_table = {"evse": evse_samples, "vehicle": vehicle_samples, "meter": meter_samples}
        async with self.engine.begin() as connection:
            for kind, batch in rows.items():
                if batch:
                    await connection.execute(insert(by_table[kind]), batch)
        return sum(len(batch) for batch in rows.values())

    async def _range(self, table: Table, key: ColumnElement[bool], start: float, end: float) -> list[RowMapping]:
        """Rows in [start, end] plus the last row before and the first after: the state held at the edges."""
        ts = table.c.ts_ms
        inside = select(table).where(key, ts >= to_ms(start), ts <= to_ms(end)).order_by(ts, table.c.id)
        before = select(table).where(key, ts < to_ms(start)).order_by(ts.desc(), table.c.id.desc()).limit(1)
        after = select(table).where(key, ts > to_ms(end)).order_by(ts, table.c.id).limit(1)
        async with self.engine.connect() as connection:
            head = (await connection.execute(before)).mappings().all()
            body = (await connection.execute(inside)).mappings().all()
            tail = (await connection.execute(after)).mappings().all()
        return [*head, *body, *tail]

    async def evse_records(self, evse_id: str, start: float, end: float) -> list[EvseRecord]:
        rows = await self._range(evse_samples, evse_samples.c.evse_id == evse_id, start, end)
        return [_evse_record(row) for row in rows]

    async def vehicle_records(self, vin: str, start: float, end: float) -> list[VehicleRecord]:
        rows = await self._range(vehicle_samples, vehicle_samples.c.vin == vin, start, end)
        return [_vehicle_record(row) for row in rows]

    async def meter_records(self, meter: str, start: float, end: float) -> list[MeterRecord]:
        rows = await self._range(meter_samples, meter_samples.c.meter == meter, start, end)
        return [_meter_record(row) for row in rows]

    async def evse_ids_with_vin(self, vin: str, start: float, end: float) -> list[str]:
        """EVSEs that reported this VIN in [start, end]."""
        query = (
            select(evse_samples.c.evse_id)
            .where(
                evse_samples.c.vin == vin,
                evse_samples.c.ts_ms >= to_ms(start),
                evse_samples.c.ts_ms <= to_ms(end),
            )
            .distinct()
            .order_by(evse_samples.c.evse_id)
        )
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).scalars())

    async def latest_records(self) -> list[Record]:
        """The last row of every stream, to seed the change filter after a restart."""
        async with self.engine.connect() as connection:

            async def last_rows(table: Table, key: ColumnElement[Any]) -> Sequence[RowMapping]:
                last_ids = select(func.max(table.c.id)).group_by(key)
                return (await connection.execute(select(table).where(table.c.id.in_(last_ids)))).mappings().all()

            evse = [_evse_record(row) for row in await last_rows(evse_samples, evse_samples.c.evse_id)]
            vehicle = [_vehicle_record(row) for row in await last_rows(vehicle_samples, vehicle_samples.c.vin)]
            meter = [_meter_record(row) for row in await last_rows(meter_samples, meter_samples.c.meter)]
        return [*evse, *vehicle, *meter]

    async def _exists(self, query: Any) -> bool:
        async with self.engine.connect() as connection:
            return (await connection.execute(query.limit(1))).first() is not None

    async def has_evse(self, evse_id: str) -> bool:
        """Whether any row of this EVSE is stored."""
        return await self._exists(select(evse_samples.c.id).where(evse_samples.c.evse_id == evse_id))

    async def has_vehicle(self, vin: str) -> bool:
        """Whether this VIN appears anywhere: its own states, its car EVSE, or a wall connector's report."""
        if await self._exists(select(vehicle_samples.c.id).where(vehicle_samples.c.vin == vin)):
            return True
        seen = or_(evse_samples.c.vin == vin, evse_samples.c.evse_id == car_evse_id(vin))
        return await self._exists(select(evse_samples.c.id).where(seen))

    async def first_vehicle_ts(self, vin: str) -> float | None:
        """The earliest stored row that can contribute to this vehicle's series."""
        seen = or_(evse_samples.c.vin == vin, evse_samples.c.evse_id == car_evse_id(vin))
        firsts = (
            select(func.min(vehicle_samples.c.ts_ms)).where(vehicle_samples.c.vin == vin).scalar_subquery(),
            select(func.min(evse_samples.c.ts_ms)).where(seen).scalar_subquery(),
        )
        async with self.engine.connect() as connection:
            found = [(await connection.execute(select(first))).scalar_one_or_none() for first in firsts]
        known = [int(ms) for ms in found if ms is not None]
        return min(known) / 1000 if known else None

    async def first_evse_ts(self, evse_id: str) -> float | None:
        query = select(func.min(evse_samples.c.ts_ms)).where(evse_samples.c.evse_id == evse_id)
        async with self.engine.connect() as connection:
            found = (await connection.execute(query)).scalar_one_or_none()
        return None if found is None else int(found) / 1000

    async def subjects(self) -> tuple[list[str], list[str]]:
        """Every stored evse_id and every VIN (from vehicle states or reported by an EVSE), sorted."""
        vins = union(
            select(vehicle_samples.c.vin.label("vin")).distinct(),
            select(evse_samples.c.vin.label("vin")).where(evse_samples.c.vin.is_not(None)).distinct(),
        )
        async with self.engine.connect() as connection:
            evse_ids = (await connection.execute(select(evse_samples.c.evse_id).distinct())).scalars().all()
            found_vins = (await connection.execute(vins)).scalars().all()
        return sorted(evse_ids), sorted(set(found_vins))

    async def load_totals(self) -> dict[str, StoredTotal]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(energy_totals))).mappings().all()
        return {
            row["subject"]: StoredTotal(row["subject"], row["total_wh"], row["settled_ms"] / 1000, row["published_wh"])
            for row in rows
        }

    async def save_totals(self, totals: Iterable[StoredTotal]) -> None:
        """Insert or update each subject's total, all in one transaction."""
        async with self.engine.begin() as connection:
            for total in totals:
                values = {
                    "total_wh": total.total_wh,
                    "settled_ms": to_ms(total.settled_until),
                    "published_wh": total.published_wh,
                }
                changed = await connection.execute(
                    update(energy_totals).where(energy_totals.c.subject == total.subject).values(**values)
                )
                if changed.rowcount == 0:
                    await connection.execute(insert(energy_totals).values(subject=total.subject, **values))

    async def prune(self, before: float, batch_size: int = PRUNE_BATCH) -> int:
        """Delete rows older than `before`, in small transactions so the recorder is never held up for long."""
        removed = 0
        for table in (evse_samples, vehicle_samples, meter_samples):
            while True:
                old = select(table.c.id).where(table.c.ts_ms < to_ms(before)).limit(batch_size)
                async with self.engine.begin() as connection:
                    result = await connection.execute(delete(table).where(table.c.id.in_(old)))
                removed += result.rowcount
                if result.rowcount < batch_size:
                    break
        return removed


async def count_rows(store: HistoryStore, tables: Sequence[Table]) -> dict[str, int]:
    """Rows per table (for tests and a future status line)."""
    counts: dict[str, int] = {}
    async with store.engine.connect() as connection:
        for table in tables:
            counts[table.name] = int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
    return counts
