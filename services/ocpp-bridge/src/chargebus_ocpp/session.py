"""What both OCPP versions share on the wire: frame checks, error reports, calls that fail cleanly.

`Watchful` sits in front of the `ocpp` library's ChargePoint: a frame that is not OCPP-J (bad JSON, not a list,
an unknown message type) becomes one ErrorEvent instead of a log traceback; every CALLERROR we answer is reported
too; nothing a charger sends ends the session except closing the WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import MessageType, unpack
from websockets.exceptions import ConnectionClosed

from chargebus_ocpp.station import LinkError, Station

log = logging.getLogger("chargebus_ocpp")

#: How long a call to a charger may take before it counts as failed.
CALL_TIMEOUT_S = 10.0
FRAME_PREVIEW_CHARS = 120

Report = Callable[[str, str], Awaitable[None]]


def _preview(frame: str | bytes) -> str:
    text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
    return text[:FRAME_PREVIEW_CHARS]


class Watchful:
    """Mixin for an `ocpp` ChargePoint subclass: reports bad frames and our CALLERROR answers."""

    station: Station
    source: str
    tasks: set[asyncio.Task[None]]
    #: Set when the WebSocket has closed: calls in flight fail at once.
    closed: asyncio.Event

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.station.heard()
        try:
            message = unpack(raw_msg)
        except OCPPError as exc:
            await self.station.report(self.source, f"bad frame from {self.station.cp.ocpp_id}: {_describe(exc)}")
            return
        if message.message_type_id == MessageType.CallError:
            log.info(f"event=call_error ocpp_id={self.station.cp.ocpp_id} frame={_preview(raw_msg)!r}")
        try:
            await super().route_message(raw_msg)  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except ConnectionClosed:
            raise
        except Exception as exc:  # a frame the library chokes on must not end the session
            log.exception(f"event=frame_failed ocpp_id={self.station.cp.ocpp_id}")
            await self.station.report(
                self.source, f"frame from {self.station.cp.ocpp_id} could not be handled: {type(exc).__name__}"
            )

    async def _send(self, message: str) -> None:
        if message.startswith("[4,"):
            await self.station.report(self.source, f"answered {self.station.cp.ocpp_id} with {_call_error(message)}")
        await super()._send(message)  # type: ignore[misc]

    def spawn(self, work: Awaitable[None], name: str) -> None:
        """A task tied to this session (after-boot configuration), kept referenced until it ends."""

        async def guarded() -> None:
            try:
                await work
            except (LinkError, ConnectionClosed) as exc:
                log.warning(f"event=task_failed task={name} ocpp_id={self.station.cp.ocpp_id} error={exc}")

        task = asyncio.create_task(guarded(), name=f"ocpp-{name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _describe(exc: OCPPError) -> str:
    details = exc.details if isinstance(exc.details, dict) else {}
    cause = details.get("cause") or exc.description or type(exc).__name__
    return f"{exc.code}: {cause}"


def _call_error(frame: str) -> str:
    try:
        parts = json.loads(frame)
        return f"CALLERROR {parts[2]}: {str(parts[3])[:100]}"
    except (ValueError, IndexError, TypeError):
        return "a CALLERROR"


async def checked_call(charge_point: Any, payload: Any, what: str) -> Any:
    """`charge_point.call(payload)`, a CALLERROR, a time-out or a closed socket raised as LinkError.

    A call in flight when the WebSocket closes fails at once (`charge_point.closed` is set), instead of waiting out
    its time-out for an answer that cannot come.
    """
    closed: asyncio.Event = charge_point.closed
    if closed.is_set():
        raise LinkError(f"{what}: the connection closed")
    work = asyncio.ensure_future(asyncio.wait_for(charge_point.call(payload, suppress=False), CALL_TIMEOUT_S + 1))
    ended = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait([work, ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)  # its end (cancelled, or closed meanwhile) is moot
        raise LinkError(f"{what}: the connection closed")
    try:
        return work.result()
    except OCPPError as exc:
        raise LinkError(f"{what}: the charger answered {_describe(exc)}") from None
    except TimeoutError:
        raise LinkError(f"{what}: no answer within {CALL_TIMEOUT_S:.0f} s") from None
    except ConnectionClosed:
        raise LinkError(f"{what}: the connection closed") from None
