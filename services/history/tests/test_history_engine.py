"""The small async engine history runs on (SQLAlchemy's greenlet bridge without its ORM-importing asyncio package):
commit, rollback, cancellation, and that the ORM stays out of the process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from chargebus_history.database import create_engine
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select
from sqlalchemy.pool import QueuePool

metadata = MetaData()
numbers = Table("numbers", metadata, Column("n", Integer, primary_key=True))


async def count(engine_url: str) -> int:
    engine = create_engine(engine_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(numbers))).scalar_one())
    finally:
        await engine.dispose()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.sqlite'}"


async def test_a_transaction_commits_at_the_end_and_rolls_back_on_an_exception(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.execute(insert(numbers), [{"n": 1}, {"n": 2}])

        async def insert_then_fail() -> None:
            async with engine.begin() as connection:
                await connection.execute(insert(numbers), [{"n": 3}])
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await insert_then_fail()
    finally:
        await engine.dispose()
    assert await count(url) == 2  # another engine, another connection: only what was committed


async def test_a_cancelled_transaction_is_rolled_back_and_its_connection_closed(url: str) -> None:
    engine = create_engine(url)
    inside = asyncio.Event()

    async def write_then_wait() -> None:
        async with engine.begin() as connection:
            await connection.execute(insert(numbers), [{"n": 7}])
            inside.set()
            await asyncio.Event().wait()

    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        task = asyncio.create_task(write_then_wait())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
    finally:
        await engine.dispose()
    assert await count(url) == 0


def test_history_never_loads_the_orm(tmp_path: Path) -> None:
    """Its asyncio extension would bring SQLAlchemy's ORM in, about 7 MB that history has no use for."""
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
loaded = sorted(m for m in sys.modules if m.startswith(("sqlalchemy.orm", "sqlalchemy.ext")))
print(loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
