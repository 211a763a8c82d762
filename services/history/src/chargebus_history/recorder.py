"""The recorder: every received state and meter reading through the change filter into the database.

Every received state goes through the change filter into a bounded buffer, and `run` commits the buffer in one
transaction per batch. While the database cannot be written, the failure is reported on `<p>/history/error`
(topic naming the database, payload null), retried with backoff, and samples wait in the buffer (the oldest
dropped first when it is full). Held states are re-offered on a timer (keepalive rows, `ingest.HeldStates`).

I/O only; what becomes a row is `dedup`'s and `ingest`'s decision, how a meter payload reads is `meters`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque

from chargebus.config import HistoryServiceConfig
from chargebus.mqtt import Backoff, Incoming, Service
from chargebus.schema import EvseState, PayloadError, VehicleState, parse_for_topic

from chargebus_history.database import describe_error, rows_refused, shown_url
from chargebus_history.dedup import ChangeFilter
from chargebus_history.ingest import TESLA_BRIDGE, TWC_BRIDGE, Cadence, HeldStates, SampleBuffer
from chargebus_history.meters import MeterSource, read_meter
from chargebus_history.migrations import SchemaTooNewError
from chargebus_history.records import EvseRecord, Record, VehicleRecord
from chargebus_history.store import HistoryStore
from chargebus_history.totals import EVSE_KIND, VEHICLE_KIND

log = logging.getLogger("chargebus.history")

STARTUP_OPEN_TIMEOUT_S = 20.0
FINAL_FLUSH_TIMEOUT_S = 3.0
REPORT_WAIT_S = 10.0
METER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as `[[meters]] name` (chargebus.config.MeterConfig)
EXIT_FATAL = 1


class Recorder:
    """States and meters in, rows out: the service's own store, on the service's event loop."""

    def __init__(
        self,
        service: Service,
        config: HistoryServiceConfig,
        *,
        busy_timeout_ms: int,
        buffer_limit: int,
        batch_size: int,
    ) -> None:
        self.service = service
        self.topics = service.topics
        self.database = config.database_url
        self.database_topic = shown_url(self.database)
        self.busy_timeout_ms = busy_timeout_ms
        self.batch_size = batch_size
        cadence = Cadence.for_gap_limit(config.history.gap_limit_s)
        self.reoffer_s = cadence.reoffer_s
        self.changes = ChangeFilter(keepalive_s=cadence.keepalive_s)
        self.buffer = SampleBuffer(buffer_limit)
        self.unfiltered: deque[Record] = deque(maxlen=buffer_limit)  # until the filter is seeded
        self.held = HeldStates()
        self.store: HistoryStore | None = None
        self.seeded = False
        self.store_ready = asyncio.Event()
        self.flush_wanted = asyncio.Event()
        self.committed = asyncio.Event()
        self.backoff = Backoff(initial_s=0.5, cap_s=30.0)
        self.failing: str | None = None  # the reported storage error, while it lasts
        self.overflow_reported = False
        self.meters = {m.topic: MeterSource.from_config(m) for m in config.meters}
        self.meter_names = {m.name for m in config.meters}
        #: Display names by subject key (`evse:<id>`, `vehicle:<vin>`), as the states name them.
        self.names: dict[str, str] = {}

    def register(self) -> None:
        """Subscribe to what is recorded (the runtime starts `run` and `reoffer_loop` as the service's tasks)."""
        service = self.service
        service.on_message(self.topics.filter("evse_state"), self.on_evse_state)
        service.on_message(self.topics.filter("vehicle_state"), self.on_vehicle_state)
        service.on_message(self.topics.filter("power"), self.on_native_power)
        for topic in self.meters:
            service.on_message(topic, self.on_meter)
        for bridge in (TWC_BRIDGE, TESLA_BRIDGE):
            service.on_message(self.topics.status(bridge), self.on_bridge_status)

    async def _open(self) -> HistoryStore:
        return await HistoryStore.open(self.database, busy_timeout_ms=self.busy_timeout_ms)

    async def open_at_start(self) -> None:
        """Open and seed before any message arrives, so a retained replay at connect is compared with the rows
        already stored. A database that cannot be reached yet is retried by `run`; one written by a newer
        program is fatal."""
        try:
            store = await asyncio.wait_for(self._open(), STARTUP_OPEN_TIMEOUT_S)
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

    # -- receiving ------------------------------------------------------------------------------------------------

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
        self.names[f"{VEHICLE_KIND}:{state.vin}"] = state.name
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

    # -- writing --------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Open (retrying), seed, then commit the buffer batch by batch for as long as the service runs."""
        while not self.seeded:
            await self.open_and_seed()
        while True:
            await self.flush_wanted.wait()
            self.flush_wanted.clear()
            while len(self.buffer):
                await self.write_batch()

    async def open_and_seed(self) -> None:
        try:
            if self.store is None:
                self.store = await self._open()
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
        batch = self.buffer.peek(self.batch_size)
        try:
            await self.store.insert(record for _, record in batch)
        except Exception as error:  # noqa: BLE001 - every storage failure is reported (and retried unless refused)
            if rows_refused(error):
                # The rows themselves are refused (not the database's state): retrying would block every later one.
                self.buffer.commit(batch[-1][0])
                await self.report_storage(f"{len(batch)} samples refused: {describe_error(error, self.database)}")
            else:
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

    async def close(self) -> None:
        """Write what is still buffered (briefly: the service is stopping) and close the store."""
        if self.store is None:
            return
        if len(self.buffer):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.store.insert(record for _, record in self.buffer.peek(len(self.buffer))),
                    FINAL_FLUSH_TIMEOUT_S,
                )
        await self.store.close()
        self.store = None
