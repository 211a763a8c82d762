"""The part of SQLAlchemy's asyncio engine that history uses, on SQLAlchemy's own greenlet bridge.

`sqlalchemy.ext.asyncio` imports SQLAlchemy's ORM as well, about 7 MB resident (bench/footprint.py), and history uses
none of it: only connections, transactions, `execute` and `run_sync`. The drivers stay SQLAlchemy's async ones
(aiosqlite, asyncpg), driven the way its AsyncEngine drives them: every call that may wait for the database runs in
`greenlet_spawn`, and closing a connection or rolling back finishes even when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy
from sqlalchemy.engine import URL, Connection, CursorResult, Engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.concurrency import greenlet_spawn

P = ParamSpec("P")
T = TypeVar("T")


async def _to_completion(work: Awaitable[None]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile (then re-raise the cancellation)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class AsyncConnection:
    """One connection: `await execute(...)` returns a buffered result (the async drivers fetch every row)."""

    def __init__(self, sync_connection: Connection) -> None:
        self.sync_connection = sync_connection

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        result: CursorResult[Any] = await greenlet_spawn(
            self.sync_connection.execute, statement, parameters, _require_await=True
        )
        return result

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        """A statement in the database's own SQL, passed to the driver as it is (PRAGMAs, for instance)."""
        result: CursorResult[Any] = await greenlet_spawn(
            self.sync_connection.exec_driver_sql, statement, parameters, _require_await=True
        )
        return result

    async def run_sync(self, function: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(sync_connection, *args)`, where it may use the synchronous API (migrations, metadata)."""
        return await greenlet_spawn(function, self.sync_connection, *args, _require_await=False, **kwargs)


class AsyncEngine:
    """`connect()` and `begin()` (a transaction, committed at the end of the block, rolled back on an exception)."""

    def __init__(self, sync_engine: Engine) -> None:
        self.sync_engine = sync_engine

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        connection = await greenlet_spawn(self.sync_engine.connect)
        try:
            yield AsyncConnection(connection)
        finally:
            await _to_completion(greenlet_spawn(connection.close))

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.connect() as connection:
            transaction = await greenlet_spawn(connection.sync_connection.begin)
            try:
                yield connection
            except BaseException:
                await _to_completion(greenlet_spawn(transaction.rollback))
                raise
            await greenlet_spawn(transaction.commit)

    async def dispose(self) -> None:
        await greenlet_spawn(self.sync_engine.dispose)


def create_async_engine(url: URL, **options: Any) -> AsyncEngine:
    """An engine for an async driver's URL (`sqlite+aiosqlite://…`, `postgresql+asyncpg://…`), as SQLAlchemy's
    `create_async_engine` makes it."""
    return AsyncEngine(sqlalchemy.create_engine(url, _is_async=True, **options))
