"""The `[history] database` URL -> an async SQLAlchemy engine, with SQLite set up for a recorder.

SQLite settings and why:
* WAL: readers (queries) never block the writer (the recorder) and the other way round.
* synchronous=NORMAL: in WAL mode a commit is in the WAL file, i.e. with the OS, before `commit()` returns, so a
  committed sample survives kill -9 of the service. Only an OS crash or power cut can lose the last commits
  (never corrupt the file); FULL would also cover that at the price of an fsync per commit, which on an SD card
  means wear and latency at the TWC's one-second cadence.
* busy_timeout: a second process (a backup, the sqlite3 shell) holding a lock briefly makes us wait, not fail.
* BEGIN emitted by SQLAlchemy: Python's sqlite3 does not open a transaction before DDL, so without this a
  migration would not be atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from chargebus_history.engine import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+asyncpg"}


def async_url(database: str) -> URL:
    """`sqlite:////abs/path.sqlite` or `postgresql://…` (as in the config) -> the async driver's URL."""
    try:
        url = make_url(database)
    except ArgumentError as error:
        raise ValueError(f"database={database!r}: not a database URL") from error
    shown = url.render_as_string(hide_password=True)
    if url.drivername in _SQLITE_DRIVERS:
        path = url.database or ""
        if not path.startswith("/"):
            raise ValueError(f"database={shown!r}: SQLite needs an absolute path (sqlite:////abs/path.sqlite)")
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in _POSTGRES_DRIVERS:
        query = dict(url.query)
        if "sslmode" in query:  # libpq's name; asyncpg takes the same values as `ssl`
            query["ssl"] = query.pop("sslmode")
        return url.set(drivername="postgresql+asyncpg", query=query)
    raise ValueError(f"database={shown!r}: only sqlite:// and postgresql:// URLs are supported")


def shown_url(database: str) -> str:
    """The URL as it may appear in logs: never with its password."""
    try:
        return make_url(database).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def _sqlite_setup(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see the module docstring)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # first: switching to WAL may wait too
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def create_engine(
    database: str, *, schema: str | None = None, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> AsyncEngine:
    """An async engine for the configured URL. `schema`: a PostgreSQL schema to hold the tables instead of the
    search path's default (tests use a fresh one each). `busy_timeout_ms`: how long SQLite waits for a lock."""
    url = async_url(database)
    if url.drivername == "sqlite+aiosqlite":
        if schema is not None:
            raise ValueError("a schema applies to PostgreSQL only")
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_setup(busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    options = {} if schema is None else {"schema_translate_map": {None: schema}}
    return create_async_engine(url, pool_pre_ping=True, execution_options=options)


def describe_error(error: BaseException, database: str) -> str:
    """One line about a database failure, fit for logs and ErrorEvents: the driver's own message where there is
    one (SQLAlchemy's wrapper adds the statement and its parameters), never the URL's password."""
    inner = getattr(error, "orig", None) or error
    lines = str(inner).strip().splitlines()
    text = f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")[:200]
    try:
        password = make_url(database).password
    except ArgumentError:
        password = None
    return text.replace(str(password), "***") if password else text
