"""The history service on MQTT: record states and meters, answer `<p>/history/request`, publish energy totals.

I/O only; the decisions live in the pure modules (`dedup`, `ingest`, `requests`, `meters`, `totals`, and the
reconstruction behind `queries`). This module wires three parts into one process and owns their shared pieces:

* the **recorder** (`recorder.py`, on the service's loop with its own store): states and meters into rows;
* the **query worker** (its own thread and connection pool, `worker.py`), which runs the jobs of
  the **request answerer** (`responder.py`), the **energy publisher** (`energy_publisher.py`, every minute) and
  retention (here, once a day).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from chargebus.config import HistoryServiceConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Service
from chargebus.zones import resolve_timezone

from chargebus_history.database import SQLITE_BUSY_TIMEOUT_MS, describe_error, parse_url
from chargebus_history.energy_publisher import EnergyPublisher, energy_topics_prefix
from chargebus_history.recorder import Recorder
from chargebus_history.responder import Responder
from chargebus_history.store import HistoryStore, retention_cutoff
from chargebus_history.worker import QueryWorker

NAME = "history"
log = logging.getLogger("chargebus.history")

EXIT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Knobs that are not user settings: tests shorten them, the service uses the defaults."""

    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    energy_interval_s: float = 60.0  # energy sensors are updated at most this often
    prune_interval_s: float = 86400.0
    buffer_limit: int = 50_000  # samples held in memory while the database cannot be written
    batch_size: int = 1000
    max_pending_queries: int = 8
    query_timeout_s: float = 120.0


class HistoryRuntime:
    def __init__(self, service: Service, config: HistoryServiceConfig, options: RuntimeOptions) -> None:
        self.service = service
        self.options = options
        self.database = config.database_url
        self.retention_days = config.history.retention_days
        gap_limit_s = config.history.gap_limit_s
        self.worker = QueryWorker(
            self.database, max_pending=options.max_pending_queries, busy_timeout_ms=options.busy_timeout_ms
        )
        self.recorder = Recorder(
            service,
            config,
            busy_timeout_ms=options.busy_timeout_ms,
            buffer_limit=options.buffer_limit,
            batch_size=options.batch_size,
        )
        self.responder = Responder(
            service,
            self.worker,
            self.recorder,
            zone=resolve_timezone(config.history.timezone),
            gap_limit_s=gap_limit_s,
            query_timeout_s=options.query_timeout_s,
            reserved_prefix=energy_topics_prefix(service.topics),
        )
        self.energy = EnergyPublisher(
            service,
            self.worker,
            Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix),
            service_name=NAME,
            database=self.database,
            store_ready=self.recorder.store_ready,
            names=self.recorder.names,
            gap_limit_s=gap_limit_s,
            interval_s=options.energy_interval_s,
        )

    def register(self) -> None:
        self.recorder.register()
        self.responder.register()
        self.service.add_task("recorder", self.run_recorder)
        self.service.add_task("reoffer", self.recorder.reoffer_loop)
        self.service.add_task("energy", self.energy.run)
        self.service.add_task("retention", self.retention_loop)

    async def run_recorder(self) -> None:
        """The recorder for as long as the service runs; when it ends, everything this runtime opened is closed."""
        try:
            self.worker.start()
            await self.recorder.run()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        # Answers unwind before the store closes: a close still in flight when the event loop ends is a traceback
        # from aiosqlite's thread.
        await self.responder.cancel_all()
        await self.recorder.close()
        await asyncio.to_thread(self.worker.stop)

    async def retention_loop(self) -> None:
        await self.recorder.store_ready.wait()
        while True:
            cutoff = retention_cutoff(self.service.clock.time(), self.retention_days)

            async def job(store: HistoryStore, cutoff: float = cutoff) -> int:
                return await store.prune(cutoff)

            try:
                removed = await self.worker.submit(job)
            except Exception as error:  # noqa: BLE001 - retried on the next round
                log.warning(f"service=history event=prune_failed error={describe_error(error, self.database)!r}")
            else:
                log.info(f"service=history event=pruned rows={removed} retention_days={self.retention_days}")
            await self.service.clock.sleep(self.options.prune_interval_s)


async def build(
    service: Service, config: HistoryServiceConfig, options: RuntimeOptions | None = None
) -> HistoryRuntime:
    """Set the history runtime up on `service` (handlers, tasks, the database opened and seeded if it answers)."""
    try:
        parse_url(config.database_url)
    except ValueError as error:
        print(f"config: history.database: {error}", file=sys.stderr)  # noqa: T201 - the user's terminal
        raise SystemExit(EXIT_CONFIG) from None
    runtime = HistoryRuntime(service, config, options or RuntimeOptions())
    runtime.register()
    runtime.worker.start()
    try:
        await runtime.recorder.open_at_start()
    except BaseException:
        # nothing will run the recorder's shutdown: the query thread must not outlive this attempt (`chargebus run`
        # starts the service again in the same process)
        await asyncio.to_thread(runtime.worker.stop)
        raise
    return runtime


async def setup(service: Service, config: HistoryServiceConfig) -> None:
    await build(service, config)
