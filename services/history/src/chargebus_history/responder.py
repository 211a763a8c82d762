"""The request answerer: `<p>/history/request` in, a HistoryResponse out on the sender's response topic.

Each request is answered on its own task, its query run on the query worker (`worker.py`), so a slow query never
holds up the messages behind it. What a request may ask and where the answer goes is `requests`' decision, what
the answer says is `answering`'s.
"""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from typing import Any

from chargebus.mqtt import Incoming, Service
from chargebus.schema import HistoryRequest, HistoryResponse, PayloadError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chargebus_history.answering import run_request
from chargebus_history.database import describe_error
from chargebus_history.recorder import Recorder
from chargebus_history.requests import ReplyTo, parse_request, reply_to
from chargebus_history.store import HistoryStore
from chargebus_history.worker import QueryWorker, WorkerBusyError

#: An answer waits this long at most for the samples received before its request to be committed.
READ_YOUR_WRITES_S = 2.0


class Responder:
    def __init__(
        self,
        service: Service,
        worker: QueryWorker,
        recorder: Recorder,
        *,
        zone: tzinfo,
        gap_limit_s: float,
        query_timeout_s: float,
        reserved_prefix: str,
    ) -> None:
        self.service = service
        self.worker = worker
        self.recorder = recorder
        self.database = recorder.database
        self.zone = zone
        self.gap_limit_s = gap_limit_s
        self.query_timeout_s = query_timeout_s
        self.reserved_prefix = reserved_prefix  # answers never go below it (this service's own output)
        self.request_topic = service.topics.build("history_request")
        self.tasks: set[asyncio.Task[None]] = set()

    def register(self) -> None:
        self.service.on_raw_command(self.request_topic, self.on_request)

    async def cancel_all(self) -> None:
        """Cancel the answers in progress and let them unwind (a task cancelled inside a query still closes its
        connection on the way out)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def reply_address(self, message: Incoming) -> ReplyTo:
        reserved = frozenset({self.request_topic, self.service.status_topic, self.service.error_topic})
        return reply_to(
            message.payload,
            message.response_topic,
            message.correlation_data,
            reserved=reserved,
            reserved_prefix=self.reserved_prefix,
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

    async def answer(self, message: Incoming, request: HistoryRequest, reply: ReplyTo) -> None:
        await self.recorder.caught_up(self.recorder.buffer.newest_seq, READ_YOUR_WRITES_S)
        now = self.service.clock.time()

        async def job(store: HistoryStore) -> Any:
            return await run_request(store, request, now=now, zone=self.zone, gap_limit_s=self.gap_limit_s)

        try:
            data = await asyncio.wait_for(self.worker.submit(job), self.query_timeout_s)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            error = f"query took longer than {self.query_timeout_s:.0f} s"
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
