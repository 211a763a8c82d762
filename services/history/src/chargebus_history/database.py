"""The `[history] database` URL -> connections on the DB-API driver it names, with SQLite set up for a recorder.

Only the driver the URL names is imported (aiosqlite for `sqlite://`, asyncpg for `postgresql://`), and no query
builder: the store's SQL is plain text with `$1, $2 …` parameters (asyncpg's style; SQLite reads them as its
numbered `?1, ?2 …`), written for what both databases understand.

SQLite settings and why:
* WAL: readers (queries) never block the writer (the recorder) and the other way round.
* synchronous=NORMAL: in WAL mode a commit is in the WAL file, i.e. with the OS, before `commit()` returns, so a
  committed sample survives kill -9 of the service. Only an OS crash or power cut can lose the last commits
  (never corrupt the file); FULL would also cover that at the price of an fsync per commit, which on an SD card
  means wear and latency at the TWC's one-second cadence.
* busy_timeout: a second process (a backup, the sqlite3 shell) holding a lock briefly makes us wait, not fail.
* autocommit at the driver, BEGIN sent by us: Python's sqlite3 does not open a transaction before DDL by itself,
  so without this a migration would not be atomic.

Every block of work runs in a transaction (`begin()` commits it, `connect()` rolls it back: for reads that see one
snapshot). Connections are kept in a small pool; one whose block failed is rolled back and kept only if the
rollback worked, and rolling back or closing finishes even when the caller is cancelled. A PostgreSQL connection
taken from the pool is pinged first, so one the server dropped meanwhile (a restart) is replaced, not failed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SQLITE_BUSY_TIMEOUT_MS = 5000
POOL_SIZE = 5  # idle connections kept per database
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}
_PARAMETER = re.compile(r"\$(\d+)")

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A checked database URL: which database, where (the SQLite file, or asyncpg's DSN), and how to show it."""

    dialect: Dialect
    target: str
    shown: str  # fit for logs and topics: never with the password


def _without_password(database: str) -> tuple[str, str | None]:
    parts = urlsplit(database)
    if parts.password is None:
        return database, None
    netloc = parts.netloc
    users, _, host = netloc.rpartition("@")
    user = users.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}")), unquote(parts.password)


def parse_url(database: str) -> DatabaseUrl:
    """`sqlite:////abs/path.sqlite` or `postgresql://…` (as in the config); ValueError (without the password)
    for anything else."""
    try:
        parts = urlsplit(database)
        shown, _ = _without_password(database)
        _ = parts.port  # a port that is not a number is refused here
    except ValueError as error:
        raise ValueError(f"database={shown_url(database)!r}: not a database URL") from error
    scheme = parts.scheme.lower()
    if not scheme or "://" not in database:
        raise ValueError(f"database={shown!r}: not a database URL")
    if scheme in _SQLITE_SCHEMES:
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if parts.netloc or not path.startswith("/"):
            raise ValueError(f"database={shown!r}: SQLite needs an absolute path (sqlite:////abs/path.sqlite)")
        return DatabaseUrl("sqlite", path, shown)
    if scheme in _POSTGRES_SCHEMES:
        query = [("sslmode" if key == "ssl" else key, value) for key, value in parse_qsl(parts.query)]
        dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
        return DatabaseUrl("postgresql", dsn, shown)
    raise ValueError(f"database={shown!r}: only sqlite:// and postgresql:// URLs are supported")


def shown_url(database: str) -> str:
    """The URL as it may appear in logs: never with its password."""
    try:
        return _without_password(database)[0]
    except ValueError:
        return "<invalid database URL>"


def describe_error(error: BaseException, database: str) -> str:
    """One line about a database failure, fit for logs and ErrorEvents: the driver's own message, never the URL's
    password."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")[:200]
    try:
        password = _without_password(database)[1]
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def rows_refused(error: BaseException) -> bool:
    """Whether the database refused the rows themselves (a value it cannot store, a constraint), not its state:
    retrying the same rows would fail again."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(error, sqlite3.IntegrityError | sqlite3.DataError):
        return True
    asyncpg = sys.modules.get("asyncpg")
    return asyncpg is not None and isinstance(error, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)


