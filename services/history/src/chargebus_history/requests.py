"""`<p>/history/request` (docs/contract.md §5, §6): where to answer, whether a request is acceptable. Pure.

The answer goes to the MQTT 5 Response Topic when the message carries one (with its Correlation Data echoed),
else to the payload's `response_topic`. The reply address and the `transaction` are read leniently first, so that
even a request that fails validation gets a `status: "error"` answer where its sender listens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chargebus.mqtt import MAX_PAYLOAD_BYTES
from chargebus.schema import HistoryRequest, PayloadError, decode_json, parse_payload, transaction_of

from chargebus_history.answers import MAX_POWER_POINTS
from chargebus_history.queries import EvseTarget, Target, VehicleTarget

#: Larger requests are refused unread: a real one is a few hundred bytes.
MAX_REQUEST_BYTES = 64 * 1024
#: `energy` and `sessions` answers cover at most this range (a year and a bit: "last year per day" fits).
MAX_RANGE = timedelta(days=400)
MAX_TOPIC_BYTES = 65535


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Where an answer to one request goes; `topic` None when the sender gave no usable one."""

    topic: str | None
    correlation_data: bytes | None = None
    transaction: str | int | None = None
    problem: str | None = None  # why a given response topic was not usable


def _lenient(payload: bytes) -> dict[str, Any]:
    # Read up to the runtime's own cap, so an oversize request still gets its error answer.
    if len(payload) > MAX_PAYLOAD_BYTES:
        return {}
    try:
        data = decode_json(payload)
    except PayloadError:
        return {}
    return data if isinstance(data, dict) else {}


def _refused_in_topics(char: str) -> bool:
    code = ord(char)
    return (
        code <= 0x1F
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFE) == 0xFFFE
    )


def topic_problem(topic: str, reserved: frozenset[str], reserved_prefix: str) -> str | None:
    """Why an answer may not be published on `topic` (None when it may)."""
    if not topic:
        return "response topic is empty"
    if any(c in topic for c in "+#") or any(_refused_in_topics(c) for c in topic):
        # Wildcards cannot be published to; and (MQTT 5 spec, section 1.5.4) brokers such as mosquitto drop a client
        # that publishes to a topic with NUL, a control character or a Unicode non-character.
        return f"response topic {topic[:80]!r} contains a wildcard, a control character or a non-character"
    if topic.startswith("$"):
        return f"response topic {topic[:80]!r} is a broker topic"
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        return "response topic is too long"
    if topic in reserved or topic.startswith(reserved_prefix):
        return f"response topic {topic[:80]!r} is one of the history service's own topics"
    return None


def reply_to(
    payload: bytes,
    property_topic: str | None,
    correlation_data: bytes | None,
    *,
    reserved: frozenset[str] = frozenset(),
    reserved_prefix: str = "\0",
) -> ReplyTo:
    """The reply address: the MQTT 5 property wins over the payload's `response_topic`."""
    data = _lenient(payload)
    transaction = transaction_of(data)
    given = data.get("response_topic")
    topic = property_topic if property_topic is not None else given if isinstance(given, str) else None
    if topic is None:
        return ReplyTo(None, correlation_data, transaction)
    problem = topic_problem(topic, reserved, reserved_prefix)
    if problem is not None:
        return ReplyTo(None, correlation_data, transaction, problem)
    return ReplyTo(topic, correlation_data, transaction)


def parse_request(payload: bytes) -> HistoryRequest:
    """The validated request; PayloadError (with the transaction when readable) otherwise."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise PayloadError(f"request too large ({len(payload)} bytes, at most {MAX_REQUEST_BYTES})")
    request = parse_payload(HistoryRequest, payload)
    check_limits(request)
    return request


def check_limits(request: HistoryRequest) -> None:
    """Refuse requests whose answer would be unbounded (PayloadError with the request's transaction)."""
    span = request.to - request.from_
    if request.op == "power":
        points = math.ceil(span.total_seconds() / request.step_s)
        if points > MAX_POWER_POINTS:
            raise PayloadError(
                f"range too big: {points} points (at most {MAX_POWER_POINTS}); use a larger step_s or a shorter range",
                request.transaction,
            )
    elif span > MAX_RANGE:
        raise PayloadError(
            f"range too big: {span.days} days (at most {MAX_RANGE.days} for {request.op})", request.transaction
        )


def target_of(request: HistoryRequest) -> Target:
    if request.evse_id is not None:
        return EvseTarget(request.evse_id)
    assert request.vin is not None  # the model guarantees exactly one of them
    return VehicleTarget(request.vin)


def subject_name(target: Target) -> str:
    return target.evse_id if isinstance(target, EvseTarget) else target.vin
