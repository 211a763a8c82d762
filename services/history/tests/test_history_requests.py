"""Request handling rules: where answers go, which requests are refused and why."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chargebus.schema import PayloadError
from chargebus_history.queries import EvseTarget, VehicleTarget
from chargebus_history.requests import MAX_REQUEST_BYTES, parse_request, reply_to, target_of

VIN = "5YJ3E1EA8KF000001"


def body(**fields: Any) -> bytes:
    data: dict[str, Any] = {
        "v": 1,
        "op": "power",
        "evse_id": "twc-4a1b",
        "from": "2027-01-15T00:00:00Z",
        "to": "2027-01-16T00:00:00Z",
        "step_s": 60,
        "response_topic": "app/answers",
        "transaction": "t1",
    }
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


def test_the_mqtt5_response_topic_wins_and_correlation_data_is_kept() -> None:
    assert reply_to(body(), None, None).topic == "app/answers"
    found = reply_to(body(), "v5/answers", b"\x01")
    assert (found.topic, found.correlation_data, found.transaction) == ("v5/answers", b"\x01", "t1")
    assert reply_to(b"{", "v5/answers", None).topic == "v5/answers"  # malformed: the property still answers


def test_unusable_response_topics_are_named() -> None:
    reserved = frozenset({"p/history/request"})
    cases = {"a/+/b": "wildcard", "$SYS/x": "broker topic", "p/history/request": "own topics", "": "empty"}
    for topic, why in cases.items():
        found = reply_to(body(response_topic=topic), None, None, reserved=reserved, reserved_prefix="p/history/energy/")
        assert found.topic is None
        assert found.problem is not None
        assert why in found.problem
    assert reply_to(body(response_topic=None), None, None).problem is None  # none given: nothing to explain


def test_limits() -> None:
    assert parse_request(body()).step_s == 60
    with pytest.raises(PayloadError, match="range too big") as raised:
        parse_request(body(step_s=1))  # 86 400 points
    assert raised.value.transaction == "t1"
    assert parse_request(body(op="energy", to="2028-02-18T00:00:00Z")).op == "energy"  # 399 days
    with pytest.raises(PayloadError, match="range too big"):
        parse_request(body(op="sessions", to="2028-03-01T00:00:00Z"))
    with pytest.raises(PayloadError, match="too large"):
        parse_request(body(pad="x" * MAX_REQUEST_BYTES))


def test_targets() -> None:
    assert target_of(parse_request(body())) == EvseTarget("twc-4a1b")
    assert target_of(parse_request(body(evse_id=None, vin=VIN))) == VehicleTarget(VIN)
