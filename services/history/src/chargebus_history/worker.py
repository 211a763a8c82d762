"""A thread with its own event loop and its own connection pool, for everything that reads a lot.

History answers, energy totals and retention pruning load and reconstruct many rows; that is CPU work in Python.
Run on the service's loop it would stall the MQTT connection and the recorder for as long as it takes. On its own
thread the interpreter switches between the two every few milliseconds, so ingestion goes on meanwhile; on SQLite
(WAL) and PostgreSQL the readers never block the writer. Jobs run one at a time, at most `max_pending` queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from chargebus_history.database import SQLITE_BUSY_TIMEOUT_MS
from chargebus_history.store import HistoryStore

log = logging.getLogger("chargebus.history")

T = TypeVar("T")
Job = Callable[[HistoryStore], Awaitable[T]]
STOP_TIMEOUT_S = 5.0
#: On stop, a running job gets this long to finish before it is cancelled.
JOB_GRACE_S = 1.0


class WorkerBusyError(RuntimeError):
    """Too many jobs already queued."""


class QueryWorker:
    def __init__(self, database: str, *, max_pending: int = 8, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.database = database
        self.max_pending = max_pending
        self.busy_timeout_ms = busy_timeout_ms
        self.pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._store: HistoryStore | None = None
        self._lock: asyncio.Lock | None = None  # created on the worker's loop: one job at a time

    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._lock = asyncio.Lock()
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="history-queries", daemon=True)
        self._thread.start()
        ready.wait()

    async def _run(self, job: Job[T]) -> T:
        assert self._lock is not None
        async with self._lock:
            if self._store is None:
                self._store = await HistoryStore.open(self.database, busy_timeout_ms=self.busy_timeout_ms)
            return await job(self._store)

    async def submit(self, job: Job[T]) -> T:
        """Run `job(store)` on the worker; WorkerBusyError when `max_pending` jobs are already waiting."""
        if self._loop is None:
            raise RuntimeError("the query worker is not running")
        if self.pending >= self.max_pending:
            raise WorkerBusyError(f"busy: {self.pending} queries are already waiting")
        self.pending += 1
        try:
            future: Future[T] = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
            return await asyncio.wrap_future(future)
        finally:
            self.pending -= 1

    def stop(self) -> None:
        """Close the worker's connections and end its thread (waits a few seconds at most)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            # A job still running (the first one may be opening the store) has aiosqlite's thread working for it:
            # closing the loop under it would make that thread's answer a traceback. Let it finish, or cancel it.
            current = asyncio.current_task()
            jobs = [task for task in asyncio.all_tasks() if task is not current]
            if jobs:
                _, late = await asyncio.wait(jobs, timeout=JOB_GRACE_S)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            if self._store is not None:
                await self._store.close()
                self._store = None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("service=history event=worker_stop_timeout")
        self._loop = None
        self._thread = None
