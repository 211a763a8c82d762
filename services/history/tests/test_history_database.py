"""The database layer history runs on (plain SQL on the configured DB-API driver): commit, rollback,
cancellation, a dropped PostgreSQL connection, and that nothing else is loaded into the process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import pytest
from chargebus_history.database import Database


class Backend(Protocol):
    """The `backend` fixture of this folder's conftest (test modules cannot import conftest by name)."""

    @property
    def url(self) -> str: ...
    @property
    def schema(self) -> str | None: ...


async def count(database: Database) -> int:
    async with database.connect() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM numbers"))


async def test_a_transaction_commits_at_the_end_and_rolls_back_on_an_exception(backend: Backend) -> None:
    database = Database(backend.url, schema=backend.schema)
    try:
        async with database.begin() as connection:
            await connection.execute("CREATE TABLE numbers (n INTEGER PRIMARY KEY)")
            await connection.executemany("INSERT INTO numbers (n) VALUES ($1)", [(1,), (2,)])

        async def insert_then_fail() -> None:
            async with database.begin() as connection:
                await connection.execute("INSERT INTO numbers (n) VALUES ($1)", 3)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await insert_then_fail()
        async with database.begin() as connection:
            assert await connection.execute("UPDATE numbers SET n = n + $1 WHERE n >= $2", 10, 2) == 1
    finally:
        await database.dispose()
    other = Database(backend.url, schema=backend.schema)  # another connection: only what was committed
    try:
        assert await count(other) == 2
    finally:
        await other.dispose()


async def test_a_cancelled_transaction_is_rolled_back_and_its_connection_closed(backend: Backend) -> None:
    database = Database(backend.url, schema=backend.schema)
    inside = asyncio.Event()

    async def write_then_wait() -> None:
        async with database.begin() as connection:
            await connection.execute("INSERT INTO numbers (n) VALUES ($1)", 7)
            inside.set()
            await asyncio.Event().wait()

    try:
        async with database.begin() as connection:
            await connection.execute("CREATE TABLE numbers (n INTEGER PRIMARY KEY)")
        task = asyncio.create_task(write_then_wait())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert database.checked_out == 0
        assert database.idle == []  # the cancelled one (CREATE TABLE's, reused) was closed, not kept
        assert await count(database) == 0
    finally:
        await database.dispose()


async def test_a_postgresql_connection_dropped_by_the_server_is_replaced(backend: Backend) -> None:
    if backend.schema is None:
        pytest.skip("PostgreSQL only: the server ends the pooled connection")
    database = Database(backend.url, schema=backend.schema)
    try:
        async with database.connect() as connection:
            pid = await connection.fetchval("SELECT pg_backend_pid()")
        killer = Database(backend.url)
        try:
            async with killer.connect() as connection:
                assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.dispose()
        async with database.connect() as connection:  # the dead one is noticed at checkout, not used
            assert await connection.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await database.dispose()


def test_history_loads_no_query_builder_and_only_the_configured_driver(tmp_path: Path) -> None:
    """SQLAlchemy was about 12 MB resident (bench/footprint.py); asyncpg is about 3 MB and only PostgreSQL needs it."""
    code = f"""
import asyncio, sys
from chargebus_history import service  # noqa: F401 - the whole service
from chargebus_history.records import MeterRecord
from chargebus_history.store import HistoryStore

async def main():
    async with await HistoryStore.open("sqlite:///{tmp_path / "h.sqlite"}") as store:
        await store.insert([MeterRecord(ts=1.0, meter="grid", power_w=1.0, raw=1.0)])
        assert len(await store.meter_records("grid", 0.0, 2.0)) == 1

asyncio.run(main())
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"sqlalchemy", "greenlet", "asyncpg", "aiosqlite"}})
print(loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['aiosqlite']"