class Connection:
    """One driver connection with the calls the store makes. SQL is written with `$1, $2 …` parameters."""

    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row (None when there is none)."""
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def alive(self) -> bool:
        return True

    async def close(self) -> None:
        raise NotImplementedError


class SqliteConnection(Connection):
    dialect: Dialect = "sqlite"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @staticmethod
    def _sql(sql: str) -> str:
        return _PARAMETER.sub(r"?\1", sql)

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self.connection.execute(self._sql(sql), args)
        count: int = cursor.rowcount
        await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.connection.executemany(self._sql(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return list(await self.connection.execute_fetchall(self._sql(sql), args))

    async def close(self) -> None:
        await self.connection.close()


class PostgresConnection(Connection):
    dialect: Dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self.connection.execute(sql, *args)  # "UPDATE 3", "INSERT 0 1", "BEGIN"
        last = status.rpartition(" ")[2]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.connection.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(record) for record in await self.connection.fetch(sql, *args)]

    async def alive(self) -> bool:
        if self.connection.is_closed():
            return False
        try:
            await self.connection.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means: do not use this one
            return False
        return True

    async def close(self) -> None:
        await self.connection.close(timeout=5)


async def _to_completion(work: Awaitable[Any]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile (then re-raise the cancellation)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class Database:
    """Connections to one configured database. `schema`: a PostgreSQL schema to hold the tables instead of the
    search path's default (tests use a fresh one each). `busy_timeout_ms`: how long SQLite waits for a lock."""

    def __init__(
        self, database: str, *, schema: str | None = None, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    ) -> None:
        self.url = parse_url(database)
        if schema is not None and self.url.dialect != "postgresql":
            raise ValueError("a schema applies to PostgreSQL only")
        self.dialect: Dialect = self.url.dialect
        self.schema = schema
        self.busy_timeout_ms = busy_timeout_ms
        self.idle: list[Connection] = []
        self.checked_out = 0

    async def _open(self) -> Connection:
        if self.url.dialect == "sqlite":
            import aiosqlite  # noqa: PLC0415 - only the configured driver is loaded

            connection = await aiosqlite.connect(self.url.target, isolation_level=None)
            try:
                await connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")  # first: WAL may wait
                await connection.execute("PRAGMA journal_mode=WAL")
                await connection.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                await _to_completion(connection.close())
                raise
            return SqliteConnection(connection)
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - only the configured driver; no types

        settings = {} if self.schema is None else {"search_path": f'"{self.schema}"'}
        return PostgresConnection(await asyncpg.connect(self.url.target, server_settings=settings))

    async def _acquire(self) -> Connection:
        while self.idle:
            connection = self.idle.pop()
            if await connection.alive():
                return connection
            with contextlib.suppress(Exception):
                await _to_completion(connection.close())
        return await self._open()

    async def _release(self, connection: Connection, *, reusable: bool) -> None:
        if reusable and len(self.idle) < POOL_SIZE:
            self.idle.append(connection)
            return
        with contextlib.suppress(Exception):
            await _to_completion(connection.close())

    @contextlib.asynccontextmanager
    async def _transaction(self, *, commit: bool) -> AsyncIterator[Connection]:
        connection = await self._acquire()
        self.checked_out += 1
        reusable = False
        try:
            await connection.execute("BEGIN")
            try:
                yield connection
            except Exception:
                with contextlib.suppress(Exception):  # the block's error is the one to raise
                    await _to_completion(connection.execute("ROLLBACK"))
                    reusable = True
                raise
            except BaseException:  # cancelled: this connection may be half-way through a statement
                with contextlib.suppress(Exception):
                    await _to_completion(connection.execute("ROLLBACK"))
                raise
            await connection.execute("COMMIT" if commit else "ROLLBACK")
            reusable = True
        finally:
            self.checked_out -= 1
            await self._release(connection, reusable=reusable)

    def begin(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A transaction, committed at the end of the block, rolled back on an exception."""
        return self._transaction(commit=True)

    def connect(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A transaction for reading, rolled back at the end of the block."""
        return self._transaction(commit=False)

    async def dispose(self) -> None:
        """Close every idle connection."""
        idle, self.idle = self.idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await _to_completion(connection.close())
