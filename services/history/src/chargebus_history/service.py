"""The history service on MQTT: record states and meters, answer `<p>/history/request`, publish energy totals.

I/O only; the decisions live in the pure modules (`dedup`, `ingest`, `requests`, `meters`, `totals`, and the
reconstruction behind `queries`). Three loops share one process:

* the **recorder** (this loop): every received state goes through the change filter into a bounded buffer, and a
  writer commits the buffer in one transaction per batch. While the database cannot be written, the failure is
  reported on `<p>/history/error` (topic naming the database, payload null), retried with backoff, and samples wait
  in the buffer (the oldest dropped first when it is full);
* the **query worker** (its own thread and connection pool, `worker.py`): answers, energy totals, pruning;
* small timers: re-offering held states (keepalive rows), energy totals every minute, retention once a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

from chargebus.config import HistoryServiceConfig
from chargebus.ha import Discovery, availability, device_ref, entity, evse_device_id, vehicle_device_id
from chargebus.mqtt import Backoff, Incoming, Service
from chargebus.runner import ServiceEntry
from chargebus.schema import (
    EvseState,
    HistoryRequest,
    HistoryResponse,
    PayloadError,
    VehicleState,
    parse_for_topic,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import DataError, IntegrityError

from chargebus_history.answering import run_request
from chargebus_history.database import SQLITE_BUSY_TIMEOUT_MS, async_url, describe_error, shown_url
from chargebus_history.dedup import ChangeFilter
from chargebus_history.ingest import TESLA_BRIDGE, TWC_BRIDGE, Cadence, HeldStates, SampleBuffer
from chargebus_history.meters import MeterSource, read_meter
from chargebus_history.migrations import SchemaTooNewError
from chargebus_history.records import EvseRecord, Record, VehicleRecord
from chargebus_history.requests import ReplyTo, parse_request, reply_to
from chargebus_history.store import HistoryStore, retention_cutoff
from chargebus_history.timezones import resolve_timezone
from chargebus_history.totals import EVSE_KIND, topic_id, update_totals
from chargebus_history.worker import QueryWorker, WorkerBusyError

NAME = "history"
log = logging.getLogger("chargebus.history")

STARTUP_OPEN_TIMEOUT_S = 20.0
FINAL_FLUSH_TIMEOUT_S = 3.0
REPORT_WAIT_S = 10.0
#: An answer waits this long at most for the samples received before its request to be committed.
READ_YOUR_WRITES_S = 2.0
METER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as `[[meters]] name` (chargebus.config.MeterConfig)
EXIT_FATAL = 1
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


def energy_topic(prefix: str, subject_id: str) -> str:
    """`<p>/history/energy/<evse_id|vin>` (this service's addition to docs/contract.md §5; see the README)."""
    return f"{prefix}/history/energy/{subject_id}"


class HistoryRuntime:
    def __init__(self, service: Service, config: HistoryServiceConfig, options: RuntimeOptions) -> None:
        self.service = service
        self.options = options
        self.topics = service.topics
        self.database = config.database_url
        self.database_topic = shown_url(self.database)
        self.zone = resolve_timezone(config.history.timezone)
        self.gap_limit_s = config.history.gap_limit_s
        self.retention_days = config.history.retention_days
        cadence = Cadence.for_gap_limit(self.gap_limit_s)
        self.reoffer_s = cadence.reoffer_s
        self.changes = ChangeFilter(keepalive_s=cadence.keepalive_s)
        self.buffer = SampleBuffer(options.buffer_limit)
        self.unfiltered: deque[Record] = deque(maxlen=options.buffer_limit)  # until the filter is seeded
        self.held = HeldStates()
        self.store: HistoryStore | None = None
        self.seeded = False
        self.store_ready = asyncio.Event()
        self.flush_wanted = asyncio.Event()
        self.committed = asyncio.Event()
        self.worker = QueryWorker(
            self.database, max_pending=options.max_pending_queries, busy_timeout_ms=options.busy_timeout_ms
        )
        self.backoff = Backoff(initial_s=0.5, cap_s=30.0)
        self.failing: str | None = None  # the reported storage error, while it lasts
        self.overflow_reported = False
        self.request_topic = self.topics.build("history_request")
        self.meters = {m.topic: MeterSource.from_config(m) for m in config.meters}
        self.meter_names = {m.name for m in config.meters}
        self.names: dict[str, str] = {}
        self.published: dict[str, float] = {}
        self.discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)
        self.tasks: set[asyncio.Task[None]] = set()

    # -- wiring ---------------------------------------------------------------------------------------------------

    def register(self) -> None:
        service = self.service
        service.on_message(self.topics.filter("evse_state"), self.on_evse_state)
        service.on_message(self.topics.filter("vehicle_state"), self.on_vehicle_state)
        service.on_message(self.topics.filter("power"), self.on_native_power)
        for topic in self.meters:
            service.on_message(topic, self.on_meter)
        for bridge in (TWC_BRIDGE, TESLA_BRIDGE):
            service.on_message(self.topics.status(bridge), self.on_bridge_status)
        service.on_raw_command(self.request_topic, self.on_request)
        service.add_task("recorder", self.recorder)
        service.add_task("reoffer", self.reoffer_loop)
        service.add_task("energy", self.energy_loop)
        service.add_task("retention", self.retention_loop)

    async def open_at_start(self) -> None:
        """Open and seed before any message arrives, so a retained replay at connect is compared with the rows
        already stored. A database that cannot be reached yet is retried by the recorder; one written by a newer
        program is fatal."""
        try:
            store = await asyncio.wait_for(
                HistoryStore.open(self.database, busy_timeout_ms=self.options.busy_timeout_ms), STARTUP_OPEN_TIMEOUT_S
            )
        except SchemaTooNewError as error:
            log.error(f"service=history event=fatal database={self.database_topic} error={error!r}")  # noqa: TRY400
            raise SystemExit(EXIT_FATAL) from None
        except Exception as error:  # noqa: BLE001 - any failure to open is retried by the recorder
            log.warning(
                f"service=history event=database_unavailable database={self.database_topic} "
                f"error={describe_error(error, self.database)!r}"
            )
            return
        self.store = store
        await self.seed()

    # -- recording ------------------------------------------------------------------------------------------------

    async def seed(self) -> None:
        assert self.store is not None
        self.changes.seed(await self.store.latest_records())
        self.seeded = True
        while self.unfiltered:
            await self.ingest(self.unfiltered.popleft())
        self.store_ready.set()
        log.info(f"service=history event=database_open database={self.database_topic}")

    async def ingest(self, record: Record) -> None:
        if not self.seeded:
            self.unfiltered.append(record)
            return
        if not self.changes.admit(record):
            return
        self.changes.remember(record)  # now, not at commit: the buffer keeps it until it is committed
        if not self.buffer.add(record) and not self.overflow_reported:
            self.overflow_reported = True
            await self.report_storage(f"sample buffer full ({self.buffer.limit}): dropping the oldest samples")
        self.flush_wanted.set()

    async def on_evse_state(self, message: Incoming) -> None:
        if not message.payload:
            return  # a retained state being cleared
        topic_evse = message.parsed.ids.get("evse_id") if message.parsed else None
        state = parse_for_topic(EvseState, message.payload, "evse_id", topic_evse)
        record = EvseRecord.from_payload(self.service.clock.time(), state.model_dump(mode="json"))
        self.names[f"{EVSE_KIND}:{state.evse_id}"] = state.name
        self.held.hold(record)
        await self.ingest(record)

    async def on_vehicle_state(self, message: Incoming) -> None:
        if not message.payload:
            return
        topic_vin = message.parsed.ids.get("vin") if message.parsed else None
        state = parse_for_topic(VehicleState, message.payload, "vin", topic_vin)
        record = VehicleRecord.from_payload(self.service.clock.time(), state.model_dump(mode="json"))
        self.names[f"vehicle:{state.vin}"] = state.name
        self.held.hold(record)
        await self.ingest(record)

    async def on_native_power(self, message: Incoming) -> None:
        if message.topic in self.meters or not message.payload:
            return  # a [[meters]] entry names this topic: on_meter reads it with the entry's rules
        name = message.parsed.ids.get("meter") if message.parsed else None
        if name is None or name in self.meter_names:
            return  # a configured meter of this name is read from its own topic (docs/contract.md §2)
        if not METER_NAME.fullmatch(name):
            raise PayloadError(f"meter name {name[:80]!r} is not 1-64 characters of A-Z a-z 0-9 _ . -")
        await self.ingest(read_meter(MeterSource(name, message.topic), message.payload, self.service.clock.time()))

    async def on_meter(self, message: Incoming) -> None:
        if not message.payload:
            return
        await self.ingest(read_meter(self.meters[message.topic], message.payload, self.service.clock.time()))

    async def on_bridge_status(self, message: Incoming) -> None:
        if message.parsed is not None:
            self.held.set_status(message.parsed.ids["service"], message.payload.decode("utf-8", errors="replace"))

    async def recorder(self) -> None:
        """Open (retrying), seed, then commit the buffer batch by batch for as long as the service runs."""
        try:
            self.worker.start()
            while not self.seeded:
                await self.open_and_seed()
            while True:
                await self.flush_wanted.wait()
                self.flush_wanted.clear()
                while len(self.buffer):
                    await self.write_batch()
        finally:
            await self.shutdown()

    async def open_and_seed(self) -> None:
        try:
            if self.store is None:
                self.store = await HistoryStore.open(self.database, busy_timeout_ms=self.options.busy_timeout_ms)
            await self.seed()
        except SchemaTooNewError as error:
            await self.report_storage(str(error))
            log.error(f"service=history event=fatal database={self.database_topic} error={error!r}")  # noqa: TRY400
            self.service.request_stop()
            await asyncio.Event().wait()  # the service is stopping; this task is cancelled with it
        except Exception as error:  # noqa: BLE001 - every storage failure is reported and retried
            await self.storage_failed("open", error)

    async def write_batch(self) -> None:
        assert self.store is not None
        batch = self.buffer.peek(self.options.batch_size)
        try:
            await self.store.insert(record for _, record in batch)
        except (DataError, IntegrityError) as error:
            # The rows themselves are refused (not the database's state): retrying would block every later sample.
            self.buffer.commit(batch[-1][0])
            await self.report_storage(f"{len(batch)} samples refused: {describe_error(error, self.database)}")
            return
        except Exception as error:  # noqa: BLE001 - every storage failure is reported and retried
            await self.storage_failed("write", error)
            return
        self.buffer.commit(batch[-1][0])
        self.committed.set()
        if self.failing is not None:
            dropped = self.buffer.reset_dropped()
            log.info(
                f"service=history event=database_recovered database={self.database_topic} "
                f"written={len(batch)} dropped={dropped}"
            )
            self.failing = None
            self.overflow_reported = False
            self.backoff.reset()

    async def storage_failed(self, action: str, error: BaseException) -> None:
        text = f"database {action} failed: {describe_error(error, self.database)}"
        delay = self.backoff.next_delay()
        log.warning(
            f"service=history event=database_{action}_failed database={self.database_topic} error={text!r} "
            f"buffered={len(self.buffer) + len(self.unfiltered)} retry_in_s={delay:.1f}"
        )
        if text != self.failing:  # once per outage (and again if the cause changes), not once per retry
            self.failing = text
            await self.report_storage(f"{text}; samples are kept in memory and retried")
        await asyncio.sleep(delay)  # real time: this waits for the disk or the server, not for simulated events

    async def report_storage(self, text: str) -> None:
        """An ErrorEvent for a condition, not an input: topic naming the database (no password), payload null."""
        if not self.service.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.connected.wait(), REPORT_WAIT_S)
        await self.service.report_error(self.database_topic, None, text)

    async def shutdown(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        # Let them unwind before the store closes: a task cancelled inside a query still closes its connection on
        # the way out, and a close still in flight when the event loop ends is a traceback from aiosqlite's thread.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.store is not None:
            if len(self.buffer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.store.insert(record for _, record in self.buffer.peek(len(self.buffer))),
                        FINAL_FLUSH_TIMEOUT_S,
                    )
            await self.store.close()
            self.store = None
        await asyncio.to_thread(self.worker.stop)

    async def reoffer_loop(self) -> None:
        """Every `reoffer_s`, offer each held state again; the change filter turns it into a keepalive row when
        the stream's last row is `keepalive_s` old. Not while we are disconnected: then we are not listening."""
        while True:
            await self.service.clock.sleep(self.reoffer_s)
            if not self.service.connected.is_set():
                continue
            for record in self.held.reoffers(self.service.clock.time()):
                if self.seeded and self.changes.admit(record):
                    log.debug(f"service=history event=keepalive stream={'/'.join(record.stream)}")
                await self.ingest(record)

    # -- energy totals and retention ------------------------------------------------------------------------------

    async def energy_loop(self) -> None:
        await self.store_ready.wait()
        while True:
            now = self.service.clock.time()

            async def job(store: HistoryStore, now: float = now) -> dict[str, float]:
                return await update_totals(store, now=now, gap_limit_s=self.gap_limit_s)

            try:
                figures = await self.worker.submit(job)
            except Exception as error:  # noqa: BLE001 - retried on the next round
                log.warning(
                    f"service=history event=energy_update_failed error={describe_error(error, self.database)!r}"
                )
            else:
                for key, value in figures.items():
                    await self.publish_energy(key, value)
            await self.service.clock.sleep(self.options.energy_interval_s)

    async def publish_energy(self, key: str, value_wh: float) -> None:
        if self.published.get(key) == value_wh:
            return
        subject_id = topic_id(key)
        topic = energy_topic(self.topics.prefix, subject_id)
        if key not in self.published:
            is_evse = key.startswith(f"{EVSE_KIND}:")
            name = self.names.get(key, subject_id)
            await self.discovery.publish(
                entity(
                    "sensor",
                    f"history_energy_{subject_id}",
                    f"{name} energy",
                    # on the charger's or the car's own device, which its bridge describes
                    device_block=device_ref(evse_device_id(subject_id) if is_evse else vehicle_device_id(subject_id)),
                    availability_list=availability(self.topics, NAME),
                    state_topic=topic,
                    unit_of_measurement="Wh",
                    device_class="energy",
                    state_class="total_increasing",
                    suggested_display_precision=0,
                )
            )
        self.published[key] = value_wh
        await self.service.publish_retained(topic, f"{value_wh:.1f}")

    async def retention_loop(self) -> None:
        await self.store_ready.wait()
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

    # -- requests -------------------------------------------------------------------------------------------------

    def reply_address(self, message: Incoming) -> ReplyTo:
        reserved = frozenset({self.request_topic, self.service.status_topic, self.service.error_topic})
        return reply_to(
            message.payload,
            message.response_topic,
            message.correlation_data,
            reserved=reserved,
            reserved_prefix=energy_topic(self.topics.prefix, ""),
        )

    async def on_request(self, message: Incoming) -> None:
        reply = self.reply_address(message)
        try:
            request = parse_request(message.payload)
        except PayloadError as error:
            await self.refuse(message, reply, str(error), error.transaction or reply.transaction)
            return
        if reply.topic is None:
            why = reply.problem or "no response topic: set response_topic or the MQTT 5 Response Topic"
            await self.service.report_error(message.topic, message.payload, why, request.transaction)
            return
        if len(self.tasks) >= self.worker.max_pending:  # answers in progress or waiting for the worker
            await self.refuse(message, reply, "busy: too many queries waiting, try again", request.transaction)
            return
        # Answered on its own task: a slow query never holds up the messages behind it.
        task = asyncio.create_task(self.answer(message, request, reply), name="history-request")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def caught_up(self, seq: int, timeout_s: float) -> None:
        """Wait (bounded) until every sample up to `seq` is committed, so an answer includes what came before."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.buffer.committed_through < seq and len(self.buffer):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.committed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.committed.wait(), remaining)

    async def answer(self, message: Incoming, request: HistoryRequest, reply: ReplyTo) -> None:
        await self.caught_up(self.buffer.newest_seq, READ_YOUR_WRITES_S)
        now = self.service.clock.time()

        async def job(store: HistoryStore) -> Any:
            return await run_request(store, request, now=now, zone=self.zone, gap_limit_s=self.gap_limit_s)

        try:
            data = await asyncio.wait_for(self.worker.submit(job), self.options.query_timeout_s)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            error = f"query took longer than {self.options.query_timeout_s:.0f} s"
        except (ValueError, WorkerBusyError) as refused:
            error = str(refused)
        except Exception as failure:  # noqa: BLE001 - the database's problem becomes the answer, not a crash
            error = f"database unavailable: {describe_error(failure, self.database)}"
        else:
            response = HistoryResponse(transaction=request.transaction, status="ok", data=data)
            await self.service.publish(reply.topic or "", response, properties=self.properties(reply))
            return
        await self.refuse(message, reply, error, request.transaction)

    async def refuse(self, message: Incoming, reply: ReplyTo, error: str, transaction: str | int | None) -> None:
        """A `status: "error"` answer where the sender listens (when known), and one ErrorEvent."""
        if reply.topic is not None:
            response = HistoryResponse(transaction=transaction, status="error", error=error)
            await self.service.publish(reply.topic, response, properties=self.properties(reply))
        elif reply.problem is not None:
            error = f"{error}; {reply.problem}"
        await self.service.report_error(message.topic, message.payload, error, transaction)

    @staticmethod
    def properties(reply: ReplyTo) -> Properties | None:
        if reply.correlation_data is None:
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = reply.correlation_data
        return properties


async def build(
    service: Service, config: HistoryServiceConfig, options: RuntimeOptions | None = None
) -> HistoryRuntime:
    """Set the history runtime up on `service` (handlers, tasks, the database opened and seeded if it answers)."""
    try:
        async_url(config.database_url)
    except ValueError as error:
        print(f"config: history.database: {error}", file=sys.stderr)  # noqa: T201 - the user's terminal
        raise SystemExit(EXIT_CONFIG) from None
    runtime = HistoryRuntime(service, config, options or RuntimeOptions())
    runtime.register()
    runtime.worker.start()
    try:
        await runtime.open_at_start()
    except BaseException:
        # nothing will run the recorder's shutdown: the query thread must not outlive this attempt (`chargebus run`
        # starts the service again in the same process)
        await asyncio.to_thread(runtime.worker.stop)
        raise
    return runtime


async def setup(service: Service, config: HistoryServiceConfig) -> None:
    await build(service, config)


#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(NAME, HistoryServiceConfig, setup)


if __name__ == "__main__":
    sys.exit(main())
